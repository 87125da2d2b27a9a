/*
 * `sockwarden status` (DESIGN §3): asks the running agent over its control
 * socket for the status document and prints it; when no agent answers, reads
 * the state file the agent keeps and says how old it is. A client of the
 * agent: it shares the protocol's constants (shared/protocol.h) and nothing
 * of the daemon's code.
 */
#include "commands.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "shared/clock.h"
#include "shared/discovery.h"
#include "shared/exitcodes.h"
#include "shared/paths.h"
#include "shared/protocol.h"

/* ----- `sockwarden status` ----- */

static const char status_usage[] =
	"Usage: sockwarden status [--json] [--state FILE] [--control PATH]\n"
	"Show what the running agent watches: mode, endpoints with owner, state,\n"
	"open connect-failure streaks, flap-guard circuits, last errors, counters.\n"
	"Asks the agent over its control socket; when no agent answers, reads its\n"
	"state file (default " STATE_FILE_DEFAULT ") and says how old it is.\n"
	"\n"
	"  --json           the status document as JSON\n"
	"  --state FILE     the state file to fall back to\n"
	"  --control PATH   ask the agent at this control socket path\n"
	"  -h, --help       show this help and exit\n";

static int connect_control(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	socklen_t len;
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	/* the abstract name first: it survives any unlink */
	memcpy(sa.sun_path + 1, CONTROL_ABSTRACT_NAME, strlen(CONTROL_ABSTRACT_NAME));
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
			  strlen(CONTROL_ABSTRACT_NAME));
	if (connect(fd, (struct sockaddr *)&sa, len) == 0)
		return fd;
	if (path && path_fits_sun_path(path)) {
		memset(sa.sun_path, 0, sizeof(sa.sun_path));
		memcpy(sa.sun_path, path, strlen(path));
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
	}
	close(fd);
	return -1;
}

/* The live document: {"op":"status"} out, {"op":"status","size":N} + a memfd back. */
static json_t *status_live(const char *control, char *err, size_t errlen)
{
	static const char req[] = "{\"op\":\"status\"}";
	char buf[CONTROL_MSG_MAX + 1];
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cm;
	struct iovec iov = { .iov_base = buf, .iov_len = CONTROL_MSG_MAX };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b,
			     .msg_controllen = sizeof(cm.b) };
	struct pollfd pfd;
	json_t *reply, *doc = NULL;
	int fd = connect_control(control), dfd = -1;
	ssize_t n;

	if (fd < 0) {
		snprintf(err, errlen, "no agent answers on @%s or %s", CONTROL_ABSTRACT_NAME,
			 control);
		return NULL;
	}
	pfd = (struct pollfd){ .fd = fd, .events = POLLIN };
	if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) < 0 || poll(&pfd, 1, 5000) != 1 ||
	    (n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC)) <= 0) {
		snprintf(err, errlen, "the agent did not answer the status request in 5 s");
		close(fd);
		return NULL;
	}
	close(fd);
	buf[n] = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
			memcpy(&dfd, CMSG_DATA(c), sizeof(int));
	reply = json_loads(buf, 0, NULL);
	if (dfd >= 0) {
		FILE *f = fdopen(dfd, "r");

		doc = f ? json_loadf(f, 0, NULL) : NULL;
		if (f)
			fclose(f);
		else
			close(dfd);
	}
	if (!doc) {
		const char *reason = json_string_value(json_object_get(reply, "reason"));

		snprintf(err, errlen, "the agent refused the status request: %s",
			 reason ? reason : "no document came back");
	}
	json_decref(reply);
	return doc;
}

static const char *jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s ? s : "";
}

static long long jint(json_t *o, const char *k)
{
	return (long long)json_integer_value(json_object_get(o, k));
}

/* An endpoint outside the agent's own mount namespace: which one, and the
 * container or unit its holder's cgroup names. */
static void print_namespace(json_t *doc, json_t *e)
{
	json_t *c = json_object_get(e, "container");

	if (jint(e, "mntns") == jint(doc, "mntns") || !jint(e, "mntns"))
		return;
	printf("  (namespace mnt:[%lld]", jint(e, "mntns"));
	if (c)
		printf(", container %.12s %s", jstr(c, "id"), jstr(c, "runtime"));
	else if (json_object_get(e, "unit"))
		printf(", unit %s", jstr(e, "unit"));
	printf(")");
}

