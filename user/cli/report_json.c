/*
 * The report's model as JSON (docs/report.md): what report_build() returns
 * and --json prints. Both make it from the same pieces (model_head(), an
 * endpoint's head, its timeline entries, its incidents); report_build() puts
 * them together, model_write_json() writes each as soon as it is made and
 * frees it, in the layout json_dumpf() gives the whole.
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

/* ----- the model as JSON ----- */

static void set_str_or_null(json_t *o, const char *key, const char *time)
{
	json_object_set_new(o, key, time ? json_string(time) : json_null());
}

static int cmp_clients(const void *x, const void *y)
{
	json_t *const *a = x, *const *b = y;
	json_t *fa = json_object_get(*a, "failures"), *fb = json_object_get(*b, "failures");
	json_int_t va = json_is_integer(fa) ? json_integer_value(fa) : -1;
	json_int_t vb = json_is_integer(fb) ? json_integer_value(fb) : -1;

	return va > vb ? -1 : va < vb;
}

static json_t *top_clients(json_t *clients)
{
	size_t n = json_array_size(clients), i;
	json_t **v = calloc(n ? n : 1, sizeof(*v)), *out = json_array(); // NOLINT(bugprone-sizeof-expression): pointers

	if (!v)
		return out;
	for (i = 0; i < n; i++)
		v[i] = json_array_get(clients, i);
	/* qsort is not stable; ties keep first-seen order through the index */
	for (i = 1; i < n; i++) {
		json_t *x = v[i];
		size_t k = i;

		while (k > 0 && cmp_clients(&v[k - 1], &x) > 0) {
			v[k] = v[k - 1];
			k--;
		}
		v[k] = x;
	}
	for (i = 0; i < n && i < TOP_CLIENTS; i++)
		json_array_append(out, v[i]);
	free(v);
	return out;
}

static void summary_failures(struct text *t, const json_t *failures, size_t n_clients)
{
	json_t *by = json_object_get(failures, "by_errno");
	json_int_t total = json_integer_value(json_object_get(failures, "total"));
	const char *name;
	json_t *v;
	bool first = true;

	if (total == 0) {
		text_add(t, ", no failed connects seen");
		return;
	}
	text_add(t, ", %s%lld failed connect%s (",
		 json_is_true(json_object_get(failures, "exact")) ? "" : "at least ",
		 (long long)total, total == 1 ? "" : "s");
	json_object_foreach(by, name, v) {
		text_add(t, "%s%s %lld", first ? "" : ", ", name, (long long)json_integer_value(v));
		first = false;
	}
	text_add(t, ")");
	if (n_clients)
		text_add(t, " from %zu client%s", n_clients, n_clients == 1 ? "" : "s");
}

/* "outage 1.234 s, 57 failed connects (ENOENT 57) from 3 clients, healed by link in 20.4 ms" */
static void incident_summary(struct text *t, const struct incident *inc, const json_t *x,
			     const char *journal_end)
{
	const char *status = inc->status ? inc->status : "open";
	double outage = json_real_value(json_object_get(x, "outage_s"));
	size_t i;
	json_t *p;
	unsigned failed = 0, skipped = 0, suppressed = 0, guards = 0;

	if (strcmp(status, "open") == 0)
		text_add(t, "still open at %s (%.3f s so far)", journal_end, outage);
	else if (strcmp(status, "interrupted") == 0)
		text_add(t, "cut short by a reboot after at least %.3f s", outage);
	else
		text_add(t, "outage %s%.3f s", inc->start_estimated ? "about " : "", outage);
	if (inc->removals > 1)
		text_add(t, ", path removed %u times", inc->removals);
	summary_failures(t, json_object_get(x, "connect_failures"),
			 (size_t)json_integer_value(json_object_get(x, "clients_total")));
	if (inc->heal_how) {
		text_add(t, ", healed by %s", inc->heal_how);
		if (json_is_number(inc->heal_ms))
			text_add(t, " in %.1f ms", json_number_value(inc->heal_ms));
	} else if (strcmp(status, "recovered") == 0) {
		text_add(t, ", recovered without a heal (connects succeeded again)");
	} else if (strcmp(status, "stood_down") == 0) {
		const char *why = skip_reason_text(inc->stood_down);

		text_add(t, ", not healed on purpose: %s", why ? why : inc->stood_down);
	}
	json_array_foreach(inc->problems, i, p) {
		const char *ev = str_of(p, "event");

		failed += strcmp(ev, "rebind_failed") == 0;
		skipped += strcmp(ev, "rebind_skipped") == 0;
		suppressed += strcmp(ev, "rebind_suppressed") == 0;
		guards += strcmp(ev, "guard_lost") == 0;
	}
	if (failed)
		text_add(t, "; %u heal%s failed", failed, failed == 1 ? "" : "s");
	if (skipped && strcmp(status, "stood_down") != 0)
		text_add(t, "; %u heal%s skipped", skipped, skipped == 1 ? "" : "s");
	if (suppressed)
		text_add(t, "; the flap guard opened the circuit");
	if (guards)
		text_add(t, "; guard link lost");
}

