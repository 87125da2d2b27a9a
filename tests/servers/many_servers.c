/*
 * many_servers: N libsockwarden servers, one process each, for the
 * integration tests (tests/integration/test_load.py).
 *
 *   many_servers DIR N [--heal fd|notify|both]
 *
 * Forks N children. Child i binds DIR/sNNNNN.sock (i in five digits),
 * listens, registers the listener with the agent through libsockwarden (heal
 * fd, notify, or with `both` fd for even i and notify for odd i) and runs an
 * epoll loop over its listeners, its clients and the library's fd for good:
 * it echoes what clients send and takes its path back when the agent rebinds
 * it, as examples/echo_server.c does. The agent need not be running: the
 * library keeps trying, and registers again after the agent restarts.
 *
 * Prints "server PID PATH" for each child once it listens and has asked for
 * its registration, then "ready N". Every child dies with this process
 * (PR_SET_PDEATHSIG(SIGKILL), checked against a parent that died before the
 * call); when stdin reaches EOF, or on SIGTERM, SIGINT or SIGHUP, this
 * process kills every child, reaps them and exits 0. Exits 1 when a child
 * cannot start (the message names it), 2 on bad usage.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4, pipe2 */
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <sockwarden.h>

#include "family.h"

enum kind { LISTENER = 1, CLIENT, SOCKWARDEN };

/* what a child reports on the ready pipe (one write, atomic) */
struct report {
	long index;
	int err; /* 0: listening and registration asked for; else an errno */
	int step;
};

static const char *const step_names[] = { "ok", "bind/listen", "sw_client_open", "sw_register",
					  "epoll" };
enum { STEP_OK, STEP_LISTEN, STEP_OPEN, STEP_REGISTER, STEP_EPOLL, STEP_COUNT };

/* what the parent tells every child: where, and how to heal */
struct setup {
	const char *dir;
	enum sw_heal heal;
	bool both; /* fd for even i, notify for odd i */
};

static int epfd;

static void path_of(char *out, size_t size, const char *dir, long i)
{
	snprintf(out, size, "%s/s%05ld.sock", dir, i);
}

/* ----- a child: one server ----- */

static int watch(int fd, enum kind kind)
{
	struct epoll_event ev = { .events = EPOLLIN,
				  .data.u64 = (uint64_t)kind << 32 | (uint32_t)fd };

	return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

static int listen_on(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, err;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, SOMAXCONN) != 0) {
		err = errno;
		close(fd);
		return -err;
	}
	return fd;
}

/* the agent gives the lost path back (called from sw_dispatch) */
static int on_rebind(void *arg, const char *path, int new_fd)
{
	(void)arg;
	if (new_fd < 0)                            /* heal notify: bind it again */
		new_fd = listen_on(path);
	else if (listen(new_fd, SOMAXCONN) != 0)   /* heal fd: bound, not listening */
		return -errno;
	if (new_fd < 0)
		return new_fd;
	watch(new_fd, LISTENER); /* the old listener stays in the loop: it drains */
	return new_fd;
}

/* only what a test's reader needs to see: the agent said no, or a rebind failed */
static void on_status(void *arg, enum sw_event ev, const char *path, const char *detail)
{
	(void)arg;
	if (ev == SW_EV_ERROR || ev == SW_EV_REBIND_FAILED)
		fprintf(stderr, "many_servers[%d]: %s %s: %s\n", (int)getpid(), sw_event_name(ev),
			path, detail);
}

static void serve(struct sw_client *sw)
{
	for (;;) {
		struct epoll_event evs[16];
		int n = epoll_wait(epfd, evs, 16, -1);

		for (int i = 0; i < n; i++) {
			int fd = (int)(uint32_t)evs[i].data.u64, c;
			char buf[4096];
			ssize_t len;

			switch ((enum kind)(evs[i].data.u64 >> 32)) {
			case LISTENER:
				c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
				if (c >= 0 && watch(c, CLIENT) != 0)
					close(c);
				break;
			case CLIENT:
				len = read(fd, buf, sizeof(buf));
				if (len <= 0 || send(fd, buf, (size_t)len, MSG_NOSIGNAL) != len)
					close(fd);
				break;
			case SOCKWARDEN:
				sw_dispatch(sw);
				break;
			}
		}
	}
}

