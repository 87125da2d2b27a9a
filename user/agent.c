/*
 * The agent's event loop. Data flows one way:
 *   ring buffer / reconcile scan → endpoint table → policy (confirm, coalesce)
 *   → sinks.
 * One epoll set holds the ring buffer, the signalfd, the timers and the sink
 * fds; nothing in the loop blocks on a consumer.
 */
#include "agent.h"

#include <bpf/bpf.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "actions.h"
#include "clock.h"
#include "coalescer.h"
#include "control.h"
#include "discovery.h"
#include "endpoints.h"
#include "events.h"
#include "exitcodes.h"
#include "healer.h"
#include "journal.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "paths.h"
#include "privilege.h"
#include "scanner.h"
#include "sinks.h"
#include "state.h"
#include "sockwarden.h"
#include "sockwarden.skel.h"

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
};

static bool inode_set_has(const struct inode_set *s, uint64_t ino)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i] == ino)
			return true;
	return false;
}

static void inode_set_add(struct inode_set *s, uint64_t ino)
{
	if (inode_set_has(s, ino))
		return;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 32;
		uint64_t *nv = realloc(s->v, cap * sizeof(*nv));

		if (!nv)
			return;
		s->v = nv;
		s->cap = cap;
	}
	s->v[s->n++] = ino;
}

/* Host-wide, every path; with --watch, the watched and registered ones. */
static bool path_watched(const struct agent *a, const char *path)
{
	const struct endpoint *e;

	if (a->opt->n_watch == 0)
		return true;
	e = ep_lookup(&a->eps, path);
	return e && (e->origin & (EP_FROM_WATCH | EP_FROM_REGISTER));
}

/*
 * The kernel's filters follow the endpoint table. A sync rebuilds and diffs
 * them whole (milliseconds with a thousand endpoints), so what many records
 * or registrations in one turn of the loop ask for is done once, at the end
 * of the turn. A listener's own name and inode join the filters in the
 * kernel at listen() already; this adds what only the agent knows.
 */
static void sync_soon(struct agent *a)
{
	a->sync_due = true;
}

static void sync_if_due(struct agent *a)
{
	if (!a->sync_due)
		return;
	a->sync_due = false;
	bpf_agent_sync(&a->bpf, &a->eps);
}

/* ----- emitting ----- */

/* Status shows each endpoint's last error: the last error event about it. */
static void note_last_error(struct agent *a, json_t *ev)
{
	const char *sev = json_string_value(json_object_get(ev, "severity"));
	const char *path = json_string_value(json_object_get(ev, "path"));
	const char *name = json_string_value(json_object_get(ev, "event"));
	const char *reason = json_string_value(json_object_get(ev, "reason"));
	struct endpoint *e;

	if (!sev || strcmp(sev, "error") != 0 || !path || !name)
		return;
	e = ep_lookup(&a->eps, path);
	if (!e)
		return;
	snprintf(e->last_error, sizeof(e->last_error), "%s", name);
	snprintf(e->last_error_reason, sizeof(e->last_error_reason), "%s", reason ? reason : "");
	e->last_error_ns = clock_mono_ns();
}

/* The config's section for e's path, looked up once. */
static const struct path_cfg *ep_cfg(struct agent *a, struct endpoint *e)
{
	if (!e->cfg && a->opt->paths.n)
		e->cfg = path_cfg_find(&a->opt->paths, e->path);
	return e->cfg;
}

static uint64_t window_of(const char *path, void *ctx)
{
	struct agent *a = ctx;
	const struct path_cfg *pc = path_cfg_find(&a->opt->paths, path);

	return pc && pc->has_window ? pc->window_ns : a->opt->window_ns;
}

/* A JSON Lines gap (its consumer stalled and lines dropped) is reported where
 * it is, once the consumer reads again: ahead of any later line. The report
 * counts, and goes to journald, like any event. */
static void report_sink_gap(struct agent *a)
{
	uint64_t n = sinks_gap_ready(&a->sinks);
	json_t *ev;

	if (!n)
		return;
	ev = event_new(&a->env, "events_lost", "warning", 0);
	json_object_set_new(ev, "count", json_integer((json_int_t)n));
	json_object_set_new(ev, "reason", json_string("sink_overflow"));
	json_object_set_new(ev, "queue_bytes", json_integer((json_int_t)a->sinks.jsonl.q.max));
	a->events++;
	metrics_count(&a->metrics, ev);
	if (a->have_journal)
		journal_emit(&a->journal, ev);
	sinks_close_gap(&a->sinks, ev);
	json_decref(ev);
}

/* Every event goes through here, to every sink, in the order it happened;
 * then the path's configured action, if the event calls for one. */
static void emit(struct agent *a, json_t *ev)
{
	const char *path = json_string_value(json_object_get(ev, "path"));
	struct endpoint *e = path && a->have_actions ? ep_lookup(&a->eps, path) : NULL;
	char name[32] = "", reason[48] = "";

	report_sink_gap(a);
	a->events++;
	metrics_count(&a->metrics, ev);
	note_last_error(a, ev);
	state_mark_dirty(&a->state, clock_mono_ns());
	if (e && ep_cfg(a, e)) {
		snprintf(name, sizeof(name), "%s", json_string_value(json_object_get(ev, "event")));
		snprintf(reason, sizeof(reason), "%s",
			 json_string_value(json_object_get(ev, "reason")) ?: "");
	}
	if (a->have_journal)
		journal_emit(&a->journal, ev);
	sinks_emit(&a->sinks, ev);
	json_decref(ev);
	/* while the consumer stalls, epoll says when it reads again */
	if (!a->sink_waiting)
		a->sink_waiting = sinks_flush(&a->sinks);
	if (name[0])
		actions_on_event(&a->actions, e, name, reason);
}

static json_t *ev_path(struct agent *a, const char *name, const char *sev,
		       uint64_t mono, const char *path)
{
	json_t *ev = event_new(&a->env, name, sev, mono);

	event_set_path(ev, "path", path, strlen(path));
	return ev;
}

static void ev_owner(json_t *ev, const char *key, const struct owner *o)
{
	event_set_proc(ev, key, o->pid, o->comm, o->uid);
}

static void ev_proc(json_t *ev, const char *key, const struct sw_proc *p)
{
	char comm[SW_COMM_LEN + 1];

	memcpy(comm, p->comm, SW_COMM_LEN);
	comm[SW_COMM_LEN] = 0;
	event_set_proc(ev, key, (pid_t)p->tgid, comm, p->uid);
}

static void ev_owners(json_t *ev, const struct endpoint *e)
{
	if (e->n_owners > 0)
		ev_owner(ev, "owner", &e->owners[0]);
	else if (e->have_last_owner)
		ev_owner(ev, "owner", &e->last_owner);
	if (e->n_owners > 1) {
		json_t *arr = json_array();

		for (size_t i = 0; i < e->n_owners; i++) {
			json_t *o = json_object();

			json_object_set_new(o, "pid", json_integer(e->owners[i].pid));
			json_object_set_new(o, "comm", json_string(e->owners[i].comm));
			json_object_set_new(o, "uid", json_integer(e->owners[i].uid));
			json_array_append_new(arr, o);
		}
		json_object_set_new(ev, "owners", arr);
	}
}

static void report_socket_unlinked(struct agent *a, struct endpoint *e,
				   const struct sw_proc *actor, const char *via,
				   uint64_t mono)
{
	json_t *ev = ev_path(a, "socket_unlinked", "error", mono, e->path);

	if (actor)
		ev_proc(ev, "actor", actor);
	ev_owners(ev, e);
	json_object_set_new(ev, "via", json_string(via));
	json_object_set_new(ev, "inode", json_integer((json_int_t)e->l.vfs_ino));
	ep_cfg(a, e); /* the healer reads the path's section */
	e->lost = true;
	e->lost_ns = mono ? mono : clock_mono_ns();
	e->have_lost_actor = actor != NULL;
	if (actor)
		e->lost_actor = *actor;
	emit(a, ev);
	healer_on_lost(&a->healer, e);
}

