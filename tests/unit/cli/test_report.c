/*
 * Unit tests for user/cli/report.c: the model `sockwarden report` builds from an
 * event journal, and its rendering for a person; and how it streams: the
 * index sorted in place, stdin spooled, closed incidents spooled and read back,
 * report_write() writing what the whole model would. (That memory stays flat
 * on 200,000 events is tests/report/memory_check.py, run by `make unit-test`.)
 *
 * The journals are literal JSON lines as the agent writes them (docs/events.md),
 * so each test reads like the incident it describes. Times are chosen so that
 * wall time and mono_ns disagree where it matters: the report must measure with
 * mono_ns within a boot and fall back to wall time only across boots.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "cli/report.h"

#define BOOT_A "\"boot_id\":\"aaaaaaaa-0000-0000-0000-000000000001\""
#define BOOT_B "\"boot_id\":\"bbbbbbbb-0000-0000-0000-000000000002\""
#define PATH "\"path\":\"/run/app/app.sock\""
#define RM "{\"pid\":4242,\"comm\":\"rm\",\"uid\":0}"
#define SRV "{\"pid\":100,\"comm\":\"appd\",\"uid\":998}"
#define CLI "{\"pid\":300,\"comm\":\"curl\",\"uid\":1000}"

/* A common prefix: time, mono_ns, boot A, host. */
#define AT(t, mono) "{\"time\":\"2026-11-23T14:00:" t "Z\",\"mono_ns\":" #mono "," BOOT_A \
	",\"host\":\"node1\",\"schema\":1,"

/* A lost path healed by link after 15 failed connects: what the integration
 * test makes happen for real. */
static const char *const healed_journal[] = {
	AT("00.000000000", 1000000000) "\"event\":\"agent_started\",\"severity\":\"info\","
		"\"mode\":\"tracepoint\",\"kernel\":\"6.1.0\",\"watched\":3,\"version\":\"0.1.0\","
		"\"pid\":77}",
	AT("10.000000000", 11000000000) "\"event\":\"socket_unlinked\",\"severity\":\"error\","
		PATH ",\"actor\":" RM ",\"owner\":" SRV ",\"via\":\"unlink\",\"inode\":5}",
	AT("10.001000000", 11001000000) "\"event\":\"connect_failing\",\"severity\":\"warning\","
		PATH ",\"errno\":\"ENOENT\",\"client\":" CLI "}",
	AT("10.300000000", 11300000000) "\"event\":\"rebind_started\",\"severity\":\"info\","
		PATH ",\"how\":\"link\"}",
	AT("10.300100000", 11300100000) "\"event\":\"rebind_succeeded\",\"severity\":\"info\","
		PATH ",\"how\":\"link\",\"heal_ms\":300.1,\"owner\":" SRV "}",
	AT("10.300200000", 11300200000) "\"event\":\"connect_recovered\",\"severity\":\"info\","
		PATH ",\"errno\":\"ENOENT\",\"streak_duration_ms\":299,\"swallowed_failures\":14,"
		"\"total_failures\":15,\"how\":\"link\",\"clients\":[{\"pid\":300,\"comm\":\"curl\","
		"\"uid\":1000,\"failures\":12},{\"pid\":301,\"comm\":\"wget\",\"uid\":0,\"failures\":3}]}",
	AT("20.000000000", 21000000000) "\"event\":\"agent_stopping\",\"severity\":\"info\","
		"\"mode\":\"tracepoint\",\"records\":9,\"events_lost\":0}",
};

static json_t *build_lines(const char *const *lines, size_t n, size_t *skipped)
{
	struct report_journal *j = report_journal_new();
	json_t *model;

	assert_non_null(j);
	for (size_t i = 0; i < n; i++)
		report_journal_add_line(j, lines[i], strlen(lines[i]), i + 1);
	model = report_build(j, "test.jsonl");
	report_journal_free(j);
	assert_non_null(model);
	if (skipped)
		*skipped = (size_t)json_integer_value(json_object_get(model, "skipped_lines"));
	return model;
}

#define BUILD(lines) build_lines(lines, sizeof(lines) / sizeof(lines[0]), NULL)

static json_t *get(const json_t *o, const char *dotted)
{
	char buf[256], *key, *save = NULL;
	json_t *v = (json_t *)o;

	snprintf(buf, sizeof(buf), "%s", dotted);
	for (key = strtok_r(buf, ".", &save); key && v; key = strtok_r(NULL, ".", &save)) {
		char *end;
		long idx = strtol(key, &end, 10);

		v = *end == 0 && json_is_array(v) ? json_array_get(v, (size_t)idx)
						  : json_object_get(v, key);
	}
	if (!v)
		fail_msg("%s: missing", dotted);
	return v;
}

static const char *gstr(const json_t *o, const char *dotted)
{
	json_t *v = get(o, dotted);

	if (!json_is_string(v))
		fail_msg("%s: not a string", dotted);
	return json_string_value(v);
}

static long long gint(const json_t *o, const char *dotted)
{
	json_t *v = get(o, dotted);

	if (!json_is_integer(v))
		fail_msg("%s: not an integer", dotted);
	return json_integer_value(v);
}

