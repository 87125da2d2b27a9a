/*
 * The daemon's centre, shared by the files it is split into along the data
 * path (README "How it works"):
 *   agent.c      the loop: epoll wiring, ring buffer dispatch, timers, start-up
 *   listeners.c  bind/listen records and reconcile scans → the endpoint table
 *   losses.c     unlink records → socket_unlinked, heals and their checks
 *   streaks.c    connect records and map reads → the coalescer
 *   emit.c       events → the sinks and the actions
 *   status.c     the endpoint table and counters → the status document
 * Records flow one way: agent.c dispatches, the middle files update the
 * table and decide, emit.c and status.c only read and write out. This header
 * is private to user/agent/.
 */
#ifndef SW_AGENT_CORE_H
#define SW_AGENT_CORE_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "actions.h"
#include "bpf_attach.h"
#include "coalescer.h"
#include "control.h"
#include "endpoints.h"
#include "healer.h"
#include "loop.h"
#include "privilege.h"
#include "scanner.h"
#include "shared/clock.h"
#include "shared/config.h"
#include "shared/diag_netns.h"
#include "shared/discovery.h"
#include "shared/discovery_source.h"
#include "shared/events.h"
#include "shared/log.h"
#include "shared/nsroot.h"
#include "shared/paths.h"
#include "sinks/journal.h"
#include "sinks/jsonl.h"
#include "sinks/metrics.h"
#include "sinks/state_file.h"
#include "sockwarden.h"

#define TICK_NS (250 * NSEC_PER_MSEC)

/* What status says of the last applied scan. */
struct scan_summary {
	uint64_t started_ns, ended_ns; /* gathering, on the scanner's thread */
	uint64_t apply_ns;             /* applying it, on the loop */
	uint64_t listeners, processes, fds;
};

/* Orphaned listeners already reported, by socket inode. */
struct inode_set {
	uint64_t *v;
	size_t n, cap;
};

struct agent {
	const struct agent_options *opt;
	/* the options the last reload built (reload.c); NULL: the start-up
	 * ones, which the CLI owns */
	struct agent_options *opt_owned;
	bool reload_ok;             /* the last reload applied (true at start) */
	uint64_t reload_ok_real_ns; /* when the configuration was last loaded */
	uint64_t reloads;           /* reloads applied */
	struct event_env env;
	struct sinks sinks;
	struct endpoint_table eps;
	struct coalescer co;
	struct bpf_agent bpf;
	struct healer healer;
	struct control ctl;
	bool ctl_open;
	int epfd, sigfd, reconcile_tfd, tick_tfd, heal_tfd;
	struct watcher w_rb, w_sig, w_reconcile, w_tick, w_heal, w_sink;
	bool sink_waiting;
	bool stopping;
	bool sync_due;              /* the kernel's filters wait for sync_soon's batch */
	uint64_t scan_gen;
	struct inode_set orphans_reported;
	uint64_t ringbuf_full_reported;
	struct privilege priv; /* what the run kept after start-up */
	uint64_t records;
	uint64_t events;
	struct metrics metrics;
	bool have_journal;
	struct journal_sink journal;
	struct state_writer state;
	uint64_t started_mono_ns;
	struct scanner scanner;
	struct watcher w_scan;
	uint64_t scans;             /* applied reconcile scans */
	uint64_t scan_dump_misses;  /* live listeners a scan's dump skipped */
	struct scan_summary last_scan;
	struct actions actions;
	bool have_actions;
	struct discovery_source disc; /* where scans find listeners */
	struct ns_roots roots;        /* the namespaces endpoints live in */
};

/* agent.c: the loop and its wiring */
bool inode_set_has(const struct inode_set *s, uint64_t ino);
bool path_watched(const struct agent *a, const char *path);
void inode_set_add(struct inode_set *s, uint64_t ino);
void sync_soon(struct agent *a);

/* emit.c: events out */
uint64_t window_of(const char *path, void *ctx);
json_t *ev_path(struct agent *a, const char *name, const char *sev, uint64_t mono,
		const char *path);
/* An event about endpoint e: its path and where it is (mntns, netns,
 * container); ev_key the same for a coalescer key. */
json_t *ev_endpoint(struct agent *a, const char *name, const char *sev, uint64_t mono,
		    const struct endpoint *e);
json_t *ev_key(struct agent *a, const char *name, const char *sev, uint64_t mono,
	       const char *key);
struct endpoint *endpoint_of_event(struct agent *a, json_t *ev);
void emit(struct agent *a, json_t *ev);
void ev_owner(json_t *ev, const char *key, const struct owner *o);
void healer_emit(void *ctx, json_t *ev);
void report_events_lost(struct agent *a);
void report_orphan(struct agent *a, const struct endpoint *e, const struct unix_listener *l,
		const struct owner *o);
void report_sink_gap(struct agent *a);
void report_socket_unlinked(struct agent *a, struct endpoint *e,
		const struct sw_proc *actor, uint32_t actor_mntns, const char *via, uint64_t mono);
void report_wedged(struct agent *a, struct endpoint *e, const char *why, uint64_t mono);

/* listeners.c: bind/listen records, the reconcile scan */
struct endpoint *ep_for_listener(struct agent *a, uint32_t mntns, const char *path,
				 const struct unix_listener *l, bool *added);
void on_bind(struct agent *a, const struct sw_rec_bind *r);
void on_listen(struct agent *a, const struct sw_rec_bind *r);
void reconcile_initial(struct agent *a);
void scan_apply(struct agent *a, const struct scan_result *r, bool initial);

/* losses.c: unlinks confirmed, heals scheduled and verified */
bool healer_rebind(void *ctx, struct endpoint *e);
void ctl_changed(void *ctx);
void ctl_sync(void *ctx);
void ctl_emit(void *ctx, json_t *ev);
void ctl_healed(void *ctx, struct endpoint *e);
void guard_remove_visit(struct endpoint *e, void *ctx);
void heal_due(struct agent *a);
void heal_timer_arm(struct agent *a);
void on_unlink(struct agent *a, const struct sw_rec_unlink *r);

/* streaks.c: connect records into the coalescer */
/* the errno of each SW_ERR_* index the kernel counts under */
extern const int err_of_index[SW_ERR_MAX];
bool path_streak_open(struct agent *a, const char *path);
bool read_failures(const char *path, int err, uint64_t *failures, void *ctx);
void coalesced_emit(const struct coalesced_event *c, void *ctx);
void on_connect_fail(struct agent *a, const struct sw_rec_connect *r);
void on_connect_ok(struct agent *a, const struct sw_rec_connect *r);
void streak_recovered(struct agent *a, const char *path, int err_index, uint32_t gen,
		uint64_t closed_failures, uint64_t when, const char *how);
void streaks_reconcile(struct agent *a);

/* agent.c: (re)arms a periodic timerfd (fd < 0: nothing) */
void timer_arm(int fd, uint64_t interval_ns);

/* reload.c: SIGHUP's reload of the configuration */
void agent_reload(struct agent *a);
void agent_reload_free(struct agent *a);

/* status.c: the status document */
json_t *agent_status(void *ctx);
void metrics_flush(struct agent *a);
void state_flush(struct agent *a, bool force);
#endif