static void healer_emit(void *ctx, json_t *ev)
{
	emit(ctx, ev);
}

static void report_orphan(struct agent *a, const char *path,
			  const struct unix_listener *l, const struct owner *o)
{
	json_t *ev = ev_path(a, "listener_orphaned", "error", 0, path);

	if (o)
		ev_owner(ev, "owner", o);
	json_object_set_new(ev, "inode", json_integer((json_int_t)l->vfs_ino));
	json_object_set_new(ev, "socket_inode", json_integer((json_int_t)l->sock_ino));
	emit(a, ev);
	inode_set_add(&a->orphans_reported, l->sock_ino);
}

static void report_wedged(struct agent *a, struct endpoint *e, const char *why,
			  uint64_t mono)
{
	json_t *ev = ev_path(a, "listener_wedged", "error", mono, e->path);

	ev_owners(ev, e);
	json_object_set_new(ev, "backlog", json_integer(e->l.backlog));
	json_object_set_new(ev, "max_backlog", json_integer(e->l.max_backlog));
	json_object_set_new(ev, "reason", json_string(why));
	e->wedged = true;
	emit(a, ev);
}

/* ----- reconcile scan ----- */

/*
 * The scanner gathers on its own thread (scanner.c); the loop applies what it
 * gathered here. The loop keeps handling records while a scan is gathered, so
 * by the time a result is applied the table may know more than the result:
 * a gathered "the path resolves to this listener" is trusted only where the
 * table agrees, anything else is asked of the file system again, and a
 * listener the table learnt of after the scan began is never taken for one
 * that closed.
 */

struct prune_ctx {
	struct agent *a;
	const struct scan_result *r;
};

static void scan_prune(struct endpoint *e, void *ctx)
{
	struct prune_ctx *p = ctx;
	struct agent *a = p->a;
	struct stat st;

	if (e->has_listener && e->scan_gen != a->scan_gen &&
	    e->listener_set_ns < p->r->started_ns) {
		struct unix_listener now;

		/* A sock_diag dump resumes by position: sockets that close while
		 * it runs (the agent's own verify connects, any client) can make
		 * it skip a live one. Absent from the dump is not closed: ask
		 * the kernel for this socket by its inode. */
		if (discovery_get(e->l.sock_ino, &now) == 0 && now.state == 10 /* LISTEN */) {
			e->scan_gen = a->scan_gen;
			a->scan_dump_misses++;
		} else {
			log_debug("listener of %s closed", e->path);
			healer_listener_gone(&a->healer, e);
			ep_clear_listener(e);
		}
	}
	if (!e->has_listener && !(e->origin & (EP_FROM_WATCH | EP_FROM_REGISTER)) &&
	    lstat(e->path, &st) != 0) {
		bool streak = false;

		for (int err = 0; err < SW_ERR_MAX; err++) {
			static const int errs[] = { ENOENT, ECONNREFUSED, EAGAIN };

			if (coalescer_find(&a->co, e->path, errs[err]))
				streak = true;
		}
		if (!streak)
			ep_remove(&a->eps, e);
	}
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

	return a < b ? -1 : a > b;
}

static void scan_apply_item(struct agent *a, const struct scan_item *it, bool initial)
{
	const struct unix_listener *l = &it->l;
	struct owner owners[EP_MAX_OWNERS];
	size_t n_owners = it->n_owners < EP_MAX_OWNERS ? it->n_owners : EP_MAX_OWNERS;
	struct endpoint *e;
	bool matches = it->matches;

	if (!path_watched(a, it->path))
		return;
	for (size_t k = 0; k < n_owners; k++)
		owners[k] = it->owner_entries[k].o;
	e = ep_get_or_add(&a->eps, it->path, NULL);
	if (!e)
		return;
	e->origin |= EP_FROM_SCAN;
	if (!(matches && e->has_listener && e->l.sock_ino == l->sock_ino && !e->lost &&
	      !e->heal_pending))
		matches = listener_path_matches(l, it->path);
	if (matches) {
		if (e->has_listener && e->l.sock_ino != l->sock_ino)
			healer_listener_gone(&a->healer, e); /* a new socket took the path */
		ep_set_listener(e, l, owners, n_owners);
		e->scan_gen = a->scan_gen;
		e->lost = false;
		e->heal_pending = false;
		ep_record_fs(e);
		healer_listener_seen(&a->healer, e);
		if (l->max_backlog && l->backlog >= l->max_backlog) {
			if (!e->wedged)
				report_wedged(a, e, "backlog_full", 0);
		} else {
			e->wedged = false;
		}
		return;
	}
	/* the path is gone or names another file: this listener is orphaned */
	if (e->has_listener && e->l.sock_ino == l->sock_ino) {
		e->scan_gen = a->scan_gen;
		if (!e->lost && !initial) {
			report_socket_unlinked(a, e, NULL, "scan", 0);
			inode_set_add(&a->orphans_reported, l->sock_ino);
		}
		return;
	}
	if (!inode_set_has(&a->orphans_reported, l->sock_ino))
		report_orphan(a, it->path, l, n_owners ? &owners[0] : NULL);
	if (!e->has_listener || e->scan_gen != a->scan_gen) {
		/* keep the orphan as this path's listener until a live one shows */
		bool was_listening = e->has_listener;

		ep_set_listener(e, l, owners, n_owners);
		e->scan_gen = a->scan_gen;
		e->lost = true;
		e->lost_ns = clock_mono_ns();
		e->have_lost_actor = false;
		if (!was_listening)
			healer_on_lost(&a->healer, e);
	}
}

static void scan_apply(struct agent *a, const struct scan_result *r, bool initial)
{
	uint64_t t0 = clock_mono_ns();

	if (r->err) {
		/* a partial picture would read as listeners that closed */
		log_warn("reconcile scan failed: %s", strerror(-r->err));
		return;
	}
	a->scan_gen++;
	for (size_t i = 0; i < r->n; i++)
		scan_apply_item(a, &r->items[i], initial);
	ep_foreach(&a->eps, scan_prune, &(struct prune_ctx){ a, r });
	healer_reconcile(&a->healer, &a->eps);
	/* forget orphans whose listener is gone */
	for (size_t i = 0; i < a->orphans_reported.n;) {
		if (!bsearch(&a->orphans_reported.v[i], r->inos, r->n_listeners, sizeof(*r->inos),
			     cmp_u64))
			a->orphans_reported.v[i] = a->orphans_reported.v[--a->orphans_reported.n];
		else
			i++;
	}
	bpf_agent_sync(&a->bpf, &a->eps);
	a->scans++;
	a->last_scan = (struct scan_summary){
		.started_ns = r->started_ns, .ended_ns = r->ended_ns,
		.apply_ns = clock_mono_ns() - t0, .listeners = r->n_listeners,
		.processes = r->stats.processes, .fds = r->stats.fds,
	};
}

/* The start-up scan, gathered on the loop's own thread before the loop runs. */
static void reconcile_initial(struct agent *a)
{
	struct scan_result r;

	scan_gather(&r);
	scan_apply(a, &r, true);
	scan_result_free(&r);
}

/* ----- unlink records ----- */

struct confirm_ctx {
	struct agent *a;
	const struct sw_rec_unlink *r;
	const char *via;
	size_t confirmed;
};

static void confirm_visit(struct endpoint *e, void *ctx)
{
	struct confirm_ctx *c = ctx;

	struct unix_listener now;

	if (!e->has_listener || e->lost)
		return;
	if (listener_path_matches(&e->l, e->path))
		return; /* still there: a failed race, another name, or a hash collision */
	if (discovery_get(e->l.sock_ino, &now) != 0 || now.state != 10) {
		/* the listener closed before its file went: a clean shutdown */
		healer_listener_gone(&c->a->healer, e);
		ep_clear_listener(e);
		return;
	}
	report_socket_unlinked(c->a, e, &c->r->hdr.proc, c->via, c->r->hdr.ts_ns);
	c->confirmed++;
}

