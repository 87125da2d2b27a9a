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
	assert_non_null(strstr(err, "expected 0..63"));
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
	assert_int_equal(load("[agent]\nwindow = soon\nflap_max = 99\nwatch = /run/a.sock\n"
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

/* ----- reloads (config_reload.c) ----- */

/* A stand-in for main.c's builder: defaults, the file, then one "flag"
 * (heal_delay) over it, as `run --heal-delay 0` would. */
struct fake_run {
	char file[64];
	bool flag_heal_delay;
	int builds;
};

static int fake_build(void *ctx, struct agent_options *o, char *err, size_t errlen)
{
	struct fake_run *r = ctx;

	r->builds++;
	memset(o, 0, sizeof(*o));
	o->events = "-";
	o->window_ns = 30 * NSEC_PER_SEC;
	o->heal_delay_ns = 20 * NSEC_PER_MSEC;
	o->control_path = "/run/sockwarden/control.sock";
	flap_cfg_default(&o->flap);
	o->config_file = r->file;
	if (config_load(r->file, true, o, &o->paths, err, errlen) != 0)
		return -1;
	if (r->flag_heal_delay)
		o->heal_delay_ns = 0;
	o->rebuild = fake_build;
	o->rebuild_ctx = ctx;
	return 0;
}

static void fake_write(struct fake_run *r, const char *text)
{
	FILE *f = fopen(r->file, "w");

	fputs(text, f);
	fclose(f);
}

static void fake_start(struct fake_run *r, struct agent_options *o, const char *text)
{
	char err[512] = "";

	strcpy(r->file, "/tmp/sw-reload-test-XXXXXX");
	close(mkstemp(r->file));
	fake_write(r, text);
	assert_int_equal(fake_build(r, o, err, sizeof(err)), 0);
}

struct told {
	char keys[16][48];
	int n;
};

static void tell(const char *key, void *ctx)
{
	struct told *t = ctx;

	assert_true(t->n < 16);
	snprintf(t->keys[t->n++], sizeof(t->keys[0]), "%s", key);
}

static bool was_told(const struct told *t, const char *key)
{
	for (int i = 0; i < t->n; i++)
		if (strcmp(t->keys[i], key) == 0)
			return true;
	return false;
}

static void release(struct agent_options *o)
{
	agent_options_release(o);
	free(o);
}

static void test_reload_bad_file_keeps_the_running_options(void **state)
{
	struct fake_run r = { 0 };
	struct agent_options run, *next = NULL;
	struct told t = { 0 };
	char err[512] = "", want[128];

	(void)state;
	fake_start(&r, &run, "[agent]\nwindow = 5\n[path /run/a.sock]\nheal = no\n");
	fake_write(&r, "[agent]\nwindow = 7\n[path /run/a.sock]\nheal = sometimes\n");
	assert_int_equal(config_reload(&run, &next, tell, &t, err, sizeof(err)), -1);
	assert_null(next);
	snprintf(want, sizeof(want), "%s:4: [path /run/a.sock] heal: 'sometimes'", r.file);
	assert_non_null(strstr(err, want));
	assert_int_equal(t.n, 0);
	/* the running options are as they were */
	assert_int_equal(run.window_ns, 5 * NSEC_PER_SEC);
	assert_int_equal(run.paths.n, 1);
	assert_false(path_cfg_find(&run.paths, "/run/a.sock")->heal);
	/* an unknown key is refused the same way, with its line */
	fake_write(&r, "[agent]\n\nnot_a_key = 1\n");
	assert_int_equal(config_reload(&run, &next, tell, &t, err, sizeof(err)), -1);
	assert_null(next);
	snprintf(want, sizeof(want), "%s:3: [agent] not_a_key: unknown key", r.file);
	assert_non_null(strstr(err, want));
	/* a file that went away is an error too: --config named it */
	unlink(r.file);
	assert_int_equal(config_reload(&run, &next, tell, &t, err, sizeof(err)), -1);
	assert_null(next);
	assert_non_null(strstr(err, r.file));
	agent_options_release(&run);
}

static void test_reload_builds_new_options_with_flags_over_the_file(void **state)
{
	struct fake_run r = { .flag_heal_delay = true };
	struct agent_options run, *next = NULL;
	struct told t = { 0 };
	char err[512] = "";
	const struct path_cfg *pc;

	(void)state;
	fake_start(&r, &run, "[agent]\nheal_delay_ms = 500\nwatch = /run/a.sock\n");
	assert_int_equal(run.heal_delay_ns, 0);
	fake_write(&r, "[agent]\nheal_delay_ms = 900\nwindow = 2\nflap_max = 3\n"
		       "watch = /run/a.sock\nwatch = /run/b.sock\n"
		       "[path /run/b.sock]\nheal = no\nflap_window = 4\n");
	assert_int_equal(config_reload(&run, &next, tell, &t, err, sizeof(err)), 0);
	assert_non_null(next);
	assert_int_equal(r.builds, 2);
	assert_int_equal(t.n, 0);
	/* the flag still wins over the file, as at start-up */
	assert_int_equal(next->heal_delay_ns, 0);
	assert_int_equal(next->window_ns, 2 * NSEC_PER_SEC);
	assert_int_equal(next->flap.max_heals, 3);
	assert_int_equal(next->n_watch, 2);
	assert_string_equal(next->watch[1], "/run/b.sock");
	pc = path_cfg_find(&next->paths, "/run/b.sock");
	assert_non_null(pc);
	assert_false(pc->heal);
	assert_int_equal(path_cfg_flap(pc, &next->flap).window_ns, 4 * NSEC_PER_SEC);
	assert_int_equal(path_cfg_flap(pc, &next->flap).max_heals, 3);
	/* the next reload can build again */
	assert_ptr_equal(next->rebuild, fake_build);
	/* the old options are apart: the running ones did not move */
	assert_int_equal(run.window_ns, 30 * NSEC_PER_SEC);
	assert_int_equal(run.n_watch, 1);
	agent_options_release(&run);
	release(next);
	unlink(r.file);
}

static void test_reload_keeps_what_needs_a_restart(void **state)
{
	struct fake_run r = { 0 };
	struct agent_options *run = calloc(1, sizeof(*run)), *next = NULL;
	struct told t = { 0 };
	char err[512] = "";

	(void)state;
	fake_start(&r, run, "[agent]\nmode = fentry\nmetrics = 127.0.0.1:9477\n"
		       "control = /run/sw/a.sock\nstate = /run/sw/state.json\n"
		       "control_max_connections = 10\nwatch = /run/a.sock\n");
	fake_write(&r, "[agent]\nmode = tracepoint\ndiscovery = procfs\n"
		       "metrics = 127.0.0.1:9999\ncontrol = /run/sw/b.sock\n"
		       "state = /run/sw/state.json\nguard = no\njournal = yes\n"
		       "control_max_connections = 20\nwindow = 3\n");
	assert_int_equal(config_reload(run, &next, tell, &t, err, sizeof(err)), 0);
	assert_true(was_told(&t, "mode"));
	assert_true(was_told(&t, "discovery"));
	assert_true(was_told(&t, "metrics"));
	assert_true(was_told(&t, "control"));
	assert_true(was_told(&t, "guard"));
	assert_true(was_told(&t, "journal"));
	assert_true(was_told(&t, "control_max_connections"));
	/* no watch list is host-wide: a restart's choice, the list stays */
	assert_true(was_told(&t, "watch"));
	/* what did not change is not told */
	assert_false(was_told(&t, "state"));
	assert_false(was_told(&t, "window"));
	assert_int_equal(t.n, 8);
	/* the rest applies */
	assert_int_equal(next->window_ns, 3 * NSEC_PER_SEC);
	/* the running ones freed first: what was kept is the new options' own */
	release(run);
	assert_int_equal(next->mode, MODE_FENTRY);
	assert_int_equal(next->discovery, DISCOVERY_AUTO);
	assert_string_equal(next->metrics_addr, "127.0.0.1:9477");
	assert_string_equal(next->control_path, "/run/sw/a.sock");
	assert_string_equal(next->state_file, "/run/sw/state.json");
	assert_false(next->no_guard);
	assert_false(next->journal);
	assert_int_equal(next->control_limits.max_connections, 10);
	assert_int_equal(next->n_watch, 1);
	assert_string_equal(next->watch[0], "/run/a.sock");
	release(next);
	unlink(r.file);
}

static void test_reload_without_a_builder_fails(void **state)
{
	struct agent_options run = { 0 }, *next = NULL;
	char err[512] = "";

	(void)state;
	assert_int_equal(config_reload(&run, &next, NULL, NULL, err, sizeof(err)), -1);
	assert_null(next);
	assert_true(err[0] != 0);
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
		cmocka_unit_test(test_reload_bad_file_keeps_the_running_options),
		cmocka_unit_test(test_reload_builds_new_options_with_flags_over_the_file),
		cmocka_unit_test(test_reload_keeps_what_needs_a_restart),
		cmocka_unit_test(test_reload_without_a_builder_fails),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
