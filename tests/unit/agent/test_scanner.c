/*
 * Unit tests for user/agent/scanner.c: the reconcile scan's worker thread and its
 * hand-over to the loop, and discovery's owner map look-up.
 *
 * The gathering is a stand-in that blocks until the test lets it go, so each
 * state (asked, under way, finished and waiting, taken) is reached by an
 * event, never by a sleep: the loop must never be able to ask for a second
 * scan while one is under way or waiting, must learn of a finished one
 * through the eventfd alone, and a stop must join a thread mid-scan.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <poll.h>
#include <semaphore.h>

#include "agent/scanner.h"

struct gate {
	sem_t entered;  /* posted when a gather begins */
	sem_t release;  /* the gather returns once this is posted */
	int gathers;
};

static void gated_gather(struct scan_result *out, void *ctx)
{
	struct gate *g = ctx;

	memset(out, 0, sizeof(*out));
	g->gathers++;
	out->n_listeners = (size_t)g->gathers; /* tells the results apart */
	sem_post(&g->entered);
	sem_wait(&g->release);
}

static void gate_init(struct gate *g)
{
	memset(g, 0, sizeof(*g));
	sem_init(&g->entered, 0, 0);
	sem_init(&g->release, 0, 0);
}

/* Waits (no timeout: the event must come) until the loop's fd is readable. */
static void wait_readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	assert_int_equal(poll(&p, 1, -1), 1);
}

static bool readable_now(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, 0) == 1;
}

static void take_and_free(struct scanner *s, size_t want_listeners)
{
	struct scan_result *r = scanner_take(s);

	assert_non_null(r);
	assert_int_equal(r->n_listeners, want_listeners);
	scan_result_free(r);
	free(r);
}

static void test_one_scan_at_a_time_and_handed_over_through_the_fd(void **state)
{
	struct scanner s;
	struct gate g;
	uint64_t since = 0;

	(void)state;
	gate_init(&g);
	assert_int_equal(scanner_start(&s, gated_gather, &g), 0);
	assert_false(scanner_busy(&s, &since));
	assert_null(scanner_take(&s));
	assert_false(readable_now(scanner_fd(&s)));

	assert_true(scanner_request(&s));
	sem_wait(&g.entered);
	assert_true(scanner_busy(&s, &since));
	assert_true(since > 0);
	/* under way: a second request is refused, nothing to take yet */
	assert_false(scanner_request(&s));
	assert_false(readable_now(scanner_fd(&s)));
	assert_null(scanner_take(&s));

	sem_post(&g.release);
	wait_readable(scanner_fd(&s));
	/* finished, not taken: still no second scan */
	assert_false(scanner_request(&s));
	take_and_free(&s, 1);
	assert_false(readable_now(scanner_fd(&s)));
	assert_false(scanner_busy(&s, NULL));

	/* taken: the next request starts the next scan */
	assert_true(scanner_request(&s));
	sem_wait(&g.entered);
	sem_post(&g.release);
	wait_readable(scanner_fd(&s));
	take_and_free(&s, 2);
	assert_int_equal(g.gathers, 2);
	scanner_stop(&s);
}

static void test_result_carries_the_start_status_showed(void **state)
{
	struct scanner s;
	struct gate g;
	struct scan_result *r;
	uint64_t since = 0;

	(void)state;
	gate_init(&g);
	assert_int_equal(scanner_start(&s, gated_gather, &g), 0);
	assert_true(scanner_request(&s));
	sem_wait(&g.entered);
	assert_true(scanner_busy(&s, &since));
	sem_post(&g.release);
	wait_readable(scanner_fd(&s));
	r = scanner_take(&s);
	assert_non_null(r);
	/* status ties "a scan is under way since T" to the result it yields */
	assert_int_equal(r->started_ns, since);
	assert_true(r->ended_ns == 0 || r->ended_ns >= since);
	scan_result_free(r);
	free(r);
	scanner_stop(&s);
}

static void test_stop_joins_a_scan_under_way_and_frees_an_untaken_result(void **state)
{
	struct scanner s;
	struct gate g;

	(void)state;
	gate_init(&g);
	assert_int_equal(scanner_start(&s, gated_gather, &g), 0);
	assert_true(scanner_request(&s));
	sem_wait(&g.entered);
	/* the gather finishes once let go; stop waits for it and frees its
	 * result, which nobody took (LeakSanitizer checks under check-asan) */
	sem_post(&g.release);
	scanner_stop(&s);
	assert_false(scanner_request(&s));
	assert_null(scanner_take(&s));
}

static void test_stop_of_an_idle_scanner(void **state)
{
	struct scanner s;
	struct gate g;

	(void)state;
	gate_init(&g);
	assert_int_equal(scanner_start(&s, gated_gather, &g), 0);
	scanner_stop(&s);
	assert_int_equal(g.gathers, 0);
	/* a scanner never started (the agent failed earlier) stops as a no-op */
	memset(&s, 0, sizeof(s));
	scanner_stop(&s);
}

/* ----- owner_map_find: the owners of one socket in a sorted map ----- */

static struct owner_entry entry(uint64_t ino, pid_t pid)
{
	struct owner_entry e = { .sock_ino = ino };

	e.o.pid = pid;
	return e;
}

static void test_owner_map_find_returns_the_whole_run(void **state)
{
	struct owner_entry v[] = { entry(10, 1), entry(20, 5), entry(20, 7), entry(20, 9),
				   entry(30, 2) };
	struct owner_map m = { .v = v, .n = 5, .cap = 5 };
	const struct owner_entry *e;
	size_t n;

	(void)state;
	e = owner_map_find(&m, 20, &n);
	assert_non_null(e);
	assert_int_equal(n, 3);
	assert_int_equal(e[0].o.pid, 5);
	assert_int_equal(e[2].o.pid, 9);
	e = owner_map_find(&m, 10, &n);
	assert_int_equal(n, 1);
	assert_int_equal(e->o.pid, 1);
	e = owner_map_find(&m, 30, &n);
	assert_int_equal(n, 1);
	assert_int_equal(e->o.pid, 2);
}

static void test_owner_map_find_misses(void **state)
{
	struct owner_entry v[] = { entry(10, 1), entry(30, 2) };
	struct owner_map m = { .v = v, .n = 2, .cap = 2 }, empty = {0};
	size_t n = 99;

	(void)state;
	assert_null(owner_map_find(&m, 20, &n));
	assert_int_equal(n, 0);
	assert_null(owner_map_find(&m, 5, &n));
	assert_null(owner_map_find(&m, 31, &n));
	assert_null(owner_map_find(&empty, 10, &n));
	assert_int_equal(n, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_scan_at_a_time_and_handed_over_through_the_fd),
		cmocka_unit_test(test_result_carries_the_start_status_showed),
		cmocka_unit_test(test_stop_joins_a_scan_under_way_and_frees_an_untaken_result),
		cmocka_unit_test(test_stop_of_an_idle_scanner),
		cmocka_unit_test(test_owner_map_find_returns_the_whole_run),
		cmocka_unit_test(test_owner_map_find_misses),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