struct dir_find {
	uint64_t dev, ino;
	char path[SW_PATH_MAX];
	bool found;
};

static void dir_find_visit(struct endpoint *e, void *ctx)
{
	struct dir_find *f = ctx;
	int i;

	if (f->found)
		return;
	i = ep_dir_index(e, f->dev, f->ino);
	if (i >= 0 && ep_dir_path(e, (size_t)i, f->path, sizeof(f->path)))
		f->found = true;
}

/* An absolute path for a name the actor used, relative to `base`. */
static bool resolve_name(struct agent *a, const char *name,
			 const struct sw_file_id *base, pid_t tgid, char *out,
			 size_t outlen)
{
	struct dir_find f = {0};
	char cwd[SW_PATH_MAX];
	struct stat st;

	if (name[0] == '/')
		return path_normalize(name, out, outlen);
	if (!base->ino)
		return false;
	/* the base directory is usually one the agent recorded for an endpoint,
	 * which works even after a short-lived actor (rm) has exited */
	f.dev = kdev_to_dev(base->dev);
	f.ino = base->ino;
	ep_foreach(&a->eps, dir_find_visit, &f);
	if (f.found)
		return path_join(f.path, name, out, outlen);
	if (proc_cwd(tgid, cwd, sizeof(cwd)) && stat(cwd, &st) == 0 &&
	    st.st_ino == base->ino && st.st_dev == f.dev)
		return path_join(cwd, name, out, outlen);
	return false;
}

struct inode_match {
	struct confirm_ctx *c;
	const struct sw_file_id *id;
};

static void inode_visit(struct endpoint *e, void *ctx)
{
	struct inode_match *m = ctx;
	uint64_t dev = kdev_to_dev(m->id->dev);

	if (!e->has_listener)
		return;
	if ((e->l.vfs_ino == m->id->ino && e->l.vfs_dev == dev) ||
	    ep_dir_index(e, dev, m->id->ino) > 0)
		confirm_visit(e, m->c);
}

static void on_unlink(struct agent *a, const struct sw_rec_unlink *r)
{
	bool rename = r->syscall >= SW_SYS_RENAME && r->syscall != SW_SYS_VFS_UNLINK;
	struct confirm_ctx c = { .a = a, .r = r, .via = rename ? "rename" : "unlink" };

	for (int i = 0; i < 2; i++) {
		char name[SW_NAME_LEN + 1], abs[SW_PATH_MAX];

		if (!(r->match & (i == 0 ? SW_UNLINK_MATCH_OLD : SW_UNLINK_MATCH_NEW)))
			continue;
		if (r->target[i].ino) {
			/* fentry mode: the exact inode */
			struct inode_match m = { &c, &r->target[i] };

			ep_foreach(&a->eps, inode_visit, &m);
			continue;
		}
		memcpy(name, r->name[i], SW_NAME_LEN);
		name[SW_NAME_LEN] = 0;
		if (!resolve_name(a, name, &r->base[i], (pid_t)r->hdr.proc.tgid, abs,
				  sizeof(abs))) {
			log_debug("cannot resolve %s (pid %u); the scan will decide",
				  name, r->hdr.proc.tgid);
			continue;
		}
		ep_foreach_under(&a->eps, abs, confirm_visit, &c);
	}
	if (c.confirmed)
		bpf_agent_sync(&a->bpf, &a->eps);
}

/* ----- bind / listen records ----- */

static bool record_path(const struct sw_rec_bind *r, char *out, size_t outlen)
{
	char name[SW_SUN_PATH_LEN + 1], cwd[SW_PATH_MAX];

	memcpy(name, r->path, SW_SUN_PATH_LEN);
	name[SW_SUN_PATH_LEN] = 0;
	if (name[0] == '/')
		return path_normalize(name, out, outlen);
	if (!proc_cwd((pid_t)r->hdr.proc.tgid, cwd, sizeof(cwd)))
		return false;
	return path_join(cwd, name, out, outlen);
}

static void on_bind(struct agent *a, const struct sw_rec_bind *r)
{
	char path[SW_PATH_MAX];
	struct endpoint *e;
	bool added;

	if (!record_path(r, path, sizeof(path)) || !path_watched(a, path))
		return;
	e = ep_get_or_add(&a->eps, path, &added);
	if (!e)
		return;
	e->origin |= EP_FROM_BIND;
	/* The agent's own binds (a heal fd's new socket, its control socket) say
	 * nothing of the server: their records can arrive after the path is gone
	 * again, and must not read as the server rebinding it. */
	if (r->hdr.proc.tgid != (__u32)getpid()) {
		healer_on_bind(&a->healer, e, &r->hdr.proc);
		if (a->ctl_open)
			control_on_bind(&a->ctl, e);
	}
	if (added)
		sync_soon(a);
}

static void on_listen(struct agent *a, const struct sw_rec_bind *r)
{
	char path[SW_PATH_MAX];
	struct unix_listener l;
	struct owner o;
	struct endpoint *e;
	uint64_t ino;

	if (!record_path(r, path, sizeof(path)) || !path_watched(a, path))
		return;
	ino = fd_socket_inode((pid_t)r->hdr.proc.tgid, r->fd);
	if (!ino || discovery_get(ino, &l) != 0) {
		log_debug("listener on %s closed before it could be looked at", path);
		return;
	}
	e = ep_get_or_add(&a->eps, path, NULL);
	if (!e)
		return;
	/*
	 * The path may already be gone: the record is read after the fact, and
	 * an unlink racing it is exactly what the agent is for. The listener was
	 * bound there at listen() time, so it stands for the path unless a live
	 * listener holds the path now.
	 */
	if (!listener_path_matches(&l, path) && e->has_listener &&
	    e->l.sock_ino != l.sock_ino && listener_path_matches(&e->l, path))
		return;
	e->origin |= EP_FROM_BIND;
	if (!owner_read((pid_t)r->hdr.proc.tgid, &o))
		return;
	if (e->has_listener && e->l.sock_ino != l.sock_ino)
		healer_listener_gone(&a->healer, e);
	ep_set_listener(e, &l, &o, 1);
	e->scan_gen = a->scan_gen;
	e->lost = false;
	e->wedged = false;
	e->heal_pending = false;
	ep_record_fs(e);
	if (listener_path_matches(&l, path))
		healer_listener_seen(&a->healer, e);
	log_debug("new listener on %s (pid %d)", path, o.pid);
	sync_soon(a);
}

/* ----- connect records ----- */

static const int err_of_index[SW_ERR_MAX] = { ENOENT, ECONNREFUSED, EAGAIN };

static void coalesced_emit(const struct coalesced_event *c, void *ctx)
{
	struct agent *a = ctx;
	static const char *names[] = { "connect_failing", "connect_still_failing",
				       "connect_recovered" };
	json_t *ev = ev_path(a, names[c->kind],
			     c->kind == COALESCED_RECOVERED ? "info" : "warning",
			     c->mono_ns, c->path);

	json_object_set_new(ev, "errno", json_string(errno_name(c->err)));
	switch (c->kind) {
	case COALESCED_FAILING:
		event_set_proc(ev, "client", c->first_client.pid, c->first_client.comm,
			       c->first_client.uid);
		break;
	case COALESCED_STILL_FAILING:
		json_object_set_new(ev, "failures", json_integer((json_int_t)c->failures));
		json_object_set_new(ev, "streak_duration_ms",
				    json_integer((json_int_t)c->streak_duration_ms));
		break;
	case COALESCED_RECOVERED: {
		json_t *arr = json_array();

		json_object_set_new(ev, "streak_duration_ms",
				    json_integer((json_int_t)c->streak_duration_ms));
		json_object_set_new(ev, "swallowed_failures",
				    json_integer((json_int_t)c->swallowed_failures));
		json_object_set_new(ev, "total_failures",
				    json_integer((json_int_t)c->total_failures));
		json_object_set_new(ev, "how", json_string(c->how));
		for (size_t i = 0; i < c->n_clients; i++) {
			json_t *o = json_object();

			json_object_set_new(o, "pid", json_integer(c->clients[i].pid));
			json_object_set_new(o, "comm", json_string(c->clients[i].comm));
			json_object_set_new(o, "uid", json_integer(c->clients[i].uid));
			json_object_set_new(o, "failures",
					    json_integer((json_int_t)c->clients[i].failures));
			json_array_append_new(arr, o);
		}
		json_object_set_new(ev, "clients", arr);
		break;
	}
	}
	emit(a, ev);
}

