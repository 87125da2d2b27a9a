/* The `sockwarden` command line (DESIGN §3). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"

/* The grace between a confirmed loss and a heal; see README "Healing". */
#define HEAL_DELAY_DEFAULT_MS 20
#include "commands.h"
#include "report.h"
#include "shared/clock.h"
#include "shared/config.h"
#include "shared/exitcodes.h"
#include "shared/paths.h"
#include "shared/protocol.h"
#include "sinks/jsonl.h"

static const char usage_text[] =
	"Usage: sockwarden COMMAND [OPTIONS]\n"
	"Watch, heal and report on Unix-domain socket listeners.\n"
	"\n"
	"Commands:\n"
	"  run [OPTIONS]         run the agent in the foreground\n"
	"  status [--json]       what the running agent watches (or its state file)\n"
	"  probe PATH [--json] [--pid PID]  diagnose one socket path (no BPF\n"
	"                        needed), with --pid in PID's mount namespace\n"
	"  doctor [--json]       diagnose every Unix socket on the host, in every\n"
	"                        namespace\n"
	"  report [FILE] [--json]  postmortem timeline per endpoint from an event\n"
	"                        journal (FILE omitted or - = stdin)\n"
	"\n"
	"Options of run:\n"
	"  --watch PATH          watch only PATH (repeatable; default: every listener)\n"
	"  --events FILE         append JSON Lines events to FILE (- = stdout, default)\n"
	"  --events-queue BYTES  what waits for a slow events reader before events are\n"
	"                        dropped and counted (default 4M; 16K..1G)\n"
	"  --mode MODE           auto | fentry | tracepoint (default auto)\n"
	"  --discovery SOURCE    auto | iter | procfs: where listeners are found\n"
	"                        (default auto: the BPF iterator where it loads)\n"
	"  --window SECONDS      connect-failure coalescing window (default 30)\n"
	"  --reconcile SECONDS   reconcile scan interval (default 10)\n"
	"  --any-path            report connect failures on every path, not only known ones\n"
	"  --no-guard            no guard links (only registered servers heal)\n"
	"  --no-redirect         no redirect of a lost path's connects to its guard\n"
	"  --heal-delay MS       grace before healing, in which a bind() of the path\n"
	"                        makes the agent stand down (default 20)\n"
	"  --flap-max N          heals of one path per flap window before the circuit\n"
	"                        opens (default 5)\n"
	"  --flap-window SECONDS the flap guard's window (default 60)\n"
	"  --control PATH        the control socket's path (default\n"
	"                        /run/sockwarden/control.sock; @sockwarden always)\n"
	"  --rebind-timeout SECONDS  how long a registered server has to adopt a\n"
	"                        rebind (default 2)\n"
	"  --config FILE         settings and per-path sections (default\n"
	"                        /etc/sockwarden/sockwarden.conf if it exists);\n"
	"                        flags override the file\n"
	"  --journal             also send events to journald\n"
	"  --state FILE          the state file `status` falls back to (default\n"
	"                        /run/sockwarden/state.json)\n"
	"  --metrics HOST:PORT   serve Prometheus metrics over HTTP\n"
	"  --metrics-file FILE   write Prometheus metrics to FILE (textfile collector)\n"
	"  -v, --verbose         debug messages and libbpf's own messages on stderr\n"
	"\n"
	"Options of probe:\n"
	"  --pid PID             resolve PATH (absolute) in the mount namespace of\n"
	"                        process PID, and connect to the socket there\n"
	"  --timeout MS          the connect test's timeout (default 1000)\n"
	"  --json                print the result as JSON\n"
	"\n"
	"  -h, --help            show this help and exit\n"
	"  -V, --version         show the version and exit\n"
	"\n"
	"Exit status: 0 success (healthy), 1 unhealthy (probe, doctor), 2 usage error,\n"
	"3 environment (no BPF, no privilege, missing kernel feature).\n"
	"\n"
	"See sockwarden(8) and sockwarden.conf(5).\n"
	"Report bugs to: the sockwarden issue tracker; include the output of\n"
	"'sockwarden --version' and 'sockwarden doctor --json'.\n";

static int usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "sockwarden: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nTry 'sockwarden --help' for more information.\n");
	return SW_EXIT_USAGE;
}

