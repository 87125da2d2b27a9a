/*
 * Discovery: the listening AF_UNIX sockets of the host, from NETLINK_SOCK_DIAG
 * (UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_RQLEN), and the processes that
 * hold them, from /proc/<pid>/fd.
 */
#ifndef SW_DISCOVERY_H
#define SW_DISCOVERY_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* sock_diag reports a listening AF_UNIX socket in TCP_LISTEN's state. */
#define TCP_LISTEN_STATE 10

struct unix_listener {
	uint64_t sock_ino;  /* sockfs inode: /proc/<pid>/fd -> socket:[sock_ino] */
	uint64_t vfs_dev;   /* userspace dev_t of the socket file's filesystem */
	uint64_t vfs_ino;   /* inode of the socket file; 0 when unbound/abstract */
	uint32_t backlog;   /* connections waiting to be accepted */
	uint32_t max_backlog;
	uint8_t type;       /* SOCK_STREAM / SOCK_SEQPACKET */
	uint8_t state;
	uint16_t name_len;  /* bytes of name; abstract names start with NUL */
	char name[108];
	uint32_t netns_ino; /* the socket's network namespace (its nsfs inode) */
	uint32_t vfs_nlink; /* links of the bound file (the iterator only; 0 unknown) */
};

struct listener_list {
	struct unix_listener *v;
	size_t n, cap;
};

struct owner_map;

struct owner {
	pid_t pid;
	uid_t uid;
	gid_t gid;
	char comm[16];
	char exe[256];
	/* For interpreters (python, perl, node, …) the program is the script:
	 * its first non-option argument. Empty otherwise. */
	char script[256];
	uint32_t mntns_ino; /* the holder's mount namespace (nsfs inode); 0 unknown */
	uint64_t cgroup_id; /* the holder's cgroup v2 id (the iterator only; 0 unknown) */
};

/* All AF_UNIX sockets of the agent's own network namespace in the given
 * TCP-like states (1 << 10 = LISTEN). */
int discovery_dump(struct listener_list *out, uint32_t states);
/* The same in every network namespace a process of the host is in (the
 * fallback's discovery, diag_netns.h); *n_netns: how many were asked. */
int discovery_dump_all(struct listener_list *out, uint32_t states, size_t *n_netns);
/* One socket by its sockfs inode in network namespace netns (0: the own),
 * entered through process via when no socket is kept for it yet; -ENOENT
 * when it is gone. */
int discovery_get_in(uint32_t netns, pid_t via, uint64_t sock_ino, struct unix_listener *out);
/* The same in the own namespace, then in every one a socket is kept for,
 * then through the holder the last scan named (discovery_note_foreign). */
int discovery_get(uint64_t sock_ino, struct unix_listener *out);

/* discovery_get, then through a process known to hold the socket (one in a
 * network namespace no scan has named yet); -ENOENT when it is gone. */
int discovery_get_via(pid_t holder, uint64_t sock_ino, struct unix_listener *out);

/* Lists the listening AF_UNIX sockets one process holds, in any namespace. */
typedef int (*discovery_pid_listeners_fn)(pid_t pid, struct listener_list *out, void *ctx);
/* The source's look-up for processes of other network namespaces (the
 * iterator scoped to one process); NULL: none. */
void discovery_set_foreign(discovery_pid_listeners_fn fn, void *ctx);
/* Remembers a holder of each listener of another network namespace in ll
 * (owners from om), for discovery_get; replaces what the last call noted. */
void discovery_note_foreign(const struct listener_list *ll, const struct owner_map *om);
void listener_list_free(struct listener_list *l);
/* Appends a copy of l; -ENOMEM. */
int listener_list_append(struct listener_list *out, const struct unix_listener *l);

/* owners: sock_ino -> processes holding it */
struct owner_entry {
	uint64_t sock_ino;
	struct owner o;
};
struct owner_map {
	struct owner_entry *v;
	size_t n, cap;
};
/* What one discovery pass covered: status and metrics report it. */
struct discovery_stats {
	uint64_t listeners, processes, fds;
};
/* Scans /proc/<pid>/fd for sockets whose inode is in `inos` (sorted); the
 * result is sorted by socket inode, then pid. stats may be NULL. */
int discovery_owners(const uint64_t *inos, size_t n_inos, struct owner_map *out,
		     struct discovery_stats *stats);
/* The owners of one socket in a map discovery_owners made: a run of entries. */
const struct owner_entry *owner_map_find(const struct owner_map *m, uint64_t sock_ino,
					 size_t *n);
void owner_map_free(struct owner_map *m);
/* Adds more's entries to into, keeping the (socket inode, pid) order; -ENOMEM. */
int owner_map_merge(struct owner_map *into, const struct owner_map *more);
/* Fills comm, uid and exe of pid; false when the process is gone. */
bool owner_read(pid_t pid, struct owner *o);
/* Whether two processes run the same program (exe, and script for interpreters). */
bool owner_same_program(const struct owner *a, const struct owner *b);
/* The listening AF_UNIX sockets process pid holds, each looked up by its
 * inode: exact, where a dump can skip a socket when others close meanwhile. */
int discovery_pid_listeners(pid_t pid, struct listener_list *out);
/* Whether process pid has an fd on the socket with this sockfs inode. */
bool discovery_pid_holds(pid_t pid, uint64_t sock_ino);
/* The sockfs inode behind /proc/<pid>/fd/<fd>, or 0. */
uint64_t fd_socket_inode(pid_t pid, int fd);
/* State letter and kernel flags (PF_*) of a process from /proc/<pid>/stat;
 * 0, or -errno (-ENOENT, -ESRCH: the process is gone). */
int proc_stat_read(pid_t pid, char *state, unsigned long *flags);
/* Alive and not a zombie: a killed agent its parent has not reaped yet is gone. */
bool process_alive(int pid);
/* Reads /proc/<pid>/cwd into out. */
bool proc_cwd(pid_t pid, char *out, size_t outlen);
/* kernel s_dev encoding (major << 20 | minor) to a userspace dev_t */
uint64_t kdev_to_dev(uint32_t kdev);
/* Resolves a listener's bound name to an absolute path: absolute names as they
 * are; relative ones against an owner's cwd. */
bool listener_abs_path(const struct unix_listener *l, pid_t owner, char *out,
		       size_t outlen);
/* Whether path currently resolves to this listener's socket file. */
bool listener_path_matches(const struct unix_listener *l, const char *path);
#endif
