/*
 * family.h: a family of forked children and the parent that supervises
 * them, shared by the test programs idle_procs.c and many_servers.c (header
 * only, static functions and state: one family per program). It owns the
 * children's pids and their whole life as the parent sees it: family_fork()
 * forks them (each with PR_SET_PDEATHSIG(SIGKILL), checked against a parent
 * that died before the call, so none outlives the parent), family_report()
 * reads the fixed-size report each writes on the ready pipe once it is up,
 * and family_supervise() then takes SIGTERM, SIGINT, SIGHUP and SIGCHLD over
 * into a signalfd, prints "ready N" on stdout and waits until stdin reaches
 * EOF or one of the first three signals comes (on each SIGCHLD it reaps what
 * ended and lets the program's callback say which child that was), and ends
 * by killing and reaping every child. family_die() ends them all the same
 * way on any failure, after "PROG: message" on stderr, and exits 1. What a
 * child does, what its report holds and how an ended child is named stay
 * with the program; it names itself and its children with family_init().
 * Needs _GNU_SOURCE (pipe2), as the programs are built.
 */
#ifndef SW_TESTS_FAMILY_H
#define SW_TESTS_FAMILY_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *family_prog = "?"; /* every message starts "PROG: " */
static const char *family_noun = "?"; /* the children in messages: "processes" */
static pid_t *family_kids;  /* child i's pid, 0 once it has ended and been reaped */
static long family_n;       /* the children forked: entries in family_kids */
static long family_alive;   /* of those, the ones not reaped yet */

/* first thing in main: the program's name and what its children are called */
static void family_init(const char *prog, const char *noun)
{
	family_prog = prog;
	family_noun = noun;
}

static void family_kill_all(void)
{
	for (long i = 0; i < family_n; i++)
		if (family_kids[i] > 0) /* never 0 or -1: the whole group, everyone */
			kill(family_kids[i], SIGKILL);
	while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
		;
}

static void family_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void family_die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", family_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	family_kill_all();
	exit(1);
}

/* Forks n children; child i runs child(i, ready_wr, arg), which writes its
 * report on ready_wr and never returns. Returns the ready pipe's read end. */
static int family_fork(long n, void (*child)(long i, int ready_wr, void *arg), void *arg)
{
	pid_t parent = getpid();
	int ready[2];

	family_kids = calloc(n ? (size_t)n : 1, sizeof(*family_kids));
	if (!family_kids || pipe2(ready, O_CLOEXEC) != 0)
		family_die("cannot start: %s", strerror(errno));
	(void)fflush(stdout); /* nothing buffered to be written twice */

	for (long i = 0; i < n; i++) {
		pid_t pid = fork();

		if (pid == 0) {
			close(ready[0]);
			if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
				_exit(1); /* the parent is gone (or going): nobody waits for a report */
			child(i, ready[1], arg);
			_exit(1);
		}
		if (pid < 0)
			family_die("fork failed after %ld of %ld %s: %s (limits: kernel.pid_max, "
				   "kernel.threads-max, RLIMIT_NPROC, the cgroup's pids.max)", i, n,
				   family_noun, strerror(errno));
		family_kids[family_n++] = pid;
		family_alive++;
	}
	close(ready[1]);
	return ready[0];
}

/* The next child's report, `size` bytes, into r; `up` have reported so far.
 * Dies when the children are gone before all have, or on a read error. */
static void family_report(int ready_rd, void *r, size_t size, long up)
{
	for (;;) {
		ssize_t got = read(ready_rd, r, size);

		if (got < 0 && errno == EINTR)
			continue;
		if (got == 0)
			family_die("%ld of %ld %s reported, then the others exited without a word",
				   up, family_n, family_noun);
		if (got != (ssize_t)size)
			family_die("reading the children's reports: %s",
				   got < 0 ? strerror(errno) : "short");
		return;
	}
}

/* Once every child is up: prints "ready N" and waits until stdin reaches EOF
 * or SIGTERM, SIGINT or SIGHUP comes. On SIGCHLD it reaps each child that
 * ended and calls ended(pid, i, arg), i its index (family_kids[i] now 0,
 * family_alive one less) or -1 for a pid it does not know. Then kills and
 * reaps every child. */
static void family_supervise(void (*ended)(pid_t pid, long i, void *arg), void *arg)
{
	sigset_t sigs;
	int sfd;

	/* the children are up with default dispositions: only now are the
	 * signals that end this process taken over */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGCHLD);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
	if (sfd < 0)
		family_die("signalfd: %s", strerror(errno));
	if (printf("ready %ld\n", family_n) < 0 || fflush(stdout) != 0)
		family_die("stdout: %s", strerror(errno)); /* nobody reads: nobody needs them */

	for (int in_fd = 0;;) {
		struct pollfd pf[2] = { { .fd = sfd, .events = POLLIN },
					{ .fd = in_fd, .events = POLLIN } };
		struct signalfd_siginfo si;
		char buf[256];

		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			family_die("poll: %s", strerror(errno));
		}
		if (pf[1].revents & POLLNVAL) {
			in_fd = -1; /* no stdin at all: only a signal ends the wait */
		} else if (pf[1].revents) {
			ssize_t got = read(in_fd, buf, sizeof(buf));

			if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN))
				break; /* stdin closed */
		}
		if (!(pf[0].revents & POLLIN) || read(sfd, &si, sizeof(si)) != (ssize_t)sizeof(si))
			continue;
		if (si.ssi_signo != SIGCHLD)
			break;
		for (pid_t pid; (pid = waitpid(-1, NULL, WNOHANG)) > 0;) {
			long i = family_n - 1;

			while (i >= 0 && family_kids[i] != pid)
				i--;
			if (i >= 0) {
				family_kids[i] = 0;
				family_alive--;
			}
			ended(pid, i, arg);
		}
	}
	close(sfd);
	family_kill_all();
	free(family_kids);
	family_kids = NULL;
	family_n = family_alive = 0;
}

#endif /* SW_TESTS_FAMILY_H */
