/* sock_diag sockets per network namespace (diag_netns.h says why). */
#include "diag_netns.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

struct kept_netns {
	uint32_t ino;
	int fd;                /* the sock_diag socket created inside it */
	pthread_mutex_t mu;    /* one query at a time on fd */
	unsigned refs;         /* queries holding it (under table_mu) */
	bool dropped;          /* out of the table: freed by the last query */
};

/* The table of kept sockets; entries are heap objects, so a query holds its
 * entry (a reference, then its lock) without holding the table's lock, and a
 * prune meanwhile leaves the freeing to that query. */
static pthread_mutex_t table_mu = PTHREAD_MUTEX_INITIALIZER;
static struct kept_netns **kept;
static size_t n_kept, cap_kept;

static uint32_t netns_ino_at(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (uint32_t)st.st_ino : 0;
}

uint32_t diag_netns_own(void)
{
	static uint32_t own;

	if (!own)
		own = netns_ino_at("/proc/self/ns/net");
	return own;
}

uint32_t diag_netns_of_pid(pid_t pid)
{
	char p[64];

	snprintf(p, sizeof(p), "/proc/%d/ns/net", pid);
	return netns_ino_at(p);
}

int diag_netns_list(struct netns_ref **out, size_t *n)
{
	DIR *proc = opendir("/proc");
	struct netns_ref *v = NULL;
	size_t cap = 0;
	struct dirent *de;

	*out = NULL;
	*n = 0;
	if (!proc)
		return -errno;
	while ((de = readdir(proc))) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		uint32_t ino;
		bool seen = false;

		if (*end || pid <= 0)
			continue;
		ino = diag_netns_of_pid((pid_t)pid);
		if (!ino)
			continue; /* gone, or a kernel thread without one */
		for (size_t i = 0; i < *n && !seen; i++)
			seen = v[i].ino == ino;
		if (seen)
			continue;
		if (*n == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			struct netns_ref *nv = realloc(v, ncap * sizeof(*nv));

			if (!nv) {
				free(v);
				closedir(proc);
				*n = 0;
				return -ENOMEM;
			}
			v = nv;
			cap = ncap;
		}
		v[(*n)++] = (struct netns_ref){ .ino = ino, .pid = (pid_t)pid };
	}
	closedir(proc);
	*out = v;
	return 0;
}

struct enter_arg {
	int nsfd;
	int fd;   /* the socket, or -errno */
};

/* setns() changes the calling thread only: this thread enters, creates the
 * socket (which stays in the namespace it was made in) and ends. */
static void *enter_and_open(void *p)
{
	struct enter_arg *a = p;

	if (setns(a->nsfd, CLONE_NEWNET) != 0) {
		a->fd = -errno;
		return NULL;
	}
	a->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (a->fd < 0)
		a->fd = -errno;
	return NULL;
}

/* A sock_diag socket inside namespace ino, entered through pid; -errno. */
static int open_in(uint32_t ino, pid_t pid)
{
	struct enter_arg a = { .fd = -ESRCH };
	char p[64];
	pthread_t t;
	int rc;

	snprintf(p, sizeof(p), "/proc/%d/ns/net", pid);
	a.nsfd = open(p, O_RDONLY | O_CLOEXEC);
	if (a.nsfd < 0)
		return -errno;
	{
		struct stat st;

		/* the pid may have moved or been reused since it was seen there */
		if (fstat(a.nsfd, &st) != 0 || (uint32_t)st.st_ino != ino) {
			close(a.nsfd);
			return -ESRCH;
		}
	}
	rc = pthread_create(&t, NULL, enter_and_open, &a);
	if (rc == 0)
		pthread_join(t, NULL);
	close(a.nsfd);
	return rc ? -rc : a.fd;
}

static void kept_destroy(struct kept_netns *k)
{
	close(k->fd);
	pthread_mutex_destroy(&k->mu);
	free(k);
}

/* Ends a query's hold; the last hold of a dropped entry frees it. */
static void kept_put(struct kept_netns *k)
{
	bool last;

	pthread_mutex_lock(&table_mu);
	last = --k->refs == 0 && k->dropped;
	pthread_mutex_unlock(&table_mu);
	if (last)
		kept_destroy(k);
}