static void path_of_key(const struct sw_path_key *k, char *out)
{
	memcpy(out, k->path, SW_SUN_PATH_LEN);
	out[SW_SUN_PATH_LEN] = 0;
}

static void streak_recovered(struct agent *a, const char *path, int err_index,
			     uint32_t gen, uint64_t closed_failures, uint64_t when,
			     const char *how);

/*
 * A newer generation of (path, errno) is known before the open streak's end:
 * records from two CPUs can reach the ring buffer in either order, and the
 * map scan can run between them. The open streak ended just before the new
 * one began, at counter value `new_start_failures - 1`; it is ended with that
 * count now (its own record, when it comes, finds it ended), so no failure is
 * lost and none is counted twice. A report of an older generation than the
 * open streak's is late and changes nothing.
 */
static bool streak_supersede(struct agent *a, const char *path, int err_index,
			     uint32_t new_gen, uint64_t new_start_failures, uint64_t when)
{
	struct streak *s = coalescer_find(&a->co, path, err_of_index[err_index]);

	if (coalescer_ended(&a->co, path, err_of_index[err_index], new_gen))
		return false;
	if (!s || s->gen == new_gen)
		return true;
	if ((int32_t)(new_gen - s->gen) < 0)
		return false;
	streak_recovered(a, path, err_index, s->gen, new_start_failures - 1, when, "connect");
	return true;
}

static void on_connect_fail(struct agent *a, const struct sw_rec_connect *r)
{
	char path[SW_SUN_PATH_LEN + 1];
	struct coalesced_client cl = {0};
	int err_index = (int)r->key.err;
	struct endpoint *e;

	if (err_index < 0 || err_index >= SW_ERR_MAX)
		return;
	path_of_key(&r->key.path, path);
	cl.pid = (pid_t)r->hdr.proc.tgid;
	cl.uid = r->hdr.proc.uid;
	memcpy(cl.comm, r->hdr.proc.comm, sizeof(cl.comm) - 1);
	if (coalescer_find(&a->co, path, err_of_index[err_index]) &&
	    coalescer_find(&a->co, path, err_of_index[err_index])->gen == r->gen)
		return;
	if (!streak_supersede(a, path, err_index, r->gen, r->count, r->hdr.ts_ns))
		return;
	coalescer_failing(&a->co, path, err_of_index[err_index], r->gen, r->count,
			  r->hdr.ts_ns, &cl);
	e = ep_lookup(&a->eps, path);
	if (err_of_index[err_index] == ECONNREFUSED) {
		struct stat st;
		json_t *ev;

		if (lstat(path, &st) != 0 || !S_ISSOCK(st.st_mode))
			return;
		ev = ev_path(a, "stale_socket", "error", r->hdr.ts_ns, path);
		if (e && e->have_last_owner)
			ev_owner(ev, "last_owner", &e->last_owner);
		emit(a, ev);
	} else if (err_of_index[err_index] == EAGAIN && e && e->has_listener) {
		struct unix_listener l;

		if (discovery_get(e->l.sock_ino, &l) == 0) {
			e->l.backlog = l.backlog;
			e->l.max_backlog = l.max_backlog;
		}
		report_wedged(a, e, "connect_eagain", r->hdr.ts_ns);
	}
}

static bool path_streak_open(struct agent *a, const char *path)
{
	for (int i = 0; i < SW_ERR_MAX; i++)
		if (coalescer_find(&a->co, path, err_of_index[i]))
			return true;
	return false;
}

static void streak_recovered(struct agent *a, const char *path, int err_index,
			     uint32_t gen, uint64_t closed_failures, uint64_t when,
			     const char *how)
{
	struct sw_client_key keys[COALESCER_TOP_CLIENTS];
	struct sw_client_stat vals[COALESCER_TOP_CLIENTS];
	struct coalesced_client cl[COALESCER_TOP_CLIENTS];
	size_t n = bpf_agent_clients(&a->bpf, path, err_index, gen, keys, vals,
				     COALESCER_TOP_CLIENTS);
	struct endpoint *e;

	for (size_t i = 0; i < n; i++) {
		cl[i].pid = (pid_t)keys[i].tgid;
		cl[i].uid = vals[i].uid;
		memcpy(cl[i].comm, vals[i].comm, sizeof(cl[i].comm));
		cl[i].comm[sizeof(cl[i].comm) - 1] = 0;
		cl[i].failures = vals[i].failures;
	}
	/* after a heal of this path the first success is the heal's, however the
	 * agent learns of it: its verifying connect, a client's, or a map scan */
	e = ep_lookup(&a->eps, path);
	if (e && e->recovered_how)
		how = e->recovered_how;
	coalescer_recovered(&a->co, path, err_of_index[err_index], gen, closed_failures,
			    when, how, cl, n);
	bpf_agent_clients_forget(&a->bpf, path, err_index, gen);
	if (e && e->recovered_how && !path_streak_open(a, path))
		e->recovered_how = NULL; /* credited: a later recovery is not this heal's */
}

static void on_connect_ok(struct agent *a, const struct sw_rec_connect *r)
{
	char path[SW_SUN_PATH_LEN + 1];
	struct sw_connect_stat st;
	struct streak *s;
	int err_index = (int)r->key.err;

	if (err_index < 0 || err_index >= SW_ERR_MAX)
		return;
	path_of_key(&r->key.path, path);
	s = coalescer_find(&a->co, path, err_of_index[err_index]);
	if ((!s || s->gen != r->gen) &&
	    bpf_agent_connect_stat(&a->bpf, path, err_index, &st) == 0 && st.gen == r->gen) {
		/* the streak's opening record was lost; the map still has its start */
		struct coalesced_client cl = { .pid = (pid_t)st.last_client.tgid,
					       .uid = st.last_client.uid };

		memcpy(cl.comm, st.last_client.comm, sizeof(cl.comm) - 1);
		if (streak_supersede(a, path, err_index, st.gen, st.streak_start_failures,
				     st.streak_start_ns))
			coalescer_failing(&a->co, path, err_of_index[err_index], st.gen,
					  st.streak_start_failures, st.streak_start_ns, &cl);
	}
	streak_recovered(a, path, err_index, r->gen, r->count, r->hdr.ts_ns, "connect");
}

static int on_record(void *ctx, void *data, size_t size)
{
	struct agent *a = ctx;
	const struct sw_rec_hdr *h = data;

	a->records++;
	if (size < sizeof(*h))
		return 0;
	switch (h->type) {
	case SW_REC_UNLINK:
		if (size >= sizeof(struct sw_rec_unlink))
			on_unlink(a, data);
		break;
	case SW_REC_BIND:
		if (size >= sizeof(struct sw_rec_bind))
			on_bind(a, data);
		break;
	case SW_REC_LISTEN:
		if (size >= sizeof(struct sw_rec_bind))
			on_listen(a, data);
		break;
	case SW_REC_CONNECT_FAIL:
		if (size >= sizeof(struct sw_rec_connect))
			on_connect_fail(a, data);
		break;
	case SW_REC_CONNECT_OK:
		if (size >= sizeof(struct sw_rec_connect))
			on_connect_ok(a, data);
		break;
	}
	return 0;
}

/* ----- periodic work ----- */

