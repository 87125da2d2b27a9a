/*
 * The config file (user/config.c): values, errors that name file, line and
 * key, per-path sections longer than inih's section limit, and flags-free
 * defaults left alone by keys that are absent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "clock.h"
#include "config.h"

static char file[64];

static int load(const char *text, struct agent_options *o, struct path_cfgs *p, char *err)
{
	FILE *f;

	strcpy(file, "/tmp/sw-config-test-XXXXXX");
	close(mkstemp(file));
	f = fopen(file, "w");
	fputs(text, f);
	fclose(f);
	memset(o, 0, sizeof(*o));
	memset(p, 0, sizeof(*p));
	o->window_ns = 30 * NSEC_PER_SEC;
	int rc = config_load(file, true, o, p, err, 512);

	unlink(file);
	return rc;
}

static void test_globals_parse(void **state)
{
	struct agent_options o;
	struct path_cfgs p;
	char err[512] = "";

	(void)state;
	assert_int_equal(load("[agent]\nwindow = 2.5\nguard = no\nheal_delay_ms = 7\n"
			      "flap_max = 9\nwatch = /run/a.sock\nwatch = /run/b.sock\n"
			      "journal = yes\nmode = tracepoint\n", &o, &p, err), 0);
	assert_int_equal(o.window_ns, 2500 * NSEC_PER_MSEC);
	assert_true(o.no_guard);
	assert_int_equal(o.heal_delay_ns, 7 * NSEC_PER_MSEC);
	assert_int_equal(o.flap.max_heals, 9);
	assert_int_equal(o.n_watch, 2);
	assert_string_equal(o.watch[1], "/run/b.sock");
	assert_true(o.journal);
	assert_int_equal(o.mode, MODE_TRACEPOINT);
	for (size_t i = 0; i < o.n_watch; i++)
		free(o.watch[i]);
	free(o.watch);
	path_cfgs_free(&p);
}

static void test_absent_keys_keep_defaults(void **state)
{
	struct agent_options o;
	struct path_cfgs p;
	char err[512];

	(void)state;
	assert_int_equal(load("# nothing but a comment\n[agent]\n", &o, &p, err), 0);
	assert_int_equal(o.window_ns, 30 * NSEC_PER_SEC);
	assert_int_equal(o.n_watch, 0);
}

static void test_error_names_file_line_and_key(void **state)
{
	struct agent_options o;
	struct path_cfgs p;
	char err[512], want[600];

	(void)state;
	assert_int_equal(load("[agent]\n\n; c\nwindow = soon\n", &o, &p, err), -1);
	snprintf(want, sizeof(want), "%s:4: [agent] window: 'soon': expected seconds > 0", file);
	assert_string_equal(err, want);
	assert_int_equal(load("[agent]\nwindoww = 1\n", &o, &p, err), -1);
	assert_non_null(strstr(err, ":2: [agent] windoww: unknown key"));
	assert_int_equal(load("[agent]\nflap_max = 64\n", &o, &p, err), -1);
	assert_non_null(strstr(err, "expected 1..63"));
	assert_int_equal(load("[agent]\nheal_delay_ms = -1\n", &o, &p, err), -1);
}

static void test_long_path_section_is_kept_whole(void **state)
{
	/* 100 bytes: inih alone would cut the section name at 50 */
	const char *path = "/run/a-rather-long-directory-name-for-this/and-another-one-below-it"
			   "/service-socket-name.sock";
	char text[512], err[512];
	struct agent_options o;
	struct path_cfgs p;
	const struct path_cfg *pc;

	(void)state;
	snprintf(text, sizeof(text), "[path %s]\nheal = no\naction = signal\nsignal = SIGUSR2\n"
		 "window = 3\n", path);
	assert_int_equal(load(text, &o, &p, err), 0);
	assert_int_equal(p.n, 1);
	pc = path_cfg_find(&p, path);
	assert_non_null(pc);
	assert_false(pc->heal);
	assert_int_equal(pc->action, ACTION_SIGNAL);
	assert_int_equal(pc->signal, SIGUSR2);
	assert_true(pc->has_window);
	assert_int_equal(pc->window_ns, 3 * NSEC_PER_SEC);
	path_cfgs_free(&p);
}

static void test_exec_is_split_without_a_shell(void **state)
{
	struct agent_options o;
	struct path_cfgs p;
	char err[512];
	const struct path_cfg *pc;

	(void)state;
	assert_int_equal(load("[path /run/x.sock]\naction = exec\n"
			      "exec = /usr/bin/logger -t sw {path};rm  $(pid)\n", &o, &p, err), 0);
	pc = path_cfg_find(&p, "/run/x.sock");
	assert_string_equal(pc->exec_argv[0], "/usr/bin/logger");
	assert_string_equal(pc->exec_argv[3], "{path};rm");
	assert_string_equal(pc->exec_argv[4], "$(pid)");
	assert_null(pc->exec_argv[5]);
	path_cfgs_free(&p);
	assert_int_equal(load("[path /run/x.sock]\naction = exec\n", &o, &p, err), -1);
	assert_non_null(strstr(err, "exec needs an `exec =` key"));
	path_cfgs_free(&p);
}

static void test_value_parsers(void **state)
{
	bool b;
	uint64_t ns;

	(void)state;
	assert_int_equal(config_parse_signal("HUP"), SIGHUP);
	assert_int_equal(config_parse_signal("sigterm"), SIGTERM);
	assert_int_equal(config_parse_signal("10"), 10);
	assert_int_equal(config_parse_signal("0"), 0);
	assert_int_equal(config_parse_signal("HUPP"), 0);
	assert_string_equal(config_signal_name(SIGUSR1), "USR1");
	assert_true(config_parse_bool("On", &b) && b);
	assert_true(config_parse_bool("0", &b) && !b);
	assert_false(config_parse_bool("maybe", &b));
	assert_true(config_parse_seconds("0.001", &ns) && ns == NSEC_PER_MSEC);
	assert_false(config_parse_seconds("0", &ns));
	assert_false(config_parse_seconds("1e9", &ns));
	assert_false(config_parse_seconds("3s", &ns));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_globals_parse),
		cmocka_unit_test(test_absent_keys_keep_defaults),
		cmocka_unit_test(test_error_names_file_line_and_key),
		cmocka_unit_test(test_long_path_section_is_kept_whole),
		cmocka_unit_test(test_exec_is_split_without_a_shell),
		cmocka_unit_test(test_value_parsers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
