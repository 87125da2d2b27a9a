/*
 * Building the report's model: the sorted events grouped per endpoint into a
 * timeline and incidents (when one opens, what it counts, when it closes), and
 * the agent's runs and losses.
 *
 * An incident of an endpoint is open while the journal says something is wrong
 * with it: its path is lost (socket_unlinked, listener_orphaned), nothing
 * listens (stale_socket), the listener does not accept (listener_wedged), or a
 * connect-failure streak is open (connect_failing until connect_recovered). It
 * closes when both are over: the path is back (rebind_succeeded, or a
 * connect_recovered, which proves it) and every streak has recovered. A
 * deliberate decision not to heal (rebind_skipped: the owner removed its own
 * path, a new instance replaced it, ...) ends the incident too when no client
 * is failing: nothing is broken that the agent was meant to fix.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "report_internal.h"
#include "shared/clock.h"

/* ----- building the model ----- */

static bool grow(void **v, size_t *cap, size_t n, size_t size)
{
	void *nv;
	size_t ncap;

	if (n < *cap && *v)
		return true;
	ncap = *cap ? *cap * 2 : 8;
	nv = realloc(*v, ncap * size);
	if (!nv)
		return false;
	memset((char *)nv + *cap * size, 0, (ncap - *cap) * size);
	*v = nv;
	*cap = ncap;
	return true;
}

/* {pid, comm, uid} of a process object, whatever else it carries. */
static json_t *proc_copy(const json_t *p)
{
	json_t *c;

	if (!json_is_object(p))
		return NULL;
	c = json_object();
	json_object_set(c, "pid", json_object_get(p, "pid") ? json_object_get(p, "pid") : json_null());
	json_object_set(c, "comm", json_object_get(p, "comm") ? json_object_get(p, "comm") : json_null());
	json_object_set(c, "uid", json_object_get(p, "uid") ? json_object_get(p, "uid") : json_null());
	return c;
}

/* Where the endpoint runs, as its events name it. */
static void endpoint_note_where(struct endpoint_acc *ep, const struct jevent *e)
{
	static const char *const keys[] = { "container", "pod", "unit" };
	json_t *w = NULL;

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		json_t *v = json_object_get(e->obj, keys[i]);

		if (!v)
			continue;
		if (!w)
			w = json_object();
		json_object_set(w, keys[i], v);
	}
	if (!w)
		return;
	json_decref(ep->where);
	ep->where = w;
}

struct endpoint_acc *endpoint_of(struct builder *b, const struct jevent *e)
{
	char *key;
	json_t *idx;
	struct endpoint_acc *ep;

	/* two containers' sockets at one path are two endpoints */
	if (asprintf(&key, "%s\n%lld\n%s", e->host, (long long)e->mntns, e->path) < 0)
		return NULL;
	idx = json_object_get(b->ep_index, key);
	if (idx) {
		free(key);
		ep = &b->ep[json_integer_value(idx)];
		endpoint_note_where(ep, e);
		return ep;
	}
	if (!grow((void **)&b->ep, &b->cap_ep, b->n_ep, sizeof(*b->ep)) ||
	    json_object_set_new(b->ep_index, key, json_integer((json_int_t)b->n_ep))) {
		free(key);
		return NULL;
	}
	free(key);
	ep = &b->ep[b->n_ep++];
	ep->host = e->host;
	ep->path = e->path;
	ep->path_hex = e->path_hex;
	ep->mntns = e->mntns;
	endpoint_note_where(ep, e);
	ep->first = e;
	ep->timeline = json_array();
	ep->open = -1;
	return ep;
}

static struct incident *incident_open(struct endpoint_acc *ep, const struct jevent *e)
{
	struct incident *inc;
	json_int_t streak_ms;