static bool read_failures(const char *path, int err, uint64_t *failures, void *ctx)
{
	struct agent *a = ctx;
	struct sw_connect_stat st;

	for (int i = 0; i < SW_ERR_MAX; i++) {
		if (err_of_index[i] != err)
			continue;
		if (bpf_agent_connect_stat(&a->bpf, path, i, &st))
			return false;
		*failures = st.failures;
		return true;
	}
	return false;
}

/*
 * The maps are the truth; records are prompts. This catches streaks whose
 * records the ring buffer could not take: opened unseen, or ended unseen.
 */
static void streaks_reconcile(struct agent *a)
{
	int fd = bpf_map__fd(a->bpf.skel->maps.connect_stats);
	struct sw_connect_stat_key cur, next;
	void *prev = NULL;

	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		struct sw_connect_stat st;
		char path[SW_SUN_PATH_LEN + 1];
		struct streak *s;

		cur = next;
		prev = &cur;
		if (cur.err >= SW_ERR_MAX || bpf_map_lookup_elem(fd, &cur, &st))
			continue;
		path_of_key(&cur.path, path);
		/* The kernel clears `open` before it stores closed_failures and
		 * closed_ns, and this copy is not atomic: a closing still in flight
		 * shows the previous streak's closing. Its record, or the next
		 * scan, ends the streak with the right count. */
		if (!st.open && st.closed_ns < st.streak_start_ns)
			continue;
		s = coalescer_find(&a->co, path, err_of_index[cur.err]);
		if (s && (s->gen != st.gen || !st.open)) {
			/* ended (and maybe reopened) without a record reaching us */
			uint64_t closed = s->gen == st.gen ? st.closed_failures
							   : st.streak_start_failures - 1;

			streak_recovered(a, path, (int)cur.err, s->gen, closed,
					 s->gen == st.gen ? st.closed_ns : st.streak_start_ns,
					 "connect");
			s = NULL;
		}
		if (!s && st.open) {
			struct coalesced_client cl = { .pid = (pid_t)st.last_client.tgid,
						       .uid = st.last_client.uid };

			memcpy(cl.comm, st.last_client.comm, sizeof(cl.comm) - 1);
			coalescer_failing(&a->co, path, err_of_index[cur.err], st.gen,
					  st.streak_start_failures, st.streak_start_ns, &cl);
		}
	}
}

static void report_losses(struct agent *a)
{
	uint64_t full = bpf_agent_counter(&a->bpf, SW_CNT_RINGBUF_FULL);

	if (full > a->ringbuf_full_reported) {
		json_t *ev = event_new(&a->env, "events_lost", "warning", 0);

		json_object_set_new(ev, "count",
				    json_integer((json_int_t)(full - a->ringbuf_full_reported)));
		json_object_set_new(ev, "reason", json_string("ringbuf_full"));
		json_object_set_new(ev, "note", json_string(
			"kernel records not queued; counts are kept in the maps and reconciled"));
		a->ringbuf_full_reported = full;
		emit(a, ev);
	}
	if (!a->sink_waiting)
		report_sink_gap(a);
}

/* ----- status, state file, metrics ----- */

struct status_ctx {
	struct agent *a;
	json_t *arr;
	uint64_t now;
	uint64_t lost, registered, circuits_open;
};

static void status_visit(struct endpoint *e, void *ctx)
{
	struct status_ctx *c = ctx;
	struct agent *a = c->a;
	json_t *j, *streaks;

	if (!e->has_listener && !e->lost && !(e->origin & (EP_FROM_WATCH | EP_FROM_REGISTER)))
		return;
	c->lost += e->lost;
	c->registered += e->reg != NULL;
	c->circuits_open += e->flap.circuit != FLAP_CLOSED;
	if (!c->arr)
		return;
	j = state_endpoint_json(e, a->env.real_minus_mono_ns, c->now);
	streaks = json_array();
	for (int i = 0; i < SW_ERR_MAX; i++) {
		struct streak *st = coalescer_find(&a->co, e->path, err_of_index[i]);
		struct sw_connect_stat cs;
		json_t *o;
		char ts[64];

		if (!st)
			continue;
		o = json_object();
		json_object_set_new(o, "errno", json_string(errno_name(err_of_index[i])));
		if (bpf_agent_connect_stat(&a->bpf, e->path, i, &cs) == 0 &&
		    cs.failures >= st->start_failures)
			json_object_set_new(o, "failures",
					    json_integer((json_int_t)(cs.failures -
								      st->start_failures + 1)));
		clock_format_rfc3339(st->start_ns + (uint64_t)a->env.real_minus_mono_ns, ts,
				     sizeof(ts));
		json_object_set_new(o, "since", json_string(ts));
		json_array_append_new(streaks, o);
	}
	json_object_set_new(j, "streaks", streaks);
	json_array_append_new(c->arr, j);
}

static void metrics_gauges_fill(struct agent *a, struct metrics_gauges *g)
{
	struct status_ctx c = { .a = a, .now = clock_mono_ns() };

	memset(g, 0, sizeof(*g));
	ep_foreach(&a->eps, status_visit, &c);
	g->mode = attach_mode_name(a->bpf.mode);
	g->endpoints = a->eps.count;
	g->endpoints_lost = c.lost;
	g->streaks_open = a->co.n_open;
	g->registered = c.registered;
	g->circuits_open = c.circuits_open;
	for (int i = 0; i < SW_ERR_MAX; i++)
		g->failures_by_err[i] = bpf_agent_counter(&a->bpf, SW_CNT_FAILURES_BY_ERR + i);
	g->kernel_drops[0] = bpf_agent_counter(&a->bpf, SW_CNT_RINGBUF_FULL);
	g->kernel_drops[1] = bpf_agent_counter(&a->bpf, SW_CNT_STAT_MAP_FULL);
	g->kernel_drops[2] = bpf_agent_counter(&a->bpf, SW_CNT_CLIENT_MAP_FULL);
	g->kernel_drops[3] = bpf_agent_counter(&a->bpf, SW_CNT_INFLIGHT_FULL);
	g->records = a->records;
	g->sink_dropped = sinks_dropped_total(&a->sinks);
	g->journal_dropped = a->have_journal ? __atomic_load_n(&a->journal.dropped,
							       __ATOMIC_RELAXED) : 0;
	g->start_time_s = (double)(a->started_mono_ns + (uint64_t)a->env.real_minus_mono_ns) / 1e9;
}

/* The reconcile scan: whether one is under way (status is answered while it
 * is), and what the last one covered. */
static json_t *scan_status(struct agent *a)
{
	json_t *o = json_object(), *last = json_null();
	uint64_t since = 0;
	bool busy = scanner_busy(&a->scanner, &since);

	json_object_set_new(o, "source", json_string("procfs"));
	json_object_set_new(o, "in_progress", json_boolean(busy));
	json_object_set_new(o, "current_started_mono_ns",
			    busy ? json_integer((json_int_t)since) : json_null());
	json_object_set_new(o, "scans", json_integer((json_int_t)a->scans));
	json_object_set_new(o, "dump_misses", json_integer((json_int_t)a->scan_dump_misses));
	if (a->scans) {
		const struct scan_summary *l = &a->last_scan;

		last = json_object();
		json_object_set_new(last, "started_mono_ns", json_integer((json_int_t)l->started_ns));
		json_object_set_new(last, "ended_mono_ns", json_integer((json_int_t)l->ended_ns));
		json_object_set_new(last, "duration_ms",
				    json_real((double)(l->ended_ns - l->started_ns) / 1e6));
		json_object_set_new(last, "apply_ms", json_real((double)l->apply_ns / 1e6));
		json_object_set_new(last, "listeners", json_integer((json_int_t)l->listeners));
		json_object_set_new(last, "processes", json_integer((json_int_t)l->processes));
		json_object_set_new(last, "fds", json_integer((json_int_t)l->fds));
	}
	json_object_set_new(o, "last", last);
	return o;
}

