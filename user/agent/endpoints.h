/*
 * The endpoint table: one entry per watched socket path, with what the agent
 * knows of its listener, owners and directories. Keyed by (mount namespace,
 * absolute path as that namespace sees it); namespace 0 is the agent's own,
 * and any path it sees as its own file, whoever binds it (DESIGN §2
 * "Namespaces").
 */
#ifndef SW_ENDPOINTS_H
#define SW_ENDPOINTS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "flapguard.h"
#include "guard.h"
#include "sockwarden.h"
#include "shared/attribution.h"
#include "shared/discovery.h"
#include "shared/nsroot.h"

struct registration;

#define EP_MAX_OWNERS 8
#define EP_MAX_DEPTH 32

/* A directory on the way to the socket file, as recorded while it existed. */
struct ep_dir {
	uint64_t dev, ino;
	uid_t uid;
	gid_t gid;
	mode_t mode;
};

/* An entry of a set the table interns (directories, records of them, owner
 * lists, the keys counted in the kernel's filters): its chain and hash. */
struct ep_link {
	struct ep_link *next;
	uint64_t hash;
};

struct ep_intern {
	struct ep_link **buckets;
	size_t n_buckets, count;
};

/*
 * The directories are the table's: one node per distinct directory path,
 * shared by every endpoint below it and refcounted (endpoints whose parent it
 * is, and child directories). A node holds the path and the last look at it
 * (what an ep_fs_batch reuses); what an endpoint recorded is its ep_dir_rec.
 */
struct ep_dir_node {
	struct ep_link link;        /* first: the table's set of directories */
	uint32_t mntns;             /* the namespace whose directory it is */
	struct ep_dir_node *parent; /* NULL for "/" */
	char *path;                 /* the directory, absolute and normalised */
	size_t len;
	size_t refs;
	unsigned depth;             /* 0 for "/", 1 for "/run", ... */
	bool look_ok;               /* what the look in look_gen found */
	uint64_t look_gen;          /* ep_fs_batch in which it was last looked at */
	struct ep_dir look;         /* what that look found */
	/* bpf_attach.c: the endpoints below that count its name in the
	 * kernel's filters */
	size_t name_users;
};

/*
 * What an endpoint recorded of its directories, dirs 0 .. n-1 from "/", each
 * as it was at the endpoint's last look that found it. Records are values,
 * interned and refcounted: endpoints whose records are the same (10,000
 * sockets in one directory) share one, and an endpoint that records anything
 * else gets a record of its own, so no endpoint's look changes another's.
 */
struct ep_dir_rec {
	struct ep_link link;  /* first: the table's set of records */
	size_t refs;          /* endpoints, and bpf_attach.c's counted ones */
	size_t n;
	size_t ino_users;     /* bpf_attach.c: endpoints counting its inodes */
	struct ep_dir d[];
};

/* A key the table's entries count in one of the kernel's filters, and how
 * many of them count it (bpf_attach.c keeps the maps in step). */
struct ep_key_count {
	struct ep_link link;   /* first: the set's entry */
	struct sw_file_id id;  /* an inode, or a name's hash in id.ino */
	uint32_t users[2];     /* names: as a socket, as an ancestor; inodes: [0] */
};

/* What an endpoint counts in the kernel's filters (bpf_attach.c). */
struct ep_counted {
	bool path;                 /* watched_paths */
	struct sw_path_key alias;  /* path_aliases (mntns 0: none) */
	bool names;                /* watched_names: its own and its directories' */
	bool file;                 /* watched_inodes: the socket file's id */
	struct sw_file_id file_id;
	struct ep_dir_rec *dirs;   /* ... and those of its recorded directories */
};

enum ep_origin {
	EP_FROM_SCAN = 1 << 0,  /* discovered by sock_diag */
	EP_FROM_WATCH = 1 << 1, /* named by --watch or the config */
	EP_FROM_BIND = 1 << 2,  /* seen bound during this run */
	EP_FROM_REGISTER = 1 << 3,
};

struct endpoint_table;

