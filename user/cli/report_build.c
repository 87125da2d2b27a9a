/*
 * Building the report's model, the second pass: the sorted events, each read
 * again from its line, folded in and let go, grouped per endpoint into a
 * timeline and incidents (when one opens, what it counts, when it closes), and
 * the agent's runs and losses. Nothing kept points into a line: strings are
 * interned (intern()), events referred back to are marks (struct evmark), JSON
 * values taken from a line are its own references, which outlive it.
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

/* ----- what a builder keeps ----- */

/* s as a string the builder keeps until builder_free(): the key of the pool,
 * one copy however often it comes. "" when out of memory (b->oom). */
const char *intern(struct builder *b, const char *s)
{
	void *it;

	if (!s)
		return NULL;
	it = json_object_iter_at(b->strings, s);
	if (!it && json_object_set_new(b->strings, s, json_null()) == 0)
		it = json_object_iter_at(b->strings, s);
	if (!it) {
		b->oom = true;
		return "";
	}
	return json_object_iter_key(it);
}

static char *dup_or_oom(struct builder *b, const char *s)
{
	char *d = strdup(s ? s : "");

	if (!d)
		b->oom = true;
	return d;
}

void mark_set(struct builder *b, struct evmark *m, const struct jevent *e)
{
	char *t = dup_or_oom(b, e->time);

	if (!t)
		return;
	free(m->time);
	m->time = t;
	m->name = intern(b, e->name);
	m->at = e->at;
	m->at.boot_id = intern(b, e->at.boot_id);
	m->set = true;
}

static void mark_free(struct evmark *m)
{
	free(m->time);
	*m = (struct evmark){ 0 };
}

static struct timepoint at_kept(struct builder *b, const struct jevent *e)
{
	struct timepoint at = e->at;

	at.boot_id = intern(b, at.boot_id);
	return at;
}

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
	ep->host = intern(b, e->host);
	ep->path = intern(b, e->path);
	ep->path_hex = intern(b, e->path_hex);
	ep->mntns = e->mntns;
	endpoint_note_where(ep, e);
	mark_set(b, &ep->first, e);
	ep->open = -1;
	return ep;
}

