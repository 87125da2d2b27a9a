/* Action argument expansion (user/agent/actions.c): placeholders are replaced
 * inside one argument and never split it, whatever the values hold. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/actions.h"

static void expect(const char *arg, const char *want)
{
	char *got = actions_expand(arg, "/run/a b;c.sock", "42", "app.service");

	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
}

static void test_placeholders(void **state)
{
	(void)state;
	expect("{path}", "/run/a b;c.sock");
	expect("--pid={pid}", "--pid=42");
	expect("{unit}:{pid}:{path}", "app.service:42:/run/a b;c.sock");
	expect("{pid}{pid}", "4242");
	expect("plain", "plain");
	expect("{nope} {pid", "{nope} {pid");
	expect("", "");
}

static void test_overflow_is_refused(void **state)
{
	char big[5000];

	(void)state;
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	assert_null(actions_expand(big, "", "", ""));
}

static void test_unit_of_self(void **state)
{
	char unit[256];

	(void)state;
	/* whatever this process runs under, the answer is a unit name or "" */
	actions_unit_of(getpid(), unit, sizeof(unit));
	assert_true(unit[0] == 0 || strstr(unit, ".service") || strstr(unit, ".scope") ||
		    strstr(unit, ".socket"));
	assert_false(actions_unit_of(-1, unit, sizeof(unit)));
	assert_string_equal(unit, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_placeholders),
		cmocka_unit_test(test_overflow_is_refused),
		cmocka_unit_test(test_unit_of_self),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