/* Marks k out of the table (under table_mu); true when nothing holds it and
 * the caller frees it now, else the last query does. */
static bool kept_drop(struct kept_netns *k)
{
	k->dropped = true;
	return k->refs == 0;
}

static struct kept_netns *kept_find(uint32_t ino)
{
	for (size_t i = 0; i < n_kept; i++)
		if (kept[i]->ino == ino)
			return kept[i];
	return NULL;
}

/* The kept entry of ino, opened through pid when there is none. */
static struct kept_netns *kept_get(uint32_t ino, pid_t pid, int *err)
{
	struct kept_netns *k;
	int fd;

	pthread_mutex_lock(&table_mu);
	k = kept_find(ino);
	if (k)
		k->refs++;
	pthread_mutex_unlock(&table_mu);
	if (k)
		return k;
	if (pid <= 0) {
		*err = -ENOENT;
		return NULL;
	}
	fd = open_in(ino, pid);
	if (fd < 0) {
		*err = fd;
		return NULL;
	}
	pthread_mutex_lock(&table_mu);
	k = kept_find(ino); /* another thread opened it meanwhile */
	if (!k && n_kept == cap_kept) {
		size_t ncap = cap_kept ? cap_kept * 2 : 8;
		struct kept_netns **nv = realloc(kept, ncap * sizeof(struct kept_netns *));

		if (nv) {
			kept = nv;
			cap_kept = ncap;
		}
	}
	if (!k && n_kept < cap_kept && (k = calloc(1, sizeof(*k)))) {
		k->ino = ino;
		k->fd = fd;
		pthread_mutex_init(&k->mu, NULL);
		kept[n_kept++] = k;
		fd = -1;
	}
	if (k)
		k->refs++;
	pthread_mutex_unlock(&table_mu);
	if (fd >= 0)
		close(fd);
	if (!k)
		*err = -ENOMEM;
	return k;
}

int diag_netns_with(uint32_t ino, pid_t pid, int (*fn)(int fd, void *ctx), void *ctx)
{
	struct kept_netns *k;
	int rc, err = 0;

	if (ino == 0 || ino == diag_netns_own()) {
		int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);

		if (fd < 0)
			return -errno;
		rc = fn(fd, ctx);
		close(fd);
		return rc;
	}
	k = kept_get(ino, pid, &err);
	if (!k)
		return err;
	pthread_mutex_lock(&k->mu);
	rc = fn(k->fd, ctx);
	pthread_mutex_unlock(&k->mu);
	kept_put(k);
	return rc;
}

int diag_netns_known(uint32_t **out, size_t *n)
{
	int err = 0;

	pthread_mutex_lock(&table_mu);
	*n = n_kept;
	*out = malloc((n_kept ? n_kept : 1) * sizeof(**out));
	if (!*out) {
		*n = 0;
		err = -ENOMEM;
	} else {
		for (size_t i = 0; i < n_kept; i++)
			(*out)[i] = kept[i]->ino;
	}
	pthread_mutex_unlock(&table_mu);
	return err;
}

/* An entry nothing holds is freed under table_mu: freeing takes no lock. */
void diag_netns_prune(const uint32_t *alive, size_t n)
{
	pthread_mutex_lock(&table_mu);
	for (size_t i = 0; i < n_kept;) {
		struct kept_netns *k = kept[i];
		bool live = false;

		for (size_t j = 0; j < n && !live; j++)
			live = alive[j] == k->ino;
		if (live) {
			i++;
			continue;
		}
		kept[i] = kept[--n_kept];
		if (kept_drop(k))
			kept_destroy(k);
	}
	pthread_mutex_unlock(&table_mu);
}

void diag_netns_close_all(void)
{
	pthread_mutex_lock(&table_mu);
	while (n_kept) {
		struct kept_netns *k = kept[--n_kept];

		if (kept_drop(k))
			kept_destroy(k);
	}
	free(kept);
	kept = NULL;
	cap_kept = 0;
	pthread_mutex_unlock(&table_mu);
}