	if (!grow((void **)&ep->inc, &ep->cap_inc, ep->n_inc, sizeof(*ep->inc)))
		return NULL;
	inc = &ep->inc[ep->n_inc];
	inc->id = (int)ep->n_inc + 1;
	inc->opened_by = e->name;
	inc->start = e->at;
	inc->start_time = e->time;
	inc->clients = json_array();
	inc->problems = json_array();
	inc->notes = json_array();
	/* a second removal's socket_unlinked may not name the server again */
	inc->owner = json_incref(ep->owner);
	inc->owner_inherited = ep->owner != NULL;
	/* The journal joins a streak late (it began before the agent wrote to this
	 * file, or its first event was lost): the streak's own length says when. */
	if ((event_is(e, "connect_recovered") || event_is(e, "connect_still_failing")) &&
	    int_of(e->obj, "streak_duration_ms", &streak_ms) && streak_ms > 0) {
		uint64_t back = (uint64_t)streak_ms * NSEC_PER_MSEC;

		inc->start.real_ns -= (int64_t)back;
		if (inc->start.has_mono && inc->start.mono_ns >= back)
			inc->start.mono_ns -= back;
		else
			inc->start.has_mono = false;
		clock_format_rfc3339((uint64_t)inc->start.real_ns, inc->start_time_buf,
				     sizeof(inc->start_time_buf));
		inc->start_time = inc->start_time_buf;
		inc->start_estimated = true;
	}
	ep->open = (long)ep->n_inc++;
	return inc;
}

static struct errno_tally *tally_of(struct incident *inc, const char *name)
{
	struct errno_tally *t;

	if (!name)
		name = "unknown";
	for (size_t i = 0; i < inc->n_err; i++)
		if (strcmp(inc->err[i].name, name) == 0)
			return &inc->err[i];
	/* more errnos than any schema has: the last slot collects the rest */
	t = &inc->err[inc->n_err < ERRNOS_MAX ? inc->n_err++ : ERRNOS_MAX - 1];
	if (!t->name[0])
		snprintf(t->name, sizeof(t->name), "%s", name);
	return t;
}

/* What the open streak has failed so far, as the agent counts it: the first
 * window's connect_still_failing includes the connect_failing (coalescer.c
 * starts the window's base one below the first failure). */
uint64_t streak_estimate(const struct errno_tally *t)
{
	return t->saw_window ? t->windows : 1;
}

static bool streaks_open(const struct incident *inc)
{
	for (size_t i = 0; i < inc->n_err; i++)
		if (inc->err[i].streak_open)
			return true;
	return false;
}

static bool same_proc(const json_t *a, const json_t *b)
{
	return json_equal(json_object_get(a, "pid"), json_object_get(b, "pid")) &&
	       json_equal(json_object_get(a, "comm"), json_object_get(b, "comm"));
}

/* failures < 0: the client failed, the journal does not say how often. */
static void client_add(struct incident *inc, const json_t *p, json_int_t failures)
{
	size_t i;
	json_t *c;

	if (!json_is_object(p))
		return;
	json_array_foreach(inc->clients, i, c) {
		json_t *f = json_object_get(c, "failures");

		if (!same_proc(c, p))
			continue;
		if (failures >= 0)
			json_object_set_new(c, "failures", json_integer(
				(json_is_integer(f) ? json_integer_value(f) : 0) + failures));
		return;
	}
	c = proc_copy(p);
	json_object_set_new(c, "failures", failures >= 0 ? json_integer(failures) : json_null());
	json_array_append_new(inc->clients, c);
}

static void problem_add(struct incident *inc, const struct jevent *e)
{
	static const char *const keys[] = { "how", "reason", "error", "rebinds", "window_s",
					    "retry_at" };
	json_t *p = json_object();
	struct text t = { .n = 0 };

	describe(&t, e);
	json_object_set_new(p, "time", json_string(e->time));
	json_object_set_new(p, "event", json_string(e->name));
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (json_object_get(e->obj, keys[i]))
			json_object_set(p, keys[i], json_object_get(e->obj, keys[i]));
	if (json_object_get(e->obj, "actor"))
		json_object_set_new(p, "actor", proc_copy(json_object_get(e->obj, "actor")));
	json_object_set_new(p, "text", json_string(t.s));
	json_array_append_new(inc->problems, p);
}

static void incident_note(struct incident *inc, const char *fmt, const char *arg)
{
	struct text t = { .n = 0 };

	text_add(&t, fmt, arg);
	json_array_append_new(inc->notes, json_string(t.s));
}

