/*
 * The endpoint table: one entry per watched socket path, with what the agent
 * knows of its listener, owners and directories. Keyed by absolute path.
 */
#ifndef SW_ENDPOINTS_H
#define SW_ENDPOINTS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "flapguard.h"
#include "guard.h"
#include "sockwarden.h"
#include "shared/discovery.h"

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

enum ep_origin {
	EP_FROM_SCAN = 1 << 0,  /* discovered by sock_diag */
	EP_FROM_WATCH = 1 << 1, /* named by --watch or the config */
	EP_FROM_BIND = 1 << 2,  /* seen bound during this run */
	EP_FROM_REGISTER = 1 << 3,
};

struct endpoint {
	char *path;
	struct endpoint *next; /* hash chain */
	unsigned origin;
	bool has_listener;
	struct unix_listener l;
	struct owner owners[EP_MAX_OWNERS];
	size_t n_owners;
	struct owner last_owner; /* kept after the listener is gone */
	bool have_last_owner;
	/* the socket file, as recorded while it existed */
	uid_t file_uid;
	gid_t file_gid;
	mode_t file_mode;
	struct ep_dir dirs[EP_MAX_DEPTH]; /* dirs[0] is "/" */
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
};

struct endpoint_table {
	struct endpoint **buckets;
	size_t n_buckets;
	size_t count;
};

int ep_table_init(struct endpoint_table *t, size_t n_buckets);
void ep_table_free(struct endpoint_table *t);
struct endpoint *ep_lookup(const struct endpoint_table *t, const char *path);
/* Adds an entry for path if there is none; NULL on allocation failure or a
 * path that is not absolute and normalised. */
struct endpoint *ep_get_or_add(struct endpoint_table *t, const char *path,
			       bool *added);
void ep_remove(struct endpoint_table *t, struct endpoint *e);
struct endpoint *ep_find_sock_ino(const struct endpoint_table *t, uint64_t sock_ino);
/* Entries whose socket file or one of whose directories has this identity. */
typedef void (*ep_visit_fn)(struct endpoint *e, void *ctx);
void ep_foreach(const struct endpoint_table *t, ep_visit_fn fn, void *ctx);
/* Calls fn for every endpoint the name `abs` refers to: the socket path itself
 * or an ancestor directory of it. */
size_t ep_foreach_under(const struct endpoint_table *t, const char *abs,
			ep_visit_fn fn, void *ctx);
/* The index of the recorded directory with this identity, or -1. */
int ep_dir_index(const struct endpoint *e, uint64_t dev, uint64_t ino);
/* The i-th ancestor prefix of e->path ("/", "/run", ...) into out. */
bool ep_dir_path(const struct endpoint *e, size_t i, char *out, size_t outlen);
/* Records the listener, its owners and the identities of its directories. */
void ep_set_listener(struct endpoint *e, const struct unix_listener *l,
		     const struct owner *owners, size_t n_owners);
/* Records owners, mode and parent directories from the live filesystem. */
void ep_record_fs(struct endpoint *e);
void ep_clear_listener(struct endpoint *e);
#endif
