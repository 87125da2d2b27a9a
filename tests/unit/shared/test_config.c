/*
 * The config file (user/shared/config.c): values, errors that name file, line and
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

#include "shared/clock.h"
#include "shared/config.h"

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

/* Frees what a load allocated, whether it succeeded or not. */
static void unload(struct agent_options *o, struct path_cfgs *p)
{
	for (size_t i = 0; i < o->n_watch; i++)
		free(o->watch[i]);
	free(o->watch);
	path_cfgs_free(p);
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

/* inih reads on after a handler's error: the error names the first bad
 * line, and the lines after it change nothing. */
static void test_first_error_stands(void **state)
{
	struct agent_options o;
	struct path_cfgs p;
	char err[512];

	(void)state;
	assert_int_equal(load("[agent]\nwindow = soon\nflap_max = 0\nwatch = /run/a.sock\n"
			      "[path /run/b.sock]\nheal = no\n", &o, &p, err), -1);
	assert_non_null(strstr(err, ":2: [agent] window: 'soon'"));
	assert_int_equal(o.n_watch, 0);
	assert_int_equal(p.n, 0);
	unload(&o, &p);
}

/* An exec line with too many arguments, then another exec line: the first
 * one's arguments must not be left behind to be freed again (they were:
 * a double free). */
static void test_rejected_exec_leaves_nothing_behind(void **state)
{
	char text[512], err[512];
	struct agent_options o;
	struct path_cfgs p;
	int n;

	(void)state;
	n = snprintf(text, sizeof(text), "[path /run/x.sock]\naction = exec\nexec = /bin/echo");
	for (int i = 0; i < CONFIG_EXEC_ARGS_MAX; i++)
		n += snprintf(text + n, sizeof(text) - (size_t)n, " a%d", i);
	snprintf(text + n, sizeof(text) - (size_t)n, "\nexec = /bin/true\n");
	assert_int_equal(load(text, &o, &p, err), -1);
	assert_non_null(strstr(err, ":3: [path /run/x.sock] exec:"));
	assert_int_equal(p.n, 1);
	assert_null(p.v[0].exec_argv[0]);
	unload(&o, &p);

	/* a relative program is refused the same way */
	assert_int_equal(load("[path /run/x.sock]\nexec = bin/echo hi\n", &o, &p, err), -1);
	assert_null(p.v[0].exec_argv[0]);
	unload(&o, &p);
}

/* Repeated string keys: the last one wins, and the copies are the config's
 * to free (LeakSanitizer checks that under make check-asan). */
static void test_string_keys_repeat(void **state)
{
	struct agent_options o;
	struct path_cfgs p;
	char err[512];

	(void)state;
	assert_int_equal(load("[agent]\nevents = /var/log/a.jsonl\nevents = /var/log/b.jsonl\n"
			      "state = /run/s.json\nmetrics = 127.0.0.1:9477\n"
			      "metrics_file = /var/lib/sw.prom\ncontrol = /run/sw//c.sock\n",
			      &o, &p, err), 0);
	assert_string_equal(o.events, "/var/log/b.jsonl");
	assert_string_equal(o.state_file, "/run/s.json");
	assert_string_equal(o.metrics_addr, "127.0.0.1:9477");
	assert_string_equal(o.metrics_file, "/var/lib/sw.prom");
	assert_string_equal(o.control_path, "/run/sw/c.sock");
	unload(&o, &p);
	assert_null(p.strings);
}

/* A section name ends at its first ']', as inih ends it: the keys belong
 * to that path, not to one with the rest of the line in its name. */
static void test_section_ends_at_first_bracket(void **state)
{
	struct agent_options o;
	struct path_cfgs p;
	char err[512];

	(void)state;
	assert_int_equal(load("[path /run/a.sock] x]\nheal = no\n", &o, &p, err), 0);
	assert_int_equal(p.n, 1);
	assert_string_equal(p.v[0].path, "/run/a.sock");
	assert_false(p.v[0].heal);
	unload(&o, &p);
}

/* config_load_stream: the same parser from memory, named as told. */
static void test_load_from_a_stream(void **state)
{
	static char text[] = "[agent]\nwindow = 4\n[path /run/m.sock]\nsignal = TERM\n"
			     "action = signal\n";
	static char bad[] = "[agent]\nguard = perhaps\n";
	struct agent_options o = { 0 };
	struct path_cfgs p = { 0 };
	char err[512];
	FILE *f;

	(void)state;
	f = fmemopen(text, strlen(text), "r");
	assert_non_null(f);
	assert_int_equal(config_load_stream(f, "mem", &o, &p, err, sizeof(err)), 0);
	fclose(f);
	assert_int_equal(o.window_ns, 4 * NSEC_PER_SEC);
	assert_int_equal(path_cfg_find(&p, "/run/m.sock")->signal, SIGTERM);
	unload(&o, &p);
	f = fmemopen(bad, strlen(bad), "r");
	assert_non_null(f);
	assert_int_equal(config_load_stream(f, "mem", &o, &p, err, sizeof(err)), -1);
	fclose(f);
	assert_string_equal(err, "mem:2: [agent] guard: 'perhaps': expected yes or no");
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
	unload(&o, &p);
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

/* The control server's limits: values kept, bad ones refused by name. */
static void test_control_limits(void **state)
{
	struct agent_options o;
	struct path_cfgs p;
	char err[512];

	(void)state;
	assert_int_equal(load("[agent]\ncontrol_max_connections = 50\n"
			      "control_max_registrations = 500\n"
			      "control_max_registrations_per_connection = 5\n"
			      "control_idle_timeout = 2.5\n", &o, &p, err), 0);
	assert_int_equal(o.control_limits.max_connections, 50);
	assert_int_equal(o.control_limits.max_registrations, 500);
	assert_int_equal(o.control_limits.max_registrations_per_connection, 5);
	assert_int_equal(o.control_limits.idle_timeout_ns, 2500 * NSEC_PER_MSEC);
	unload(&o, &p);
	assert_int_equal(load("[agent]\ncontrol_max_connections = 0\n", &o, &p, err), -1);
	assert_non_null(strstr(err, "control_max_connections"));
	unload(&o, &p);
	assert_int_equal(load("[agent]\ncontrol_max_registrations = -3\n", &o, &p, err), -1);
	unload(&o, &p);
	assert_int_equal(load("[agent]\ncontrol_idle_timeout = never\n", &o, &p, err), -1);
	assert_non_null(strstr(err, "control_idle_timeout"));
	unload(&o, &p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_control_limits),
		cmocka_unit_test(test_globals_parse),
		cmocka_unit_test(test_absent_keys_keep_defaults),
		cmocka_unit_test(test_error_names_file_line_and_key),
		cmocka_unit_test(test_first_error_stands),
		cmocka_unit_test(test_rejected_exec_leaves_nothing_behind),
		cmocka_unit_test(test_string_keys_repeat),
		cmocka_unit_test(test_section_ends_at_first_bracket),
		cmocka_unit_test(test_load_from_a_stream),
		cmocka_unit_test(test_long_path_section_is_kept_whole),
		cmocka_unit_test(test_exec_is_split_without_a_shell),
		cmocka_unit_test(test_value_parsers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