static double gnum(const json_t *o, const char *dotted)
{
	json_t *v = get(o, dotted);

	if (!json_is_number(v))
		fail_msg("%s: not a number", dotted);
	return json_number_value(v);
}

static char *render(const json_t *model)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	report_print(f, model);
	fclose(f);
	return buf;
}

static void assert_contains(const char *hay, const char *needle)
{
	if (!strstr(hay, needle))
		fail_msg("expected \"%s\" in:\n%s", needle, hay);
}

/* ----- the healed incident ----- */

static void test_healed_incident(void **state)
{
	json_t *m = BUILD(healed_journal);
	const json_t *inc = get(m, "endpoints.0.incidents.0");

	assert_int_equal(gint(m, "events"), 7);
	assert_int_equal(gint(m, "skipped_lines"), 0);
	assert_int_equal(gint(m, "endpoints_total"), 1);
	assert_string_equal(gstr(m, "endpoints.0.path"), "/run/app/app.sock");
	assert_int_equal(gint(m, "endpoints.0.incidents_total"), 1);
	assert_int_equal(gint(m, "endpoints.0.incidents_open"), 0);
	assert_string_equal(gstr(inc, "status"), "healed");
	assert_string_equal(gstr(inc, "opened_by"), "socket_unlinked");
	assert_string_equal(gstr(inc, "start"), "2026-11-23T14:00:10.000000000Z");
	assert_string_equal(gstr(inc, "end"), "2026-11-23T14:00:10.300200000Z");
	assert_string_equal(gstr(inc, "closed_by"), "connect_recovered");
	assert_true(json_is_null(get(inc, "still_open_at")));
	assert_string_equal(gstr(inc, "via"), "unlink");
	assert_int_equal(gint(inc, "actor.pid"), 4242);
	assert_string_equal(gstr(inc, "actor.comm"), "rm");
	assert_int_equal(gint(inc, "owner.pid"), 100);
	assert_int_equal(gint(inc, "connect_failures.total"), 15);
	assert_int_equal(gint(inc, "connect_failures.by_errno.ENOENT"), 15);
	assert_true(json_is_true(get(inc, "connect_failures.exact")));
	assert_int_equal(gint(inc, "clients_total"), 2);
	assert_string_equal(gstr(inc, "clients.0.comm"), "curl");
	assert_int_equal(gint(inc, "clients.0.failures"), 12);
	assert_int_equal(gint(inc, "clients.1.failures"), 3);
	assert_string_equal(gstr(inc, "heal.how"), "link");
	assert_float_equal(gnum(inc, "heal.heal_ms"), 300.1, 1e-9);
	assert_int_equal(gint(inc, "heal_attempts"), 1);
	assert_float_equal(gnum(inc, "outage_s"), 0.3002, 1e-9);
	assert_string_equal(gstr(inc, "outage_clock"), "mono_ns");
	assert_string_equal(gstr(inc, "summary"),
			    "outage 0.300 s, 15 failed connects (ENOENT 15) from 2 clients, "
			    "healed by link in 300.1 ms");
	/* every endpoint event is in the timeline, in order, all of incident 1 */
	assert_int_equal(json_array_size(get(m, "endpoints.0.timeline")), 5);
	assert_string_equal(gstr(m, "endpoints.0.timeline.0.event"), "socket_unlinked");
	assert_float_equal(gnum(m, "endpoints.0.timeline.4.offset_s"), 0.3002, 1e-9);
	assert_int_equal(gint(m, "endpoints.0.timeline.4.incident"), 1);
	/* the agent section: one clean run */
	assert_int_equal(json_array_size(get(m, "agent.runs")), 1);
	assert_string_equal(gstr(m, "agent.runs.0.end"), "clean");
	assert_string_equal(gstr(m, "agent.runs.0.mode"), "tracepoint");
	assert_int_equal(gint(m, "agent.runs.0.pid"), 77);
	assert_float_equal(gnum(m, "agent.runs.0.duration_s"), 20.0, 1e-9);
	json_decref(m);
}

static void test_human_output(void **state)
{
	json_t *m = BUILD(healed_journal);
	char *out = render(m);

	assert_contains(out, "test.jsonl: 7 events from 2026-11-23T14:00:00.000000000Z");
	assert_contains(out, "/run/app/app.sock: 1 incident (healed), 5 events");
	assert_contains(out, "   +0.000s  2026-11-23T14:00:10.000000000Z  #1  path removed by "
			"rm (pid 4242, uid 0) via unlink; its listener appd (pid 100, uid 998) "
			"lives on\n");
	assert_contains(out, "+0.300s  2026-11-23T14:00:10.300100000Z  #1  healed by link");
	assert_contains(out, "incident #1 healed: outage 0.300 s, 15 failed connects "
			"(ENOENT 15) from 2 clients, healed by link in 300.1 ms\n");
	assert_contains(out, "top clients: curl (pid 300, uid 1000) 12, wget (pid 301, uid 0) 3");
	assert_contains(out, "run 1: pid 77, tracepoint mode");
	free(out);
	json_decref(m);
}

/* ----- robustness ----- */

