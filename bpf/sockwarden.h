/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The records and map layouts shared by the BPF programs (the .bpf.c files
 * in bpf/) and the agent (user/). Both sides compile this header; the
 * _Static_asserts at the end pin the layout so a change on one side cannot
 * silently desynchronise the other.
 */
#ifndef SOCKWARDEN_SHARED_H
#define SOCKWARDEN_SHARED_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define SW_COMM_LEN 16
/* sizeof(((struct sockaddr_un *)0)->sun_path) */
#define SW_SUN_PATH_LEN 108
/*
 * Unlink/rename names are copied up to this many bytes. A socket path is at
 * most 107 bytes when bound, but the name handed to unlink() may be longer
 * (a relative path through "..", a path through a symlinked directory).
 */
#define SW_NAME_LEN 256

enum sw_record_type {
	SW_REC_UNLINK = 1,      /* a watched name (or ancestor) was removed/renamed */
	SW_REC_BIND = 2,        /* successful bind() of an AF_UNIX path */
	SW_REC_LISTEN = 3,      /* successful listen() on a socket bound to a path */
	SW_REC_CONNECT_FAIL = 4,/* first failed connect of a streak */
	SW_REC_CONNECT_OK = 5,  /* first successful connect after a streak */
};

enum sw_syscall {
	SW_SYS_UNLINK = 1,
	SW_SYS_UNLINKAT = 2,
	SW_SYS_RENAME = 3,
	SW_SYS_RENAMEAT = 4,
	SW_SYS_RENAMEAT2 = 5,
	SW_SYS_VFS_UNLINK = 6, /* fentry mode */
	SW_SYS_VFS_RENAME = 7, /* fentry mode */
};

/* Which errno a connect failure is counted under (index into per-path state). */
enum sw_connect_err {
	SW_ERR_ENOENT = 0,
	SW_ERR_ECONNREFUSED = 1,
	SW_ERR_EAGAIN = 2,
	SW_ERR_MAX = 3,
};

/* Flags stored as values of the watched_names / watched_inodes maps. */
#define SW_WATCH_SOCKET 0x1   /* the name/inode of a watched socket file */
#define SW_WATCH_ANCESTOR 0x2 /* the name/inode of a directory above one */

/* Flags of an unlink record: which of its two names matched. */
#define SW_UNLINK_MATCH_OLD 0x1
#define SW_UNLINK_MATCH_NEW 0x2

/* Counters kept by the BPF side (index into the counters per-CPU array). */
enum sw_counter {
	SW_CNT_RINGBUF_FULL = 0,     /* a record could not be reserved */
	SW_CNT_STAT_MAP_FULL = 1,    /* a connect streak entry could not be created */
	SW_CNT_CLIENT_MAP_FULL = 2,  /* a per-client entry could not be created */
	SW_CNT_INFLIGHT_FULL = 3,    /* a syscall could not be tracked enter→exit */
	SW_CNT_CONNECT_FAILURES = 4, /* failed connects counted (all watched paths) */
	SW_CNT_UNLINK_MATCHES = 5,   /* unlink/rename syscalls that matched a name */
	/* failed connects by errno: SW_CNT_FAILURES_BY_ERR + enum sw_connect_err */
	SW_CNT_FAILURES_BY_ERR = 6,
	SW_CNT_REDIRECTED = 9,       /* connects sent to a guard (all paths) */
	SW_CNT_REDIRECT_FAILED = 10, /* a redirect the kfunc refused */
	SW_CNT_MAX = 12,
};
_Static_assert(SW_CNT_FAILURES_BY_ERR + SW_ERR_MAX <= SW_CNT_MAX,
	       "per-errno counters fit in the counters map");

struct sw_proc {
	__u32 pid;  /* thread id */
	__u32 tgid; /* process id */
	__u32 uid;
	__u32 gid;
	char comm[SW_COMM_LEN];
};

/* A file identity as the kernel sees it: dev is the kernel's s_dev encoding. */
struct sw_file_id {
	__u32 dev;
	__u32 pad;
	__u64 ino;
};

struct sw_rec_hdr {
	__u32 type; /* enum sw_record_type */
	__u32 mntns; /* the task's mount namespace (nsfs inode, as lsns prints it) */
	__u64 ts_ns; /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	struct sw_proc proc;
};

struct sw_rec_unlink {
	struct sw_rec_hdr hdr;
	__s32 ret;
	__u32 syscall; /* enum sw_syscall */
	__u32 match;   /* SW_UNLINK_MATCH_* */
	__u32 pad;
	/* Directory the names are relative to (dirfd or cwd); zero if absolute. */
	struct sw_file_id base[2];
	/* fentry mode: the inodes of the dentries involved (exact match). */
	struct sw_file_id target[2];
	/* [0]: the unlinked name or rename source, [1]: rename destination. */
	char name[2][SW_NAME_LEN];
};

