/*
 * Baseline: the best a watcher without BPF can do to see a socket path
 * removed. inotify on the parent directory; one line per removal or rename
 * away of NAME, flushed: "gone NAME". It cannot say who removed it: inotify
 * events carry no process.
 *
 *   inotify_watch DIR NAME     prints "ready" once watching
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char buf[sizeof(struct inotify_event) + NAME_MAX + 1]
		__attribute__((aligned(__alignof__(struct inotify_event))));
	int fd;

	if (argc != 3) {
		fprintf(stderr, "usage: inotify_watch DIR NAME\n");
		return 2;
	}
	fd = inotify_init1(IN_CLOEXEC);
	if (fd < 0 || inotify_add_watch(fd, argv[1], IN_DELETE | IN_MOVED_FROM) < 0) {
		perror(argv[1]);
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));

		for (char *p = buf; n > 0 && p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;

			if (ev->len && strcmp(ev->name, argv[2]) == 0) {
				printf("gone %s\n", ev->name);
				fflush(stdout);
			}
			p += sizeof(*ev) + ev->len;
		}
		if (n <= 0)
			return 1;
	}
}