struct endpoint {
	char *path;            /* as its namespace sees it */
	uint32_t mntns;        /* 0: the agent's own namespace */
	/* the coalescer's and the state file's name for it: path itself in the
	 * agent's namespace, "mnt:[N]" + path elsewhere */
	const char *key;
	struct endpoint *next; /* hash chain */
	uint64_t hash;         /* of (mntns, path) */
	/* where its names are resolved: the table's own root for mntns 0; for
	 * another namespace the root opened through a holder (NULL until one is
	 * known, and then nothing is looked at) */
	struct ns_root *root;
	uint32_t netns;        /* the listener's network namespace (0 unknown) */
	uint32_t owner_mntns;  /* the holder's mount namespace (0 unknown) */
	struct attribution attr; /* from the holder's cgroup path */
	/* the holder's own name for the file, when the endpoint's path is the
	 * agent's other name for it (a directory bind-mounted elsewhere) */
	char *alias;
	uint32_t alias_mntns;
	pid_t attr_pid;           /* the holder attr was read from */
	struct endpoint_table *table;
	unsigned origin;
	bool has_listener;
	struct unix_listener l;
	/* n_owners of them; endpoints with the same owners (one server holding
	 * many listeners) share one copy, the table's */
	const struct owner *owners;
	size_t n_owners;
	/* the first owner last known, kept after the listener is gone (NULL:
	 * none known); a reference to a shared owner list, like owners */
	const struct owner *last_owner;
	/* the socket file, as recorded while it existed */
	uid_t file_uid;
	gid_t file_gid;
	mode_t file_mode;
	/* the deepest of its directories (the socket's own, or the EP_MAX_DEPTH-th
	 * from "/"), and what it recorded of them: ep_dir_at() reads
	 * dirs->d[0 .. n_dirs-1] */
	struct ep_dir_node *dir;
	struct ep_dir_rec *dirs;
	size_t n_dirs;
	bool lost;          /* path no longer resolves to the listener */
	uint64_t lost_ns;
	bool wedged;        /* backlog full at the last look */
	uint64_t scan_gen;  /* last reconcile that saw the listener */
	uint64_t listener_set_ns; /* when the listener was last set (CLOCK_MONOTONIC) */

	/* healing (healer.c) */
	struct guard_ref guard;
	bool guard_ok;
	char guard_problem[32]; /* the guard_lost reason last reported */
	bool heal_pending;
	uint64_t heal_at_ns;
	unsigned heal_retries; /* failed tries since the last heal (healer_retry_later) */
	/* left lost because another socket took the path: the next scan takes
	 * the path back if nobody listens there (healer_on_rebinder_gone) */
	bool awaits_rebinder;
	/* the redirect (redirect.h): armed with the guard's path while a guard
	 * is in place; the count it had when the path was last lost */
	bool redirect_armed;
	bool redirect_lost;
	char redirect_problem[32]; /* why it is not armed (guard_mirror.h) */
	uint64_t redirected_at_loss;
	struct sw_proc lost_actor; /* who removed the path, if seen */
	bool have_lost_actor;
	const char *recovered_how; /* set while the agent verifies a heal */
	struct flap_state flap;
	struct registration *reg; /* control.c: the server registered this path */

	/* status: the last error event about this path */
	char last_error[32];
	char last_error_reason[48];
	uint64_t last_error_ns;
	/* actions (actions.c): their own flap guard */
	struct flap_state action_flap;
	const struct path_cfg *cfg; /* the config's section for this path, if any */
	struct ep_counted counted;  /* bpf_attach.c */
};

struct endpoint_table {
	/* the roots of the namespaces its endpoints live in (NULL: the agent's
	 * own only, as in unit tests) */
	struct ns_roots *roots;
	struct endpoint **buckets;
	size_t n_buckets;
	size_t count;
	/* the interned directories (ep_dir_node), records of them (ep_dir_rec)
	 * and owner lists */
	struct ep_intern dirs, dir_recs, owner_sets;
	/* ep_fs_batch_begin/end: while a batch is open (look_gen odd), each
	 * directory is looked at once */
	uint64_t look_gen;
	/* when a listener is set; clock_mono_ns unless a test sets its own */
	uint64_t (*clock)(void);
	/* the keys the entries count in watched_names and watched_inodes
	 * (struct ep_key_count), and who is told as an entry leaves the table,
	 * before it is freed (bpf_attach.c: the filters forget what it counted) */
	struct ep_intern counted_names, counted_inodes;
	void (*on_remove)(struct endpoint *e, void *ctx);
	void *on_remove_ctx;
};

/* The interned sets' hash tables, for others' sets of the same kind too. */
int ep_intern_init(struct ep_intern *s);
struct ep_link *ep_intern_chain(const struct ep_intern *s, uint64_t hash);
void ep_intern_add(struct ep_intern *s, struct ep_link *l);
void ep_intern_del(struct ep_intern *s, struct ep_link *l);
/* Frees a set whose entries are allocations of their own, link first. */
void ep_intern_free_all(struct ep_intern *s);

int ep_table_init(struct endpoint_table *t, size_t n_buckets);
void ep_table_free(struct endpoint_table *t);
struct endpoint *ep_lookup(const struct endpoint_table *t, uint32_t mntns, const char *path);
/* Adds an entry for (mntns, path) if there is none; NULL on allocation
 * failure or a path that is not absolute and normalised. */
struct endpoint *ep_get_or_add(struct endpoint_table *t, uint32_t mntns, const char *path,
			       bool *added);
