/*
 * Baseline: the pattern servers ship today to survive a removed socket path.
 * An echo server whose loop stat()s its own path every PERIOD_MS and, when the
 * path is gone or names another file, binds a new listener there (keeping the
 * old one draining). No sockwarden involved.
 *
 *   watchdog_server PATH PERIOD_MS     prints "ready" once listening
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_FDS 512

static int listen_at(const char *path, ino_t *ino)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 128)) {
		perror(path);
		exit(1);
	}
	*ino = stat(path, &st) == 0 ? st.st_ino : 0;
	return fd;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
	struct pollfd pfd[MAX_FDS];
	int n_listeners = 0, n = 0;
	long long next_check;
	long period;
	ino_t ino;

	if (argc != 3) {
		fprintf(stderr, "usage: watchdog_server PATH PERIOD_MS\n");
		return 2;
	}
	period = atol(argv[2]);
	pfd[n++] = (struct pollfd){ .fd = listen_at(argv[1], &ino), .events = POLLIN };
	n_listeners = 1;
	printf("ready\n");
	fflush(stdout);
	next_check = now_ms() + period;
	for (;;) {
		long long left = next_check - now_ms();
		struct stat st;

		if (left <= 0) {
			/* the watchdog: the path must still be this server's socket */
			if (stat(argv[1], &st) != 0 || st.st_ino != ino) {
				unlink(argv[1]);
				if (n < MAX_FDS) {
					/* listeners stay before connections in pfd */
					memmove(&pfd[n_listeners + 1], &pfd[n_listeners],
						(size_t)(n - n_listeners) * sizeof(pfd[0]));
					pfd[n_listeners++] = (struct pollfd){
						.fd = listen_at(argv[1], &ino), .events = POLLIN };
					n++;
				}
			}
			next_check = now_ms() + period;
			continue;
		}
		if (poll(pfd, (nfds_t)n, (int)left) <= 0)
			continue;
		for (int i = 0; i < n; i++) {
			char buf[4096];
			ssize_t r;

			if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			if (i < n_listeners) {
				int c = accept4(pfd[i].fd, NULL, NULL, SOCK_CLOEXEC);

				if (c >= 0 && n < MAX_FDS)
					pfd[n++] = (struct pollfd){ .fd = c, .events = POLLIN };
				else if (c >= 0)
					close(c);
				continue;
			}
			r = read(pfd[i].fd, buf, sizeof(buf));
			if (r <= 0) {
				close(pfd[i].fd);
				pfd[i] = pfd[--n];
				i--;
			} else if (write(pfd[i].fd, buf, (size_t)r) < 0) {
				/* the client went away: its read will say so */
			}
		}
	}
}
