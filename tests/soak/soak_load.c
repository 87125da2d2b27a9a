/*
 * soak_load: the load of `make soak` (tests/soak/soak.py drives it).
 *
 *   soak_load client STATE PATH PAUSE_US
 *       connects to PATH (and closes) over and over, PAUSE_US apart, until
 *       STATE says stop; idles while STATE says pause. Prints its counts.
 *   soak_load cycle STATE PATH N SECONDS
 *       up to N unlink→heal cycles, for at most SECONDS: unlink PATH, wait
 *       until the same socket file is back (the agent's heal), connect once
 *       (it must succeed). Holds one connection through all of it and
 *       checks it still echoes every 100 cycles and at the end. Prints its
 *       counts and heal times.
 *
 * STATE is a file shared through mmap. Its phase is odd from just before an
 * unlink until the path is back and served, even otherwise: a client's
 * connect that starts and ends in the same even phase came after a heal and
 * before the next loss, and must succeed. Each prints one JSON object.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct shared {
	_Atomic uint64_t phase;
	_Atomic uint32_t stop;  /* written by soak.py */
	_Atomic uint32_t pause; /* written by soak.py */
};

#define HEAL_DEADLINE_NS (5ULL * 1000000000ULL)

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void pause_us(long us)
{
	struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };

	nanosleep(&ts, NULL);
}

static struct shared *state_map(const char *file)
{
	int fd = open(file, O_RDWR | O_CLOEXEC);
	void *p;

	if (fd < 0) {
		perror(file);
		exit(3);
	}
	p = mmap(NULL, sizeof(struct shared), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(3);
	}
	return p;
}

static int connect_to(const struct sockaddr_un *sa, int *fd_out)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), rc;

	if (fd < 0)
		return errno;
	rc = connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) ? errno : 0;
	if (rc == 0 && fd_out) {
		*fd_out = fd;
		return 0;
	}
	close(fd);
	return rc;
}

static int run_client(struct shared *s, const struct sockaddr_un *sa, long pause)
{
	uint64_t connects = 0, ok = 0, enoent = 0, refused = 0, eagain = 0, other = 0;
	uint64_t post_heal = 0;

	while (!atomic_load(&s->stop)) {
		uint64_t p0, p1;
		int err;

		if (atomic_load(&s->pause)) {
			pause_us(1000);
			continue;
		}
		p0 = atomic_load(&s->phase);
		err = connect_to(sa, NULL);
		p1 = atomic_load(&s->phase);
		connects++;
		if (err == 0)
			ok++;
		else if (err == ENOENT)
			enoent++;
		else if (err == ECONNREFUSED)
			refused++;
		else if (err == EAGAIN)
			eagain++;
		else
			other++;
		if (err && p0 == p1 && p0 % 2 == 0)
			post_heal++;
		if (pause)
			pause_us(pause);
	}
	printf("{\"connects\":%lu,\"ok\":%lu,\"ENOENT\":%lu,\"ECONNREFUSED\":%lu,"
	       "\"EAGAIN\":%lu,\"other\":%lu,\"post_heal_failures\":%lu}\n",
	       connects, ok, enoent, refused, eagain, other, post_heal);
	return 0;
}

static int echo_ok(int fd, unsigned n)
{
	char out[32], in[32];
	int len = snprintf(out, sizeof(out), "soak %u", n);
	ssize_t got = 0;

	if (write(fd, out, (size_t)len) != len)
		return 0;
	while (got < len) {
		ssize_t r = read(fd, in + got, (size_t)(len - got));

		if (r <= 0)
			return 0;
		got += r;
	}
	return memcmp(in, out, (size_t)len) == 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int run_cycles(struct shared *s, const struct sockaddr_un *sa, const char *path,
		      unsigned n, double seconds)
{
	uint64_t t0 = now_ns(), end = t0 + (uint64_t)(seconds * 1e9);
	uint64_t *heal_ns = calloc(n ? n : 1, sizeof(*heal_ns));
	unsigned done = 0, timeouts = 0, own_failures = 0, echo_failures = 0, unlink_failures = 0;
	struct stat st0, st;
	int held = -1;

	if (!heal_ns || lstat(path, &st0) != 0 || connect_to(sa, &held) != 0) {
		fprintf(stderr, "soak_load: %s is not served at the start\n", path);
		return 1;
	}
	while (done < n && now_ns() < end) {
		uint64_t t, deadline;
		int fd;

		atomic_fetch_add(&s->phase, 1); /* odd: lost */
		t = now_ns();
		if (unlink(path) != 0) {
			unlink_failures++;
			break;
		}
		deadline = t + HEAL_DEADLINE_NS;
		for (;;) {
			if (lstat(path, &st) == 0 && st.st_ino == st0.st_ino && st.st_dev == st0.st_dev)
				break;
			if (now_ns() > deadline)
				break;
			pause_us(20);
		}
		if (now_ns() > deadline) {
			timeouts++;
			break;
		}
		heal_ns[done] = now_ns() - t;
		if (connect_to(sa, &fd) == 0)
			close(fd);
		else
			own_failures++;
		atomic_fetch_add(&s->phase, 1); /* even: served */
		done++;
		if (done % 100 == 0 && !echo_ok(held, done))
			echo_failures++;
	}
	if (!echo_ok(held, done))
		echo_failures++;
	close(held);
	qsort(heal_ns, done, sizeof(*heal_ns), cmp_u64);
	printf("{\"cycles\":%u,\"seconds\":%.3f,\"heal_timeouts\":%u,\"unlink_failures\":%u,"
	       "\"own_connect_failures\":%u,\"held_echo_failures\":%u,"
	       "\"heal_ms_p50\":%.3f,\"heal_ms_p99\":%.3f,\"heal_ms_max\":%.3f}\n",
	       done, (double)(now_ns() - t0) / 1e9, timeouts, unlink_failures, own_failures,
	       echo_failures, done ? (double)heal_ns[done / 2] / 1e6 : 0.0,
	       done ? (double)heal_ns[(size_t)((double)done * 0.99)] / 1e6 : 0.0,
	       done ? (double)heal_ns[done - 1] / 1e6 : 0.0);
	free(heal_ns);
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct shared *s;

	if (argc == 5 && strcmp(argv[1], "client") == 0) {
		s = state_map(argv[2]);
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", argv[3]);
		return run_client(s, &sa, atol(argv[4]));
	}
	if (argc == 6 && strcmp(argv[1], "cycle") == 0) {
		s = state_map(argv[2]);
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", argv[3]);
		return run_cycles(s, &sa, argv[3], (unsigned)strtoul(argv[4], NULL, 10),
				  atof(argv[5]));
	}
	fprintf(stderr, "usage: soak_load client STATE PATH PAUSE_US\n"
			"       soak_load cycle STATE PATH N SECONDS\n");
	return 2;
}