/* "65536", "64K", "4M": a byte count inside the sink queue's bounds. */
static int parse_queue_size(const char *s, size_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -1;
	if (*end == 'K' || *end == 'k')
		v <<= 10, end++;
	else if (*end == 'M' || *end == 'm')
		v <<= 20, end++;
	else if (*end == 'G' || *end == 'g')
		v <<= 30, end++;
	if (*end || v < SINK_QUEUE_MIN || v > SINK_QUEUE_LIMIT)
		return -1;
	*out = (size_t)v;
	return 0;
}

static const struct option run_opts[] = {
	{ "watch", required_argument, NULL, 'w' },
	{ "events", required_argument, NULL, 'e' },
	{ "events-queue", required_argument, NULL, 'Q' },
	{ "mode", required_argument, NULL, 'm' },
	{ "discovery", required_argument, NULL, 'd' },
	{ "window", required_argument, NULL, 'W' },
	{ "reconcile", required_argument, NULL, 'r' },
	{ "any-path", no_argument, NULL, 'a' },
	{ "no-guard", no_argument, NULL, 'G' },
	{ "no-redirect", no_argument, NULL, 'R' },
	{ "heal-delay", required_argument, NULL, 'D' },
	{ "flap-max", required_argument, NULL, 'F' },
	{ "flap-window", required_argument, NULL, 'X' },
	{ "control", required_argument, NULL, 'C' },
	{ "rebind-timeout", required_argument, NULL, 'T' },
	{ "config", required_argument, NULL, 'c' },
	{ "journal", no_argument, NULL, 'J' },
	{ "state", required_argument, NULL, 'S' },
	{ "metrics", required_argument, NULL, 'M' },
	{ "metrics-file", required_argument, NULL, 'P' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ 0 },
};

/* What `run` was started with: a reload (SIGHUP) builds its options from the
 * same flags again, over the file as it is now. */
struct run_args {
	int argc;
	char **argv;
	const char *config; /* --config, or NULL: the default file if it exists */
	char cwd[SW_PATH_MAX];
};

static void run_defaults(struct agent_options *o, const struct run_args *ra)
{
	*o = (struct agent_options){
		.events = "-",
		.mode = MODE_AUTO,
		.window_ns = 30 * NSEC_PER_SEC,
		.reconcile_ns = 10 * NSEC_PER_SEC,
		.heal_delay_ns = HEAL_DELAY_DEFAULT_MS * NSEC_PER_MSEC,
		.control_path = CONTROL_PATH_DEFAULT,
		.rebind_timeout_ns = 2 * NSEC_PER_SEC,
		.state_file = STATE_FILE_DEFAULT,
	};
	flap_cfg_default(&o->flap);
	o->config_file = ra->config ? ra->config : CONFIG_PATH_DEFAULT;
}

static void watch_list_free(char ***v)
{
	for (size_t i = 0; *v && (*v)[i]; i++)
		free((*v)[i]);
	free(*v);
}

/* clang-tidy: the analyzer of clang 14 does not model the cleanup attribute
 * (every return frees; LeakSanitizer checks it under make check-asan), nor
 * getopt_long's non-NULL optarg for a required argument.
 * NOLINTBEGIN(clang-analyzer-unix.Malloc,clang-analyzer-core.NonNullParamChecker) */
/* The flags over the options the file set; SW_EXIT_USAGE (said on stderr)
 * on a bad one. --watch flags replace the file's watch list. */
