#include "actions.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shared/clock.h"
#include "shared/config.h"
#include "shared/discovery.h"
#include "shared/log.h"

extern char **environ;

struct action_child {
	struct watcher w;
	struct actions *ac;
	pid_t pid;
	char path[108];
	struct action_child *next;
};

void actions_init(struct actions *ac, int epfd, const struct event_env *env,
		  const struct flap_cfg *flap, void (*emit)(void *, json_t *), void *ctx)
{
	memset(ac, 0, sizeof(*ac));
	ac->epfd = epfd;
	ac->env = env;
	ac->flap = flap;
	ac->emit = emit;
	ac->ctx = ctx;
}

void actions_close(struct actions *ac)
{
	while (ac->children) {
		struct action_child *c = ac->children;

		ac->children = c->next;
		loop_del(ac->epfd, &c->w);
		close(c->w.fd);
		free(c);
	}
}

bool actions_unit_of(pid_t pid, char *out, size_t outlen)
{
	static const char *kinds[] = { ".service", ".scope", ".socket" };
	char path[64], line[1024];
	bool found = false;
	FILE *f;

	out[0] = 0;
	snprintf(path, sizeof(path), "/proc/%d/cgroup", pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	/* the deepest unit on the cgroup path: a service's own unit, not its slice */
	while (!found && fgets(line, sizeof(line), f)) {
		char *p = strchr(line, ':');

		p = p ? strchr(p + 1, ':') : NULL;
		if (!p)
			continue;
		line[strcspn(line, "\n")] = 0;
		for (char *tok = strtok(p + 1, "/"); tok; tok = strtok(NULL, "/")) {
			size_t n = strlen(tok);

			for (size_t k = 0; k < 3; k++) {
				size_t kl = strlen(kinds[k]);

				if (n > kl && strcmp(tok + n - kl, kinds[k]) == 0) {
					snprintf(out, outlen, "%s", tok);
					found = true;
				}
			}
		}
	}
	fclose(f);
	return found;
}

char *actions_expand(const char *arg, const char *path, const char *pid, const char *unit)
{
	static const char *keys[] = { "{path}", "{pid}", "{unit}" };
	const char *vals[] = { path, pid, unit };
	char out[4096];
	size_t n = 0;

	while (*arg) {
		bool replaced = false;

		for (int k = 0; k < 3 && !replaced; k++) {
			size_t kl = strlen(keys[k]), vl = strlen(vals[k]);

			if (strncmp(arg, keys[k], kl) != 0)
				continue;
			if (n + vl >= sizeof(out))
				return NULL;
			memcpy(out + n, vals[k], vl);
			n += vl;
			arg += kl;
			replaced = true;
		}
		if (replaced)
			continue;
		if (n + 1 >= sizeof(out))
			return NULL;
		out[n++] = *arg++;
	}
	out[n] = 0;
	return strdup(out);
}

static json_t *action_event(struct actions *ac, const struct endpoint *e, const char *action,
			    const char *trigger, const char *outcome)
{
	json_t *ev = event_new(ac->env, "action",
			       strcmp(outcome, "failed") == 0 || strcmp(outcome, "refused") == 0
				       ? "error" : "info", 0);

	event_set_path(ev, "path", e->path, strlen(e->path));
	json_object_set_new(ev, "action", json_string(action));
	json_object_set_new(ev, "trigger", json_string(trigger));
	json_object_set_new(ev, "outcome", json_string(outcome));
	return ev;
}

/*
 * The owner that holds e's listener now, held by a pidfd opened before the
 * check: if the pid is recycled after the check, the pidfd still names the
 * process that was checked, and a signal to it fails instead of hitting a
 * stranger. -1 when no owner can be verified.
 */
static int verified_owner(const struct endpoint *e, struct owner *who)
{
	if (!e->has_listener)
		return -1;
	for (size_t i = 0; i < e->n_owners; i++) {
		int pidfd = (int)syscall(SYS_pidfd_open, e->owners[i].pid, 0);

		if (pidfd < 0)
			continue;
		if (discovery_pid_holds(e->owners[i].pid, e->l.sock_ino)) {
			if (!owner_read(e->owners[i].pid, who))
				*who = e->owners[i];
			return pidfd;
		}
		close(pidfd);
	}
	return -1;
}

static void run_signal(struct actions *ac, struct endpoint *e, const char *trigger)
{
	const struct path_cfg *pc = e->cfg;
	struct owner who;
	int pidfd = verified_owner(e, &who);
	json_t *ev;

	if (pidfd < 0) {
		ev = action_event(ac, e, "signal", trigger, "refused");
		json_object_set_new(ev, "reason", json_string("no_verified_owner"));
		json_object_set_new(ev, "signal", json_string(config_signal_name(pc->signal)));
		ac->refused++;
		ac->emit(ac->ctx, ev);
		return;
	}
	if (syscall(SYS_pidfd_send_signal, pidfd, pc->signal, NULL, 0) != 0) {
		ev = action_event(ac, e, "signal", trigger, "failed");
		json_object_set_new(ev, "error", json_string(strerror(errno)));
	} else {
		ev = action_event(ac, e, "signal", trigger, "sent");
		ac->taken++;
	}
	close(pidfd);
	json_object_set_new(ev, "signal", json_string(config_signal_name(pc->signal)));
	event_set_proc(ev, "target", who.pid, who.comm, who.uid);
	ac->emit(ac->ctx, ev);
}

static void on_child_exit(struct watcher *w, uint32_t events)
{
	struct action_child *c = w->ctx, **pp;
	struct actions *ac = c->ac;
	siginfo_t si = {0};
	json_t *ev;

	(void)events;
	if (waitid(P_PIDFD, (id_t)w->fd, &si, WEXITED | WNOHANG) != 0 || si.si_pid == 0)
		return;
	ev = event_new(ac->env, "action", si.si_code == CLD_EXITED && si.si_status == 0
					     ? "info" : "error", 0);
	event_set_path(ev, "path", c->path, strlen(c->path));
	json_object_set_new(ev, "action", json_string("exec"));
	json_object_set_new(ev, "outcome", json_string("exited"));
	json_object_set_new(ev, "child_pid", json_integer(c->pid));
	if (si.si_code == CLD_EXITED)
		json_object_set_new(ev, "exit_status", json_integer(si.si_status));
	else
		json_object_set_new(ev, "killed_by", json_string(strsignal(si.si_status)));
	for (pp = &ac->children; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	loop_del(ac->epfd, &c->w);
	close(c->w.fd);
	free(c);
	ac->emit(ac->ctx, ev);
}

static void run_exec(struct actions *ac, struct endpoint *e, const char *trigger)
{
	const struct path_cfg *pc = e->cfg;
	char *argv[CONFIG_EXEC_ARGS_MAX + 1] = { 0 };
	char pid_s[16] = "", unit[256] = "";
	posix_spawn_file_actions_t fa;
	struct action_child *c = NULL;
	struct owner who;
	int pidfd = verified_owner(e, &who), rc;
	pid_t child = 0;
	json_t *ev, *args;
	size_t n = 0;

	if (pidfd >= 0) {
		snprintf(pid_s, sizeof(pid_s), "%d", who.pid);
		actions_unit_of(who.pid, unit, sizeof(unit));
		close(pidfd);
	}
	for (; pc->exec_argv[n]; n++) {
		argv[n] = actions_expand(pc->exec_argv[n], e->path, pid_s, unit);
		if (!argv[n])
			break;
	}
	args = json_array();
	for (size_t i = 0; i < n && argv[i]; i++)
		json_array_append_new(args, json_string(argv[i]));
	posix_spawn_file_actions_init(&fa);
	/* stdout is the agent's event stream: a child must not write into it */
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
	if (!argv[0])
		rc = EINVAL; /* no program: config_load refuses that, checked here too */
	else if (argv[n] || !pc->exec_argv[n])
		/* argv is freed below whatever posix_spawn did: the analyzer loses it */
		rc = posix_spawn(&child, argv[0], &fa, NULL, argv, environ); // NOLINT(clang-analyzer-unix.Malloc)
	else
		rc = ENAMETOOLONG;
	posix_spawn_file_actions_destroy(&fa);
	for (size_t i = 0; i < n; i++)
		free(argv[i]);
	if (rc != 0) {
		ev = action_event(ac, e, "exec", trigger, "failed");
		json_object_set_new(ev, "error", json_string(strerror(rc)));
		json_object_set_new(ev, "argv", args);
		ac->emit(ac->ctx, ev);
		return;
	}
	ac->taken++;
	ev = action_event(ac, e, "exec", trigger, "started");
	json_object_set_new(ev, "argv", args);
	json_object_set_new(ev, "child_pid", json_integer(child));
	if (pid_s[0])
		event_set_proc(ev, "target", who.pid, who.comm, who.uid);
	if (unit[0])
		json_object_set_new(ev, "unit", json_string(unit));
	ac->emit(ac->ctx, ev);
	/* its exit is an event too, through a pidfd: never a pid that may recycle */
	c = calloc(1, sizeof(*c));
	if (c) {
		c->w = (struct watcher){ .fd = (int)syscall(SYS_pidfd_open, child, 0),
					 .fn = on_child_exit, .ctx = c };
		c->ac = ac;
		c->pid = child;
		snprintf(c->path, sizeof(c->path), "%s", e->path);
		if (c->w.fd >= 0 && loop_add(ac->epfd, &c->w, EPOLLIN) == 0) {
			c->next = ac->children;
			ac->children = c;
			return;
		}
		if (c->w.fd >= 0)
			close(c->w.fd);
		free(c);
	}
	log_warn("action for %s: cannot watch child %d; it is not reaped", e->path, child);
}

/* Which events call for the path's action: the path stays lost, or its
 * server is dead or stuck. A heal that is on its way does not. */
static bool is_trigger(const char *event, const char *reason)
{
	if (strcmp(event, "rebind_failed") == 0 || strcmp(event, "listener_wedged") == 0 ||
	    strcmp(event, "stale_socket") == 0)
		return true;
	return strcmp(event, "rebind_skipped") == 0 && reason &&
	       (strcmp(reason, "heal_disabled") == 0 || strcmp(reason, "listener_gone") == 0);
}

void actions_on_event(struct actions *ac, struct endpoint *e, const char *event,
		      const char *reason)
{
	const struct path_cfg *pc = e->cfg;
	const struct flap_cfg fc = path_cfg_flap(pc, ac->flap);
	uint64_t now = clock_mono_ns();
	enum flap_verdict v;
	json_t *ev;

	if (!pc || pc->action == ACTION_NONE || !is_trigger(event, reason))
		return;
	v = flap_check(&e->action_flap, &fc, now);
	if (v != FLAP_ALLOW) {
		ev = action_event(ac, e, pc->action == ACTION_SIGNAL ? "signal" : "exec", event,
				  "suppressed");
		json_object_set_new(ev, "reason", json_string("circuit_open"));
		ac->suppressed++;
		ac->emit(ac->ctx, ev);
		return;
	}
	flap_record(&e->action_flap, &fc, now);
	if (pc->action == ACTION_SIGNAL)
		run_signal(ac, e, event);
	else
		run_exec(ac, e, event);
}