static void test_malformed_lines_skipped(void **state)
{
	const char *lines[] = {
		healed_journal[0],
		"{\"time\":\"2026-11-23T14:00:10Z\",\"event\":\"socket_unlinked\",", /* cut short */
		healed_journal[1],
		"[1,2,3]",
		"{\"time\":\"2026-11-23T14:00:10Z\"}",
		"{\"time\":\"yesterday\",\"event\":\"agent_started\"}",
		"{\"time\":\"2026-11-23T14:00:10Z\",\"event\":\"x\",\"path\":7}",
		"",
		"   ",
		"\x01\xff garbage",
		healed_journal[5],
	};
	struct report_journal *j = report_journal_new();
	const char *why[sizeof(lines) / sizeof(lines[0])];
	json_t *m;

	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		why[i] = report_journal_add_line(j, lines[i], strlen(lines[i]), i + 1);
	assert_null(why[0]);
	assert_string_equal(why[1], "not JSON");
	assert_string_equal(why[3], "not a JSON object");
	assert_string_equal(why[4], "no \"event\" name");
	assert_string_equal(why[5], "\"time\" is not RFC 3339");
	assert_string_equal(why[6], "\"path\" is not a string");
	assert_null(why[7]); /* blank lines are not skips */
	assert_null(why[8]);
	assert_string_equal(why[9], "not JSON");
	m = report_build(j, "-");
	report_journal_free(j);
	assert_int_equal(gint(m, "lines"), 11);
	assert_int_equal(gint(m, "events"), 3);
	assert_int_equal(gint(m, "skipped_lines"), 6);
	assert_int_equal(gint(m, "skipped.0.line"), 2);
	assert_string_equal(gstr(m, "skipped.0.reason"), "not JSON");
	assert_int_equal(gint(m, "skipped.5.line"), 10);
	/* what parsed is still reported: the loss and its recovery */
	assert_string_equal(gstr(m, "endpoints.0.incidents.0.status"), "healed");
	assert_int_equal(gint(m, "endpoints.0.incidents.0.connect_failures.total"), 15);
	json_decref(m);
}

static void test_out_of_order_sorted_by_mono(void **state)
{
	/* The wall clock stepped back 1 s between the unlink and the heal (NTP);
	 * mono_ns is the truth, and lines were written out of order. */
	const char *lines[] = {
		"{\"time\":\"2026-11-23T14:00:09.500000000Z\",\"mono_ns\":11500000000," BOOT_A
		",\"event\":\"rebind_succeeded\"," PATH ",\"how\":\"link\",\"heal_ms\":500.0}",
		"{\"time\":\"2026-11-23T14:00:10.000000000Z\",\"mono_ns\":11000000000," BOOT_A
		",\"event\":\"socket_unlinked\"," PATH ",\"actor\":" RM ",\"via\":\"unlink\"}",
		"{\"time\":\"2026-11-23T14:00:09.400000000Z\",\"mono_ns\":11400000000," BOOT_A
		",\"event\":\"rebind_started\"," PATH ",\"how\":\"link\"}",
	};
	json_t *m = BUILD(lines);

	assert_string_equal(gstr(m, "endpoints.0.timeline.0.event"), "socket_unlinked");
	assert_string_equal(gstr(m, "endpoints.0.timeline.1.event"), "rebind_started");
	assert_string_equal(gstr(m, "endpoints.0.timeline.2.event"), "rebind_succeeded");
	assert_int_equal(gint(m, "endpoints.0.timeline.0.line"), 2);
	assert_float_equal(gnum(m, "endpoints.0.timeline.2.offset_s"), 0.5, 1e-9);
	assert_string_equal(gstr(m, "endpoints.0.incidents.0.status"), "healed");
	assert_float_equal(gnum(m, "endpoints.0.incidents.0.outage_s"), 0.5, 1e-9);
	assert_int_equal(gint(m, "endpoints.0.incidents_total"), 1);
	json_decref(m);
}

static void test_unknown_event_kept(void **state)
{
	const char *lines[] = {
		AT("01.000000000", 2000000000) "\"event\":\"quantum_flux\",\"severity\":\"warning\","
			PATH ",\"reason\":\"cosmic rays\"}",
		AT("02.000000000", 3000000000) "\"event\":\"agent_reloaded\",\"severity\":\"info\"}",
	};
	json_t *m = BUILD(lines);

	assert_string_equal(gstr(m, "endpoints.0.timeline.0.event"), "quantum_flux");
	assert_string_equal(gstr(m, "endpoints.0.timeline.0.text"),
			    "quantum_flux (warning): cosmic rays");
	assert_true(json_is_null(get(m, "endpoints.0.timeline.0.incident")));
	assert_int_equal(gint(m, "endpoints.0.incidents_total"), 0);
	assert_string_equal(gstr(m, "agent.timeline.0.event"), "agent_reloaded");
	json_decref(m);
}

static void test_empty_journal(void **state)
{
	struct report_journal *j = report_journal_new();
	json_t *m = report_build(j, "-");
	char *out = render(m);

	assert_string_equal(out, "no events\n");
	assert_int_equal(gint(m, "events"), 0);
	assert_int_equal(json_array_size(get(m, "endpoints")), 0);
	assert_true(json_is_null(get(m, "first_time")));
	free(out);
	json_decref(m);
	report_journal_free(j);
}