static struct incident *incident_open(struct builder *b, struct endpoint_acc *ep,
				      const struct jevent *e)
{
	struct incident *inc = &ep->cur;
	json_int_t streak_ms;
	char buf[64];

	*inc = (struct incident){ .id = (int)ep->n_inc + 1 };
	inc->opened_by = intern(b, e->name);
	inc->start = at_kept(b, e);
	inc->start_time = dup_or_oom(b, e->time);
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
		clock_format_rfc3339((uint64_t)inc->start.real_ns, buf, sizeof(buf));
		free(inc->start_time);
		inc->start_time = dup_or_oom(b, buf);
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

static void incident_free(struct incident *inc)
{
	json_decref(inc->actor);
	json_decref(inc->owner);
	json_decref(inc->clients);
	json_decref(inc->heal_ms);
	json_decref(inc->problems);
	json_decref(inc->notes);
	free(inc->start_time);
	free(inc->heal_time);
	mark_free(&inc->end);
	*inc = (struct incident){ 0 };
}

/*
 * The open incident of ep has closed (its status is set). Nothing later
 * changes a closed incident, so its model is made now and written to the
 * incident spool (an unlinked temporary file), and the incident let go: the
 * endpoint keeps where it was written and its status.
 */
static void incident_close(struct builder *b, struct endpoint_acc *ep)
{
	json_t *x = incident_json(&ep->cur, NULL);
	char *s = x ? json_dumps(x, JSON_COMPACT | JSON_PRESERVE_ORDER |
				 JSON_REAL_PRECISION(15)) : NULL;
	size_t len = s ? strlen(s) : 0;
	size_t n_done = ep->n_inc - 1;

	json_decref(x);
	if (!s || !grow((void **)&ep->done, &ep->cap_done, n_done, sizeof(*ep->done))) {
		b->oom = true;
	} else {
		if (!b->inc_spool && !(b->inc_spool = spool_open()))
			b->io_errno = errno ? errno : EIO;
		if (b->inc_spool && fwrite(s, 1, len, b->inc_spool) != len)
			b->io_errno = errno ? errno : EIO;
		ep->done[n_done] = (struct incident_ref){ .off = b->inc_spool_end, .len = len,
							  .status = ep->cur.status };
		b->inc_spool_end += len;
	}
	free(s);
	incident_free(&ep->cur);
	ep->open = -1;
}

const char *incident_status(const struct endpoint_acc *ep, size_t k)
{
	if (ep->open >= 0 && k == (size_t)ep->open)
		return ep->cur.status ? ep->cur.status : "open";
	return ep->done[k].status;
}

/* The model of ep's incident k (from 0): read back from the spool when it is
 * closed, made now when it is the open one. NULL: b->oom or b->io_errno. */
json_t *incident_at(struct builder *b, const struct endpoint_acc *ep, size_t k)
{
	const struct incident_ref *r;
	json_t *x;

	if (ep->open >= 0 && k == (size_t)ep->open) {
		if (!(x = incident_json(&ep->cur, &b->last)))
			b->oom = true;
		return x;
	}
	r = &ep->done[k];
	if (!b->inc_spool || fflush(b->inc_spool) != 0 ||
	    !store_read(b->inc_spool, r->off, r->len, &b->buf, &b->buf_cap)) {
		b->io_errno = errno ? errno : EIO;
		return NULL;
	}
	if (!(x = json_loadb(b->buf, r->len, 0, NULL)))
		b->io_errno = ESTALE;
	return x;
}

/* Closes inc at e if nothing is wrong any more (see the top of this file). */
static void incident_settle(struct builder *b, struct endpoint_acc *ep, struct incident *inc,
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
	mark_set(b, &inc->end, e);
	incident_close(b, ep);
}

static bool is_loss(const struct jevent *e)
{
	return event_is(e, "socket_unlinked") || event_is(e, "listener_orphaned") ||
	       event_is(e, "stale_socket") || event_is(e, "listener_wedged");
}

/* The incident bookkeeping of one endpoint event; returns the id of the
 * incident it belongs to (0: none). */
int endpoint_event(struct builder *b, struct endpoint_acc *ep, const struct jevent *e)
{
	struct incident *inc = ep->open >= 0 ? &ep->cur : NULL;
	const json_t *o = e->obj;
	const json_t *owner = json_object_get(o, "owner");
	struct errno_tally *t;
	json_int_t n;
	size_t i;
	json_t *c;
	bool names_owner;
	int id;

	if (!json_is_object(owner))
		owner = json_object_get(o, "last_owner");
	names_owner = json_is_object(owner);
	if (names_owner) {
		json_decref(ep->owner);
		ep->owner = proc_copy(owner);
	}

	if (is_loss(e) || event_is(e, "connect_failing") || event_is(e, "connect_still_failing") ||
	    event_is(e, "connect_recovered")) {
		if (!inc)
			inc = incident_open(b, ep, e);
	}
	if (!inc)
		return 0;
	if (is_loss(e)) {
		inc->lost = true;
		inc->stood_down = NULL; /* a new loss needs a new decision */
		if (event_is(e, "socket_unlinked")) {
			inc->removals++;
			if (!inc->via)
				inc->via = intern(b, str_of(o, "via"));
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
			inc->heal_how = intern(b, how);
		inc->recovered_how = intern(b, how);
		inc->lost = false; /* a connect got through: the path works */
	} else if (event_is(e, "rebind_started")) {
		inc->heal_attempts++;
	} else if (event_is(e, "rebind_succeeded")) {
		inc->heal_how = intern(b, str_of(o, "how"));
		free(inc->heal_time);
		inc->heal_time = dup_or_oom(b, e->time);
		json_decref(inc->heal_ms);
		inc->heal_ms = json_incref(json_object_get(o, "heal_ms"));
		inc->lost = false;
	} else if (event_is(e, "rebind_failed") || event_is(e, "rebind_suppressed") ||
		   event_is(e, "guard_lost")) {
		problem_add(inc, e);
	} else if (event_is(e, "rebind_skipped")) {
		problem_add(inc, e);
		if (skip_is_deliberate(str_of(o, "reason")))
			inc->stood_down = intern(b, str_of(o, "reason"));
	}
	if (names_owner && (!inc->owner || inc->owner_inherited)) {
		json_decref(inc->owner);
		inc->owner = json_incref(ep->owner);
		inc->owner_inherited = false;
	}
	inc->events++;
	inc->last = at_kept(b, e);
	id = inc->id;
	incident_settle(b, ep, inc, e); /* which may close it, and let it go */
	return id;
}

json_t *timeline_entry(const struct jevent *e, const struct timepoint *origin,
		       int incident)
{
	struct text t = { .n = 0 };
	json_t *x = json_object();

	describe(&t, e);
	json_object_set_new(x, "time", json_string(e->time));
	json_object_set_new(x, "offset_s", json_real(span_s(origin, &e->at)));
	json_object_set_new(x, "event", json_string(e->name));
	json_object_set(x, "severity", json_object_get(e->obj, "severity") ?
			json_object_get(e->obj, "severity") : json_null());
	json_object_set_new(x, "incident", incident ? json_integer(incident) : json_null());
	json_object_set_new(x, "text", json_string(t.s));
	json_object_set_new(x, "line", json_integer((json_int_t)e->line));
	return x;
}

/* The timeline entry of the event at ix[pos], its line read again; NULL when
 * it cannot be (b->io_errno) or out of memory (b->oom). */
json_t *timeline_entry_at(struct builder *b, size_t pos, const struct timepoint *origin)
{
	const struct jindex *x = &b->j->ix[pos];
	struct jevent e;
	json_t *entry;

	if (!journal_event(b->j, x, &e)) {
		b->io_errno = errno ? errno : EIO;
		return NULL;
	}
	entry = timeline_entry(&e, origin, (int)x->inc);
	json_decref(e.obj);
	if (!entry)
		b->oom = true;
	return entry;
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
	b->runs[b->n_runs].host = intern(b, host);
	return &b->runs[b->n_runs++];
}

static void run_mark(struct builder *b, struct evmark *m, json_t **obj, const struct jevent *e)
{
	mark_set(b, m, e);
	json_decref(*obj);
	*obj = json_incref(e->obj);
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
		inc = &ep->cur;
		incident_note(inc, fmt, arg);
		if (interrupt) {
			inc->status = "interrupted";
			incident_close(b, ep);
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
			run_mark(b, &run->start, &run->start_obj, e);
	} else if (event_is(e, "agent_stopping")) {
		/* none open: the journal begins inside this run */
		if (!run)
			run = run_new(b, e->host);
		if (run) {
			run_mark(b, &run->stop, &run->stop_obj, e);
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
	b->agent_events++;
}

/* A new boot of a host ends whatever was open there: its sockets are gone. */
void check_boot(struct builder *b, const struct jevent *e)
{
	const char *prev;
	struct run_acc *run;

	if (!e->at.boot_id)
		return;
	prev = str_of(b->boot_of_host, e->host);
	if (prev && strcmp(prev, e->at.boot_id) == 0)
		return;
	if (prev) {
		note_open_incidents(b, e->host, "the host rebooted (boot_id changed at %s) "
				    "while this was open", e->time, true);
		if ((run = run_open_of(b, e->host)))
			run->end = "unclean";
	}
	json_object_set_new(b->boot_of_host, e->host, json_string(e->at.boot_id));
}

/* ----- the second pass ----- */

bool builder_init(struct builder *b, struct report_journal *j)
{
	*b = (struct builder){ .j = j };
	b->strings = json_object();
	b->ep_index = json_object();
	b->lost = json_array();
	b->boot_of_host = json_object();
	b->hosts = json_array();
	b->hosts_seen = json_object();
	b->agent_mntns_of_host = json_object();
	if (!b->strings || !b->ep_index || !b->lost || !b->boot_of_host || !b->hosts ||
	    !b->hosts_seen || !b->agent_mntns_of_host) {
		builder_free(b);
		return false;
	}
	return true;
}

/* One event, in order: whose it is (written into its index entry) and what
 * it does to the endpoint, the incident, the run. */
static bool fold_event(struct builder *b, struct jindex *x, const struct jevent *e)
{
	struct endpoint_acc *ep;

	if (!b->first.set)
		mark_set(b, &b->first, e);
	mark_set(b, &b->last, e);
	if (!json_object_get(b->hosts_seen, e->host)) {
		json_object_set_new(b->hosts_seen, e->host, json_true());
		json_array_append_new(b->hosts, json_string(e->host));
	}
	check_boot(b, e);
	if (!e->path) {
		agent_event(b, e);
		x->ep = 0;
		x->inc = 0;
		return true;
	}
	if (!(ep = endpoint_of(b, e)))
		return false;
	mark_set(b, &ep->last, e);
	ep->events++;
	x->inc = (uint32_t)endpoint_event(b, ep, e);
	x->ep = (uint32_t)(ep - b->ep) + 1;
	return true;
}

/*
 * The second pass: sorts the journal, reads each event's line again, folds it
 * in and frees it, then groups the index per endpoint so that each timeline is
 * a range of it. false when out of memory (b->oom), or a line cannot be read
 * again or the incident spool written (b->io_errno).
 */
bool builder_fold(struct builder *b)
{
	struct report_journal *j = b->j;
	size_t i;

	journal_sort(j);
	for (i = 0; i < j->n && !b->oom && !b->io_errno; i++) {
		struct jevent e;
		bool ok;

		if (!journal_event(j, &j->ix[i], &e)) {
			b->io_errno = errno ? errno : EIO;
			return false;
		}
		ok = fold_event(b, &j->ix[i], &e);
		json_decref(e.obj);
		if (!ok)
			b->oom = true;
	}
	if (b->oom || b->io_errno)
		return false;
	journal_group(j);
	b->tl_agent_end = b->agent_events;
	for (i = 0; i < b->n_ep; i++) {
		b->ep[i].tl_begin = i ? b->ep[i - 1].tl_end : b->tl_agent_end;
		b->ep[i].tl_end = b->ep[i].tl_begin + b->ep[i].events;
	}
	return true;
}

void builder_free(struct builder *b)
{
	for (size_t i = 0; i < b->n_ep; i++) {
		struct endpoint_acc *ep = &b->ep[i];

		if (ep->open >= 0)
			incident_free(&ep->cur);
		free(ep->done);
		json_decref(ep->owner);
		json_decref(ep->where);
		mark_free(&ep->first);
		mark_free(&ep->last);
	}
	for (size_t i = 0; i < b->n_runs; i++) {
		mark_free(&b->runs[i].start);
		mark_free(&b->runs[i].stop);
		json_decref(b->runs[i].start_obj);
		json_decref(b->runs[i].stop_obj);
	}
	free(b->ep);
	free(b->runs);
	mark_free(&b->first);
	mark_free(&b->last);
	if (b->inc_spool)
		fclose(b->inc_spool);
	free(b->buf);
	json_decref(b->ep_index);
	json_decref(b->lost);
	json_decref(b->boot_of_host);
	json_decref(b->hosts);
	json_decref(b->hosts_seen);
	json_decref(b->agent_mntns_of_host);
	json_decref(b->strings); /* last: every interned string is one of its keys */
	*b = (struct builder){ 0 };
}