static void child(long index, int ready_wr, void *arg)
{
	const struct setup *set = arg;
	enum sw_heal heal = set->both ? (index % 2 ? SW_HEAL_NOTIFY : SW_HEAL_FD) : set->heal;
	struct sw_client_opts opts = { .status_cb = on_status };
	struct report r = { index, 0, STEP_OK };
	struct sw_client *sw = NULL;
	char path[SW_SOCKET_PATH_MAX + 2];
	int listener, rc, devnull;

	path_of(path, sizeof(path), set->dir, index);
	/* the runner's stdin and stdout are the parent's; stderr stays for on_status */
	devnull = open("/dev/null", O_RDWR);
	if (devnull >= 0) {
		dup2(devnull, 0);
		dup2(devnull, 1);
		if (devnull > 2)
			close(devnull);
	}
	epfd = epoll_create1(EPOLL_CLOEXEC);
	listener = listen_on(path);
	if (listener < 0)
		r = (struct report){ index, -listener, STEP_LISTEN };
	else if (!(sw = sw_client_open(&opts)))
		r = (struct report){ index, errno, STEP_OPEN };
	else if ((rc = sw_register(sw, listener, path, heal, on_rebind, NULL)) < 0)
		r = (struct report){ index, -rc, STEP_REGISTER };
	else if (epfd < 0 || watch(listener, LISTENER) != 0 ||
		 watch(sw_client_fd(sw), SOCKWARDEN) != 0)
		r = (struct report){ index, errno, STEP_EPOLL };
	/* one write smaller than PIPE_BUF: atomic, never short */
	if (write(ready_wr, &r, sizeof(r)) != (ssize_t)sizeof(r) || r.err)
		_exit(1);
	close(ready_wr);
	serve(sw);
}

/* ----- the parent ----- */

/* a server died (killed by a test?): say which */
static void ended(pid_t pid, long index, void *arg)
{
	const struct setup *set = arg;
	char path[SW_SOCKET_PATH_MAX + 2];

	if (index < 0)
		return;
	path_of(path, sizeof(path), set->dir, index);
	fprintf(stderr, "many_servers: server %d (%s) ended\n", (int)pid, path);
}

int main(int argc, char **argv)
{
	char path[SW_SOCKET_PATH_MAX + 2];
	struct setup set = { .heal = SW_HEAL_FD };
	long n, up = 0;
	int ready_rd;
	char *end;

	family_init("many_servers", "servers");
	if (argc == 5 && strcmp(argv[3], "--heal") == 0) {
		if (strcmp(argv[4], "notify") == 0)
			set.heal = SW_HEAL_NOTIFY;
		else if (strcmp(argv[4], "both") == 0)
			set.both = true;
		else if (strcmp(argv[4], "fd") != 0)
			argc = 0;
	} else if (argc != 3) {
		argc = 0;
	}
	errno = 0;
	n = argc ? strtol(argv[2], &end, 10) : -1;
	if (!argc || errno || *end || n < 0 || n > 99999) {
		fprintf(stderr, "usage: many_servers DIR N [--heal fd|notify|both]\n"
				"  N (at most 99999) libsockwarden servers, one process each, on\n"
				"  DIR/s00000.sock ...; all end when stdin closes, on SIGTERM, or\n"
				"  when this process dies\n");
		return 2;
	}
	set.dir = argv[1];
	path_of(path, sizeof(path), set.dir, n ? n - 1 : 0);
	if (set.dir[0] != '/' || strlen(path) > SW_SOCKET_PATH_MAX) {
		fprintf(stderr, "many_servers: %s: DIR must be absolute and short enough for a "
				"socket path of at most %d bytes\n", path, SW_SOCKET_PATH_MAX);
		return 2;
	}

	ready_rd = family_fork(n, child, &set);
	for (; up < n; up++) {
		struct report r;

		family_report(ready_rd, &r, sizeof(r), up);
		if (r.index < 0 || r.index >= n)
			family_die("reading the children's reports: garbled");
		path_of(path, sizeof(path), set.dir, r.index);
		if (r.err)
			family_die("server %ld (%s): %s: %s", r.index, path,
				   r.step >= 0 && r.step < STEP_COUNT ? step_names[r.step] : "?",
				   strerror(r.err));
		printf("server %d %s\n", (int)family_kids[r.index], path);
	}
	close(ready_rd);
	family_supervise(ended, &set);
	return 0;
}