static void test_rfc3339_forms(void **state)
{
	/* 14:00:10.25+02:00 is 12:00:10.25Z; no mono_ns: wall time measures */
	const char *lines[] = {
		"{\"time\":\"2026-11-23T12:00:10Z\",\"event\":\"socket_unlinked\"," PATH
		",\"via\":\"scan\"}",
		"{\"time\":\"2026-11-23T14:00:10.25+02:00\",\"event\":\"rebind_succeeded\"," PATH
		",\"how\":\"link\"}",
	};
	json_t *m = BUILD(lines);

	assert_int_equal(gint(m, "skipped_lines"), 0);
	assert_float_equal(gnum(m, "endpoints.0.incidents.0.outage_s"), 0.25, 1e-9);
	assert_string_equal(gstr(m, "endpoints.0.incidents.0.outage_clock"), "time");
	assert_true(json_is_null(get(m, "endpoints.0.incidents.0.actor")));
	json_decref(m);
}

/* ----- incidents that do not heal ----- */

static void test_open_incident_counts_windows(void **state)
{
	const char *lines[] = {
		AT("10.000000000", 11000000000) "\"event\":\"socket_unlinked\"," PATH
			",\"actor\":" RM ",\"owner\":" SRV ",\"via\":\"rename\"}",
		AT("10.100000000", 11100000000) "\"event\":\"connect_failing\"," PATH
			",\"errno\":\"ENOENT\",\"client\":" CLI "}",
		AT("10.150000000", 11150000000) "\"event\":\"rebind_failed\"," PATH
			",\"how\":\"link\",\"reason\":\"link_failed\",\"error\":\"Read-only file system\"}",
		/* the first window includes the connect_failing's failure */
		AT("40.100000000", 41100000000) "\"event\":\"connect_still_failing\"," PATH
			",\"errno\":\"ENOENT\",\"failures\":40,\"streak_duration_ms\":30000}",
		AT("50.000000000", 51000000000) "\"event\":\"connect_failing\","
			"\"path\":\"/run/other.sock\",\"errno\":\"ECONNREFUSED\",\"client\":" CLI "}",
		AT("55.000000000", 56000000000) "\"event\":\"agent_stopping\",\"mode\":\"tracepoint\"}",
	};
	json_t *m = BUILD(lines);
	const json_t *inc = get(m, "endpoints.0.incidents.0");
	char *out;

	assert_string_equal(gstr(inc, "status"), "open");
	assert_string_equal(gstr(inc, "still_open_at"), "2026-11-23T14:00:55.000000000Z");
	assert_true(json_is_null(get(inc, "end")));
	assert_float_equal(gnum(inc, "outage_s"), 45.0, 1e-9);
	assert_string_equal(gstr(inc, "via"), "rename");
	assert_int_equal(gint(inc, "connect_failures.total"), 40);
	assert_true(json_is_false(get(inc, "connect_failures.exact")));
	assert_true(json_is_null(get(inc, "clients.0.failures")));
	assert_string_equal(gstr(inc, "problems.0.event"), "rebind_failed");
	assert_string_equal(gstr(inc, "problems.0.reason"), "link_failed");
	assert_string_equal(gstr(inc, "problems.0.error"), "Read-only file system");
	assert_string_equal(gstr(inc, "summary"),
			    "still open at 2026-11-23T14:00:55.000000000Z (45.000 s so far), "
			    "at least 40 failed connects (ENOENT 40) from 1 client; 1 heal failed");
	/* the agent stopped while it was open: said, not hidden */
	assert_non_null(strstr(gstr(inc, "notes.0"), "the agent stopped at"));
	/* a streak alone is an incident: one failure known so far */
	assert_string_equal(gstr(m, "endpoints.1.path"), "/run/other.sock");
	assert_string_equal(gstr(m, "endpoints.1.incidents.0.opened_by"), "connect_failing");
	assert_int_equal(gint(m, "endpoints.1.incidents.0.connect_failures.by_errno.ECONNREFUSED"), 1);
	assert_int_equal(gint(m, "incidents_open"), 2);
	/* a journal that begins inside an agent run */
	assert_true(json_is_null(get(m, "agent.runs.0.started")));
	assert_string_equal(gstr(m, "agent.runs.0.end"), "clean");
	out = render(m);
	assert_contains(out, "incident #1 open: still open at 2026-11-23T14:00:55.000000000Z");
	assert_contains(out, "rebind_failed at 2026-11-23T14:00:10.150000000Z: heal by link "
			"failed: link_failed (Read-only file system)");
	assert_contains(out, "2 endpoints, 2 incidents, 2 still open");
	free(out);
	json_decref(m);
}