json_t *incident_json(const struct incident *inc, const struct evmark *journal_end)
{
	json_t *x = json_object(), *failures = json_object(), *by = json_object();
	json_t *heal = json_null();
	const struct timepoint *until;
	struct text sum = { .n = 0 };
	json_int_t total = 0;
	bool exact = true;
	const char *status = inc->status ? inc->status : "open";
	/* NULL for a closed incident: it is measured to its own end */
	const char *end_time = journal_end ? journal_end->time : NULL;

	for (size_t i = 0; i < inc->n_err; i++) {
		const struct errno_tally *t = &inc->err[i];
		uint64_t n = t->counted + (t->streak_open ? streak_estimate(t) : 0);

		json_object_set_new(by, t->name, json_integer((json_int_t)n));
		total += (json_int_t)n;
		if (t->estimated || t->streak_open)
			exact = false;
	}
	json_object_set_new(failures, "total", json_integer(total));
	json_object_set_new(failures, "by_errno", by);
	json_object_set_new(failures, "exact", json_boolean(exact));

	if (inc->end.set)
		until = &inc->end.at;
	else if (strcmp(status, "interrupted") == 0 || !journal_end)
		until = &inc->last;
	else
		until = &journal_end->at;
	if (inc->heal_how) {
		heal = json_object();
		json_object_set_new(heal, "how", json_string(inc->heal_how));
		json_object_set(heal, "heal_ms", inc->heal_ms ? inc->heal_ms : json_null());
		set_str_or_null(heal, "time", inc->heal_time);
	}

	json_object_set_new(x, "id", json_integer(inc->id));
	json_object_set_new(x, "status", json_string(status));
	json_object_set_new(x, "opened_by", json_string(inc->opened_by));
	json_object_set_new(x, "start", json_string(inc->start_time));
	json_object_set_new(x, "start_estimated", json_boolean(inc->start_estimated));
	set_str_or_null(x, "end", inc->end.set ? inc->end.time : NULL);
	set_str_or_null(x, "closed_by", inc->end.set ? inc->end.name : NULL);
	set_str_or_null(x, "still_open_at", inc->status ? NULL : end_time);
	json_object_set_new(x, "outage_s", json_real(span_s(&inc->start, until)));
	json_object_set_new(x, "outage_clock", json_string(same_clock(&inc->start, until) ?
							   "mono_ns" : "time"));
	set_str_or_null(x, "via", inc->via);
	json_object_set_new(x, "removals", json_integer(inc->removals));
	json_object_set(x, "actor", inc->actor ? inc->actor : json_null());
	json_object_set(x, "owner", inc->owner ? inc->owner : json_null());
	json_object_set_new(x, "connect_failures", failures);
	json_object_set_new(x, "clients_total",
			    json_integer((json_int_t)json_array_size(inc->clients)));
	json_object_set_new(x, "clients", top_clients(inc->clients));
	json_object_set_new(x, "heal", heal);
	json_object_set_new(x, "heal_attempts", json_integer(inc->heal_attempts));
	set_str_or_null(x, "recovered_how", inc->recovered_how);
	set_str_or_null(x, "stood_down_reason", inc->stood_down);
	json_object_set(x, "problems", inc->problems);
	json_object_set(x, "notes", inc->notes);
	json_object_set_new(x, "events", json_integer((json_int_t)inc->events));
	incident_summary(&sum, inc, x, end_time ? end_time : "");
	json_object_set_new(x, "summary", json_string(sum.s));
	return x;
}