static int run_flags(const struct run_args *ra, struct agent_options *o)
{
	char **flag_watch __attribute__((cleanup(watch_list_free))) =
		calloc((size_t)ra->argc, sizeof(*flag_watch));
	size_t n_flag_watch = 0;
	int c;

	if (!flag_watch)
		return SW_EXIT_ENV;
	optind = 1;
	while ((c = getopt_long(ra->argc, ra->argv, "vh", run_opts, NULL)) != -1) {
		switch (c) {
		case 'w': {
			char norm[SW_PATH_MAX];

			if (!path_join(ra->cwd, optarg, norm, sizeof(norm)))
				return usage_error("--watch %s: cannot make it absolute", optarg);
			if (!path_fits_sun_path(norm))
				return usage_error("--watch %s: longer than the 107 bytes a "
						   "socket path can hold", optarg);
			flag_watch[n_flag_watch++] = strdup(norm);
			break;
		}
		case 'c':
			break;
		case 'J':
			o->journal = true;
			break;
		case 'S':
			o->state_file = optarg;
			break;
		case 'M':
			o->metrics_addr = optarg;
			break;
		case 'P':
			o->metrics_file = optarg;
			break;
		case 'e':
			o->events = optarg;
			break;
		case 'Q':
			if (parse_queue_size(optarg, &o->events_queue))
				return usage_error("--events-queue %s: expected bytes (K or M "
						   "suffix allowed), 16K..1G", optarg);
			break;
		case 'm':
			if (attach_mode_parse(optarg, &o->mode))
				return usage_error("--mode %s: expected auto, fentry or tracepoint",
						   optarg);
			break;
		case 'd':
			if (discovery_mode_parse(optarg, &o->discovery))
				return usage_error("--discovery %s: expected auto, iter or procfs",
						   optarg);
			break;
		case 'W':
			if (!config_parse_seconds(optarg, &o->window_ns))
				return usage_error("--window %s: expected seconds > 0", optarg);
			break;
		case 'r':
			if (!config_parse_seconds(optarg, &o->reconcile_ns))
				return usage_error("--reconcile %s: expected seconds > 0", optarg);
			break;
		case 'a':
			o->any_path = true;
			break;
		case 'G':
			o->no_guard = true;
			break;
		case 'R':
			o->no_redirect = true;
			break;
		case 'D': {
			char *end;
			long ms = strtol(optarg, &end, 10);

			if (*end || end == optarg || ms < 0 || ms > 60000)
				return usage_error("--heal-delay %s: expected milliseconds 0..60000",
						   optarg);
			o->heal_delay_ns = (uint64_t)ms * NSEC_PER_MSEC;
			break;
		}
		case 'F': {
			char *end;
			long n = strtol(optarg, &end, 10);

			if (*end || end == optarg || n < 0 || n > FLAP_MAX_TRACKED - 1)
				return usage_error("--flap-max %s: expected 0..63 heals (0: off)",
						   optarg);
			o->flap.max_heals = (unsigned)n;
			break;
		}
		case 'C': {
			/* the same text at every build: a reload rewrites it unchanged */
			static char control[SW_PATH_MAX];

			if (!path_join(ra->cwd, optarg, control, sizeof(control)) ||
			    !path_fits_sun_path(control))
				return usage_error("--control %s: not a usable socket path", optarg);
			o->control_path = control;
			break;
		}
		case 'T':
			if (!config_parse_seconds(optarg, &o->rebind_timeout_ns))
				return usage_error("--rebind-timeout %s: expected seconds > 0", optarg);
			break;
		case 'X':
			if (!config_parse_seconds(optarg, &o->flap.window_ns))
				return usage_error("--flap-window %s: expected seconds > 0", optarg);
			break;
		case 'v':
			o->verbose = true;
			break;
		default: /* --help included: cmd_run answers it before any of this */
			return SW_EXIT_USAGE;
		}
	}
	if (optind < ra->argc)
		return usage_error("run: unexpected argument '%s'", ra->argv[optind]);
	if (n_flag_watch) {
		for (size_t i = 0; i < o->n_watch; i++)
			free(o->watch[i]);
		free(o->watch);
		o->watch = flag_watch;
		o->n_watch = n_flag_watch;
		flag_watch = NULL;
	}
	return SW_EXIT_OK;
}

/* The defaults, the file, the flags: at start-up and at every reload. */
static int run_build(void *ctx, struct agent_options *o, char *err, size_t errlen)
{
	const struct run_args *ra = ctx;

	run_defaults(o, ra);
	if (config_load(o->config_file, ra->config != NULL, o, &o->paths, err, errlen) != 0)
		return -1;
	if (!ra->config && access(CONFIG_PATH_DEFAULT, F_OK) != 0)
		o->config_file = NULL;
	if (run_flags(ra, o) != SW_EXIT_OK) {
		snprintf(err, errlen, "the command line's flags no longer apply");
		return -1;
	}
	o->rebuild = run_build;
	o->rebuild_ctx = ctx;
	return 0;
}

