/* The state file writer (user/sinks/state_file.c): debounced writes with an injected
 * clock, atomic replacement, the writer's pid, a dead writer's file taken over. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shared/clock.h"
#include "sinks/state_file.h"

static char dir[64], file[128];

static int setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/sw-state-test-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(file, sizeof(file), "%s/sub/state.json", dir);
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static long long written_n(void)
{
	json_t *j = json_load_file(file, 0, NULL);
	long long n = j ? (long long)json_integer_value(json_object_get(j, "n")) : -1;

	json_decref(j);
	return n;
}

static void test_debounce(void **state)
{
	struct state_writer w;
	json_t *doc = json_object();
	int prev = -1;
	uint64_t t = 10 * NSEC_PER_SEC;

	(void)state;
	assert_int_equal(state_writer_open(&w, file, &prev), 0); /* creates sub/ */
	assert_int_equal(prev, 0);
	assert_int_equal(state_next_deadline(&w), UINT64_MAX);   /* nothing to write */
	state_mark_dirty(&w, t);
	json_object_set_new(doc, "n", json_integer(1));
	assert_int_equal(state_write(&w, doc, t, false), 0);      /* first write: at once */
	assert_int_equal(written_n(), 1);
	/* a burst right after: one write, STATE_DEBOUNCE_NS after the last */
	state_mark_dirty(&w, t + 1);
	state_mark_dirty(&w, t + 2);
	assert_int_equal(state_next_deadline(&w), t + STATE_DEBOUNCE_NS);
	json_object_set_new(doc, "n", json_integer(2));
	assert_int_equal(state_write(&w, doc, t + 3, false), 0);
	assert_int_equal(written_n(), 1);                          /* not yet */
	assert_int_equal(state_write(&w, doc, t + STATE_DEBOUNCE_NS, false), 0);
	assert_int_equal(written_n(), 2);
	assert_int_equal(state_next_deadline(&w), UINT64_MAX);
	/* force (a clean stop) writes whatever the debounce says */
	json_object_set_new(doc, "n", json_integer(3));
	assert_int_equal(state_write(&w, doc, t + STATE_DEBOUNCE_NS + 1, true), 0);
	assert_int_equal(written_n(), 3);
	assert_int_equal(w.writes, 3);
	state_writer_close(&w);
	json_decref(doc);
}

static void test_dead_writer_is_taken_over(void **state)
{
	struct state_writer w;
	int prev = 0;
	FILE *f;
	char sub[128];

	(void)state;
	snprintf(sub, sizeof(sub), "%s/sub", dir);
	mkdir(sub, 0755);
	f = fopen(file, "w");
	/* pid 2^22 + 1 is above pid_max's ceiling: no process has it */
	fputs("{\"pid\": 4194305}", f);
	fclose(f);
	assert_int_equal(state_writer_open(&w, file, &prev), 0);
	assert_int_equal(prev, 4194305);
	state_writer_close(&w);
	assert_int_not_equal(state_writer_open(&w, "relative.json", &prev), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_debounce, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dead_writer_is_taken_over, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