/* An endpoint's keys up to its timeline: then come "timeline" and "incidents". */
json_t *endpoint_head(const struct builder *b, const struct endpoint_acc *ep)
{
	json_t *own = json_object_get(b->agent_mntns_of_host, ep->host);
	json_t *x = json_object();
	json_int_t open = ep->open >= 0;

	json_object_set_new(x, "path", json_string(ep->path));
	if (ep->path_hex)
		json_object_set_new(x, "path_hex", json_string(ep->path_hex));
	json_object_set_new(x, "host", json_string(ep->host));
	if (ep->mntns) {
		json_object_set_new(x, "mntns", json_integer(ep->mntns));
		/* another namespace than the agent's own: a container's, a sandbox's */
		if (own)
			json_object_set_new(x, "foreign_namespace",
					    json_boolean(json_integer_value(own) != ep->mntns));
	}
	if (ep->where)
		json_object_update(x, ep->where);
	json_object_set_new(x, "first_time", json_string(ep->first.time));
	json_object_set_new(x, "last_time", json_string(ep->last.time));
	json_object_set_new(x, "events", json_integer((json_int_t)ep->events));
	json_object_set_new(x, "incidents_total", json_integer((json_int_t)ep->n_inc));
	json_object_set_new(x, "incidents_open", json_integer(open));
	return x;
}

static json_t *run_json(const struct run_acc *r)
{
	json_t *x = json_object();
	const json_t *s = r->start_obj;
	static const char *const keys[] = { "pid", "version", "mode", "mode_reason", "kernel",
					    "watched" };

	json_object_set_new(x, "host", json_string(r->host));
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		json_t *v = json_object_get(s, keys[i]);

		/* a run whose start the journal missed still knows its mode */
		if (!v && r->stop_obj && strcmp(keys[i], "mode") == 0)
			v = json_object_get(r->stop_obj, "mode");
		json_object_set(x, keys[i], v ? v : json_null());
	}
	set_str_or_null(x, "started", r->start.set ? r->start.time : NULL);
	set_str_or_null(x, "stopped", r->stop.set ? r->stop.time : NULL);
	json_object_set_new(x, "duration_s", r->start.set && r->stop.set ?
			    json_real(span_s(&r->start.at, &r->stop.at)) : json_null());
	json_object_set_new(x, "end", json_string(r->end ? r->end : "running"));
	json_object_set(x, "records", r->stop_obj && json_object_get(r->stop_obj, "records") ?
			json_object_get(r->stop_obj, "records") : json_null());
	json_object_set_new(x, "events_lost", json_integer(r->lost));
	return x;
}

/* The model's keys but "endpoints", which comes last, with "agent" but its
 * "timeline", which comes last in it. */