static json_t *agent_status(void *ctx)
{
	struct agent *a = ctx;
	const struct agent_options *o = a->opt;
	struct status_ctx c = { .a = a, .arr = json_array(), .now = clock_mono_ns() };
	json_t *doc = json_object(), *cnt = json_object();
	char ts[64];

	ep_foreach(&a->eps, status_visit, &c);
	json_object_set_new(doc, "schema", json_integer(STATE_SCHEMA_VERSION));
	json_object_set_new(doc, "version", json_string(SOCKWARDEN_VERSION));
	json_object_set_new(doc, "pid", json_integer(getpid()));
	json_object_set_new(doc, "host", json_string(a->env.host));
	json_object_set_new(doc, "boot_id", json_string(a->env.boot_id));
	json_object_set_new(doc, "mode", json_string(attach_mode_name(a->bpf.mode)));
	json_object_set_new(doc, "mode_reason", json_string(a->bpf.mode_reason));
	clock_format_rfc3339(a->started_mono_ns + (uint64_t)a->env.real_minus_mono_ns, ts,
			     sizeof(ts));
	json_object_set_new(doc, "started", json_string(ts));
	clock_format_rfc3339(clock_real_ns(), ts, sizeof(ts));
	json_object_set_new(doc, "written", json_string(ts));
	json_object_set_new(doc, "uptime_s",
			    json_real((double)(c.now - a->started_mono_ns) / 1e9));
	json_object_set_new(doc, "config", o->config_file ? json_string(o->config_file)
							  : json_null());
	json_object_set_new(doc, "guards", json_boolean(!o->no_guard));
	json_object_set_new(doc, "heal_delay_ms",
			    json_integer((json_int_t)(o->heal_delay_ns / NSEC_PER_MSEC)));
	json_object_set_new(doc, "flap_max", json_integer(o->flap.max_heals));
	json_object_set_new(doc, "flap_window_s",
			    json_integer((json_int_t)(o->flap.window_ns / NSEC_PER_SEC)));
	json_object_set_new(doc, "window_s", json_real((double)o->window_ns / 1e9));
	json_object_set_new(cnt, "records", json_integer((json_int_t)a->records));
	json_object_set_new(cnt, "events", json_integer((json_int_t)a->events));
	json_object_set_new(cnt, "lost", json_integer(
		(json_int_t)bpf_agent_counter(&a->bpf, SW_CNT_RINGBUF_FULL) +
		(json_int_t)sinks_dropped_total(&a->sinks)));
	json_object_set_new(cnt, "lost_sink", json_integer((json_int_t)
		sinks_dropped_total(&a->sinks)));
	json_object_set_new(cnt, "connect_failures", json_integer((json_int_t)
		bpf_agent_counter(&a->bpf, SW_CNT_CONNECT_FAILURES)));
	json_object_set_new(cnt, "heals_ok", json_integer((json_int_t)a->healer.heals_ok));
	json_object_set_new(cnt, "heals_failed", json_integer((json_int_t)a->healer.heals_failed));
	json_object_set_new(cnt, "heals_skipped",
			    json_integer((json_int_t)a->healer.heals_skipped));
	json_object_set_new(cnt, "circuits_opened", json_integer((json_int_t)a->healer.suppressed));
	json_object_set_new(cnt, "endpoints_lost", json_integer((json_int_t)c.lost));
	json_object_set_new(cnt, "registered", json_integer((json_int_t)c.registered));
	json_object_set_new(cnt, "streaks_open", json_integer((json_int_t)a->co.n_open));
	json_object_set_new(cnt, "last_scan_ms", json_real(
		(double)(a->last_scan.ended_ns - a->last_scan.started_ns + a->last_scan.apply_ns) /
		1e6));
	json_object_set_new(doc, "counters", cnt);
	json_object_set_new(doc, "scan", scan_status(a));
	json_object_set_new(doc, "capabilities", privilege_json(a->priv.kept));
	json_object_set_new(doc, "endpoints", c.arr);
	return doc;
}

static void state_flush(struct agent *a, bool force)
{
	uint64_t now = clock_mono_ns();
	json_t *doc;
	int rc;

	if (!a->state.file || (!force && (!a->state.dirty || now < state_next_deadline(&a->state))))
		return;
	doc = agent_status(a);
	rc = state_write(&a->state, doc, now, force);
	json_decref(doc);
	if (rc)
		log_warn("state file %s: %s", a->state.file, strerror(-rc));
}

static void metrics_flush(struct agent *a)
{
	struct metrics_gauges g;

	if (!a->metrics.httpd && !a->metrics.file)
		return;
	metrics_gauges_fill(a, &g);
	metrics_publish(&a->metrics, &g);
}

static void on_tick(struct agent *a)
{
	streaks_reconcile(a);
	coalescer_tick(&a->co, clock_mono_ns(), read_failures, a);
	report_losses(a);
	state_flush(a, false);
	metrics_flush(a);
}

/* ----- healing ----- */

/*
 * A healed path with an open connect-failure streak is verified with one
 * connect of the agent's own: the kernel sees the success and ends the streak,
 * and the recovery is credited to the heal.
 */
