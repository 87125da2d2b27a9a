/*
 * The status document (DESIGN §3): what `sockwarden status` shows, built from
 * the endpoint table and the components' counters; the same document goes to
 * the state file, and the metrics' gauges come from the same walk.
 */
#include <sys/utsname.h>
#include <time.h>

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core.h"
#include "endpoint_json.h"

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
	if (e->redirect_armed)
		json_object_set_new(j, "redirected_connects",
				    json_integer((json_int_t)redirect_count(&a->bpf.redirect, e->mntns,
									    e->path, NULL)));
	else if (e->redirect_problem[0])
		json_object_set_new(j, "redirect_reason", json_string(e->redirect_problem));
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
	g->discovery = discovery_source_name(&a->disc);
	g->scan_duration_s = (double)(a->last_scan.ended_ns - a->last_scan.started_ns +
				      a->last_scan.apply_ns) / 1e9;
	g->scan_listeners = a->last_scan.listeners;
	g->scan_processes = a->last_scan.processes;
	g->scan_fds = a->last_scan.fds;
	g->endpoints = a->eps.count;
	g->endpoints_lost = c.lost;
	g->streaks_open = a->co.n_open;
	g->registered = c.registered;
	g->circuits_open = c.circuits_open;
	for (int i = 0; i < SW_ERR_MAX; i++)
		g->failures_by_err[i] = bpf_agent_counter(&a->bpf, SW_CNT_FAILURES_BY_ERR + i);
	g->redirected = bpf_agent_counter(&a->bpf, SW_CNT_REDIRECTED);
	g->redirect_on = a->bpf.redirect.on;
	g->kernel_drops[0] = bpf_agent_counter(&a->bpf, SW_CNT_RINGBUF_FULL);
	g->kernel_drops[1] = bpf_agent_counter(&a->bpf, SW_CNT_STAT_MAP_FULL);
	g->kernel_drops[2] = bpf_agent_counter(&a->bpf, SW_CNT_CLIENT_MAP_FULL);
	g->kernel_drops[3] = bpf_agent_counter(&a->bpf, SW_CNT_INFLIGHT_FULL);
	g->records = a->records;
	g->sink_dropped = sinks_dropped_total(&a->sinks);
	g->journal_dropped = a->have_journal ? __atomic_load_n(&a->journal.dropped,
							       __ATOMIC_RELAXED) : 0;
	g->start_time_s = (double)(a->started_mono_ns + (uint64_t)a->env.real_minus_mono_ns) / 1e9;
	g->config_reload_ok = a->reload_ok;
	g->config_reload_ok_time_s = (double)a->reload_ok_real_ns / 1e9;
}

/* The reconcile scan: whether one is under way (status is answered while it
 * is), and what the last one covered. */
static json_t *scan_status(struct agent *a)
{
	json_t *o = json_object(), *last = json_null();
	uint64_t since = 0;
	bool busy = scanner_busy(&a->scanner, &since);

	json_object_set_new(o, "source", json_string(discovery_source_name(&a->disc)));
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

json_t *agent_status(void *ctx)
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
	json_object_set_new(doc, "mntns", json_integer(ns_self_mntns()));
	json_object_set_new(doc, "mode_reason", json_string(a->bpf.mode_reason));
	json_object_set_new(doc, "discovery", json_string(discovery_source_name(&a->disc)));
	json_object_set_new(doc, "discovery_reason", json_string(a->disc.reason));
	clock_format_rfc3339(a->started_mono_ns + (uint64_t)a->env.real_minus_mono_ns, ts,
			     sizeof(ts));
	json_object_set_new(doc, "started", json_string(ts));
	clock_format_rfc3339(clock_real_ns(), ts, sizeof(ts));
	json_object_set_new(doc, "written", json_string(ts));
	json_object_set_new(doc, "uptime_s",
			    json_real((double)(c.now - a->started_mono_ns) / 1e9));
	json_object_set_new(doc, "config", o->config_file ? json_string(o->config_file)
							  : json_null());
	{
		json_t *r = json_object();

		clock_format_rfc3339(a->reload_ok_real_ns, ts, sizeof(ts));
		json_object_set_new(r, "last_successful", json_boolean(a->reload_ok));
		json_object_set_new(r, "last_success", json_string(ts));
		json_object_set_new(r, "applied", json_integer((json_int_t)a->reloads));
		json_object_set_new(doc, "reload", r);
	}
	json_object_set_new(doc, "guards", json_boolean(!o->no_guard));
	json_object_set_new(doc, "redirect", json_boolean(a->bpf.redirect.on));
	json_object_set_new(doc, "redirect_reason", json_string(a->bpf.redirect.reason));
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

void state_flush(struct agent *a, bool force)
{
	uint64_t now = clock_mono_ns();
	json_t *doc;
	int rc;

	if (!a->state.file || (!force && (!a->state.dirty || now < state_next_deadline(&a->state))))
		return;
	doc = agent_status(a);
	rc = state_write(&a->state, doc, now, force);
	json_decref(doc);
	/* the document is as large as the table: give its memory back */
	malloc_trim(0);
	if (rc)
		log_warn("state file %s: %s", a->state.file, strerror(-rc));
}

void metrics_flush(struct agent *a)
{
	struct metrics_gauges g;

	if (!a->metrics.httpd && !a->metrics.file)
		return;
	metrics_gauges_fill(a, &g);
	metrics_publish(&a->metrics, &g);
}