/* The entry a process of namespace mntns means by path: its namespace's,
 * the agent's own, or one it knows by another name (ep_set_alias). */
struct endpoint *ep_lookup_seen(const struct endpoint_table *t, uint32_t mntns,
				const char *path);
/* The entry a key ("mnt:[N]/path" or "/path") names, or NULL. */
struct endpoint *ep_lookup_key(const struct endpoint_table *t, const char *key);
/* Writes the key of (mntns, path) into out; false when it does not fit. */
bool ep_key_format(uint32_t mntns, const char *path, char *out, size_t outlen);
/* Parses a key back; path points into key. */
bool ep_key_parse(const char *key, uint32_t *mntns, const char **path);
/* Gives a foreign endpoint its namespace's root, opened through holder pid
 * when the table holds none yet; true when it has one. */
bool ep_attach_root(struct endpoint *e, pid_t holder);
/* Where e's names resolve: its root, or one no look can pass (foreign
 * endpoints before a root is known). */
const struct ns_root *ep_root(const struct endpoint *e);
/* Whether e's path, in its namespace, is l's socket file. */
bool ep_path_is_listener(const struct endpoint *e, const struct unix_listener *l);
/* Notes where e's listener runs: its network namespace, its holder's mount
 * namespace and the holder's cgroup's names for it; gives a foreign
 * endpoint its root through the holder. */
void ep_note_holder(struct endpoint *e, const struct unix_listener *l, pid_t holder,
		    uint32_t holder_mntns);
/* e's listener as the kernel has it now (through its owners when it lives
 * in a network namespace no scan has named); -ENOENT when it is gone. */
int ep_listener_now(const struct endpoint *e, struct unix_listener *out);
/* Notes the holder's other name for e's file (NULL: none); false when out
 * of memory. */
bool ep_set_alias(struct endpoint *e, uint32_t mntns, const char *alias);
/* lstat of e's path in its namespace; -errno. */
int ep_lstat(const struct endpoint *e, struct stat *st);
void ep_remove(struct endpoint_table *t, struct endpoint *e);
struct endpoint *ep_find_sock_ino(const struct endpoint_table *t, uint64_t sock_ino);
/* Entries whose socket file or one of whose directories has this identity. */
typedef void (*ep_visit_fn)(struct endpoint *e, void *ctx);
void ep_foreach(const struct endpoint_table *t, ep_visit_fn fn, void *ctx);
/* Calls fn for every endpoint of namespace mntns the name `abs` refers to:
 * the socket path itself or an ancestor directory of it. A name from another
 * namespace may name a file the agent's namespace shares: its endpoints are
 * visited too (the caller confirms against the file system). */
size_t ep_foreach_under(const struct endpoint_table *t, uint32_t mntns, const char *abs,
			ep_visit_fn fn, void *ctx);
/* The index of the recorded directory with this identity, or -1. */
int ep_dir_index(const struct endpoint *e, uint64_t dev, uint64_t ino);
/* The i-th recorded directory of e (0 is "/"), or NULL when i >= e->n_dirs. */
const struct ep_dir *ep_dir_at(const struct endpoint *e, size_t i);
/* A reference on a record, and giving one back (the last frees it). */
void ep_dir_rec_hold(struct ep_dir_rec *r);
void ep_dir_rec_put(struct endpoint_table *t, struct ep_dir_rec *r);
/* The node of e's i-th directory (recorded or not), or NULL past the deepest. */
const struct ep_dir_node *ep_dir_node_at(const struct endpoint *e, size_t i);
/* The i-th ancestor prefix of e->path ("/", "/run", ...) into out. */
bool ep_dir_path(const struct endpoint *e, size_t i, char *out, size_t outlen);
/* Records the listener, its owners and the identities of its directories. */
void ep_set_listener(struct endpoint *e, const struct unix_listener *l,
		     const struct owner *owners, size_t n_owners);
/* Records owners, mode and parent directories from the live filesystem:
 * ep_record_dirs, then the socket file at the path (lstat). */
void ep_record_fs(struct endpoint *e);
void ep_record_dirs(struct endpoint *e);
/* The socket file's owner and mode from a look at it (a socket's only). */
void ep_record_file(struct endpoint *e, const struct stat *st);
/* Between these, ep_record_fs looks at each directory once (a reconcile
 * scan's many endpoints in few directories); outside, on every call. */
void ep_fs_batch_begin(struct endpoint_table *t);
void ep_fs_batch_end(struct endpoint_table *t);
void ep_clear_listener(struct endpoint *e);
/* Drops what e holds (owner lists, directory records, flap rings): for an
 * endpoint of no table, whose memory is the caller's; the table's own call
 * it as they go. */
void ep_release(struct endpoint *e);
#endif