static void test_owner_unlink_stands_down(void **state)
{
	const char *lines[] = {
		AT("10.000000000", 11000000000) "\"event\":\"socket_unlinked\"," PATH
			",\"actor\":" SRV ",\"owner\":" SRV ",\"via\":\"unlink\"}",
		AT("10.000500000", 11000500000) "\"event\":\"rebind_skipped\"," PATH
			",\"reason\":\"owner_unlinked\",\"actor\":" SRV ",\"owner\":" SRV "}",
		/* a later, unrelated streak is a new incident */
		AT("20.000000000", 21000000000) "\"event\":\"connect_failing\"," PATH
			",\"errno\":\"ENOENT\",\"client\":" CLI "}",
		AT("21.000000000", 22000000000) "\"event\":\"connect_recovered\"," PATH
			",\"errno\":\"ENOENT\",\"total_failures\":7,\"how\":\"connect\","
			"\"streak_duration_ms\":1000,\"clients\":[{\"pid\":300,\"comm\":\"curl\","
			"\"uid\":1000,\"failures\":7}]}",
	};
	json_t *m = BUILD(lines);

	assert_int_equal(gint(m, "endpoints.0.incidents_total"), 2);
	assert_string_equal(gstr(m, "endpoints.0.incidents.0.status"), "stood_down");
	assert_string_equal(gstr(m, "endpoints.0.incidents.0.stood_down_reason"), "owner_unlinked");
	assert_string_equal(gstr(m, "endpoints.0.incidents.0.closed_by"), "rebind_skipped");
	assert_non_null(strstr(gstr(m, "endpoints.0.incidents.0.summary"),
			       "not healed on purpose: the server removed its own path"));
	assert_string_equal(gstr(m, "endpoints.0.incidents.1.status"), "recovered");
	assert_int_equal(gint(m, "endpoints.0.incidents.1.connect_failures.total"), 7);
	/* the connect_failing's client, counted by the recovery */
	assert_int_equal(gint(m, "endpoints.0.incidents.1.clients_total"), 1);
	assert_int_equal(gint(m, "endpoints.0.incidents.1.clients.0.failures"), 7);
	assert_float_equal(gnum(m, "endpoints.0.incidents.1.outage_s"), 1.0, 1e-9);
	assert_int_equal(gint(m, "incidents_open"), 0);
	json_decref(m);
}

static void test_stood_down_waits_for_failing_clients(void **state)
{
	/* a new instance replaces the old one, but clients fail until it binds */
	const char *lines[] = {
		AT("10.000000000", 11000000000) "\"event\":\"socket_unlinked\"," PATH
			",\"actor\":" SRV ",\"via\":\"unlink\"}",
		AT("10.001000000", 11001000000) "\"event\":\"connect_failing\"," PATH
			",\"errno\":\"ENOENT\",\"client\":" CLI "}",
		AT("10.002000000", 11002000000) "\"event\":\"rebind_skipped\"," PATH
			",\"reason\":\"same_executable\"}",
		AT("12.000000000", 13000000000) "\"event\":\"connect_recovered\"," PATH
			",\"errno\":\"ENOENT\",\"total_failures\":30,\"how\":\"connect\"}",
	};
	json_t *m = BUILD(lines);

	assert_int_equal(gint(m, "endpoints.0.incidents_total"), 1);
	assert_string_equal(gstr(m, "endpoints.0.incidents.0.status"), "recovered");
	assert_float_equal(gnum(m, "endpoints.0.incidents.0.outage_s"), 2.0, 1e-9);
	assert_int_equal(gint(m, "endpoints.0.incidents.0.connect_failures.total"), 30);
	json_decref(m);
}

static void test_flap_guard_keeps_it_open(void **state)
{
	const char *lines[] = {
		AT("10.000000000", 11000000000) "\"event\":\"socket_unlinked\"," PATH
			",\"actor\":" RM ",\"owner\":" SRV ",\"via\":\"unlink\"}",
		AT("10.020000000", 11020000000) "\"event\":\"rebind_succeeded\"," PATH
			",\"how\":\"link\",\"heal_ms\":20.0}",
		AT("10.100000000", 11100000000) "\"event\":\"socket_unlinked\"," PATH
			",\"actor\":" RM ",\"via\":\"unlink\"}",
		AT("10.100100000", 11100100000) "\"event\":\"rebind_suppressed\"," PATH
			",\"rebinds\":5,\"window_s\":60,\"retry_at\":\"2026-11-23T14:01:10Z\","
			"\"actor\":" RM "}",
		AT("10.100200000", 11100200000) "\"event\":\"rebind_skipped\"," PATH
			",\"reason\":\"circuit_open\"}",
	};
	json_t *m = BUILD(lines);
	const json_t *inc = get(m, "endpoints.0.incidents.1");

	/* the first loss healed; the second is open behind the open circuit */
	assert_int_equal(gint(m, "endpoints.0.incidents_total"), 2);
	assert_string_equal(gstr(m, "endpoints.0.incidents.0.status"), "healed");
	assert_string_equal(gstr(inc, "status"), "open");
	assert_string_equal(gstr(inc, "problems.0.event"), "rebind_suppressed");
	assert_int_equal(gint(inc, "problems.0.rebinds"), 5);
	assert_string_equal(gstr(inc, "problems.0.actor.comm"), "rm");
	/* the second removal does not name the server: the endpoint remembers it */
	assert_int_equal(gint(inc, "owner.pid"), 100);
	assert_int_equal(gint(inc, "removals"), 1);
	assert_non_null(strstr(gstr(inc, "summary"), "the flap guard opened the circuit"));
	assert_non_null(strstr(gstr(inc, "summary"), "1 heal skipped"));
	json_decref(m);
}

