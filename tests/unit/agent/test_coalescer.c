/*
 * Unit tests for user/agent/coalescer.c, which turns the kernel's per-(path, errno)
 * connect-failure counters into a handful of events (DESIGN §2 "Coalescing",
 * docs/events.md): connect_failing at a streak's first failure, one
 * connect_still_failing per window end carrying that window's count, and
 * connect_recovered at the first success with the streak's totals.
 *
 * A client retrying connect() in a tight loop must cost one event per window,
 * whatever the rate, and the numbers in those events are what operators read
 * in a postmortem, so the tests assert exact counts and durations.
 *
 * The coalescer never reads a clock: times are passed in, and the kernel
 * counter is a fake the tests set by hand. Emitted events are copied into an
 * array by the emit callback.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "shared/clock.h"
#include "agent/coalescer.h"

#define WINDOW (30 * NSEC_PER_SEC)
#define WINDOW_MS (WINDOW / NSEC_PER_MSEC)
#define T0 (5000 * NSEC_PER_SEC + 123456789ULL) /* an arbitrary monotonic start */

#define MAX_EVENTS 64
#define MAX_COUNTERS 8

struct recorded {
	struct coalesced_event ev;
	char path[128];
	char how[16];
	struct coalesced_client clients[COALESCER_TOP_CLIENTS];
};

/* the kernel's connect_stats map, as far as the coalescer can see it */
struct counter {
	const char *path;
	int err;
	uint64_t failures;
};

struct fixture {
	struct coalescer c;
	struct recorded ev[MAX_EVENTS];
	size_t n_ev;
	struct counter counters[MAX_COUNTERS];
	size_t n_counters;
	bool read_fails;
	unsigned reads;
};

static void record(const struct coalesced_event *ev, void *ctx)
{
	struct fixture *f = ctx;
	struct recorded *r;

	assert_true(f->n_ev < MAX_EVENTS);
	r = &f->ev[f->n_ev++];
	r->ev = *ev;
	/* the pointers are only valid during the callback: keep copies */
	assert_non_null(ev->path);
	strncpy(r->path, ev->path, sizeof(r->path) - 1);
	r->ev.path = r->path;
	if (ev->how) {
		strncpy(r->how, ev->how, sizeof(r->how) - 1);
		r->ev.how = r->how;
	}
	assert_true(ev->n_clients <= COALESCER_TOP_CLIENTS);
	if (ev->n_clients)
		memcpy(r->clients, ev->clients, ev->n_clients * sizeof(*ev->clients));
	r->ev.clients = r->clients;
}

static struct counter *counter(struct fixture *f, const char *path, int err)
{
	for (size_t i = 0; i < f->n_counters; i++)
		if (f->counters[i].err == err && strcmp(f->counters[i].path, path) == 0)
			return &f->counters[i];
	assert_true(f->n_counters < MAX_COUNTERS);
	f->counters[f->n_counters] = (struct counter){ .path = path, .err = err };
	return &f->counters[f->n_counters++];
}

static void set_failures(struct fixture *f, const char *path, int err, uint64_t n)
{
	counter(f, path, err)->failures = n;
}

static bool read_counter(const char *path, int err, uint64_t *failures, void *ctx)
{
	struct fixture *f = ctx;

	f->reads++;
	if (f->read_fails)
		return false;
	for (size_t i = 0; i < f->n_counters; i++) {
		if (f->counters[i].err == err && strcmp(f->counters[i].path, path) == 0) {
			*failures = f->counters[i].failures;
			return true;
		}
	}
	return false;
}

static void tick(struct fixture *f, uint64_t now)
{
	coalescer_tick(&f->c, now, read_counter, f);
}

/* A streak's first failure as the kernel reports it: the counter reads
 * start_failures, which includes this failure. */
static void fail_first(struct fixture *f, const char *path, int err, uint32_t gen,
		       uint64_t start_failures, uint64_t when)
{
	struct coalesced_client cl = { .pid = 4242, .uid = 1000, .comm = "client" };

	set_failures(f, path, err, start_failures);
	coalescer_failing(&f->c, path, err, gen, start_failures, when, &cl);
}

static size_t count_kind(const struct fixture *f, enum coalesced_kind kind)
{
	size_t n = 0;

	for (size_t i = 0; i < f->n_ev; i++)
		n += f->ev[i].ev.kind == kind;
	return n;
}