json_t *model_head(const struct builder *b, const char *source)
{
	const struct report_journal *j = b->j;
	json_t *model = json_object(), *agent = json_object();
	json_t *runs = json_array(), *skipped = json_array();
	json_int_t incidents = 0, open = 0;

	for (size_t i = 0; i < b->n_ep; i++) {
		incidents += (json_int_t)b->ep[i].n_inc;
		open += b->ep[i].open >= 0;
	}
	for (size_t i = 0; i < b->n_runs; i++)
		json_array_append_new(runs, run_json(&b->runs[i]));
	json_object_set_new(agent, "runs", runs);
	json_object_set_new(agent, "events_lost_total", json_integer(b->lost_total));
	json_object_set(agent, "events_lost", b->lost);
	for (size_t i = 0; i < j->n_listed; i++) {
		json_t *s = json_object();

		json_object_set_new(s, "line", json_integer((json_int_t)j->listed[i].line));
		json_object_set_new(s, "reason", json_string(j->listed[i].why));
		json_array_append_new(skipped, s);
	}

	json_object_set_new(model, "report_version", json_integer(SW_REPORT_VERSION));
	json_object_set_new(model, "source", json_string(source ? source : "-"));
	json_object_set_new(model, "lines", json_integer((json_int_t)j->lines));
	json_object_set_new(model, "events", json_integer((json_int_t)j->n));
	json_object_set_new(model, "skipped_lines", json_integer((json_int_t)j->skipped));
	json_object_set_new(model, "skipped", skipped);
	set_str_or_null(model, "first_time", b->first.set ? b->first.time : NULL);
	set_str_or_null(model, "last_time", b->last.set ? b->last.time : NULL);
	json_object_set(model, "hosts", b->hosts);
	json_object_set_new(model, "endpoints_total", json_integer((json_int_t)b->n_ep));
	json_object_set_new(model, "incidents_total", json_integer(incidents));
	json_object_set_new(model, "incidents_open", json_integer(open));
	json_object_set_new(model, "agent", agent);
	return model;
}

/* ----- the whole model ----- */

static json_t *timeline_json(struct builder *b, size_t begin, size_t end,
			     const struct timepoint *origin)
{
	json_t *tl = json_array();

	for (size_t i = begin; i < end && tl; i++) {
		json_t *x = timeline_entry_at(b, i, origin);

		if (!x || json_array_append_new(tl, x)) {
			json_decref(tl);
			tl = NULL;
		}
	}
	return tl;
}

json_t *report_build(struct report_journal *j, const char *source)
{
	struct builder b;
	json_t *model = NULL, *eps, *tl;

	if (!builder_init(&b, j))
		return NULL;
	if (!builder_fold(&b))
		goto out;
	model = model_head(&b, source);
	tl = timeline_json(&b, 0, b.tl_agent_end, &b.first.at);
	if (!model || !tl || json_object_set_new(json_object_get(model, "agent"), "timeline", tl))
		goto fail;
	eps = json_array();
	if (json_object_set_new(model, "endpoints", eps))
		goto fail;
	for (size_t i = 0; i < b.n_ep; i++) {
		const struct endpoint_acc *ep = &b.ep[i];
		json_t *x = endpoint_head(&b, ep), *incs = json_array();

		tl = timeline_json(&b, ep->tl_begin, ep->tl_end, &ep->first.at);
		if (json_array_append_new(eps, x) || json_object_set_new(x, "timeline", tl) ||
		    json_object_set_new(x, "incidents", incs))
			goto fail; /* out of memory */
		for (size_t k = 0; k < ep->n_inc; k++) {
			json_t *inc = incident_at(&b, ep, k);

			if (!inc || json_array_append_new(incs, inc))
				goto fail;
		}
	}
	if (b.oom)
		goto fail;
out:
	builder_free(&b);
	return model;
fail:
	json_decref(model);
	model = NULL;
	goto out;
}

/* ----- the model written a piece at a time ----- */

#define DUMP_FLAGS (JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15))

/* A writer of the layout json_dumpf(DUMP_FLAGS) gives: a container's members
 * each on a line of their own, indented two spaces a level. */
struct jw {
	FILE *out;
	bool failed; /* out of memory */
};

static void jw_newline(struct jw *w, int depth)
{
	fprintf(w->out, "\n%*s", depth * 2, "");
}

/* v, nested depth levels deep: its inner lines indented so much more. JSON
 * strings hold no raw newline, so each newline of the dump starts a line. */
static void jw_value(struct jw *w, const json_t *v, int depth)
{
	char *s = json_dumps(v, DUMP_FLAGS | JSON_ENCODE_ANY);

	if (!s) {
		w->failed = true;
		return;
	}
	for (const char *p = s; *p; p++) {
		if (*p == '\n')
			jw_newline(w, depth);
		else
			fputc(*p, w->out);
	}
	free(s);
}