struct sw_rec_bind {
	struct sw_rec_hdr hdr;
	__s32 fd;
	__s32 ret;
	struct sw_file_id base; /* cwd, for a relative path */
	char path[SW_SUN_PATH_LEN];
	__u32 pad2;
};

/*
 * Key of the per-path connect state: the client's mount namespace and the
 * sun_path bytes, zero padded. mntns is 0 for the agent's own namespace (and
 * for a path it sees as its own from any namespace, DESIGN §2 "Namespaces"):
 * two containers with a socket at one path are two keys.
 */
struct sw_path_key {
	__u32 mntns;
	char path[SW_SUN_PATH_LEN];
};

/*
 * Per (path, errno) connect state. `failures` only ever grows; a streak is the
 * interval between `open` becoming 1 and going back to 0. Userspace derives a
 * streak's exact size as closed_failures - streak_start_failures + 1, so
 * nothing depends on a ring-buffer record arriving.
 */
struct sw_connect_stat {
	__u64 failures;
	__u64 streak_start_failures;
	__u64 streak_start_ns;
	__u64 last_ns;
	__u64 closed_failures;
	__u64 closed_ns;
	__u32 gen;  /* streak generation, incremented each time a streak opens */
	__u32 open; /* 1 while a streak lasts */
	struct sw_proc last_client;
};

struct sw_connect_stat_key {
	struct sw_path_key path;
	__u32 err; /* enum sw_connect_err */
};

/* Per-client attribution of one streak. */
struct sw_client_key {
	struct sw_path_key path;
	__u32 err;
	__u32 gen;
	__u32 tgid;
};

struct sw_client_stat {
	__u64 failures;
	__u32 uid;
	__u32 pad;
	char comm[SW_COMM_LEN];
};

/* Value of watched_paths: which streaks are open on this path (bit per err). */
struct sw_path_state {
	__u32 flags;
	__u32 open_mask;
};

struct sw_rec_connect {
	struct sw_rec_hdr hdr;
	struct sw_connect_stat_key key;
	__u32 gen;
	__u64 count; /* failures at streak start (FAIL) or at close (OK) */
};

/*
 * Value of redirects (DESIGN §2 "Redirect"), keyed by the sw_path_key of a
 * watched path: where a connect to it goes while it is lost. The agent
 * writes guard when the path's guard link is in place; `lost` is set by the
 * unlink/rename exit programs in the same syscall (and by the agent), and
 * cleared by any bind() of the path and by the agent.
 *
 * lost        1 while connects to the path are sent to guard
 * guard_len   bytes of guard, without a NUL (the kfunc takes the length)
 * redirected  connects sent to guard, ever (the agent reads differences)
 * guard       the guard link's path as the client's namespace names it
 */
struct sw_redirect {
	__u32 lost;
	__u32 guard_len;
	__u64 redirected;
	char guard[SW_SUN_PATH_LEN];
	__u32 pad;
};

/*
 * Discovery by iterator (bpf/iter.bpf.c, iter/task_file): one record per
 * (process, fd) that holds a listening AF_UNIX socket, written with
 * bpf_seq_write() and read by user/shared/iter_records.c. Fixed size, no
 * framing: a read() of the iterator's fd returns whole records, but a reader
 * must still join a record split between two reads.
 *
 * A socket held by several fds or processes comes once per fd; the reader
 * folds them into one listener and one owner per process.
 *
 * magic       SW_ITER_MAGIC: a reader built against another layout rejects
 *             the stream instead of misreading it.
 * tgid, fd    the holder (process id in the initial PID namespace) and its fd
 * sock_ino    the sockfs inode: /proc/<tgid>/fd/<fd> -> socket:[sock_ino]
 * vfs_ino     inode of the bound socket file; 0 when abstract or unbound
 * cgroup_id   the holder's cgroup v2 id (kernfs node id, what
 *             name_to_handle_at on its cgroup directory gives); 0 unknown
 * uid         the holder's real uid (objective credentials, as
 *             /proc/<tgid>/status shows them)
 * vfs_dev     the bound file's device, kernel s_dev encoding
 *             (major << 20 | minor); 0 when abstract or unbound
 * vfs_nlink   its link count (a guard link makes it 2); 0 abstract/unbound
 * netns_ino   the socket's network namespace (nsfs inode, as
 *             stat -L /proc/<pid>/ns/net shows)
 * mntns_ino   the holder's mount namespace (nsfs inode); 0 when the holder
 *             is exiting (no nsproxy)
 * backlog     connections waiting to be accepted: the receive queue's
 *             length, where AF_UNIX queues them and what sock_diag's
 *             UDIAG_SHOW_RQLEN reports for a listener
 * max_backlog sk_max_ack_backlog: listen()'s backlog argument, capped
 * type        sk_type: SOCK_STREAM (1) or SOCK_SEQPACKET (5)
 * name_len    bytes of name used, 0..SW_SUN_PATH_LEN: unix_address.len
 *             minus sa_family_t, as sock_diag reports it: a path keeps its
 *             terminating NUL ("/run/a.sock" is 12), a 108-byte path has
 *             none (the kernel keeps its NUL past sun_path), an abstract
 *             name starts with NUL and has no terminator; unbound: 0
 * comm        the holder task's comm, NUL terminated
 * name        sun_path bytes, zero after name_len
 *
 * No padding anywhere: every byte of a record is written.
 */