static void print_duration(double s)
{
	if (s < 60)
		printf("%.1fs", s);
	else if (s < 3600)
		printf("%dm%02ds", (int)s / 60, (int)s % 60);
	else
		printf("%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
}

static void print_human(json_t *doc, const char *source)
{
	json_t *eps = json_object_get(doc, "endpoints"), *cnt = json_object_get(doc, "counters");
	json_t *e;
	size_t i;

	printf("sockwarden %s, pid %lld, mode %s", jstr(doc, "version"), jint(doc, "pid"),
	       jstr(doc, "mode"));
	if (*jstr(doc, "mode_reason"))
		printf(" (%s)", jstr(doc, "mode_reason"));
	if (*jstr(doc, "discovery"))
		printf(", discovery %s (%s)", jstr(doc, "discovery"), jstr(doc, "discovery_reason"));
	printf("\nstarted %s, up ", jstr(doc, "started"));
	print_duration(json_number_value(json_object_get(doc, "uptime_s")));
	printf("; %s\n", source);
	printf("guards %s, heal delay %lld ms, ",
	       json_is_true(json_object_get(doc, "guards")) ? "on" : "off",
	       jint(doc, "heal_delay_ms"));
	if (jint(doc, "flap_max") == 0)
		printf("flap guard off\n");
	else
		printf("flap guard %lld heals in %lld s\n", jint(doc, "flap_max"),
		       jint(doc, "flap_window_s"));
	if (json_object_get(doc, "redirect"))
		printf("redirect %s (%s)\n",
		       json_is_true(json_object_get(doc, "redirect")) ? "on" : "off",
		       jstr(doc, "redirect_reason"));
	if (cnt)
		printf("counters: %lld records, %lld events, %lld lost, %lld failed connects, "
		       "heals %lld ok / %lld failed / %lld skipped, %lld circuits opened\n",
		       jint(cnt, "records"), jint(cnt, "events"), jint(cnt, "lost"),
		       jint(cnt, "connect_failures"), jint(cnt, "heals_ok"),
		       jint(cnt, "heals_failed"), jint(cnt, "heals_skipped"),
		       jint(cnt, "circuits_opened"));
	printf("\n%zu endpoint%s\n", json_array_size(eps), json_array_size(eps) == 1 ? "" : "s");
	json_array_foreach(eps, i, e) {
		json_t *owner = json_object_get(e, "owner"), *reg = json_object_get(e, "registered");
		json_t *circ = json_object_get(e, "circuit"), *le = json_object_get(e, "last_error");
		json_t *streaks = json_object_get(e, "streaks"), *s;
		size_t k;

		printf("  %s", jstr(e, "path"));
		print_namespace(doc, e);
		printf("\n    %s", jstr(e, "state"));
		if (json_object_get(e, "lost_for_s")) {
			printf(" for ");
			print_duration(json_number_value(json_object_get(e, "lost_for_s")));
		}
		if (owner)
			printf(", owner %s[%lld] uid %lld", jstr(owner, "comm"), jint(owner, "pid"),
			       jint(owner, "uid"));
		printf(", %s", jstr(e, "origin"));
		if (reg)
			printf(" (heal %s)", jstr(reg, "heal"));
		printf(", guard %s", jstr(e, "guard"));
		if (json_object_get(e, "redirect"))
			printf(", redirect %s", jstr(e, "redirect"));
		if (json_object_get(e, "redirected_connects"))
			printf(" (%lld connects)", jint(e, "redirected_connects"));
		else if (json_object_get(e, "redirect_reason"))
			printf(" (%s)", jstr(e, "redirect_reason"));
		if (circ && strcmp(jstr(circ, "state"), "closed") != 0)
			printf(", circuit %s until %s", jstr(circ, "state"), jstr(circ, "retry_at"));
		printf("\n");
		json_array_foreach(streaks, k, s)
			printf("    failing: %s, %lld connects since %s\n", jstr(s, "errno"),
			       jint(s, "failures"), jstr(s, "since"));
		if (le)
			printf("    last error: %s%s%s at %s\n", jstr(le, "event"),
			       *jstr(le, "reason") ? " " : "", jstr(le, "reason"), jstr(le, "time"));
	}
}

int status_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "state", required_argument, NULL, 's' },
		{ "control", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *state = STATE_FILE_DEFAULT, *control = CONTROL_PATH_DEFAULT;
	char err[256], source[512];
	bool json = false;
	json_t *doc;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 's':
			state = optarg;
			break;
		case 'c':
			control = optarg;
			break;
		case 'h':
			fputs(status_usage, stdout);
			return SW_EXIT_OK;
		default:
			fputs("Try 'sockwarden status --help' for more information.\n", stderr);
			return SW_EXIT_USAGE;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "sockwarden: status: unexpected argument '%s'\n", argv[optind]);
		return SW_EXIT_USAGE;
	}
	doc = status_live(control, err, sizeof(err));
	if (doc) {
		json_object_set_new(doc, "source", json_string("agent"));
		snprintf(source, sizeof(source), "live from the agent");
	} else {
		json_error_t jerr;
		int pid;

		doc = json_load_file(state, 0, &jerr);
		if (!doc) {
			fprintf(stderr, "sockwarden: status: %s, and the state file %s cannot be "
				"read: %s\n", err, state, jerr.text);
			return SW_EXIT_ENV;
		}
		pid = (int)json_integer_value(json_object_get(doc, "pid"));
		json_object_set_new(doc, "source", json_string("state_file"));
		json_object_set_new(doc, "writer_alive", json_boolean(process_alive(pid)));
		snprintf(source, sizeof(source), "from %s written %s by pid %d (%s): %s", state,
			 jstr(doc, "written"), pid, process_alive(pid) ? "alive" : "gone", err);
	}
	if (json) {
		json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(9));
		putchar('\n');
	} else {
		print_human(doc, source);
	}
	json_decref(doc);
	return SW_EXIT_OK;
}