/* The start of a member of an object depth levels deep: "key": */
static void jw_key(struct jw *w, const char *key, int depth, bool *first)
{
	json_t *k = json_string(key);

	if (!*first)
		fputc(',', w->out);
	*first = false;
	jw_newline(w, depth + 1);
	jw_value(w, k, depth + 1);
	fputs(": ", w->out);
	json_decref(k);
}

/* Every member of o as members of the object being written. */
static void jw_members(struct jw *w, const json_t *o, int depth, bool *first)
{
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)o, key, v) {
		jw_key(w, key, depth, first);
		jw_value(w, v, depth + 1);
	}
}

static void jw_item(struct jw *w, const json_t *v, int depth, bool *first)
{
	if (!*first)
		fputc(',', w->out);
	*first = false;
	jw_newline(w, depth + 1);
	jw_value(w, v, depth + 1);
}

/* Closes a container opened depth levels deep with c; empty, it is "[]". */
static void jw_close(struct jw *w, int depth, bool empty, char c)
{
	if (!empty)
		jw_newline(w, depth);
	fputc(c, w->out);
}

/* A timeline as the member "timeline" of an object depth levels deep: each
 * entry made from its line, written and freed. */
static void jw_timeline(struct jw *w, struct builder *b, size_t begin, size_t end,
			const struct timepoint *origin, int depth, bool *first)
{
	bool none = true;

	jw_key(w, "timeline", depth, first);
	fputc('[', w->out);
	for (size_t i = begin; i < end && !w->failed; i++) {
		json_t *x = timeline_entry_at(b, i, origin);

		if (!x) {
			w->failed = true;
			break;
		}
		jw_item(w, x, depth + 1, &none);
		json_decref(x);
	}
	jw_close(w, depth + 1, none, ']');
}

int model_write_json(FILE *out, struct builder *b, const char *source)
{
	struct jw w = { .out = out };
	json_t *head = model_head(b, source), *agent;
	bool first = true, none = true, agent_first = true;

	if (!head)
		return errno = ENOMEM, -1;
	agent = json_incref(json_object_get(head, "agent"));
	json_object_del(head, "agent");
	fputc('{', out);
	jw_members(&w, head, 0, &first);
	jw_key(&w, "agent", 0, &first);
	fputc('{', out);
	jw_members(&w, agent, 1, &agent_first);
	jw_timeline(&w, b, 0, b->tl_agent_end, &b->first.at, 1, &agent_first);
	jw_close(&w, 1, false, '}');
	json_decref(agent);
	json_decref(head);
	jw_key(&w, "endpoints", 0, &first);
	fputc('[', out);
	for (size_t i = 0; i < b->n_ep && !w.failed; i++) {
		const struct endpoint_acc *ep = &b->ep[i];
		json_t *x = endpoint_head(b, ep);
		bool ep_first = true, inc_none = true;

		if (!none)
			fputc(',', out);
		none = false;
		jw_newline(&w, 2);
		fputc('{', out);
		if (x)
			jw_members(&w, x, 2, &ep_first);
		else
			w.failed = true;
		json_decref(x);
		jw_timeline(&w, b, ep->tl_begin, ep->tl_end, &ep->first.at, 2, &ep_first);
		jw_key(&w, "incidents", 2, &ep_first);
		fputc('[', out);
		for (size_t k = 0; k < ep->n_inc && !w.failed; k++) {
			json_t *inc = incident_at(b, ep, k);

			if (!inc) {
				w.failed = true;
				break;
			}
			jw_item(&w, inc, 3, &inc_none);
			json_decref(inc);
		}
		jw_close(&w, 3, inc_none, ']');
		jw_close(&w, 2, false, '}');
	}
	jw_close(&w, 1, none, ']');
	jw_close(&w, 0, false, '}');
	fputc('\n', out);
	if (w.failed || b->oom) {
		if (!b->io_errno)
			return errno = ENOMEM, -1;
	}
	if (b->io_errno)
		return errno = b->io_errno, -1;
	return 0;
}