#define SW_ITER_MAGIC 0x31495753u /* "SWI1" little endian */

struct sw_iter_listener {
	__u32 magic;
	__u32 tgid;
	__u64 sock_ino;
	__u64 vfs_ino;
	__u64 cgroup_id;
	__u32 fd;
	__u32 uid;
	__u32 vfs_dev;
	__u32 vfs_nlink;
	__u32 netns_ino;
	__u32 mntns_ino;
	__u32 backlog;
	__u32 max_backlog;
	__u16 type;
	__u16 name_len;
	char comm[SW_COMM_LEN];
	char name[SW_SUN_PATH_LEN];
};

#define SW_EXPECT_SIZE(type, size) \
	_Static_assert(sizeof(type) == (size), #type " layout changed")
#define SW_EXPECT_OFFSET(type, member, off) \
	_Static_assert(__builtin_offsetof(type, member) == (off), \
		       #type "." #member " moved")

SW_EXPECT_SIZE(struct sw_proc, 32);
SW_EXPECT_SIZE(struct sw_file_id, 16);
SW_EXPECT_SIZE(struct sw_rec_hdr, 48);
SW_EXPECT_OFFSET(struct sw_rec_unlink, base, 64);
SW_EXPECT_OFFSET(struct sw_rec_unlink, name, 128);
SW_EXPECT_SIZE(struct sw_rec_unlink, 128 + 2 * SW_NAME_LEN);
SW_EXPECT_OFFSET(struct sw_rec_bind, path, 72);
SW_EXPECT_SIZE(struct sw_rec_bind, 184);
SW_EXPECT_SIZE(struct sw_connect_stat_key, 116);
SW_EXPECT_SIZE(struct sw_client_key, 124);
SW_EXPECT_SIZE(struct sw_connect_stat, 88);
SW_EXPECT_OFFSET(struct sw_rec_connect, key, 48);
SW_EXPECT_SIZE(struct sw_rec_connect, 176);
/* the rest of what the agent reads from records and maps */
SW_EXPECT_OFFSET(struct sw_rec_unlink, target, 96);
SW_EXPECT_OFFSET(struct sw_rec_bind, base, 56);
SW_EXPECT_OFFSET(struct sw_rec_connect, gen, 164);
SW_EXPECT_OFFSET(struct sw_rec_connect, count, 168);
SW_EXPECT_SIZE(struct sw_path_key, 4 + SW_SUN_PATH_LEN);
SW_EXPECT_OFFSET(struct sw_path_key, path, 4);
SW_EXPECT_OFFSET(struct sw_rec_hdr, mntns, 4);
SW_EXPECT_SIZE(struct sw_path_state, 8);
SW_EXPECT_OFFSET(struct sw_connect_stat, gen, 48);
SW_EXPECT_OFFSET(struct sw_connect_stat, last_client, 56);
SW_EXPECT_OFFSET(struct sw_client_key, tgid, 120);
SW_EXPECT_SIZE(struct sw_client_stat, 32);
SW_EXPECT_OFFSET(struct sw_redirect, redirected, 8);
SW_EXPECT_OFFSET(struct sw_redirect, guard, 16);
SW_EXPECT_SIZE(struct sw_redirect, 16 + SW_SUN_PATH_LEN + 4);
/* the iterator's record: user/shared/iter_records.c reads these offsets */
SW_EXPECT_OFFSET(struct sw_iter_listener, tgid, 4);
SW_EXPECT_OFFSET(struct sw_iter_listener, sock_ino, 8);
SW_EXPECT_OFFSET(struct sw_iter_listener, cgroup_id, 24);
SW_EXPECT_OFFSET(struct sw_iter_listener, fd, 32);
SW_EXPECT_OFFSET(struct sw_iter_listener, vfs_dev, 40);
SW_EXPECT_OFFSET(struct sw_iter_listener, netns_ino, 48);
SW_EXPECT_OFFSET(struct sw_iter_listener, max_backlog, 60);
SW_EXPECT_OFFSET(struct sw_iter_listener, type, 64);
SW_EXPECT_OFFSET(struct sw_iter_listener, name_len, 66);
SW_EXPECT_OFFSET(struct sw_iter_listener, comm, 68);
SW_EXPECT_OFFSET(struct sw_iter_listener, name, 84);
SW_EXPECT_SIZE(struct sw_iter_listener, 84 + SW_SUN_PATH_LEN);

#endif
