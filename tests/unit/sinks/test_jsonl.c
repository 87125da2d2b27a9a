/*
 * Unit tests for user/sinks/jsonl.c's bounded line queue: the JSON Lines sink that
 * never blocks the event loop (DESIGN §2 "Never blocked by a consumer").
 * A real non-blocking pipe stands in for a stalled reader; the test reads it
 * when it chooses, so nothing waits on time.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sinks/jsonl.h"

#define LINE_LEN 100
#define QMAX 1000

struct fixture {
	int rd, wr;
	size_t pipe_size;
	struct line_queue q;
};

static int setup(void **state)
{
	static struct fixture f;
	int p[2];

	memset(&f, 0, sizeof(f));
	if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0)
		return -1;
	f.rd = p[0];
	f.wr = p[1];
	/* the smallest pipe the kernel gives: a page */
	f.pipe_size = (size_t)fcntl(f.wr, F_SETPIPE_SZ, 4096);
	line_queue_init(&f.q, QMAX);
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	close(f->rd);
	if (f->wr >= 0)
		close(f->wr);
	line_queue_free(&f->q);
	return 0;
}

/* Line n: exactly LINE_LEN bytes, newline included. */
static void line(char *buf, unsigned n)
{
	memset(buf, 'x', LINE_LEN);
	snprintf(buf, LINE_LEN, "{\"n\":%06u}", n);
	buf[strlen(buf)] = 'x';
	buf[LINE_LEN - 1] = '\n';
}

/* As the agent does: push, then write what the pipe takes. */
static bool push(struct fixture *f, unsigned n)
{
	char buf[LINE_LEN];
	bool ok;

	line(buf, n);
	ok = line_queue_push(&f->q, buf, LINE_LEN);
	assert_true(line_queue_flush(&f->q, f->wr) >= 0);
	return ok;
}

/* Reads everything in the pipe; returns the line numbers in order, checking
 * every line is whole. "LOST" lines read as 999999. */
static size_t read_lines(struct fixture *f, unsigned *out, size_t max)
{
	static char buf[1 << 16];
	size_t len = 0, n = 0;
	ssize_t r;

	while ((r = read(f->rd, buf + len, sizeof(buf) - len)) > 0)
		len += (size_t)r;
	for (size_t off = 0; off < len;) {
		char *nl = memchr(buf + off, '\n', len - off);
		unsigned v;

		assert_non_null(nl); /* never half a line */
		if (strncmp(buf + off, "LOST", 4) == 0)
			v = 999999;
		else
			assert_int_equal(sscanf(buf + off, "{\"n\":%u}", &v), 1);
		assert_true(n < max);
		out[n++] = v;
		off = (size_t)(nl - buf) + 1;
	}
	return n;
}

static void test_lines_pass_through(void **state)
{
	struct fixture *f = *state;
	unsigned got[64];

	for (unsigned i = 0; i < 20; i++)
		assert_true(push(f, i));
	assert_int_equal(read_lines(f, got, 64), 20);
	for (unsigned i = 0; i < 20; i++)
		assert_int_equal(got[i], i);
	assert_int_equal(f->q.dropped_total, 0);
	assert_int_equal(line_queue_gap_ready(&f->q), 0);
}

static void test_overflow_opens_a_gap_reported_in_place(void **state)
{
	struct fixture *f = *state;
	unsigned got[256], n = 0, first_dropped;
	size_t k;

	/* the reader stalls: the pipe fills, then the queue, then lines drop */
	while (push(f, n))
		n++;
	first_dropped = n++;
	assert_int_equal(first_dropped, f->pipe_size / LINE_LEN + QMAX / LINE_LEN);
	assert_true(f->q.gap);
	/* a gap stays open: later lines drop too, even a short one that would fit */
	assert_false(line_queue_push(&f->q, "{\"n\":1}\n", 8));
	for (int i = 0; i < 5; i++)
		assert_false(push(f, n++));
	assert_int_equal(f->q.dropped, 7);
	/* not reportable while the consumer has not made room */
	assert_int_equal(line_queue_gap_ready(&f->q), 0);

	/* the reader reads again: the queue drains, the gap can be closed */
	k = read_lines(f, got, 256);
	assert_int_equal(line_queue_flush(&f->q, f->wr), 0);
	assert_int_equal(line_queue_gap_ready(&f->q), 7);
	assert_true(line_queue_close_gap(&f->q, "LOST\n", 5));
	assert_int_equal(f->q.dropped, 0);
	assert_int_equal(f->q.dropped_total, 7);
	assert_true(push(f, 500));
	k += read_lines(f, got + k, 256 - k);
	/* what was queued, the report, what came after: in that order, whole */
	assert_int_equal(k, first_dropped + 2);
	for (unsigned i = 0; i < first_dropped; i++)
		assert_int_equal(got[i], i);
	assert_int_equal(got[first_dropped], 999999);
	assert_int_equal(got[first_dropped + 1], 500);
}

static void test_line_larger_than_queue_dropped(void **state)
{
	struct fixture *f = *state;
	static char big[QMAX + 1];

	memset(big, 'x', sizeof(big));
	big[QMAX] = '\n';
	assert_false(line_queue_push(&f->q, big, sizeof(big)));
	assert_int_equal(f->q.dropped_total, 1);
	assert_int_equal(f->q.len - f->q.off, 0);
	assert_int_equal(line_queue_gap_ready(&f->q), 1);
}

static void test_reader_gone_is_broken(void **state)
{
	struct fixture *f = *state;

	signal(SIGPIPE, SIG_IGN);
	close(f->rd);
	f->rd = open("/dev/null", O_RDONLY);
	assert_true(line_queue_push(&f->q, "{}\n", 3));
	assert_int_equal(line_queue_flush(&f->q, f->wr), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_lines_pass_through, setup, teardown),
		cmocka_unit_test_setup_teardown(test_overflow_opens_a_gap_reported_in_place, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_line_larger_than_queue_dropped, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_reader_gone_is_broken, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
