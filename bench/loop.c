/*
 * Tight syscall loops for overhead measurements: time per call of one
 * operation, run with and without the agent side by side by bench/run.py.
 *
 *   loop connect_fail N PATH     connect() to a path that does not exist
 *   loop connect_ok N DIR        connect()+accept() on a listener of its own
 *   loop bind_unlink N DIR       bind() a socket path, then unlink() it
 *   loop unlink_file N DIR       create and unlink() regular files
 *   loop getppid N               an unrelated syscall
 *   loop heal N PATH PAUSE_US [JITTER_US]
 *                                N times: hold a connection to PATH, unlink PATH
 *                                (after a random wait up to JITTER_US),
 *                                connect every PAUSE_US until one succeeds, then
 *                                check the held connection still echoes
 *
 * Prints one JSON object: {"op":…, "n":…, "ns_per_op":…, "cpu_ns":…}; heal
 * adds per trial "heal_ms" (to the first connect that succeeds), "path_ms"
 * (until the path itself is back) and "failed" (connects failed until then).
 */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static unsigned long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000000ULL + (unsigned long long)ts.tv_nsec;
}

static unsigned long long cpu_ns(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (unsigned long long)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000ULL +
	       (unsigned long long)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ULL;
}

static void addr_of(struct sockaddr_un *sa, const char *path)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	snprintf(sa->sun_path, sizeof(sa->sun_path), "%s", path);
}

static int connect_once(const struct sockaddr_un *sa)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), rc;

	rc = connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) ? errno : 0;
	close(fd);
	return rc;
}

static void pause_us(long us)
{
	struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };

	nanosleep(&ts, NULL);
}

/*
 * The heal as a client sees it: from the moment unlink() returns to the first
 * connect() that succeeds, retrying every pause_us, as a client with a retry
 * loop would. Each trial starts once the path serves again and the agent has
 * had a moment to finish the previous rebind.
 */
/* An established connection, checked with one echo round trip. */
static int held_open(const struct sockaddr_un *sa)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static bool still_served(int fd)
{
	struct timeval tv = { 2, 0 };
	char c = 'x';

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return send(fd, &c, 1, MSG_NOSIGNAL) == 1 && recv(fd, &c, 1, 0) == 1 && c == 'x';
}

static int heal_trials(long n, const char *path, long pause, long jitter_us)
{
	struct sockaddr_un sa;
	long failed_total = 0, dropped_total = 0;

	addr_of(&sa, path);
	printf("{\"op\":\"heal\",\"n\":%ld,\"trials\":[", n);
	for (long i = 0; i < n; i++) {
		unsigned long long t0, t1, t2, waited = now_ns();
		long failed = 0;

		while (connect_once(&sa) != 0) {
			if (now_ns() - waited > 10000000000ULL) {
				fprintf(stderr, "heal: %s does not serve before trial %ld\n", path, i);
				return 1;
			}
			pause_us(1000);
		}
		/* a random phase against any periodic checker: without it a
		 * watchdog's loss would always land just after its last check */
		pause_us(50000 + (jitter_us > 0 ? random() % jitter_us : 0));
		int held = held_open(&sa);

		if (unlink(path)) {
			perror("unlink");
			return 1;
		}
		t0 = now_ns();
		/* connects go on until the path itself is back: with the redirect
		 * the first one succeeds at once, and any failure before the heal
		 * still counts */
		t1 = 0;
		for (;;) {
			struct stat st;
			bool ok = connect_once(&sa) == 0;
			unsigned long long t = now_ns();

			if (ok && !t1)
				t1 = t;
			failed += !ok;
			if (t1 && lstat(path, &st) == 0) {
				t2 = t;
				break;
			}
			if (t - t0 > 10000000000ULL) {
				fprintf(stderr, "heal: %s not back after 10 s (trial %ld)\n", path, i);
				return 1;
			}
			pause_us(pause);
		}
		bool dropped = held < 0 || !still_served(held);

		if (held >= 0)
			close(held);
		failed_total += failed;
		dropped_total += dropped;
		printf("%s{\"heal_ms\":%.3f,\"path_ms\":%.3f,\"failed\":%ld,\"dropped\":%d}",
		       i ? "," : "", (double)(t1 - t0) / 1e6, (double)(t2 - t0) / 1e6, failed,
		       dropped);
		fflush(stdout);
	}
	printf("],\"failed\":%ld,\"dropped\":%ld}\n", failed_total, dropped_total);
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_un sa;
	unsigned long long t0, c0, t1, c1;
	long n, failures = 0;
	const char *op;

	if (argc < 3) {
		fprintf(stderr, "usage: loop OP N [PATH|DIR]\n");
		return 2;
	}
	op = argv[1];
	n = atol(argv[2]);
	if (strcmp(op, "heal") == 0)
		return argc < 5 ? 2 : heal_trials(n, argv[3], atol(argv[4]),
						  argc > 5 ? atol(argv[5]) : 0);
	if (strcmp(op, "connect_fail") == 0) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

		addr_of(&sa, argv[3]);
		t0 = now_ns();
		c0 = cpu_ns();
		/* a failed connect leaves the socket unconnected: reuse it */
		for (long i = 0; i < n; i++)
			if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
				failures++;
	} else if (strcmp(op, "connect_ok") == 0) {
		char p[108];
		int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

		snprintf(p, sizeof(p), "%s/ok.sock", argv[3]);
		unlink(p);
		addr_of(&sa, p);
		if (bind(l, (struct sockaddr *)&sa, sizeof(sa)) || listen(l, 128)) {
			perror("listen");
			return 1;
		}
		t0 = now_ns();
		c0 = cpu_ns();
		for (long i = 0; i < n; i++) {
			int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), s;

			if (connect(c, (struct sockaddr *)&sa, sizeof(sa)))
				failures++;
			s = accept(l, NULL, NULL);
			close(s);
			close(c);
		}
		unlink(p);
	} else if (strcmp(op, "bind_unlink") == 0) {
		char p[108];

		snprintf(p, sizeof(p), "%s/bu.sock", argv[3]);
		addr_of(&sa, p);
		t0 = now_ns();
		c0 = cpu_ns();
		for (long i = 0; i < n; i++) {
			int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

			if (bind(s, (struct sockaddr *)&sa, sizeof(sa)))
				failures++;
			unlink(p);
			close(s);
		}
	} else if (strcmp(op, "unlink_file") == 0) {
		char p[4096];
		int dfd = open(argv[3], O_DIRECTORY | O_CLOEXEC);

		/* create outside the timed region: the rm -rf of a large tree */
		for (long i = 0; i < n; i++) {
			snprintf(p, sizeof(p), "f%ld", i);
			close(openat(dfd, p, O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
		}
		t0 = now_ns();
		c0 = cpu_ns();
		for (long i = 0; i < n; i++) {
			snprintf(p, sizeof(p), "f%ld", i);
			if (unlinkat(dfd, p, 0))
				failures++;
		}
	} else if (strcmp(op, "getppid") == 0) {
		t0 = now_ns();
		c0 = cpu_ns();
		for (long i = 0; i < n; i++)
			if (getppid() < 0)
				failures++;
	} else {
		fprintf(stderr, "loop: unknown op %s\n", op);
		return 2;
	}
	t1 = now_ns();
	c1 = cpu_ns();
	printf("{\"op\":\"%s\",\"n\":%ld,\"ns_per_op\":%.1f,\"cpu_ns\":%llu,\"failures\":%ld}\n",
	       op, n, (double)(t1 - t0) / (double)n, c1 - c0, failures);
	return 0;
}
