/*
 * Healing a lost path (DESIGN §2 "Healing", "When not to heal", "Flap guard").
 * On a confirmed loss the healer decides whether to heal, waits a short grace
 * (--heal-delay) during which a bind() of the path makes it stand down, then
 * re-creates removed parent directories and re-links the guard.
 */
#ifndef SW_HEALER_H
#define SW_HEALER_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "endpoints.h"
#include "redirect.h"
#include "flapguard.h"
#include "guard.h"
#include "shared/events.h"

struct healer_cfg {
	bool guards;           /* --no-guard turns them off */
	uint64_t heal_delay_ns;
	struct flap_cfg flap;
};

struct healer {
	struct healer_cfg cfg;
	struct guards guards;
	const struct event_env *env;
	void (*emit)(void *ctx, json_t *ev);
	void *emit_ctx;
	/* the control server's rebind, for endpoints no guard can heal */
	bool (*rebind)(void *ctx, struct endpoint *e);
	void *rebind_ctx;
	/* the connect redirect (NULL or off: heals as before it) */
	struct redirect *redirect;
	/* counters, for status and metrics */
	uint64_t heals_ok, heals_failed, heals_skipped, suppressed, guards_lost;
};

void healer_init(struct healer *h, const struct healer_cfg *cfg,
		 const struct event_env *env, void (*emit)(void *, json_t *), void *ctx);
void healer_free(struct healer *h);
/* Registers guard directories a previous run left on any mount. */
void healer_discover_guards(struct healer *h);
/* A live listener is at its path: make sure it has a guard. */
void healer_listener_seen(struct healer *h, struct endpoint *e);
/* The listener closed (or the path now belongs to another socket). */
void healer_listener_gone(struct healer *h, struct endpoint *e);
/* A loss is confirmed: connects to it go to its guard while the heal is
 * due (the kernel marked it already when it saw the unlink by its name);
 * false when the endpoint has no redirect. */
bool healer_redirect_lost(struct healer *h, struct endpoint *e);
/* Connects redirected since the endpoint's last loss. */
uint64_t healer_redirected_since_loss(struct healer *h, struct endpoint *e);
/* healer_redirect.c, for the healer itself: arms (or brings up to date) e's
 * redirect, forgets it, or marks it lost or not. */
void healer_redirect_arm(struct healer *h, struct endpoint *e);
void healer_redirect_disarm(struct healer *h, struct endpoint *e);
void healer_redirect_set_lost(struct healer *h, struct endpoint *e, bool lost);
/* A heal that failed for a reason that can pass (a directory on the way
 * swapped for a link a moment, a refused mkdir or bind) is tried again, later
 * each time: 10 ms after the first failure, doubling up to a minute. Its
 * rebind_failed event ev says when (retry_in_ms); nothing when the path is
 * not lost any more. */
void healer_retry_later(struct endpoint *e, json_t *ev);
/* The path is back: the next failure starts the back-off afresh. */
void healer_retries_reset(struct endpoint *e);
/* A loss was confirmed (socket_unlinked was reported). */
void healer_on_lost(struct healer *h, struct endpoint *e);
/* The scan found the path still not naming the lost endpoint's live
 * listener after a skip for a socket that took it: heal again. */
void healer_on_rebinder_gone(struct healer *h, struct endpoint *e);
/* Someone bound the path: a pending heal stands down. */
void healer_on_bind(struct healer *h, struct endpoint *e, const struct sw_proc *who);
/* Performs the heals that are due; returns how many paths came back. */
size_t healer_run_due(struct healer *h, struct endpoint_table *t, uint64_t now_ns);
uint64_t healer_next_deadline(const struct endpoint_table *t);
/*
 * Walks from "/" to the socket's directory without following symlinks,
 * re-creating removed directories with their recorded owner and mode. Returns
 * an fd of the parent directory, or -errno with *why set.
 */
int healer_parents_ensure(const struct endpoint *e, const char **why);
/* The same walk without creating anything: refuses a symlink on the way. */
int healer_parents_ensure_existing(const struct endpoint *e, const char **why);
/* Who besides root and `trusted` could steer a name below the directories
 * of a path: the owner of the deepest directory on it owned by anyone else. */
struct healer_steerer {
	bool found;
	uid_t uid;
	gid_t gid;
};
/* healer_parents_ensure, noting the steerer of the path on the way. */
int healer_parents_steered(const struct endpoint *e, uid_t trusted, struct healer_steerer *steer,
			   const char **why);
/* A socket file some listener holds, by its (dev, ino). */
struct healer_file {
	uint64_t dev, ino;
};

/* Reconcile: prunes guards of closed listeners. A guard is kept while its
 * socket file is an endpoint's listener or among `alive` (every listener
 * the scan saw, watched or not): a guard another agent made (one per
 * network namespace, say) names a listener this agent may not watch, and
 * stays until that listener closes. */
void healer_reconcile(struct healer *h, struct endpoint_table *t,
		      const struct healer_file *alive, size_t n_alive);
/* Test builds only (SW_FAULT_POINTS, healer.c): stops the agent at the named
 * step when SW_FAULT_STOP names it; nothing in a production build. */
#ifdef SW_FAULT_POINTS
void fault_point(const char *name);
#else
#define fault_point(name) ((void)0)
#endif
#endif
