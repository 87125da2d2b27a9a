/*
 * idle_procs: a busy host's idle processes, for the integration tests.
 *
 *   idle_procs N FDS
 *
 * Forks N processes that each hold exactly FDS open file descriptors (a
 * daemon's usual mix: /dev/null on 0, 1 and 2, up to two socketpairs, then
 * pipes, eventfds and more /dev/null; no listening socket, so no agent has
 * anything to watch in them) and do nothing else. Prints "ready N" on stdout
 * once every one of them holds its fds, then waits.
 *
 * The agents under test walk /proc/PID/fd of every process on each reconcile
 * scan: these processes make that walk as long as on a loaded host.
 *
 * Every child dies with this process: PR_SET_PDEATHSIG(SIGKILL), checked
 * against a parent that died before the call. When stdin reaches EOF (the
 * test runner closed its end, or died) or on SIGTERM, SIGINT or SIGHUP, this
 * process kills every child, reaps them and exits 0: once it has exited, none
 * is left. The children keep the default dispositions, so a signal to the
 * whole process group (Ctrl-C) ends them too.
 *
 * Raises RLIMIT_NOFILE (and RLIMIT_NPROC) as far as needed; exits 1 with a
 * message naming the limit when it cannot start all N, 2 on bad usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "family.h"

/* what a child reports on the ready pipe (one write, atomic) */
struct report {
	int err;        /* 0: all fds open; else the errno of what failed */
	int what;       /* index into step_names */
};

static const char *const step_names[] = { "ok", "/dev/null", "socketpair", "pipe", "eventfd" };
enum { STEP_OK, STEP_DEVNULL, STEP_SOCKETPAIR, STEP_PIPE, STEP_EVENTFD, STEP_COUNT };

static long number(const char *s, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 0 || v > max)
		return -1;
	return v;
}

/* the soft limit of `res` raised to at least `need`, the hard one too if
 * this process may (CAP_SYS_RESOURCE) */
static int raise_limit(int res, rlim_t need)
{
	struct rlimit rl;

	if (getrlimit(res, &rl) != 0)
		return -errno;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur >= need)
		return 0;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need)
		rl.rlim_max = need;
	rl.rlim_cur = need;
	return setrlimit(res, &rl) == 0 ? 0 : -errno;
}

/* In the child: /dev/null on 0, 1 and 2, two socketpairs, then pipes,
 * eventfds and /dev/null in turn, FDS in all; then the report, then idle
 * (family_fork() has made it die with the parent). */
static void child(long index, int ready_wr, void *arg)
{
	long fds = *(const long *)arg;
	struct report r = { 0, STEP_OK };
	int socketpairs = 0;
	unsigned turn = 0;

	/* the runner's pipes are not this child's to hold */
	close(0);
	close(1);
	close(2);
	for (long have = 0; have < fds && !r.err;) {
		long room = fds - have;
		int p[2];

		if (have < 3 || turn % 3 == 2) {
			if (open("/dev/null", O_RDWR) < 0)
				r = (struct report){ errno, STEP_DEVNULL };
			have += 1;
		} else if (socketpairs < 2 && room >= 2) {
			if (socketpair(AF_UNIX, SOCK_STREAM, 0, p) != 0)
				r = (struct report){ errno, STEP_SOCKETPAIR };
			socketpairs++;
			have += 2;
			continue;
		} else if (turn % 3 == 0 && room >= 2) {
			if (pipe(p) != 0)
				r = (struct report){ errno, STEP_PIPE };
			have += 2;
		} else {
			/* an eventfd, also where one fd is left and a pipe was due */
			if (eventfd(0, 0) < 0)
				r = (struct report){ errno, STEP_EVENTFD };
			have += 1;
		}
		if (have > 3)
			turn++;
	}
	/* one write smaller than PIPE_BUF: atomic, never short */
	if (write(ready_wr, &r, sizeof(r)) != (ssize_t)sizeof(r))
		_exit(1);
	close(ready_wr);
	if (r.err)
		_exit(1);
	for (;;)
		pause();
}

/* someone killed a child (the OOM killer?): the load is smaller now */
static void ended(pid_t pid, long index, void *arg)
{
	fprintf(stderr, "idle_procs: process %d ended; %ld of %ld left\n", (int)pid,
		family_alive, family_n);
}

int main(int argc, char **argv)
{
	long n, fds, up = 0;
	int ready_rd, rc;

	family_init("idle_procs", "processes");
	if (argc != 3 || (n = number(argv[1], 1000000)) < 0 ||
	    (fds = number(argv[2], 1 << 20)) < 0) {
		fprintf(stderr, "usage: idle_procs N FDS\n"
				"  forks N idle processes that hold FDS open fds each, prints\n"
				"  \"ready N\" once all are up; all end when stdin closes, on\n"
				"  SIGTERM, or when this process dies\n");
		return 2;
	}
	/* a child holds its fds and the ready pipe's write end at once */
	rc = raise_limit(RLIMIT_NOFILE, (rlim_t)fds + 8);
	if (rc) {
		struct rlimit rl = { 0, 0 };

		getrlimit(RLIMIT_NOFILE, &rl);
		family_die("%ld fds per process need RLIMIT_NOFILE %ld, above the hard limit %llu, "
			   "and raising that needs CAP_SYS_RESOURCE: %s", fds, fds + 8,
			   (unsigned long long)rl.rlim_max, strerror(-rc));
	}
	/* root is not held to RLIMIT_NPROC; anyone else asks for room */
	if (geteuid() != 0)
		raise_limit(RLIMIT_NPROC, (rlim_t)n + 64);

	ready_rd = family_fork(n, child, &fds);
	for (; up < n; up++) {
		struct report r;

		family_report(ready_rd, &r, sizeof(r), up);
		if (r.err)
			family_die("a child could not open its %ld fds: %s: %s (RLIMIT_NOFILE, "
				   "fs.file-max, memory)", fds,
				   r.what >= 0 && r.what < STEP_COUNT ? step_names[r.what] : "?",
				   strerror(r.err));
	}
	close(ready_rd);
	family_supervise(ended, NULL);
	return 0;
}