static void test_reboot_interrupts(void **state)
{
	const char *lines[] = {
		AT("10.000000000", 11000000000) "\"event\":\"socket_unlinked\"," PATH
			",\"actor\":" RM ",\"via\":\"unlink\"}",
		AT("11.000000000", 12000000000) "\"event\":\"agent_started\",\"pid\":5}",
		"{\"time\":\"2026-11-23T14:05:00Z\",\"mono_ns\":5000000000," BOOT_B
		",\"host\":\"node1\",\"event\":\"agent_started\",\"pid\":6}",
	};
	json_t *m = BUILD(lines);

	assert_string_equal(gstr(m, "endpoints.0.incidents.0.status"), "interrupted");
	assert_non_null(strstr(gstr(m, "endpoints.0.incidents.0.notes.0"), "rebooted"));
	assert_int_equal(gint(m, "incidents_open"), 0);
	/* the run before the reboot never said agent_stopping */
	assert_int_equal(json_array_size(get(m, "agent.runs")), 2);
	assert_string_equal(gstr(m, "agent.runs.0.end"), "unclean");
	assert_string_equal(gstr(m, "agent.runs.1.end"), "running");
	json_decref(m);
}

static void test_recovery_without_start(void **state)
{
	/* the connect_failing was lost (events_lost): the recovery alone still
	 * makes an incident, started streak_duration_ms before it */
	const char *lines[] = {
		AT("05.000000000", 6000000000) "\"event\":\"events_lost\",\"count\":12,"
			"\"reason\":\"ringbuf_full\"}",
		AT("10.000000000", 11000000000) "\"event\":\"connect_recovered\"," PATH
			",\"errno\":\"EAGAIN\",\"total_failures\":500,\"how\":\"connect\","
			"\"streak_duration_ms\":2500}",
	};
	json_t *m = BUILD(lines);
	const json_t *inc = get(m, "endpoints.0.incidents.0");

	assert_string_equal(gstr(inc, "status"), "recovered");
	assert_true(json_is_true(get(inc, "start_estimated")));
	assert_string_equal(gstr(inc, "start"), "2026-11-23T14:00:07.500000000Z");
	assert_float_equal(gnum(inc, "outage_s"), 2.5, 1e-9);
	assert_int_equal(gint(inc, "connect_failures.by_errno.EAGAIN"), 500);
	assert_int_equal(gint(m, "agent.events_lost_total"), 12);
	assert_string_equal(gstr(m, "agent.events_lost.0.reason"), "ringbuf_full");
	json_decref(m);
}

static void test_multiple_hosts_kept_apart(void **state)
{
	const char *lines[] = {
		"{\"time\":\"2026-11-23T14:00:10Z\",\"host\":\"a\",\"event\":\"socket_unlinked\","
		PATH ",\"via\":\"scan\"}",
		"{\"time\":\"2026-11-23T14:00:11Z\",\"host\":\"b\",\"event\":\"rebind_succeeded\","
		PATH ",\"how\":\"link\"}",
	};
	json_t *m = BUILD(lines);
	char *out = render(m);

	assert_int_equal(gint(m, "endpoints_total"), 2);
	assert_string_equal(gstr(m, "endpoints.0.incidents.0.status"), "open");
	assert_int_equal(gint(m, "endpoints.1.incidents_total"), 0);
	assert_contains(out, "hosts a, b");
	assert_contains(out, "\na: /run/app/app.sock: 1 incident (open)");
	free(out);
	json_decref(m);
}

/* ----- streaming: the index, the spools, report_write() ----- */

/* What report_write() writes of j. */
static char *write_report(struct report_journal *j, const char *source, bool json)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	assert_int_equal(report_write(f, j, source, json), 0);
	fclose(f);
	return buf;
}

static struct report_journal *journal_of(const char *const *lines, size_t n)
{
	struct report_journal *j = report_journal_new();

	assert_non_null(j);
	for (size_t i = 0; i < n; i++)
		report_journal_add_line(j, lines[i], strlen(lines[i]), i + 1);
	return j;
}

/* A journal with a bit of everything: a healed incident, a flapping path
 * whose second loss stays open, a reboot that interrupts one. */
