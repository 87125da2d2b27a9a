/*
 * echo_server: the libsockwarden example (docs/libsockwarden.md).
 *
 *   echo_server PATH [--heal fd|notify]
 *
 * Listens on the Unix socket PATH, registers it with the sockwarden agent and
 * echoes what clients send. When PATH is removed while the server runs, the
 * agent gives it back: with --heal fd (the default) as a new socket already
 * bound to PATH, with --heal notify as a request to bind PATH again. Old
 * listeners and established connections keep working throughout.
 *
 * Prints "ready <pid>" once the agent confirmed the registration, and
 * "adopted <path>" after each rebind. SIGTERM or SIGINT: clean exit.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4 */
#endif
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <sockwarden.h>

enum kind { LISTENER = 1, CLIENT, SOCKWARDEN, SIGNALS };

static int epfd;
static struct stat own; /* the socket file this server bound (or was given) last */

static void watch(int fd, enum kind kind)
{
	struct epoll_event ev = { .events = EPOLLIN,
				  .data.u64 = (uint64_t)kind << 32 | (uint32_t)fd };

	epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

/* The usual start-up code: create the directories, bind, listen. */
static int listen_on(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[sizeof(sa.sun_path)];
	int fd, err;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	snprintf(dir, sizeof(dir), "%s", path);
	for (char *s = dir + 1; (s = strchr(s, '/')); *s++ = '/') {
		*s = 0;
		mkdir(dir, 0755);
	}
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

/* The agent gives the lost path back (called from sw_dispatch). */
static int on_rebind(void *arg, const char *path, int new_fd)
{
	(void)arg;
	if (new_fd < 0)                            /* heal notify: bind it again */
		new_fd = listen_on(path);
	else if (listen(new_fd, SOMAXCONN) != 0)   /* heal fd: bound, not listening */
		return -errno;
	if (new_fd < 0)
		return new_fd;
	lstat(path, &own);
	watch(new_fd, LISTENER); /* the old listener stays in the loop: it drains */
	return new_fd;           /* the registration follows the new listener */
}

static void on_status(void *arg, enum sw_event ev, const char *path, const char *detail)
{
	static bool ready;

	(void)arg;
	if (ev == SW_EV_REGISTERED && !ready) {
		ready = true;
		printf("ready %d\n", (int)getpid());
	} else if (ev == SW_EV_ADOPTED) {
		printf("adopted %s\n", path);
	}
	fflush(stdout);
	fprintf(stderr, "echo_server: sockwarden %s%s%s%s%s\n", sw_event_name(ev),
		path[0] ? " " : "", path, detail[0] ? ": " : "", detail);
}

int main(int argc, char **argv)
{
	struct sw_client_opts opts = { .status_cb = on_status };
	enum sw_heal heal = SW_HEAL_FD;
	struct sw_client *sw;
	const char *path;
	sigset_t sigs;
	int listener, rc;

	if (argc == 4 && strcmp(argv[2], "--heal") == 0 && strcmp(argv[3], "notify") == 0)
		heal = SW_HEAL_NOTIFY;
	else if (argc != 2 && !(argc == 4 && strcmp(argv[2], "--heal") == 0 &&
				strcmp(argv[3], "fd") == 0)) {
		fprintf(stderr, "usage: echo_server PATH [--heal fd|notify]\n");
		return 2;
	}
	path = argv[1];

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	epfd = epoll_create1(EPOLL_CLOEXEC);
	listener = listen_on(path);
	if (listener < 0) {
		fprintf(stderr, "echo_server: %s: %s\n", path, strerror(-listener));
		return 1;
	}
	lstat(path, &own);

	sw = sw_client_open(&opts);
	if (!sw) {
		perror("echo_server: sw_client_open");
		return 1;
	}
	rc = sw_register(sw, listener, path, heal, on_rebind, NULL);
	if (rc < 0) {
		fprintf(stderr, "echo_server: sw_register %s: %s\n", path, strerror(-rc));
		return 1;
	}
	watch(listener, LISTENER);
	watch(sw_client_fd(sw), SOCKWARDEN); /* one fd for the library, for good */
	watch(signalfd(-1, &sigs, SFD_CLOEXEC), SIGNALS);

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
				if (c >= 0)
					watch(c, CLIENT);
				break;
			case CLIENT:
				len = read(fd, buf, sizeof(buf));
				if (len <= 0 || send(fd, buf, (size_t)len, MSG_NOSIGNAL) != len)
					close(fd);
				break;
			case SOCKWARDEN:
				sw_dispatch(sw);
				break;
			case SIGNALS:
				goto out;
			}
		}
	}
out:
	sw_client_close(sw); /* closing the control connection unregisters */
	{
		struct stat st;

		/* remove the path only if it is still this server's socket file */
		if (lstat(path, &st) == 0 && st.st_dev == own.st_dev && st.st_ino == own.st_ino)
			unlink(path);
	}
	return 0;
}