/* Closes inc at e if nothing is wrong any more (see the top of this file). */
static void incident_settle(struct endpoint_acc *ep, struct incident *inc,
			    const struct jevent *e)
{
	if (streaks_open(inc))
		return;
	if (inc->lost && !inc->stood_down)
		return;
	if (!inc->lost)
		inc->status = inc->heal_how ? "healed" : "recovered";
	else
		inc->status = "stood_down";
	inc->end = e;
	ep->open = -1;
}

static bool is_loss(const struct jevent *e)
{
	return event_is(e, "socket_unlinked") || event_is(e, "listener_orphaned") ||
	       event_is(e, "stale_socket") || event_is(e, "listener_wedged");
}

/* The incident bookkeeping of one endpoint event; returns the incident it
 * belongs to (NULL: none). */
struct incident *endpoint_event(struct endpoint_acc *ep, const struct jevent *e)
{
	struct incident *inc = ep->open >= 0 ? &ep->inc[ep->open] : NULL;
	const json_t *o = e->obj;
	const json_t *owner = json_object_get(o, "owner");
	struct errno_tally *t;
	json_int_t n;
	size_t i;
	json_t *c;
	bool names_owner;

	if (!json_is_object(owner))
		owner = json_object_get(o, "last_owner");
	names_owner = json_is_object(owner);
	if (names_owner) {
		json_decref(ep->owner);
		ep->owner = proc_copy(owner);
	}

	if (is_loss(e) || event_is(e, "connect_failing") || event_is(e, "connect_still_failing") ||
	    event_is(e, "connect_recovered")) {
		if (!inc && !(inc = incident_open(ep, e)))
			return NULL;
	}
	if (!inc)
		return NULL;
	if (is_loss(e)) {
		inc->lost = true;
		inc->stood_down = NULL; /* a new loss needs a new decision */
		if (event_is(e, "socket_unlinked")) {
			inc->removals++;
			if (!inc->via)
				inc->via = str_of(o, "via");
			if (!inc->actor)
				inc->actor = proc_copy(json_object_get(o, "actor"));
		}
	} else if (event_is(e, "connect_failing")) {
		t = tally_of(inc, str_of(o, "errno"));
		if (t->streak_open) /* a second start: the first one's end went unseen */
			t->counted += streak_estimate(t), t->estimated = true;
		t->streak_open = true;
		t->saw_window = false;
		t->windows = 0;
		client_add(inc, json_object_get(o, "client"), -1);
	} else if (event_is(e, "connect_still_failing")) {
		t = tally_of(inc, str_of(o, "errno"));
		if (!t->streak_open) /* joined late: what came before is unknown */
			t->estimated = true;
		t->streak_open = true;
		t->saw_window = true;
		if (int_of(o, "failures", &n) && n > 0)
			t->windows += (uint64_t)n;
	} else if (event_is(e, "connect_recovered")) {
		const char *how = str_of(o, "how");

		t = tally_of(inc, str_of(o, "errno"));
		if (int_of(o, "total_failures", &n) && n >= 0) {
			t->counted += (uint64_t)n;
		} else {
			t->counted += streak_estimate(t);
			t->estimated = true;
		}
		t->streak_open = false;
		t->saw_window = false;
		t->windows = 0;
		json_array_foreach(json_object_get(o, "clients"), i, c) {
			json_int_t f;

			client_add(inc, c, int_of(c, "failures", &f) ? f : -1);
		}
		if (how && strcmp(how, "connect") != 0 && !inc->heal_how)
			inc->heal_how = how;
		inc->recovered_how = how;
		inc->lost = false; /* a connect got through: the path works */
	} else if (event_is(e, "rebind_started")) {
		inc->heal_attempts++;
	} else if (event_is(e, "rebind_succeeded")) {
		inc->heal_how = str_of(o, "how");
		inc->heal_time = e->time;
		json_decref(inc->heal_ms);
		inc->heal_ms = json_incref(json_object_get(o, "heal_ms"));
		inc->lost = false;
	} else if (event_is(e, "rebind_failed") || event_is(e, "rebind_suppressed") ||
		   event_is(e, "guard_lost")) {
		problem_add(inc, e);
	} else if (event_is(e, "rebind_skipped")) {
		problem_add(inc, e);
		if (skip_is_deliberate(str_of(o, "reason")))
			inc->stood_down = str_of(o, "reason");
	}
	if (names_owner && (!inc->owner || inc->owner_inherited)) {
		json_decref(inc->owner);
		inc->owner = json_incref(ep->owner);
		inc->owner_inherited = false;
	}
	inc->events++;
	inc->last = e;
	incident_settle(ep, inc, e);
	return inc;
}