static const char *const mixed_journal[] = {
	AT("00.000000000", 1000000000) "\"event\":\"agent_started\",\"mode\":\"tracepoint\","
		"\"pid\":77}",
	AT("10.000000000", 11000000000) "\"event\":\"socket_unlinked\"," PATH
		",\"actor\":" RM ",\"owner\":" SRV ",\"via\":\"unlink\"}",
	AT("10.001000000", 11001000000) "\"event\":\"connect_failing\"," PATH
		",\"errno\":\"ENOENT\",\"client\":" CLI "}",
	AT("10.020000000", 11020000000) "\"event\":\"rebind_succeeded\"," PATH
		",\"how\":\"link\",\"heal_ms\":20.25}",
	AT("10.030000000", 11030000000) "\"event\":\"connect_recovered\"," PATH
		",\"errno\":\"ENOENT\",\"total_failures\":3,\"how\":\"link\"}",
	AT("11.000000000", 12000000000) "\"event\":\"socket_unlinked\"," PATH
		",\"actor\":" RM ",\"via\":\"unlink\"}",
	AT("11.000100000", 12000100000) "\"event\":\"rebind_suppressed\"," PATH
		",\"rebinds\":5,\"window_s\":60,\"actor\":" RM "}",
	AT("12.000000000", 13000000000) "\"event\":\"stale_socket\","
		"\"path\":\"/run/other.sock\",\"last_owner\":" SRV "}",
	"{\"time\":\"2026-11-23T14:05:00Z\",\"mono_ns\":5000000000," BOOT_B
	",\"host\":\"node1\",\"event\":\"agent_started\",\"pid\":6}",
	"{\"time\":\"2026-11-23T14:05:01Z\",\"mono_ns\":6000000000," BOOT_B
	",\"host\":\"node1\",\"event\":\"connect_failing\"," PATH
	",\"errno\":\"ENOENT\",\"client\":" CLI "}",
};

/* report_write() writes what report_build() and report_print() or
 * json_dumpf() make, byte for byte, and a journal can be built twice. */