static const struct recorded *last(const struct fixture *f)
{
	assert_true(f->n_ev > 0);
	return &f->ev[f->n_ev - 1];
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	coalescer_init(&f->c, WINDOW, record, f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	coalescer_free(&f->c);
	free(f);
	return 0;
}

/* ----- connect_failing ----- */

static void test_one_failure_emits_exactly_one_failing(void **state)
{
	struct fixture *f = *state;
	const struct recorded *r;

	fail_first(f, "/run/app/app.sock", ENOENT, 1, 1, T0);
	assert_int_equal(f->n_ev, 1);
	r = last(f);
	assert_int_equal(r->ev.kind, COALESCED_FAILING);
	assert_string_equal(r->ev.path, "/run/app/app.sock");
	assert_int_equal(r->ev.err, ENOENT);
	assert_true(r->ev.mono_ns == T0);
	assert_int_equal(r->ev.failures, 1);
	assert_int_equal(r->ev.first_client.pid, 4242);
	assert_int_equal(r->ev.first_client.uid, 1000);
	assert_string_equal(r->ev.first_client.comm, "client");
	assert_int_equal(f->c.n_open, 1);
	assert_non_null(coalescer_find(&f->c, "/run/app/app.sock", ENOENT));
}

static void test_failing_without_client_has_zeroed_client(void **state)
{
	struct fixture *f = *state;

	coalescer_failing(&f->c, "/run/a.sock", ENOENT, 1, 1, T0, NULL);
	assert_int_equal(f->n_ev, 1);
	assert_int_equal(last(f)->ev.first_client.pid, 0);
	assert_string_equal(last(f)->ev.first_client.comm, "");
}

static void test_failing_for_open_streak_same_gen_is_ignored(void **state)
{
	struct fixture *f = *state;
	struct streak *s;

	fail_first(f, "/run/a.sock", ENOENT, 7, 1, T0);
	/* the record and a map scan both report the same streak, later */
	coalescer_failing(&f->c, "/run/a.sock", ENOENT, 7, 900, T0 + 5 * NSEC_PER_SEC, NULL);
	assert_int_equal(f->n_ev, 1);
	assert_int_equal(f->c.n_open, 1);
	s = coalescer_find(&f->c, "/run/a.sock", ENOENT);
	assert_non_null(s);
	assert_true(s->start_ns == T0);
	assert_int_equal(s->start_failures, 1);
}

static void test_million_failures_in_one_window_one_failing_one_still_failing(void **state)
{
	struct fixture *f = *state;
	const struct recorded *r;

	fail_first(f, "/run/a.sock", ECONNREFUSED, 1, 1, T0);
	/* the kernel counts; userspace hears nothing until the window ends,
	 * however often it looks */
	for (uint64_t k = 1; k <= 1000000; k += 99999) {
		set_failures(f, "/run/a.sock", ECONNREFUSED, k);
		tick(f, T0 + k * (WINDOW / 1000001));
	}
	set_failures(f, "/run/a.sock", ECONNREFUSED, 1000000);
	tick(f, T0 + WINDOW - 1);
	assert_int_equal(f->n_ev, 1);
	assert_int_equal(count_kind(f, COALESCED_FAILING), 1);

	tick(f, T0 + WINDOW);
	assert_int_equal(f->n_ev, 2);
	r = last(f);
	assert_int_equal(r->ev.kind, COALESCED_STILL_FAILING);
	assert_string_equal(r->ev.path, "/run/a.sock");
	assert_int_equal(r->ev.err, ECONNREFUSED);
	assert_true(r->ev.mono_ns == T0 + WINDOW);
	/* every failure of the window, the first one included */
	assert_int_equal(r->ev.failures, 1000000);
	assert_int_equal(r->ev.streak_duration_ms, WINDOW_MS);
	/* and one tick is one event: ticking again at once adds nothing */
	tick(f, T0 + WINDOW);
	assert_int_equal(f->n_ev, 2);
}

static void test_still_failing_counts_each_window_separately(void **state)
{
	struct fixture *f = *state;

	fail_first(f, "/run/a.sock", ENOENT, 1, 1, T0);
	set_failures(f, "/run/a.sock", ENOENT, 10);
	tick(f, T0 + WINDOW);
	assert_int_equal(last(f)->ev.failures, 10);
	set_failures(f, "/run/a.sock", ENOENT, 510);
	tick(f, T0 + 2 * WINDOW);
	assert_int_equal(f->n_ev, 3);
	assert_int_equal(last(f)->ev.kind, COALESCED_STILL_FAILING);
	assert_int_equal(last(f)->ev.failures, 500);
	assert_int_equal(last(f)->ev.streak_duration_ms, 2 * WINDOW_MS);
}

static void test_counter_not_starting_at_one(void **state)
{
	struct fixture *f = *state;

	/* the counter is cumulative over earlier streaks of this path */
	fail_first(f, "/run/a.sock", ENOENT, 3, 1001, T0);
	set_failures(f, "/run/a.sock", ENOENT, 1040);
	tick(f, T0 + WINDOW);
	assert_int_equal(last(f)->ev.failures, 40);
}

static void test_no_still_failing_for_a_window_without_failures(void **state)
{
	/* A window in which no connect failed is not "still failing": the
	 * event would claim a failure that did not happen, and a path nobody
	 * connects to any more would warn every window for ever. The streak
	 * stays open (it ends with a success) and the windows stay aligned. */
	struct fixture *f = *state;

	fail_first(f, "/run/a.sock", ENOENT, 1, 1, T0);
	set_failures(f, "/run/a.sock", ENOENT, 5);
	tick(f, T0 + WINDOW);
	assert_int_equal(count_kind(f, COALESCED_STILL_FAILING), 1);
	assert_int_equal(last(f)->ev.failures, 5);

	/* the second window: the counter did not move */
	tick(f, T0 + 2 * WINDOW);
	assert_int_equal(count_kind(f, COALESCED_STILL_FAILING), 1);
	assert_int_equal(f->c.n_open, 1);
	assert_true(coalescer_next_deadline(&f->c) == T0 + 3 * WINDOW);

	/* the third: failures again, counted from the end of the second */
	set_failures(f, "/run/a.sock", ENOENT, 8);
	tick(f, T0 + 3 * WINDOW);
	assert_int_equal(count_kind(f, COALESCED_STILL_FAILING), 2);
	assert_int_equal(last(f)->ev.failures, 3);
	assert_int_equal(last(f)->ev.streak_duration_ms, 3 * WINDOW_MS);
}

static void test_failed_read_carries_counts_into_next_window(void **state)
{
	struct fixture *f = *state;
	size_t before;

	fail_first(f, "/run/a.sock", ENOENT, 1, 1, T0);
	set_failures(f, "/run/a.sock", ENOENT, 20);
	f->read_fails = true;
	tick(f, T0 + WINDOW);
	assert_true(f->reads > 0);
	/* whatever was said at that tick, no failures went missing */
	before = f->n_ev;
	f->read_fails = false;
	set_failures(f, "/run/a.sock", ENOENT, 50);
	tick(f, T0 + 2 * WINDOW);
	assert_int_equal(f->n_ev, before + 1);
	assert_int_equal(last(f)->ev.kind, COALESCED_STILL_FAILING);
	assert_int_equal(last(f)->ev.failures, 50);
}

static void test_late_tick_emits_once_and_keeps_windows_aligned(void **state)
{
	struct fixture *f = *state;

	fail_first(f, "/run/a.sock", ENOENT, 1, 1, T0);
	set_failures(f, "/run/a.sock", ENOENT, 77);
	/* the loop was busy: three and a half windows pass before a tick */
	tick(f, T0 + 3 * WINDOW + WINDOW / 2);
	assert_int_equal(f->n_ev, 2);
	assert_int_equal(last(f)->ev.kind, COALESCED_STILL_FAILING);
	assert_int_equal(last(f)->ev.failures, 77);
	assert_int_equal(last(f)->ev.streak_duration_ms, 3 * WINDOW_MS + WINDOW_MS / 2);
	assert_true(coalescer_next_deadline(&f->c) == T0 + 4 * WINDOW);
}

static void test_tick_before_window_end_emits_nothing(void **state)
{
	struct fixture *f = *state;

	fail_first(f, "/run/a.sock", ENOENT, 1, 1, T0);
	set_failures(f, "/run/a.sock", ENOENT, 3);
	tick(f, T0);
	tick(f, T0 + WINDOW / 2);
	tick(f, T0 + WINDOW - 1);
	assert_int_equal(f->n_ev, 1);
}

static void test_tick_with_nothing_open_does_nothing(void **state)
{
	struct fixture *f = *state;

	tick(f, T0);
	tick(f, UINT64_MAX - 1);
	assert_int_equal(f->n_ev, 0);
	assert_int_equal(f->reads, 0);
}

/* ----- connect_recovered ----- */

static void test_recovered_totals_and_duration(void **state)
{
	struct fixture *f = *state;
	const struct coalesced_client top[2] = {
		{ .pid = 10, .uid = 0, .comm = "curl", .failures = 30 },
		{ .pid = 11, .uid = 33, .comm = "nginx", .failures = 12 },
	};
	const struct recorded *r;
	uint64_t now = T0 + 1234 * NSEC_PER_MSEC + 567891;

	fail_first(f, "/run/a.sock", ENOENT, 1, 1, T0);
	coalescer_recovered(&f->c, "/run/a.sock", ENOENT, 1, 42, now, "fd", top, 2);
	assert_int_equal(f->n_ev, 2);
	r = last(f);
	assert_int_equal(r->ev.kind, COALESCED_RECOVERED);
	assert_string_equal(r->ev.path, "/run/a.sock");
	assert_int_equal(r->ev.err, ENOENT);
	assert_true(r->ev.mono_ns == now);
	assert_int_equal(r->ev.total_failures, 42);
	assert_int_equal(r->ev.swallowed_failures, 41);
	assert_int_equal(r->ev.streak_duration_ms, 1234); /* truncated, not rounded */
	assert_string_equal(r->ev.how, "fd");
	assert_int_equal(r->ev.n_clients, 2);
	assert_int_equal(r->clients[0].pid, 10);
	assert_int_equal(r->clients[0].failures, 30);
	assert_string_equal(r->clients[1].comm, "nginx");
	assert_int_equal(r->clients[1].uid, 33);
	/* the streak is over */
	assert_null(coalescer_find(&f->c, "/run/a.sock", ENOENT));
	assert_int_equal(f->c.n_open, 0);
	assert_true(coalescer_next_deadline(&f->c) == UINT64_MAX);
}

static void test_recovered_with_cumulative_counter(void **state)
{
	struct fixture *f = *state;

	fail_first(f, "/run/a.sock", ENOENT, 5, 100, T0);
	coalescer_recovered(&f->c, "/run/a.sock", ENOENT, 5, 150, T0 + 2 * WINDOW, NULL,
			    NULL, 0);
	assert_int_equal(last(f)->ev.total_failures, 51);
	assert_int_equal(last(f)->ev.swallowed_failures, 50);
	assert_int_equal(last(f)->ev.streak_duration_ms, 2 * WINDOW_MS);
}

static void test_recovered_after_a_single_failure_swallowed_none(void **state)
{
	struct fixture *f = *state;

	fail_first(f, "/run/a.sock", EAGAIN, 1, 1, T0);
	coalescer_recovered(&f->c, "/run/a.sock", EAGAIN, 1, 1, T0 + NSEC_PER_SEC, NULL,
			    NULL, 0);
	assert_int_equal(last(f)->ev.total_failures, 1);
	assert_int_equal(last(f)->ev.swallowed_failures, 0);
	assert_int_equal(last(f)->ev.streak_duration_ms, 1000);
}

static void test_recovered_how_defaults_to_connect(void **state)
{
	struct fixture *f = *state;

	fail_first(f, "/run/a.sock", ENOENT, 1, 1, T0);
	coalescer_recovered(&f->c, "/run/a.sock", ENOENT, 1, 3, T0 + 1, NULL, NULL, 0);
	assert_string_equal(last(f)->ev.how, "connect");
	assert_int_equal(last(f)->ev.n_clients, 0);
}

static void test_recovered_how_passes_through(void **state)
{
	static const char *const hows[] = { "link", "fd", "notify", "connect" };
	struct fixture *f = *state;

	for (size_t i = 0; i < 4; i++) {
		fail_first(f, "/run/a.sock", ENOENT, (uint32_t)i + 1, 1, T0);
		coalescer_recovered(&f->c, "/run/a.sock", ENOENT, (uint32_t)i + 1, 2, T0 + 1,
				    hows[i], NULL, 0);
		assert_int_equal(last(f)->ev.kind, COALESCED_RECOVERED);
		assert_string_equal(last(f)->ev.how, hows[i]);
	}
}

static void test_recovered_duration_never_negative(void **state)
{
	struct fixture *f = *state;

	fail_first(f, "/run/a.sock", ENOENT, 1, 1, T0);
	/* a success stamped before the streak's start (records out of order) */
	coalescer_recovered(&f->c, "/run/a.sock", ENOENT, 1, 1, T0 - NSEC_PER_SEC, NULL,
			    NULL, 0);
	assert_int_equal(last(f)->ev.streak_duration_ms, 0);
	assert_int_equal(last(f)->ev.total_failures, 1);
}

static void test_recovered_counter_below_start_counts_one(void **state)
{
	struct fixture *f = *state;

	/* the map scan's "closed before it was seen" case: never underflow */
	fail_first(f, "/run/a.sock", ENOENT, 2, 500, T0);
	coalescer_recovered(&f->c, "/run/a.sock", ENOENT, 2, 499, T0 + 1, NULL, NULL, 0);
	assert_int_equal(last(f)->ev.total_failures, 1);
	assert_int_equal(last(f)->ev.swallowed_failures, 0);
}

static void test_recovered_with_stale_gen_is_ignored(void **state)
{
	struct fixture *f = *state;

	fail_first(f, "/run/a.sock", ENOENT, 2, 1, T0);
	coalescer_recovered(&f->c, "/run/a.sock", ENOENT, 1, 50, T0 + 1, NULL, NULL, 0);
	coalescer_recovered(&f->c, "/run/a.sock", ENOENT, 3, 50, T0 + 1, NULL, NULL, 0);
	assert_int_equal(f->n_ev, 1);
	assert_int_equal(f->c.n_open, 1);
	assert_non_null(coalescer_find(&f->c, "/run/a.sock", ENOENT));
	/* the right generation still ends it */
	coalescer_recovered(&f->c, "/run/a.sock", ENOENT, 2, 50, T0 + 1, NULL, NULL, 0);
	assert_int_equal(f->n_ev, 2);
	assert_int_equal(last(f)->ev.total_failures, 50);
}

static void test_recovered_unknown_streak_is_ignored(void **state)
{
	struct fixture *f = *state;

	coalescer_recovered(&f->c, "/run/a.sock", ENOENT, 1, 5, T0, NULL, NULL, 0);
	fail_first(f, "/run/a.sock", ENOENT, 1, 1, T0);
	coalescer_recovered(&f->c, "/run/b.sock", ENOENT, 1, 5, T0, NULL, NULL, 0);
	coalescer_recovered(&f->c, "/run/a.sock", EAGAIN, 1, 5, T0, NULL, NULL, 0);
	assert_int_equal(f->n_ev, 1);
	/* twice: the second is for a streak already ended */
	coalescer_recovered(&f->c, "/run/a.sock", ENOENT, 1, 5, T0, NULL, NULL, 0);
	coalescer_recovered(&f->c, "/run/a.sock", ENOENT, 1, 5, T0, NULL, NULL, 0);
	assert_int_equal(f->n_ev, 2);
}

static void test_late_report_of_an_ended_streak_changes_nothing(void **state)
{
	struct fixture *f = *state;

	/* the map scan saw gen 3 start and end before its records arrived */
	fail_first(f, "/run/a.sock", ENOENT, 3, 10, T0);
	coalescer_recovered(&f->c, "/run/a.sock", ENOENT, 3, 24, T0 + 5, NULL, NULL, 0);
	assert_int_equal(f->n_ev, 2);
	assert_true(coalescer_ended(&f->c, "/run/a.sock", ENOENT, 3));
	assert_false(coalescer_ended(&f->c, "/run/a.sock", ENOENT, 2));
	assert_false(coalescer_ended(&f->c, "/run/a.sock", EAGAIN, 3));
	/* then the records: the failing one, the recovered one */
	fail_first(f, "/run/a.sock", ENOENT, 3, 10, T0);
	coalescer_recovered(&f->c, "/run/a.sock", ENOENT, 3, 24, T0 + 5, NULL, NULL, 0);
	assert_int_equal(f->n_ev, 2);
	assert_int_equal(f->c.n_open, 0);
	assert_int_equal(count_kind(f, COALESCED_RECOVERED), 1);
	/* the next generation is a new streak, which begins where gen 3 ended:
	 * the counter's failures between (none in a real kernel) are its own */
	fail_first(f, "/run/a.sock", ENOENT, 4, 30, T0 + 10);
	coalescer_recovered(&f->c, "/run/a.sock", ENOENT, 4, 31, T0 + 20, NULL, NULL, 0);
	assert_int_equal(count_kind(f, COALESCED_RECOVERED), 2);
	assert_int_equal(last(f)->ev.total_failures, 7);
	assert_true(coalescer_ended(&f->c, "/run/a.sock", ENOENT, 4));
	assert_false(coalescer_ended(&f->c, "/run/a.sock", ENOENT, 3));
}

static void test_two_failures_across_a_close_are_both_counted(void **state)
{
	struct fixture *f = *state;

	fail_first(f, "/run/a.sock", ENOENT, 1, 1, T0);
	coalescer_recovered(&f->c, "/run/a.sock", ENOENT, 1, 5, T0 + 1, NULL, NULL, 0);
	/* failures 6 and 7 came right after the close: 7 reopened the streak
	 * first, and 6 found it open already */
	fail_first(f, "/run/a.sock", ENOENT, 2, 7, T0 + 2);
	coalescer_recovered(&f->c, "/run/a.sock", ENOENT, 2, 8, T0 + 3, NULL, NULL, 0);
	assert_int_equal(last(f)->ev.total_failures, 3);
	assert_int_equal(last(f)->ev.swallowed_failures, 2);
}

static void test_a_failure_on_both_sides_of_a_close_counts_once(void **state)
{
	struct fixture *f = *state;

	fail_first(f, "/run/a.sock", ENOENT, 1, 1, T0);
	/* failure 6 took its count before the close, which counted it, and
	 * then found the streak closed and reopened it */
	coalescer_recovered(&f->c, "/run/a.sock", ENOENT, 1, 6, T0 + 1, NULL, NULL, 0);
	assert_int_equal(last(f)->ev.total_failures, 6);
	fail_first(f, "/run/a.sock", ENOENT, 2, 6, T0 + 2);
	coalescer_recovered(&f->c, "/run/a.sock", ENOENT, 2, 6, T0 + 3, NULL, NULL, 0);
	assert_int_equal(last(f)->ev.total_failures, 0);
	assert_int_equal(last(f)->ev.swallowed_failures, 0);
	fail_first(f, "/run/a.sock", ENOENT, 3, 7, T0 + 4);
	coalescer_recovered(&f->c, "/run/a.sock", ENOENT, 3, 9, T0 + 5, NULL, NULL, 0);
	assert_int_equal(last(f)->ev.total_failures, 3);
}

static void test_start_after_an_unseen_streak_is_the_kernels(void **state)
{
	struct fixture *f = *state;

	fail_first(f, "/run/a.sock", ENOENT, 1, 1, T0);
	coalescer_recovered(&f->c, "/run/a.sock", ENOENT, 1, 5, T0 + 1, NULL, NULL, 0);
	/* gen 2 came and went unseen: gen 3 starts where the kernel says */
	fail_first(f, "/run/a.sock", ENOENT, 3, 20, T0 + 2);
	coalescer_recovered(&f->c, "/run/a.sock", ENOENT, 3, 21, T0 + 3, NULL, NULL, 0);
	assert_int_equal(last(f)->ev.total_failures, 2);
}

static void test_ended_memory_is_bounded(void **state)
{
	struct fixture *f = *state;
	char path[64];

	/* more keys than it holds: the oldest are forgotten, the newest kept */
	for (int i = 0; i < COALESCER_ENDED_MAX + 10; i++) {
		snprintf(path, sizeof(path), "/run/p%d.sock", i);
		fail_first(f, path, ENOENT, 1, 1, T0);
		coalescer_recovered(&f->c, path, ENOENT, 1, 1, T0 + 1, NULL, NULL, 0);
		f->n_ev = 0; /* the recorder's room: the events are not under test */
	}
	assert_false(coalescer_ended(&f->c, "/run/p0.sock", ENOENT, 1));
	snprintf(path, sizeof(path), "/run/p%d.sock", COALESCER_ENDED_MAX + 9);
	assert_true(coalescer_ended(&f->c, path, ENOENT, 1));
	assert_true(coalescer_ended(&f->c, "/run/p10.sock", ENOENT, 1));
}

static void test_no_still_failing_after_recovery(void **state)
{
	struct fixture *f = *state;

	fail_first(f, "/run/a.sock", ENOENT, 1, 1, T0);
	set_failures(f, "/run/a.sock", ENOENT, 9);
	coalescer_recovered(&f->c, "/run/a.sock", ENOENT, 1, 9, T0 + WINDOW / 2, NULL, NULL, 0);
	tick(f, T0 + WINDOW);
	tick(f, T0 + 5 * WINDOW);
	assert_int_equal(f->n_ev, 2);
	assert_int_equal(count_kind(f, COALESCED_STILL_FAILING), 0);
}

static void test_newer_gen_replaces_open_streak(void **state)
{
	struct fixture *f = *state;
	uint64_t t1 = T0 + 100 * NSEC_PER_SEC;

	fail_first(f, "/run/a.sock", ENOENT, 1, 1, T0);
	/* the old streak ended unseen and a new one began */
	fail_first(f, "/run/a.sock", ENOENT, 2, 60, t1);
	assert_int_equal(f->n_ev, 2);
	assert_int_equal(last(f)->ev.kind, COALESCED_FAILING);
	assert_true(last(f)->ev.mono_ns == t1);
	assert_int_equal(f->c.n_open, 1);
	assert_true(coalescer_next_deadline(&f->c) == t1 + WINDOW);
	/* the old generation cannot end the new streak */
	coalescer_recovered(&f->c, "/run/a.sock", ENOENT, 1, 70, t1 + 1, NULL, NULL, 0);
	assert_int_equal(f->n_ev, 2);
	/* windows and totals count from the new start */
	set_failures(f, "/run/a.sock", ENOENT, 64);
	tick(f, t1 + WINDOW);
	assert_int_equal(last(f)->ev.failures, 5);
	assert_int_equal(last(f)->ev.streak_duration_ms, WINDOW_MS);
	coalescer_recovered(&f->c, "/run/a.sock", ENOENT, 2, 70, t1 + 2 * NSEC_PER_SEC * 20,
			    NULL, NULL, 0);
	assert_int_equal(last(f)->ev.total_failures, 11);
	assert_int_equal(last(f)->ev.streak_duration_ms, 40000);
}

/* ----- independence ----- */

static void test_two_errnos_on_one_path_are_independent(void **state)
{
	struct fixture *f = *state;

	fail_first(f, "/run/a.sock", ENOENT, 1, 1, T0);
	fail_first(f, "/run/a.sock", ECONNREFUSED, 1, 1, T0 + NSEC_PER_SEC);
	assert_int_equal(count_kind(f, COALESCED_FAILING), 2);
	assert_int_equal(f->c.n_open, 2);
	set_failures(f, "/run/a.sock", ENOENT, 10);
	set_failures(f, "/run/a.sock", ECONNREFUSED, 200);

	/* ENOENT's window ends first */
	tick(f, T0 + WINDOW);
	assert_int_equal(f->n_ev, 3);
	assert_int_equal(last(f)->ev.err, ENOENT);
	assert_int_equal(last(f)->ev.failures, 10);
	tick(f, T0 + NSEC_PER_SEC + WINDOW);
	assert_int_equal(f->n_ev, 4);
	assert_int_equal(last(f)->ev.err, ECONNREFUSED);
	assert_int_equal(last(f)->ev.failures, 200);

	/* one errno recovering leaves the other open */
	coalescer_recovered(&f->c, "/run/a.sock", ENOENT, 1, 10, T0 + 40 * NSEC_PER_SEC, NULL,
			    NULL, 0);
	assert_null(coalescer_find(&f->c, "/run/a.sock", ENOENT));
	assert_non_null(coalescer_find(&f->c, "/run/a.sock", ECONNREFUSED));
	assert_int_equal(f->c.n_open, 1);
	assert_true(coalescer_next_deadline(&f->c) == T0 + NSEC_PER_SEC + 2 * WINDOW);
}

static void test_two_paths_are_independent(void **state)
{
	struct fixture *f = *state;

	fail_first(f, "/run/a.sock", ENOENT, 1, 1, T0);
	fail_first(f, "/run/b.sock", ENOENT, 1, 1, T0);
	assert_int_equal(count_kind(f, COALESCED_FAILING), 2);
	set_failures(f, "/run/a.sock", ENOENT, 3);
	set_failures(f, "/run/b.sock", ENOENT, 4000);
	coalescer_recovered(&f->c, "/run/b.sock", ENOENT, 1, 4000, T0 + 1000, NULL, NULL, 0);
	assert_int_equal(last(f)->ev.kind, COALESCED_RECOVERED);
	assert_string_equal(last(f)->ev.path, "/run/b.sock");
	assert_int_equal(last(f)->ev.total_failures, 4000);
	tick(f, T0 + WINDOW);
	assert_int_equal(last(f)->ev.kind, COALESCED_STILL_FAILING);
	assert_string_equal(last(f)->ev.path, "/run/a.sock");
	assert_int_equal(last(f)->ev.failures, 3);
	assert_int_equal(f->n_ev, 4);
}

static void test_streak_keeps_its_own_copy_of_the_path(void **state)
{
	struct fixture *f = *state;
	char path[32] = "/run/a.sock";

	coalescer_failing(&f->c, path, ENOENT, 1, 1, T0, NULL);
	strcpy(path, "/XXXXXXXXXX");
	set_failures(f, "/run/a.sock", ENOENT, 2);
	tick(f, T0 + WINDOW);
	assert_string_equal(last(f)->ev.path, "/run/a.sock");
	assert_non_null(coalescer_find(&f->c, "/run/a.sock", ENOENT));
}

/* ----- deadlines ----- */

static void test_next_deadline(void **state)
{
	struct fixture *f = *state;

	assert_true(coalescer_next_deadline(&f->c) == UINT64_MAX);
	fail_first(f, "/run/a.sock", ENOENT, 1, 1, T0);
	assert_true(coalescer_next_deadline(&f->c) == T0 + WINDOW);
	fail_first(f, "/run/b.sock", ENOENT, 1, 1, T0 - 10 * NSEC_PER_SEC);
	assert_true(coalescer_next_deadline(&f->c) == T0 - 10 * NSEC_PER_SEC + WINDOW);
	fail_first(f, "/run/c.sock", ENOENT, 1, 1, T0 + 10 * NSEC_PER_SEC);
	assert_true(coalescer_next_deadline(&f->c) == T0 - 10 * NSEC_PER_SEC + WINDOW);
	/* after b's window end, a's is next */
	set_failures(f, "/run/b.sock", ENOENT, 2);
	tick(f, T0 - 10 * NSEC_PER_SEC + WINDOW);
	assert_true(coalescer_next_deadline(&f->c) == T0 + WINDOW);
	coalescer_free(&f->c);
	assert_true(coalescer_next_deadline(&f->c) == UINT64_MAX);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_one_failure_emits_exactly_one_failing),
		T(test_failing_without_client_has_zeroed_client),
		T(test_failing_for_open_streak_same_gen_is_ignored),
		T(test_million_failures_in_one_window_one_failing_one_still_failing),
		T(test_still_failing_counts_each_window_separately),
		T(test_counter_not_starting_at_one),
		T(test_no_still_failing_for_a_window_without_failures),
		T(test_failed_read_carries_counts_into_next_window),
		T(test_late_tick_emits_once_and_keeps_windows_aligned),
		T(test_tick_before_window_end_emits_nothing),
		T(test_tick_with_nothing_open_does_nothing),
		T(test_recovered_totals_and_duration),
		T(test_recovered_with_cumulative_counter),
		T(test_recovered_after_a_single_failure_swallowed_none),
		T(test_recovered_how_defaults_to_connect),
		T(test_recovered_how_passes_through),
		T(test_recovered_duration_never_negative),
		T(test_recovered_counter_below_start_counts_one),
		T(test_recovered_with_stale_gen_is_ignored),
		T(test_recovered_unknown_streak_is_ignored),
		T(test_late_report_of_an_ended_streak_changes_nothing),
		T(test_two_failures_across_a_close_are_both_counted),
		T(test_a_failure_on_both_sides_of_a_close_counts_once),
		T(test_start_after_an_unseen_streak_is_the_kernels),
		T(test_ended_memory_is_bounded),
		T(test_no_still_failing_after_recovery),
		T(test_newer_gen_replaces_open_streak),
		T(test_two_errnos_on_one_path_are_independent),
		T(test_two_paths_are_independent),
		T(test_streak_keeps_its_own_copy_of_the_path),
		T(test_next_deadline),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
