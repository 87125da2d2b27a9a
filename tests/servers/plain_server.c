/*
 * A Unix-socket echo server that knows nothing of sockwarden: the kind of
 * unmodified server the guard-link heal must serve.
 *
 *   plain_server PATH [--backlog N]   bind, listen, print "ready", echo
 *       SIGUSR1 toggles accepting (to hold connections in the backlog)
 *       SIGTERM: unlink PATH and exit (the usual clean shutdown)
 *   plain_server PATH --replace N     N times: run a new instance of this very
 *       program that does the start-up idiom unlink(PATH); bind(PATH); listen;
 *       prints how many binds failed and with which errno
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_CONNS 256

static volatile sig_atomic_t paused, stopping;

static void on_usr1(int sig) { (void)sig; paused = !paused; }
static void on_term(int sig) { (void)sig; stopping = 1; }

static int listen_at(const char *path, int backlog)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, backlog))
		return -1;
	return fd;
}

static int new_instance(const char *path)
{
	int fd;

	unlink(path);
	fd = listen_at(path, 16);
	if (fd < 0)
		return errno;
	close(fd);
	return 0;
}

static int replace_trials(const char *self, const char *path, int n)
{
	int failed = 0, last_errno = 0;

	for (int i = 0; i < n; i++) {
		pid_t pid = fork();
		int status;

		if (pid == 0) {
			execl(self, self, path, "--once", (char *)NULL);
			_exit(127);
		}
		waitpid(pid, &status, 0);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			failed++;
			last_errno = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
		}
	}
	printf("{\"trials\":%d,\"failed\":%d,\"last_errno\":%d}\n", n, failed, last_errno);
	return 0;
}

int main(int argc, char **argv)
{
	struct pollfd p[MAX_CONNS + 1];
	int backlog = 16, n = 1, lfd;
	struct sigaction sa = {0};

	if (argc < 2)
		return 2;
	if (argc >= 3 && strcmp(argv[2], "--once") == 0)
		return new_instance(argv[1]);
	if (argc >= 4 && strcmp(argv[2], "--replace") == 0)
		return replace_trials("/proc/self/exe", argv[1], atoi(argv[3]));
	if (argc >= 4 && strcmp(argv[2], "--backlog") == 0)
		backlog = atoi(argv[3]);
	lfd = listen_at(argv[1], backlog);
	if (lfd < 0) {
		perror("listen");
		return 1;
	}
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	printf("ready %d\n", getpid());
	fflush(stdout);
	p[0] = (struct pollfd){ .fd = lfd, .events = POLLIN };
	while (!stopping) {
		p[0].events = paused ? 0 : POLLIN;
		if (poll(p, (nfds_t)n, 100) < 0)
			continue;
		if (!paused && (p[0].revents & POLLIN) && n <= MAX_CONNS) {
			int c = accept(lfd, NULL, NULL);

			if (c >= 0)
				p[n++] = (struct pollfd){ .fd = c, .events = POLLIN };
		}
		for (int i = 1; i < n; i++) {
			char buf[4096];
			ssize_t r;

			if (!(p[i].revents & (POLLIN | POLLHUP)))
				continue;
			r = read(p[i].fd, buf, sizeof(buf));
			if (r <= 0) {
				close(p[i].fd);
				p[i--] = p[--n];
				continue;
			}
			if (write(p[i].fd, buf, (size_t)r) < 0)
				perror("write");
		}
	}
	unlink(argv[1]);
	return 0;
}