static void test_write_matches_build(void **state)
{
	size_t n = sizeof(mixed_journal) / sizeof(mixed_journal[0]);
	struct report_journal *j = journal_of(mixed_journal, n);
	json_t *m = report_build(j, "mixed.jsonl"), *again;
	char *dump, *text = render(m), *w_json, *w_text;

	assert_non_null(m);
	dump = json_dumps(m, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
	w_json = write_report(j, "mixed.jsonl", true);
	w_text = write_report(j, "mixed.jsonl", false);
	assert_int_equal(strlen(w_json), strlen(dump) + 1);
	assert_memory_equal(w_json, dump, strlen(dump));
	assert_int_equal(w_json[strlen(dump)], '\n');
	assert_string_equal(w_text, text);
	/* what the model says: one healed, one open, one interrupted */
	assert_string_equal(gstr(m, "endpoints.0.incidents.0.status"), "healed");
	assert_string_equal(gstr(m, "endpoints.0.incidents.1.status"), "interrupted");
	assert_string_equal(gstr(m, "endpoints.0.incidents.2.status"), "open");
	assert_string_equal(gstr(m, "endpoints.1.incidents.0.status"), "interrupted");
	assert_int_equal(gint(m, "incidents_open"), 1);
	assert_contains(w_text, "/run/app/app.sock: 3 incidents (healed, interrupted, open)");
	again = report_build(j, "mixed.jsonl");
	assert_true(json_equal(m, again));
	free(dump);
	free(text);
	free(w_json);
	free(w_text);
	json_decref(again);
	json_decref(m);
	report_journal_free(j);
}

/* The index sorts by mono_ns in place; equal instants keep the journal's
 * order, wherever the sort moves them. */
static void test_index_sort_keeps_ties(void **state)
{
	enum { N = 3000 };
	struct report_journal *j = report_journal_new();
	json_t *m;

	for (size_t i = 0; i < N; i++) {
		char line[256];
		/* two lines an instant, the instants backwards */
		unsigned long long mono = 1000000000ULL + (N / 2 - i / 2) * 1000ULL;
		int k = snprintf(line, sizeof(line), "{\"time\":\"2026-11-23T14:00:00Z\","
				 "\"mono_ns\":%llu," BOOT_A ",\"event\":\"rebind_started\"," PATH
				 ",\"how\":\"link\"}", mono);

		assert_null(report_journal_add_line(j, line, (size_t)k, i + 1));
	}
	assert_int_equal(report_journal_events(j), N);
	m = report_build(j, "-");
	assert_int_equal(json_array_size(get(m, "endpoints.0.timeline")), N);
	for (size_t k = 0; k < N; k++) {
		size_t pair = N / 2 - 1 - k / 2; /* the last pair first */
		char key[64];

		snprintf(key, sizeof(key), "endpoints.0.timeline.%zu.line", k);
		assert_int_equal(gint(m, key), 2 * pair + 1 + k % 2);
	}
	json_decref(m);
	report_journal_free(j);
}

/* A FILE that is not a regular file (stdin, a pipe) is spooled; a regular
 * file is read where it is. Both make the model literal lines make. */
static void test_read_pipe_and_file(void **state)
{
	size_t n = sizeof(mixed_journal) / sizeof(mixed_journal[0]);
	struct report_journal *lines = journal_of(mixed_journal, n), *piped, *filed;
	json_t *want = report_build(lines, "x"), *got;
	int fds[2];
	FILE *r, *w, *f;

	/* a pipe holds this journal whole: write it, then read it */
	assert_int_equal(pipe(fds), 0);
	w = fdopen(fds[1], "w");
	r = fdopen(fds[0], "r");
	f = tmpfile();
	assert_non_null(w);
	assert_non_null(r);
	assert_non_null(f);
	for (size_t i = 0; i < n; i++) {
		fprintf(w, "%s\n", mixed_journal[i]);
		fprintf(f, "%s\n", mixed_journal[i]);
	}
	fclose(w);
	rewind(f);

	piped = report_journal_new();
	assert_true(report_journal_read(piped, r));
	assert_int_equal(report_journal_errno(piped), 0);
	fclose(r); /* the spool holds the lines now */
	got = report_build(piped, "x");
	assert_true(json_equal(want, got));
	json_decref(got);

	filed = report_journal_new();
	assert_true(report_journal_read(filed, f));
	got = report_build(filed, "x");
	assert_true(json_equal(want, got));
	json_decref(got);

	/* the file is read again by offset: cut short, it says so */
	assert_int_equal(ftruncate(fileno(f), 100), 0);
	assert_null(report_build(filed, "x"));
	{
		char *buf = NULL;
		size_t len = 0;
		FILE *out = open_memstream(&buf, &len);

		errno = 0;
		assert_int_equal(report_write(out, filed, "x", true), -1);
		assert_int_equal(errno, ESTALE);
		fclose(out);
		free(buf);
	}
	fclose(f);
	json_decref(want);
	report_journal_free(lines);
	report_journal_free(piped);
	report_journal_free(filed);
}

/* Closed incidents go to the incident spool and come back as they were:
 * many of them on one endpoint, the open one last. */
static void test_many_incidents_spooled(void **state)
{
	enum { N = 600 };
	static const char last[] = AT("59.000000000", 99000000000)
		"\"event\":\"socket_unlinked\"," PATH ",\"via\":\"scan\"}";
	struct report_journal *j = report_journal_new();
	json_t *m;
	char *text;

	for (size_t i = 0; i < N; i++) {
		char line[512];
		unsigned long long mono = 1000000000ULL + i * 1000000ULL;
		const char *ev = i % 2 ? "\"event\":\"rebind_succeeded\",\"how\":\"link\","
					 "\"heal_ms\":0.5" :
					 "\"event\":\"socket_unlinked\",\"via\":\"unlink\","
					 "\"actor\":" RM;
		int k = snprintf(line, sizeof(line), "{\"time\":\"2026-11-23T14:00:%02zu.%09lluZ\","
				 "\"mono_ns\":%llu," BOOT_A ",\"host\":\"node1\"," PATH ",%s}", i / 100,
				 (i % 100) * 1000000ULL, mono, ev);

		assert_null(report_journal_add_line(j, line, (size_t)k, i + 1));
	}
	/* the last loss is not healed */
	assert_null(report_journal_add_line(j, last, strlen(last), N + 1));
	m = report_build(j, "-");
	assert_int_equal(gint(m, "endpoints.0.incidents_total"), N / 2 + 1);
	assert_int_equal(gint(m, "incidents_open"), 1);
	assert_int_equal(gint(m, "endpoints.0.incidents.0.id"), 1);
	assert_string_equal(gstr(m, "endpoints.0.incidents.0.status"), "healed");
	assert_float_equal(gnum(m, "endpoints.0.incidents.0.heal.heal_ms"), 0.5, 1e-12);
	assert_float_equal(gnum(m, "endpoints.0.incidents.0.outage_s"), 0.001, 1e-12);
	assert_int_equal(gint(m, "endpoints.0.incidents.299.id"), 300);
	assert_string_equal(gstr(m, "endpoints.0.incidents.299.status"), "healed");
	assert_string_equal(gstr(m, "endpoints.0.incidents.299.actor.comm"), "rm");
	assert_string_equal(gstr(m, "endpoints.0.incidents.300.status"), "open");
	assert_int_equal(gint(m, "endpoints.0.timeline.600.incident"), 301);
	text = write_report(j, "-", false);
	assert_contains(text, ": 301 incidents (healed, healed, ");
	assert_contains(text, "healed, open), 601 events from");
	assert_contains(text, "  incident #300 healed: outage 0.001 s");
	free(text);
	json_decref(m);
	report_journal_free(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_healed_incident),
		cmocka_unit_test(test_human_output),
		cmocka_unit_test(test_malformed_lines_skipped),
		cmocka_unit_test(test_out_of_order_sorted_by_mono),
		cmocka_unit_test(test_unknown_event_kept),
		cmocka_unit_test(test_empty_journal),
		cmocka_unit_test(test_rfc3339_forms),
		cmocka_unit_test(test_open_incident_counts_windows),
		cmocka_unit_test(test_owner_unlink_stands_down),
		cmocka_unit_test(test_stood_down_waits_for_failing_clients),
		cmocka_unit_test(test_flap_guard_keeps_it_open),
		cmocka_unit_test(test_reboot_interrupts),
		cmocka_unit_test(test_recovery_without_start),
		cmocka_unit_test(test_multiple_hosts_kept_apart),
		cmocka_unit_test(test_write_matches_build),
		cmocka_unit_test(test_index_sort_keeps_ties),
		cmocka_unit_test(test_read_pipe_and_file),
		cmocka_unit_test(test_many_incidents_spooled),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