static int cmd_run(int argc, char **argv)
{
	static struct run_args ra;
	struct agent_options o __attribute__((cleanup(agent_options_release))) = { 0 };
	char err[512];
	int c, rc;

	ra.argc = argc;
	ra.argv = argv;
	if (!getcwd(ra.cwd, sizeof(ra.cwd)))
		return SW_EXIT_ENV;
	/* the file first, the flags over it: find --config before the rest */
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "vh", run_opts, NULL)) != -1) {
		if (c == 'c')
			ra.config = optarg;
		if (c == 'h') { /* --help works whatever the config file holds */
			fputs(usage_text, stdout);
			return SW_EXIT_OK;
		}
	}
	opterr = 1;
	run_defaults(&o, &ra);
	if (config_load(o.config_file, ra.config != NULL, &o, &o.paths, err, sizeof(err)) != 0) {
		fprintf(stderr, "sockwarden: %s\n", err);
		return SW_EXIT_USAGE;
	}
	if (!ra.config && access(CONFIG_PATH_DEFAULT, F_OK) != 0)
		o.config_file = NULL;
	rc = run_flags(&ra, &o);
	if (rc != SW_EXIT_OK)
		return rc;
	o.rebuild = run_build;
	o.rebuild_ctx = &ra;
	/* reloads print nothing of getopt's: the flags were good at start-up */
	opterr = 0;
	rc = agent_run(&o);
	return rc;
}

/* NOLINTEND(clang-analyzer-unix.Malloc,clang-analyzer-core.NonNullParamChecker) */

static int cmd_probe_doctor(int argc, char **argv, bool probe)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "timeout", required_argument, NULL, 't' },
		{ "pid", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	bool json = false;
	int c, timeout_ms = 1000;
	pid_t pid = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 't': {
			char *end;
			long ms;

			/* atoi took "5x" for 5 and overflowed past INT_MAX */
			errno = 0;
			ms = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || ms <= 0 || ms > INT_MAX)
				return usage_error("--timeout %s: expected milliseconds > 0", optarg);
			timeout_ms = (int)ms;
			break;
		}
		case 'p': {
			char *end;
			long v;

			if (!probe)
				return usage_error("%s", "doctor: --pid is an option of probe "
						   "(doctor looks into every namespace)");
			errno = 0;
			v = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || v <= 0 || v > INT_MAX)
				return usage_error("--pid %s: expected a process id > 0", optarg);
			pid = (pid_t)v;
			break;
		}
		case 'h':
			fputs(usage_text, stdout);
			return SW_EXIT_OK;
		default:
			return SW_EXIT_USAGE;
		}
	}
	if (probe) {
		if (optind != argc - 1)
			return usage_error("%s", "probe takes exactly one PATH");
		return probe_main(argv[optind], json, timeout_ms, pid);
	}
	if (optind != argc)
		return usage_error("doctor: unexpected argument '%s'", argv[optind]);
	return doctor_main(json);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage_error("%s", "missing command");
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(usage_text, stdout);
		return SW_EXIT_OK;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
		printf("sockwarden %s\n"
		       "Copyright (C) 2026 the sockwarden authors.\n"
		       "License: MIT <https://opensource.org/licenses/MIT>.\n"
		       "This is free software: you are free to change and redistribute it.\n"
		       "There is NO WARRANTY, to the extent permitted by law.\n",
		       SOCKWARDEN_VERSION);
		return SW_EXIT_OK;
	}
	if (strcmp(argv[1], "run") == 0)
		return cmd_run(argc - 1, argv + 1);
	if (strcmp(argv[1], "status") == 0)
		return status_main(argc - 1, argv + 1);
	if (strcmp(argv[1], "probe") == 0)
		return cmd_probe_doctor(argc - 1, argv + 1, true);
	if (strcmp(argv[1], "doctor") == 0)
		return cmd_probe_doctor(argc - 1, argv + 1, false);
	if (strcmp(argv[1], "report") == 0)
		return report_command(argc - 1, argv + 1);
	return usage_error("unknown command '%s'", argv[1]);
}
