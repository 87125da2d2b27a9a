#include "state.h"

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

#include "clock.h"
#include "control.h"
#include "discovery.h"
#include "events.h"
#include "exitcodes.h"
#include "flapguard.h"
#include "paths.h"

/* ----- the writer ----- */

static int mkdir_parent(const char *file)
{
	char dir[SW_PATH_MAX];

	if (!path_dirname(file, dir, sizeof(dir)))
		return -EINVAL;
	if (mkdir(dir, 0755) != 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* Alive and not a zombie: a killed agent its parent has not reaped yet is gone. */
static bool process_alive(int pid)
{
	unsigned long flags;
	char state;

	return pid > 0 && proc_stat_read(pid, &state, &flags) == 0 && state != 'Z' &&
	       state != 'X';
}

int state_writer_open(struct state_writer *w, const char *file, int *previous_pid)
{
	json_t *old;
	int rc;

	memset(w, 0, sizeof(*w));
	*previous_pid = 0;
	if (file[0] != '/')
		return -EINVAL;
	rc = mkdir_parent(file);
	if (rc)
		return rc;
	old = json_load_file(file, 0, NULL);
	if (old) {
		int pid = (int)json_integer_value(json_object_get(old, "pid"));

		/* only one agent runs (it holds @sockwarden): a writer that is
		 * gone crashed, and its file is this agent's now */
		if (pid && pid != getpid() && !process_alive(pid))
			*previous_pid = pid;
		json_decref(old);
	}
	w->file = strdup(file);
	return w->file ? 0 : -ENOMEM;
}

void state_writer_close(struct state_writer *w)
{
	free(w->file);
	w->file = NULL;
}

void state_mark_dirty(struct state_writer *w, uint64_t now_ns)
{
	if (!w->file || w->dirty)
		return;
	w->dirty = true;
	w->dirty_since_ns = now_ns;
}

uint64_t state_next_deadline(const struct state_writer *w)
{
	uint64_t d;

	if (!w->file || !w->dirty)
		return UINT64_MAX;
	/* debounced: a burst of changes is one write, at most one per period */
	d = w->last_write_ns + STATE_DEBOUNCE_NS;
	return d > w->dirty_since_ns ? d : w->dirty_since_ns;
}

int state_write(struct state_writer *w, json_t *doc, uint64_t now_ns, bool force)
{
	char tmp[SW_PATH_MAX + 32];
	int rc = 0;

	if (!w->file || (!force && (!w->dirty || now_ns < state_next_deadline(w))))
		return 0;
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", w->file, (int)getpid());
	if (json_dump_file(doc, tmp, JSON_INDENT(1) | JSON_REAL_PRECISION(9)) != 0 ||
	    rename(tmp, w->file) != 0) {
		rc = errno ? -errno : -EIO;
		unlink(tmp);
		w->write_errors++;
	} else {
		w->writes++;
	}
	w->dirty = false;
	w->last_write_ns = now_ns;
	return rc;
}

/* ----- endpoints ----- */

static const char *origin_name(unsigned origin)
{
	if (origin & EP_FROM_REGISTER)
		return "registered";
	if (origin & EP_FROM_WATCH)
		return "watched";
	if (origin & EP_FROM_BIND)
		return "bound";
	return "scan";
}

static json_t *time_json(uint64_t mono_ns, int64_t real_minus_mono_ns)
{
	char ts[64];

	clock_format_rfc3339((uint64_t)((int64_t)mono_ns + real_minus_mono_ns), ts, sizeof(ts));
	return json_string(ts);
}

json_t *state_endpoint_json(const struct endpoint *e, int64_t rmm, uint64_t now_ns)
{
	json_t *j = json_object();
	const char *state = !e->has_listener ? "no_listener" : e->lost ? "lost"
			    : e->wedged ? "wedged" : "healthy";

	event_set_path(j, "path", e->path, strlen(e->path));
	json_object_set_new(j, "state", json_string(state));
	json_object_set_new(j, "origin", json_string(origin_name(e->origin)));
	if (e->lost) {
		json_object_set_new(j, "lost_since", time_json(e->lost_ns, rmm));
		json_object_set_new(j, "lost_for_s",
				    json_real((double)(now_ns - e->lost_ns) / 1e9));
	}
	if (e->has_listener && e->n_owners) {
		event_set_proc(j, "owner", e->owners[0].pid, e->owners[0].comm, e->owners[0].uid);
		json_object_set_new(j, "owners", json_integer((json_int_t)e->n_owners));
	} else if (e->have_last_owner) {
		event_set_proc(j, "last_owner", e->last_owner.pid, e->last_owner.comm,
			       e->last_owner.uid);
	}
	if (e->has_listener) {
		json_object_set_new(j, "inode", json_integer((json_int_t)e->l.vfs_ino));
		json_object_set_new(j, "backlog", json_integer((json_int_t)e->l.backlog));
		json_object_set_new(j, "max_backlog", json_integer((json_int_t)e->l.max_backlog));
	}
	if (e->reg) {
		static const char *heal[] = { "none", "fd", "notify" };
		json_t *r = json_object();

		json_object_set_new(r, "heal", json_string(heal[e->reg->heal]));
		json_object_set_new(r, "pid", json_integer(e->reg->peer->owner.pid));
		json_object_set_new(r, "rebind_in_flight", json_boolean(e->reg->inflight));
		json_object_set_new(j, "registered", r);
	}
	json_object_set_new(j, "guard", json_string(e->guard_ok ? "ok" :
						    e->guard_problem[0] ? e->guard_problem : "none"));
	{
		json_t *c = json_object();

		json_object_set_new(c, "state", json_string(flap_circuit_name(e->flap.circuit)));
		if (e->flap.circuit != FLAP_CLOSED)
			json_object_set_new(c, "retry_at", time_json(e->flap.retry_at_ns, rmm));
		json_object_set_new(j, "circuit", c);
	}
	if (e->last_error[0]) {
		json_t *le = json_object();

		json_object_set_new(le, "event", json_string(e->last_error));
		if (e->last_error_reason[0])
			json_object_set_new(le, "reason", json_string(e->last_error_reason));
		json_object_set_new(le, "time", time_json(e->last_error_ns, rmm));
		json_object_set_new(j, "last_error", le);
	}
	return j;
}

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
	printf("\nstarted %s, up ", jstr(doc, "started"));
	print_duration(json_number_value(json_object_get(doc, "uptime_s")));
	printf("; %s\n", source);
	printf("guards %s, heal delay %lld ms, flap guard %lld heals in %lld s\n",
	       json_is_true(json_object_get(doc, "guards")) ? "on" : "off",
	       jint(doc, "heal_delay_ms"), jint(doc, "flap_max"), jint(doc, "flap_window_s"));
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

		printf("  %s\n    %s", jstr(e, "path"), jstr(e, "state"));
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