static void heal_verify(struct endpoint *e, void *ctx)
{
	struct agent *a = ctx;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct sw_connect_stat st;
	bool open = false;
	int fd;

	if (!e->recovered_how)
		return;
	for (int i = 0; i < SW_ERR_MAX; i++)
		if (bpf_agent_connect_stat(&a->bpf, e->path, i, &st) == 0 && st.open)
			open = true;
	if (!open || !path_fits_sun_path(e->path)) {
		/* a streak the kernel has closed but whose end the agent has not
		 * read yet is still this heal's to credit (streak_recovered clears) */
		if (!path_streak_open(a, e->path))
			e->recovered_how = NULL;
		return;
	}
	/* removed again since the heal: the connect would only add a failure of
	 * the agent's own to the streak (the unlink's record reports the loss) */
	if (!listener_path_matches(&e->l, e->path))
		return;
	fd = socket(AF_UNIX, e->l.type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	memcpy(sa.sun_path, e->path, strlen(e->path));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		log_debug("verifying %s after the heal: %s", e->path, strerror(errno));
	close(fd);
}

static void heal_due(struct agent *a)
{
	if (a->ctl_open)
		control_tick(&a->ctl, clock_mono_ns());
	if (healer_run_due(&a->healer, &a->eps, clock_mono_ns()) == 0)
		return;
	bpf_agent_sync(&a->bpf, &a->eps);
	ep_foreach(&a->eps, heal_verify, a);
}

static void heal_timer_arm(struct agent *a)
{
	uint64_t d = healer_next_deadline(&a->eps);

	if (a->ctl_open) {
		uint64_t c = control_next_deadline(&a->ctl);

		if (c < d)
			d = c;
	}
	struct itimerspec its = {0};

	if (d != UINT64_MAX) {
		if (d == 0)
			d = 1;
		its.it_value.tv_sec = (time_t)(d / NSEC_PER_SEC);
		its.it_value.tv_nsec = (long)(d % NSEC_PER_SEC);
	}
	timerfd_settime(a->heal_tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void ctl_emit(void *ctx, json_t *ev)
{
	emit(ctx, ev);
}

static void ctl_changed(void *ctx)
{
	sync_soon(ctx);
}

static void ctl_healed(void *ctx, struct endpoint *e)
{
	struct agent *a = ctx;

	/* the path may have been removed again while the server was adopting:
	 * that loss belongs to the new listener, and is healed like any other */
	if (!listener_path_matches(&e->l, e->path)) {
		e->recovered_how = NULL;
		report_socket_unlinked(a, e, NULL, "scan", 0);
		heal_timer_arm(a);
		return;
	}
	heal_verify(e, a);
}

static bool healer_rebind(void *ctx, struct endpoint *e)
{
	struct agent *a = ctx;

	return a->ctl_open && control_rebind(&a->ctl, e);
}

static void guard_remove_visit(struct endpoint *e, void *ctx)
{
	healer_listener_gone(ctx, e);
}

/* ----- set-up ----- */

static int timer_new(uint64_t interval_ns)
{
	int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	struct itimerspec its = {
		.it_interval = { (time_t)(interval_ns / NSEC_PER_SEC),
				 (long)(interval_ns % NSEC_PER_SEC) },
		.it_value = { (time_t)(interval_ns / NSEC_PER_SEC),
			      (long)(interval_ns % NSEC_PER_SEC) },
	};

	if (fd >= 0)
		timerfd_settime(fd, 0, &its, NULL);
	return fd;
}

static void on_rb(struct watcher *w, uint32_t events)
{
	struct agent *a = w->ctx;

	ring_buffer__consume(a->bpf.rb);
}

static void on_signal(struct watcher *w, uint32_t events)
{
	struct agent *a = w->ctx;
	struct signalfd_siginfo si;

	if (read(w->fd, &si, sizeof(si)) != sizeof(si))
		return;
	if (si.ssi_signo == SIGHUP) {
		/* logrotate's signal: a renamed events file is let go */
		int rc = sinks_reopen_jsonl(&a->sinks, a->opt->events);

		if (rc)
			log_warn("SIGHUP: cannot reopen %s: %s", a->opt->events, strerror(-rc));
		else
			log_info("SIGHUP: events file reopened");
		return;
	}
	a->stopping = true;
}

static bool timer_fired(int fd)
{
	uint64_t ticks;

	return read(fd, &ticks, sizeof(ticks)) > 0;
}

static void on_reconcile(struct watcher *w, uint32_t events)
{
	struct agent *a = w->ctx;

	/* a scan that outlasts the interval is not asked for again: the next
	 * tick after it is applied asks */
	if (timer_fired(w->fd) && !scanner_request(&a->scanner))
		log_debug("reconcile scan still under way");
}

static void on_scan_done(struct watcher *w, uint32_t events)
{
	struct agent *a = w->ctx;
	struct scan_result *r = scanner_take(&a->scanner);

	if (!r)
		return;
	scan_apply(a, r, false);
	scan_result_free(r);
	free(r);
}

static void on_tick_timer(struct watcher *w, uint32_t events)
{
	if (timer_fired(w->fd))
		on_tick(w->ctx);
}

static void on_heal_timer(struct watcher *w, uint32_t events)
{
	if (timer_fired(w->fd))
		heal_due(w->ctx);
}

static void on_sink(struct watcher *w, uint32_t events)
{
	struct agent *a = w->ctx;

	a->sink_waiting = sinks_flush(&a->sinks);
	if (!a->sink_waiting || sinks_gap_ready(&a->sinks)) {
		report_sink_gap(a);
		a->sink_waiting = sinks_flush(&a->sinks);
	}
}

static int watch(struct agent *a, struct watcher *w, int fd, watcher_fn fn)
{
	*w = (struct watcher){ .fd = fd, .fn = fn, .ctx = a };
	return fd < 0 ? -1 : loop_add(a->epfd, w, EPOLLIN);
}

static void count_listening(struct endpoint *e, void *ctx)
{
	if (e->has_listener)
		(*(size_t *)ctx)++;
}

static void emit_started(struct agent *a)
{
	struct utsname u;
	json_t *ev = event_new(&a->env, "agent_started", "info", 0);
	size_t listening = 0;

	uname(&u);
	ep_foreach(&a->eps, count_listening, &listening);
	json_object_set_new(ev, "mode", json_string(attach_mode_name(a->bpf.mode)));
	json_object_set_new(ev, "mode_reason", json_string(a->bpf.mode_reason));
	json_object_set_new(ev, "kernel", json_string(u.release));
	json_object_set_new(ev, "watched", json_integer((json_int_t)listening));
	json_object_set_new(ev, "version", json_string(SOCKWARDEN_VERSION));
	json_object_set_new(ev, "pid", json_integer(getpid()));
	json_object_set_new(ev, "capabilities", privilege_json(a->priv.kept));
	if (a->opt->n_watch) {
		json_t *arr = json_array();

		for (size_t i = 0; i < a->opt->n_watch; i++)
			json_array_append_new(arr, json_string(a->opt->watch[i]));
		json_object_set_new(ev, "watch", arr);
	}
	emit(a, ev);
}

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG && !log_verbose)
		return 0;
	if (!log_verbose)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

/* For the privilege drop: the loop's own kind of map access on a held fd. */
static int bpf_map_probe(void *ctx)
{
	struct agent *a = ctx;
	int ncpu = libbpf_num_possible_cpus();
	__u32 key = SW_CNT_RINGBUF_FULL;

	if (ncpu <= 0)
		return -EINVAL;
	__u64 vals[ncpu];
	return bpf_map_lookup_elem(bpf_map__fd(a->bpf.skel->maps.counters), &key, vals) ? -errno
											 : 0;
}

/* Start-up is over (BPF attached, metrics bound): keep only what the run
 * needs (README "Operating"). */
static int drop_privileges(struct agent *a)
{
	struct privilege_needs n = { .bpf_map_probe = bpf_map_probe, .ctx = a };
	char err[256], caps[512];
	int rc;

	for (size_t i = 0; i < a->opt->paths.n; i++)
		if (a->opt->paths.v[i].action == ACTION_SIGNAL)
			n.signal_action = true;
	rc = privilege_drop(&a->priv, &n, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "sockwarden: dropping privileges: %s\n", err);
		return rc;
	}
	privilege_format(a->priv.kept, caps, sizeof(caps));
	log_debug("capabilities kept: %s", caps[0] ? caps : "none");
	if (a->priv.missing) {
		privilege_format(a->priv.missing, caps, sizeof(caps));
		log_warn("capabilities the agent would use but was not given: %s", caps);
	}
	if (!a->priv.bounding_dropped)
		log_warn("no CAP_SETPCAP at start: the bounding set stays as given, and "
			 "commands of action = exec may get more than the agent keeps");
	return 0;
}

/* Threads keep the capabilities they are created with: they start after the
 * drop. */
static int start_threads(struct agent *a)
{
	int err = scanner_start(&a->scanner, NULL, NULL);

	if (err) {
		fprintf(stderr, "sockwarden: cannot start the scanner thread: %s\n",
			strerror(-err));
		return err;
	}
	if (a->opt->journal)
		a->have_journal = journal_open(&a->journal) == 0;
	if (a->opt->metrics_addr) {
		const char *why = "";
		int rc = metrics_start(&a->metrics, &why);

		if (rc) {
			fprintf(stderr, "sockwarden: --metrics %s: %s\n", a->opt->metrics_addr, why);
			return rc;
		}
	}
	return 0;
}

int agent_run(const struct agent_options *opt)
{
	struct agent a = { .opt = opt, .epfd = -1, .sigfd = -1, .reconcile_tfd = -1,
			   .tick_tfd = -1, .heal_tfd = -1 };
	struct healer_cfg hcfg = { .guards = !opt->no_guard,
				   .heal_delay_ns = opt->heal_delay_ns, .flap = opt->flap };
	char err[512];
	sigset_t mask;
	int rc, status = SW_EXIT_OK;

	log_verbose = opt->verbose;
	libbpf_set_print(libbpf_print);
	/* before any thread starts (journald, metrics): threads inherit the mask,
	 * and the signals must reach the loop's signalfd, not kill the process */
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	event_env_init(&a.env);
	rc = sinks_open_jsonl(&a.sinks, opt->events, opt->events_queue);
	if (rc) {
		fprintf(stderr, "sockwarden: cannot open --events %s: %s\n", opt->events,
			strerror(-rc));
		return SW_EXIT_USAGE;
	}
	if (ep_table_init(&a.eps, 4096) || metrics_init(&a.metrics)) {
		status = SW_EXIT_ENV;
		goto cleanup;
	}
	a.started_mono_ns = clock_mono_ns();
	if (opt->journal) {
		/* no journald on this host is not an error: sends are counted */
		if (access("/run/systemd/journal/socket", F_OK) != 0)
			log_warn("--journal: journald is not running here; events still go to "
				 "the other sinks");
		/* its thread starts after the privilege drop (start_threads) */
	}
	if (opt->state_file && opt->state_file[0]) {
		int prev = 0;

		rc = state_writer_open(&a.state, opt->state_file, &prev);
		if (rc && strcmp(opt->state_file, STATE_FILE_DEFAULT) == 0) {
			/* the default place is a convenience: the agent runs without it */
			log_warn("no state file: %s: %s", opt->state_file, strerror(-rc));
		} else if (rc) {
			fprintf(stderr, "sockwarden: --state %s: %s\n", opt->state_file,
				strerror(-rc));
			status = SW_EXIT_USAGE;
			goto cleanup;
		}
		if (prev)
			log_info("taking over the state file of agent pid %d, which is gone", prev);
	}
	if (opt->metrics_file && metrics_textfile(&a.metrics, opt->metrics_file) != 0) {
		status = SW_EXIT_ENV;
		goto cleanup;
	}
	if (opt->metrics_addr) {
		const char *why = "";

		/* bound now, served from a thread started after the privilege drop */
		rc = metrics_bind(&a.metrics, opt->metrics_addr, &why);
		if (rc) {
			fprintf(stderr, "sockwarden: --metrics %s: %s\n", opt->metrics_addr, why);
			status = rc == -EINVAL ? SW_EXIT_USAGE : SW_EXIT_ENV;
			goto cleanup;
		}
	}
	coalescer_init(&a.co, opt->window_ns, coalesced_emit, &a);
	if (opt->paths.n)
		a.co.window_of = window_of;
	healer_init(&a.healer, &hcfg, &a.env, healer_emit, &a);
	umask(0); /* re-created directories get exactly their recorded modes */
	for (size_t i = 0; i < opt->n_watch; i++) {
		struct endpoint *e = ep_get_or_add(&a.eps, opt->watch[i], NULL);

		if (e)
			e->origin |= EP_FROM_WATCH;
	}
	/* a path with a section in the config is one the operator watches */
	for (size_t i = 0; i < opt->paths.n; i++) {
		struct endpoint *e = ep_get_or_add(&a.eps, opt->paths.v[i].path, NULL);

		if (e)
			e->origin |= EP_FROM_WATCH;
	}

	rc = bpf_agent_start(&a.bpf, opt->mode, opt->any_path, opt->n_watch == 0,
			     on_record, &a, err,
			     sizeof(err));
	if (rc) {
		fprintf(stderr, "sockwarden: %s\n", err);
		status = SW_EXIT_ENV;
		goto cleanup;
	}
	rc = drop_privileges(&a);
	if (rc == 0)
		rc = start_threads(&a);
	if (rc) {
		status = SW_EXIT_ENV;
		goto cleanup;
	}

	a.sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	a.epfd = epoll_create1(EPOLL_CLOEXEC);
	a.reconcile_tfd = timer_new(opt->reconcile_ns);
	a.tick_tfd = timer_new(TICK_NS);
	a.heal_tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (a.epfd < 0 || watch(&a, &a.w_heal, a.heal_tfd, on_heal_timer) ||
	    watch(&a, &a.w_rb, ring_buffer__epoll_fd(a.bpf.rb), on_rb) ||
	    watch(&a, &a.w_sig, a.sigfd, on_signal) ||
	    watch(&a, &a.w_reconcile, a.reconcile_tfd, on_reconcile) ||
	    watch(&a, &a.w_scan, scanner_fd(&a.scanner), on_scan_done) ||
	    watch(&a, &a.w_tick, a.tick_tfd, on_tick_timer)) {
		fprintf(stderr, "sockwarden: event loop set-up failed: %s\n", strerror(errno));
		status = SW_EXIT_ENV;
		goto cleanup;
	}
	if (a.sinks.have_jsonl) {
		/* regular files never block; epoll refuses them, which is fine */
		a.w_sink = (struct watcher){ .fd = a.sinks.jsonl.fd, .fn = on_sink, .ctx = &a };
		loop_add(a.epfd, &a.w_sink, 0);
	}

	bpf_agent_sync(&a.bpf, &a.eps); /* --watch names, before the first scan */
	if (!opt->no_guard)
		healer_discover_guards(&a.healer);
	{
		struct control_hooks hooks = { ctl_emit, ctl_changed, ctl_healed, agent_status,
					       &a };
		const char *why = "";

		rc = control_open(&a.ctl, a.epfd, opt->control_path, &a.eps, &a.healer,
				  &a.env, &hooks, opt->rebind_timeout_ns, &opt->control_limits,
				  &why);
		if (rc) {
			fprintf(stderr, "sockwarden: control socket: %s (%s)\n", why,
				strerror(-rc));
			status = SW_EXIT_ENV;
			goto cleanup;
		}
		a.ctl_open = true;
		a.healer.rebind = healer_rebind;
		a.healer.rebind_ctx = &a;
		if (opt->n_watch) {
			/* the agent watches and heals its own control path */
			struct endpoint *e = ep_get_or_add(&a.eps, opt->control_path, NULL);

			if (e)
				e->origin |= EP_FROM_WATCH;
		}
	}
	for (size_t i = 0; i < opt->paths.n; i++)
		if (opt->paths.v[i].action != ACTION_NONE)
			a.have_actions = true;
	actions_init(&a.actions, a.epfd, &a.env, &opt->flap, ctl_emit, &a);
	reconcile_initial(&a);
	emit_started(&a);
	state_flush(&a, true);
	metrics_flush(&a);

	while (!a.stopping) {
		if (a.sinks.have_jsonl)
			loop_mod(a.epfd, &a.w_sink, a.sink_waiting ? EPOLLOUT : 0);
		heal_timer_arm(&a);
		if (loop_run_once(a.epfd, -1) < 0)
			break;
		if (a.ctl_open)
			control_tick(&a.ctl, clock_mono_ns());
		sync_if_due(&a);
	}

	/* a clean stop: drain what the kernel queued, then say goodbye */
	ring_buffer__consume(a.bpf.rb);
	{
		json_t *ev = event_new(&a.env, "agent_stopping", "info", 0);

		json_object_set_new(ev, "mode", json_string(attach_mode_name(a.bpf.mode)));
		json_object_set_new(ev, "records", json_integer((json_int_t)a.records));
		json_object_set_new(ev, "events_lost",
				    json_integer((json_int_t)bpf_agent_counter(
					    &a.bpf, SW_CNT_RINGBUF_FULL)));
		emit(&a, ev);
	}
	sinks_drain(&a.sinks, 2000);
	state_flush(&a, true);
	metrics_flush(&a);
	/* a clean stop leaves no guard behind; a crash leaves them for the next run */
	ep_foreach(&a.eps, guard_remove_visit, &a.healer);

cleanup:
	scanner_stop(&a.scanner);
	if (a.epfd >= 0)
		close(a.epfd);
	if (a.sigfd >= 0)
		close(a.sigfd);
	if (a.reconcile_tfd >= 0)
		close(a.reconcile_tfd);
	if (a.tick_tfd >= 0)
		close(a.tick_tfd);
	if (a.heal_tfd >= 0)
		close(a.heal_tfd);
	if (a.ctl_open)
		control_close(&a.ctl);
	actions_close(&a.actions);
	healer_free(&a.healer);
	if (a.bpf.skel)
		bpf_agent_stop(&a.bpf);
	coalescer_free(&a.co);
	if (a.eps.buckets)
		ep_table_free(&a.eps);
	free(a.orphans_reported.v);
	sinks_close(&a.sinks);
	if (a.have_journal)
		journal_close(&a.journal, 1000);
	metrics_free(&a.metrics);
	state_writer_close(&a.state);
	return status;
}
