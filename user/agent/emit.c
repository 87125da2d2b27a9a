/*
 * How the daemon's events leave it: every event the agent builds passes
 * through emit() to the sinks (JSON Lines, journald, metrics) and the
 * per-path actions. Also the events that report a socket path lost
 * (socket_unlinked), an orphaned listener, a wedged one, and records or
 * lines the daemon could not deliver (events_lost).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core.h"
#include "endpoint_json.h"

/* ----- emitting ----- */

/* The endpoint an event is about: its path in its namespace (events name the
 * agent's own namespace by its inode too). */
struct endpoint *endpoint_of_event(struct agent *a, json_t *ev)
{
	const char *path = json_string_value(json_object_get(ev, "path"));
	json_int_t mntns = json_integer_value(json_object_get(ev, "mntns"));

	if (!path)
		return NULL;
	return ep_lookup(&a->eps, ns_key((uint32_t)mntns), path);
}

/* Status shows each endpoint's last error: the last error event about it. */
static void note_last_error(struct agent *a, json_t *ev)
{
	const char *sev = json_string_value(json_object_get(ev, "severity"));
	const char *name = json_string_value(json_object_get(ev, "event"));
	const char *reason = json_string_value(json_object_get(ev, "reason"));
	struct endpoint *e;

	if (!sev || strcmp(sev, "error") != 0 || !name)
		return;
	e = endpoint_of_event(a, ev);
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

uint64_t window_of(const char *path, void *ctx)
{
	struct agent *a = ctx;
	const struct path_cfg *pc = path_cfg_find(&a->opt->paths, path);

	return pc && pc->has_window ? pc->window_ns : a->opt->window_ns;
}

/* A JSON Lines gap (its consumer stalled and lines dropped) is reported where
 * it is, once the consumer reads again: ahead of any later line. The report
 * counts, and goes to journald, like any event. */
void report_sink_gap(struct agent *a)
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
void emit(struct agent *a, json_t *ev)
{
	struct endpoint *e = a->have_actions ? endpoint_of_event(a, ev) : NULL;
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

json_t *ev_path(struct agent *a, const char *name, const char *sev,
		uint64_t mono, const char *path)
{
	json_t *ev = event_new(&a->env, name, sev, mono);

	event_set_path(ev, "path", path, strlen(path));
	return ev;
}

json_t *ev_endpoint(struct agent *a, const char *name, const char *sev, uint64_t mono,
		    const struct endpoint *e)
{
	json_t *ev = ev_path(a, name, sev, mono, e->path);

	endpoint_json_where(ev, e);
	return ev;
}

json_t *ev_key(struct agent *a, const char *name, const char *sev, uint64_t mono,
	       const char *key)
{
	struct endpoint *e = ep_lookup_key(&a->eps, key);
	const char *path = key;
	uint32_t mntns = 0;
	json_t *ev;

	if (e)
		return ev_endpoint(a, name, sev, mono, e);
	/* a path no endpoint holds (--any-path): its namespace as the key says */
	if (!ep_key_parse(key, &mntns, &path))
		path = key;
	ev = ev_path(a, name, sev, mono, path);
	json_object_set_new(ev, "mntns", json_integer(mntns ? mntns : ns_self_mntns()));
	return ev;
}

void ev_owner(json_t *ev, const char *key, const struct owner *o)
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
	else if (e->last_owner)
		ev_owner(ev, "owner", e->last_owner);
	endpoint_json_proc_ns(json_object_get(ev, "owner"), e, e->owner_mntns);
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

void report_socket_unlinked(struct agent *a, struct endpoint *e,
			    const struct sw_proc *actor, uint32_t actor_mntns, const char *via,
			    uint64_t mono)
{
	json_t *ev = ev_endpoint(a, "socket_unlinked", "error", mono, e);

	fault_point("unlink_report_before");
	if (actor) {
		ev_proc(ev, "actor", actor);
		endpoint_json_proc_ns(json_object_get(ev, "actor"), e, actor_mntns);
	}
	ev_owners(ev, e);
	json_object_set_new(ev, "via", json_string(via));
	json_object_set_new(ev, "inode", json_integer((json_int_t)e->l.vfs_ino));
	json_object_set_new(ev, "redirect", json_boolean(healer_redirect_lost(&a->healer, e)));
	if (!e->redirect_armed && e->redirect_problem[0])
		json_object_set_new(ev, "redirect_reason", json_string(e->redirect_problem));
	ep_cfg(a, e); /* the healer reads the path's section */
	e->lost = true;
	e->lost_ns = mono ? mono : clock_mono_ns();
	e->have_lost_actor = actor != NULL;
	if (actor)
		e->lost_actor = *actor;
	emit(a, ev);
	healer_on_lost(&a->healer, e);
}

void healer_emit(void *ctx, json_t *ev)
{
	emit(ctx, ev);
}

void report_orphan(struct agent *a, const struct endpoint *e,
		   const struct unix_listener *l, const struct owner *o)
{
	json_t *ev = ev_endpoint(a, "listener_orphaned", "error", 0, e);

	if (o) {
		ev_owner(ev, "owner", o);
		endpoint_json_proc_ns(json_object_get(ev, "owner"), e, o->mntns_ino);
	}
	json_object_set_new(ev, "inode", json_integer((json_int_t)l->vfs_ino));
	json_object_set_new(ev, "socket_inode", json_integer((json_int_t)l->sock_ino));
	emit(a, ev);
	inode_set_add(&a->orphans_reported, l->sock_ino);
}

void report_wedged(struct agent *a, struct endpoint *e, const char *why,
		   uint64_t mono)
{
	json_t *ev = ev_endpoint(a, "listener_wedged", "error", mono, e);

	ev_owners(ev, e);
	json_object_set_new(ev, "backlog", json_integer(e->l.backlog));
	json_object_set_new(ev, "max_backlog", json_integer(e->l.max_backlog));
	json_object_set_new(ev, "reason", json_string(why));
	e->wedged = true;
	emit(a, ev);
}


void report_events_lost(struct agent *a)
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