json_t *timeline_entry(const struct jevent *e, const struct jevent *origin,
		       int incident)
{
	struct text t = { .n = 0 };
	json_t *x = json_object();

	describe(&t, e);
	json_object_set_new(x, "time", json_string(e->time));
	json_object_set_new(x, "offset_s", json_real(span_s(&origin->at, &e->at)));
	json_object_set_new(x, "event", json_string(e->name));
	json_object_set(x, "severity", json_object_get(e->obj, "severity") ?
			json_object_get(e->obj, "severity") : json_null());
	json_object_set_new(x, "incident", incident ? json_integer(incident) : json_null());
	json_object_set_new(x, "text", json_string(t.s));
	json_object_set_new(x, "line", json_integer((json_int_t)e->line));
	return x;
}

static struct run_acc *run_open_of(struct builder *b, const char *host)
{
	for (size_t i = b->n_runs; i-- > 0;)
		if (strcmp(b->runs[i].host, host) == 0)
			return b->runs[i].end ? NULL : &b->runs[i];
	return NULL;
}

static struct run_acc *run_new(struct builder *b, const char *host)
{
	if (!grow((void **)&b->runs, &b->cap_runs, b->n_runs, sizeof(*b->runs)))
		return NULL;
	b->runs[b->n_runs].host = host;
	return &b->runs[b->n_runs++];
}

/* Open incidents of host, for what happened to the agent while they were open. */
static void note_open_incidents(struct builder *b, const char *host, const char *fmt,
				const char *arg, bool interrupt)
{
	for (size_t i = 0; i < b->n_ep; i++) {
		struct endpoint_acc *ep = &b->ep[i];
		struct incident *inc;

		if (ep->open < 0 || strcmp(ep->host, host) != 0)
			continue;
		inc = &ep->inc[ep->open];
		incident_note(inc, fmt, arg);
		if (interrupt) {
			inc->status = "interrupted";
			ep->open = -1;
		}
	}
}

void agent_event(struct builder *b, const struct jevent *e)
{
	struct run_acc *run = run_open_of(b, e->host);
	json_int_t n;

	if (event_is(e, "agent_started")) {
		if (e->mntns)
			json_object_set_new(b->agent_mntns_of_host, e->host, json_integer(e->mntns));
		if (run)
			run->end = "unclean";
		run = run_new(b, e->host);
		if (run)
			run->start = e;
	} else if (event_is(e, "agent_stopping")) {
		if (!run && (run = run_new(b, e->host)))
			run->start = NULL; /* the journal begins inside this run */
		if (run) {
			run->stop = e;
			run->end = "clean";
		}
		note_open_incidents(b, e->host, "the agent stopped at %s while this was open: "
				    "the journal cannot tell what happened until it restarted",
				    e->time, false);
	} else if (event_is(e, "events_lost")) {
		json_t *l = json_object();

		n = 0;
		int_of(e->obj, "count", &n);
		json_object_set_new(l, "time", json_string(e->time));
		json_object_set_new(l, "count", json_integer(n));
		json_object_set(l, "reason", json_object_get(e->obj, "reason") ?
				json_object_get(e->obj, "reason") : json_null());
		json_array_append_new(b->lost, l);
		b->lost_total += n;
		if (run)
			run->lost += n;
	}
	json_array_append_new(b->agent_timeline,
			      timeline_entry(e, &b->j->ev[0], 0));
}

/* A new boot of a host ends whatever was open there: its sockets are gone. */
void check_boot(struct builder *b, const struct jevent *e)
{
	const char *prev;
	struct run_acc *run;

	if (!e->at.boot_id)
		return;
	prev = str_of(b->boot_of_host, e->host);
	if (prev && strcmp(prev, e->at.boot_id) != 0) {
		note_open_incidents(b, e->host, "the host rebooted (boot_id changed at %s) "
				    "while this was open", e->time, true);
		if ((run = run_open_of(b, e->host)))
			run->end = "unclean";
	}
	json_object_set_new(b->boot_of_host, e->host, json_string(e->at.boot_id));
}
