#include "discovery.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "diag_netns.h"
#include "paths.h"

uint64_t kdev_to_dev(uint32_t kdev)
{
	return makedev(kdev >> 20, kdev & 0xfffff);
}

static int diag_send(int fd, uint32_t states, uint64_t ino, bool dump)
{
	struct {
		struct nlmsghdr nlh;
		struct unix_diag_req req;
	} msg = {
		.nlh = {
			.nlmsg_len = sizeof(msg),
			.nlmsg_type = SOCK_DIAG_BY_FAMILY,
			.nlmsg_flags = NLM_F_REQUEST | (dump ? NLM_F_DUMP : 0),
			.nlmsg_seq = 1,
		},
		.req = {
			.sdiag_family = AF_UNIX,
			.udiag_states = states,
			.udiag_ino = (uint32_t)ino,
			.udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_RQLEN,
			/* no cookie: match by inode alone */
			.udiag_cookie = { ~0U, ~0U },
		},
	};
	struct sockaddr_nl nl = { .nl_family = AF_NETLINK };

	if (sendto(fd, &msg, sizeof(msg), 0, (struct sockaddr *)&nl, sizeof(nl)) < 0)
		return -errno;
	return 0;
}

static void diag_parse(const struct unix_diag_msg *m, size_t len,
		       struct unix_listener *l)
{
	const struct rtattr *a = (const struct rtattr *)(m + 1);
	size_t rem = len - NLMSG_ALIGN(sizeof(*m));

	memset(l, 0, sizeof(*l));
	l->sock_ino = m->udiag_ino;
	l->type = m->udiag_type;
	l->state = m->udiag_state;
	for (; RTA_OK(a, rem); a = RTA_NEXT(a, rem)) {
		size_t plen = RTA_PAYLOAD(a);

		switch (a->rta_type) {
		case UNIX_DIAG_NAME:
			if (plen > sizeof(l->name))
				plen = sizeof(l->name);
			memcpy(l->name, RTA_DATA(a), plen);
			l->name_len = (uint16_t)plen;
			break;
		case UNIX_DIAG_VFS: {
			const struct unix_diag_vfs *v = RTA_DATA(a);

			l->vfs_ino = v->udiag_vfs_ino;
			l->vfs_dev = kdev_to_dev(v->udiag_vfs_dev);
			break;
		}
		case UNIX_DIAG_RQLEN: {
			const struct unix_diag_rqlen *r = RTA_DATA(a);

			l->backlog = r->udiag_rqueue;
			l->max_backlog = r->udiag_wqueue;
			break;
		}
		}
	}
}

int listener_list_append(struct listener_list *out, const struct unix_listener *l)
{
	if (out->n == out->cap) {
		size_t cap = out->cap ? out->cap * 2 : 64;
		void *nv = realloc(out->v, cap * sizeof(*out->v));

		if (!nv)
			return -ENOMEM;
		out->v = nv;
		out->cap = cap;
	}
	out->v[out->n++] = *l;
	return 0;
}

/* Reads replies until NLMSG_DONE (dump) or the first message (exact). */
static int diag_recv(int fd, struct listener_list *out, bool dump)
{
	/* per thread: the scanner's dump and the loop's look-ups run at once */
	static _Thread_local char buf[32768] __attribute__((aligned(8)));

	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		struct nlmsghdr *h;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
		     h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_type == NLMSG_DONE)
				return 0;
			if (h->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(h);

				return e->error ? e->error : 0;
			}
			if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY) {
				struct unix_listener l;
				int err;

				diag_parse(NLMSG_DATA(h), h->nlmsg_len - NLMSG_HDRLEN, &l);
				err = listener_list_append(out, &l);
				if (err)
					return err;
				if (!dump)
					return 0;
			}
		}
	}
}

struct diag_query {
	uint32_t states;
	uint64_t ino;   /* exact look-up of this inode; 0 with dump */
	bool dump;
	uint32_t netns; /* the namespace asked: set on what it answers */
	struct listener_list *out;
};

static int diag_query_fd(int fd, void *ctx)
{
	struct diag_query *q = ctx;
	size_t first = q->out->n;
	int err = diag_send(fd, q->states, q->ino, q->dump);

	if (!err)
		err = diag_recv(fd, q->out, q->dump);
	for (size_t i = first; i < q->out->n; i++)
		q->out->v[i].netns_ino = q->netns;
	return err;
}

static int diag_query_in(uint32_t netns, pid_t via, struct diag_query *q)
{
	q->netns = netns ? netns : diag_netns_own();
	return diag_netns_with(q->netns, via, diag_query_fd, q);
}

int discovery_dump(struct listener_list *out, uint32_t states)
{
	struct diag_query q = { .states = states, .dump = true, .out = out };

	return diag_query_in(0, 0, &q);
}

int discovery_dump_all(struct listener_list *out, uint32_t states, size_t *n_netns)
{
	struct netns_ref *ns;
	uint32_t *alive;
	size_t n = 0;
	int err = diag_netns_list(&ns, &n);

	*n_netns = 0;
	if (err)
		return err;
	alive = calloc(n ? n : 1, sizeof(*alive));
	if (!alive) {
		free(ns);
		return -ENOMEM;
	}
	/* the own namespace first: its failure fails the dump */
	err = discovery_dump(out, states);
	for (size_t i = 0; i < n && !err; i++) {
		struct diag_query q = { .states = states, .dump = true, .out = out };
		size_t before = out->n;
		int rc;

		alive[i] = ns[i].ino;
		if (ns[i].ino == diag_netns_own())
			continue;
		rc = diag_query_in(ns[i].ino, ns[i].pid, &q);
		if (rc == -ENOMEM)
			err = rc;
		else if (rc)
			out->n = before; /* its only process left meanwhile: nothing lost */
		else
			(*n_netns)++;
	}
	(*n_netns)++;
	if (!err)
		diag_netns_prune(alive, n);
	free(alive);
	free(ns);
	return err;
}

int discovery_get_in(uint32_t netns, pid_t via, uint64_t sock_ino, struct unix_listener *out)
{
	struct listener_list l = {0};
	struct diag_query q = { .states = ~0U, .ino = sock_ino, .out = &l };
	int err = diag_query_in(netns, via, &q);

	if (!err && l.n == 0)
		err = -ENOENT;
	if (!err)
		*out = l.v[0];
	listener_list_free(&l);
	return err;
}

/*
 * Sockets of other network namespaces that no kept sock_diag socket can see
 * (the agent cannot enter a namespace without CAP_SYS_ADMIN): the discovery
 * source lists a holder's listeners itself (the iterator, scoped to one
 * process), and the holders are remembered from its scans.
 */
static pthread_mutex_t foreign_mu = PTHREAD_MUTEX_INITIALIZER;
static discovery_pid_listeners_fn foreign_fn;
static void *foreign_ctx;
static struct foreign_holder {
	uint64_t sock_ino;
	pid_t pid;
} *holders;
static size_t n_holders;

void discovery_set_foreign(discovery_pid_listeners_fn fn, void *ctx)
{
	pthread_mutex_lock(&foreign_mu);
	foreign_fn = fn;
	foreign_ctx = ctx;
	pthread_mutex_unlock(&foreign_mu);
}

static int cmp_holder(const void *a, const void *b)
{
	const struct foreign_holder *x = a, *y = b;

	return (x->sock_ino > y->sock_ino) - (x->sock_ino < y->sock_ino);
}

void discovery_note_foreign(const struct listener_list *ll, const struct owner_map *om)
{
	struct foreign_holder *v = calloc(ll->n ? ll->n : 1, sizeof(*v));
	size_t n = 0;

	if (!v)
		return; /* the last scan's holders stay */
	for (size_t i = 0; i < ll->n; i++) {
		const struct owner_entry *oe;
		size_t n_owners;

		if (!ll->v[i].netns_ino || ll->v[i].netns_ino == diag_netns_own())
			continue;
		oe = owner_map_find(om, ll->v[i].sock_ino, &n_owners);
		if (n_owners)
			v[n++] = (struct foreign_holder){ ll->v[i].sock_ino, oe[0].o.pid };
	}
	qsort(v, n, sizeof(*v), cmp_holder);
	pthread_mutex_lock(&foreign_mu);
	free(holders);
	holders = v;
	n_holders = n;
	pthread_mutex_unlock(&foreign_mu);
}

/* The listeners of pid through the source's own look-up; -ENOSYS without. */
static int foreign_pid_listeners(pid_t pid, struct listener_list *out)
{
	discovery_pid_listeners_fn fn;
	void *ctx;

	pthread_mutex_lock(&foreign_mu);
	fn = foreign_fn;
	ctx = foreign_ctx;
	pthread_mutex_unlock(&foreign_mu);
	return fn ? fn(pid, out, ctx) : -ENOSYS;
}

static int foreign_get(uint64_t sock_ino, struct unix_listener *out)
{
	struct foreign_holder key = { .sock_ino = sock_ino }, *h;
	struct listener_list ll = {0};
	pid_t pid = 0;
	int err;

	pthread_mutex_lock(&foreign_mu);
	h = n_holders ? bsearch(&key, holders, n_holders, sizeof(*holders), cmp_holder) : NULL;
	if (h)
		pid = h->pid;
	pthread_mutex_unlock(&foreign_mu);
	if (!pid)
		return -ENOENT;
	err = foreign_pid_listeners(pid, &ll);
	if (!err) {
		err = -ENOENT;
		for (size_t i = 0; i < ll.n && err; i++)
			if (ll.v[i].sock_ino == sock_ino) {
				*out = ll.v[i];
				err = 0;
			}
	}
	listener_list_free(&ll);
	return err == -ENOSYS || err == -ESRCH ? -ENOENT : err;
}

int discovery_get(uint64_t sock_ino, struct unix_listener *out)
{
	uint32_t *known;
	size_t n;
	int err = discovery_get_in(0, 0, sock_ino, out);

	if (err != -ENOENT)
		return err;
	/* not in the own namespace: in one a socket is kept for ... */
	if (diag_netns_known(&known, &n) == 0) {
		for (size_t i = 0; i < n && err == -ENOENT; i++)
			err = discovery_get_in(known[i], 0, sock_ino, out);
		free(known);
	}
	/* ... or held by a process the source can ask after */
	return err == -ENOENT ? foreign_get(sock_ino, out) : err;
}

void listener_list_free(struct listener_list *l)
{
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static bool exe_is_interpreter(const char *exe);
static void read_script(pid_t pid, char *out, size_t outlen);

bool owner_read(pid_t pid, struct owner *o)
{
	char p[64], line[256];
	FILE *f;
	ssize_t n;
	bool ok = false;

	memset(o, 0, sizeof(*o));
	o->pid = pid;
	snprintf(p, sizeof(p), "/proc/%d/status", pid);
	f = fopen(p, "re");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "Name:\t", 6) == 0) {
			size_t n = strcspn(line + 6, "\n");

			if (n >= sizeof(o->comm))
				n = sizeof(o->comm) - 1;
			memcpy(o->comm, line + 6, n);
			o->comm[n] = 0;
		} else if (strncmp(line, "Uid:\t", 5) == 0) {
			o->uid = (uid_t)strtoul(line + 5, NULL, 10);
			ok = true;
		} else if (strncmp(line, "Gid:\t", 5) == 0) {
			o->gid = (gid_t)strtoul(line + 5, NULL, 10);
		}
	}
	fclose(f);
	snprintf(p, sizeof(p), "/proc/%d/exe", pid);
	n = readlink(p, o->exe, sizeof(o->exe) - 1);
	o->exe[n > 0 ? n : 0] = 0;
	if (exe_is_interpreter(o->exe))
		read_script(pid, o->script, sizeof(o->script));
	return ok;
}

static bool exe_is_interpreter(const char *exe)
{
	static const char *const names[] = { "python", "perl", "ruby", "node", "php",
					     "bash", "sh", "dash", "java", "lua" };
	const char *base = strrchr(exe, '/');

	base = base ? base + 1 : exe;
	for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++)
		if (strncmp(base, names[i], strlen(names[i])) == 0)
			return true;
	return false;
}

/* The first argument after argv[0] that is not an option. */
static void read_script(pid_t pid, char *out, size_t outlen)
{
	char p[64], buf[4096];
	ssize_t n;
	int fd;

	out[0] = 0;
	snprintf(p, sizeof(p), "/proc/%d/cmdline", pid);
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = 0;
	for (char *a = buf + strlen(buf) + 1; a < buf + n; a += strlen(a) + 1) {
		if (a[0] == '-')
			continue;
		snprintf(out, outlen, "%s", a);
		return;
	}
}

static void exe_strip_deleted(char *exe)
{
	static const char deleted[] = " (deleted)";
	size_t n = strlen(exe), d = sizeof(deleted) - 1;

	/* "/usr/bin/foo (deleted)" after a package upgrade is still /usr/bin/foo */
	if (n > d && strcmp(exe + n - d, deleted) == 0)
		exe[n - d] = 0;
}

bool owner_same_program(const struct owner *a, const struct owner *b)
{
	char ea[sizeof(a->exe)], eb[sizeof(b->exe)];

	memcpy(ea, a->exe, sizeof(ea));
	memcpy(eb, b->exe, sizeof(eb));
	exe_strip_deleted(ea);
	exe_strip_deleted(eb);
	return ea[0] && strcmp(ea, eb) == 0 && strcmp(a->script, b->script) == 0;
}

uint64_t fd_socket_inode(pid_t pid, int fd)
{
	char p[64], link[64];
	ssize_t n;
	unsigned long long ino;

	snprintf(p, sizeof(p), "/proc/%d/fd/%d", pid, fd);
	n = readlink(p, link, sizeof(link) - 1);
	if (n <= 0)
		return 0;
	link[n] = 0;
	if (sscanf(link, "socket:[%llu]", &ino) != 1)
		return 0;
	return ino;
}

/* The sockfs inode an fd entry of /proc/<pid>/fd links to, or 0. */
static uint64_t fd_entry_socket_inode(const char *fddir, const char *name)
{
	char link[64], lp[384];
	unsigned long long ino;
	ssize_t n;

	if (name[0] == '.')
		return 0;
	snprintf(lp, sizeof(lp), "%s/%s", fddir, name);
	n = readlink(lp, link, sizeof(link) - 1);
	if (n <= 8 || strncmp(link, "socket:[", 8) != 0)
		return 0;
	link[n] = 0;
	return sscanf(link, "socket:[%llu]", &ino) == 1 ? ino : 0;
}

bool discovery_pid_holds(pid_t pid, uint64_t sock_ino)
{
	char fddir[64];
	struct dirent *fe;
	bool held = false;
	DIR *d;

	snprintf(fddir, sizeof(fddir), "/proc/%d/fd", pid);
	d = opendir(fddir);
	if (!d)
		return false;
	while (!held && (fe = readdir(d)))
		held = fd_entry_socket_inode(fddir, fe->d_name) == sock_ino;
	closedir(d);
	return held;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

int discovery_pid_listeners(pid_t pid, struct listener_list *out)
{
	char fddir[64];
	struct dirent *fe;
	uint64_t *inos = NULL;
	size_t n = 0, cap = 0;
	int err = 0;
	DIR *d;
	uint32_t netns = diag_netns_of_pid(pid);

	if (!netns)
		return -ESRCH;
	if (netns != diag_netns_own()) {
		/* the source sees every namespace; a kept socket only some */
		err = foreign_pid_listeners(pid, out);
		if (err != -ENOSYS)
			return err;
		err = 0;
	}
	snprintf(fddir, sizeof(fddir), "/proc/%d/fd", pid);
	d = opendir(fddir);
	if (!d)
		return -errno;
	while ((fe = readdir(d))) {
		uint64_t ino = fd_entry_socket_inode(fddir, fe->d_name);

		if (!ino)
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			uint64_t *nv = realloc(inos, ncap * sizeof(*nv));

			if (!nv) {
				err = -ENOMEM;
				break;
			}
			inos = nv;
			cap = ncap;
		}
		inos[n++] = ino;
	}
	closedir(d);
	if (n)
		qsort(inos, n, sizeof(*inos), cmp_u64);
	for (size_t i = 0; i < n && !err; i++) {
		struct unix_listener l = {0};

		if ((i && inos[i] == inos[i - 1]) ||
		    discovery_get_in(netns, pid, inos[i], &l) != 0 ||
		    l.state != TCP_LISTEN_STATE)
			continue; /* a dup'ed fd, not AF_UNIX, closed since, not listening */
		err = listener_list_append(out, &l);
	}
	free(inos);
	return err;
}

static int cmp_owner_entry(const void *a, const void *b)
{
	const struct owner_entry *x = a, *y = b;

	if (x->sock_ino != y->sock_ino)
		return x->sock_ino < y->sock_ino ? -1 : 1;
	return (x->o.pid > y->o.pid) - (x->o.pid < y->o.pid);
}

int discovery_owners(const uint64_t *inos, size_t n_inos, struct owner_map *out,
		     struct discovery_stats *stats)
{
	DIR *proc = opendir("/proc");
	struct dirent *pe;
	struct discovery_stats st = {0};

	if (!proc)
		return -errno;
	while ((pe = readdir(proc))) {
		char fddir[64];
		DIR *fds;
		struct dirent *fe;
		pid_t pid;
		struct owner o;
		bool have_owner = false;

		if (pe->d_name[0] < '1' || pe->d_name[0] > '9')
			continue;
		pid = (pid_t)atoi(pe->d_name);
		snprintf(fddir, sizeof(fddir), "/proc/%d/fd", pid);
		fds = opendir(fddir);
		if (!fds)
			continue;
		st.processes++;
		while ((fe = readdir(fds))) {
			uint64_t ino;

			if (fe->d_name[0] == '.')
				continue;
			st.fds++;
			ino = fd_entry_socket_inode(fddir, fe->d_name);
			if (!ino)
				continue;
			if (!bsearch(&(uint64_t){ino}, inos, n_inos, sizeof(*inos), cmp_u64))
				continue;
			if (!have_owner) {
				if (!owner_read(pid, &o))
					break;
				have_owner = true;
			}
			if (out->n == out->cap) {
				size_t cap = out->cap ? out->cap * 2 : 64;
				void *nv = realloc(out->v, cap * sizeof(*out->v));

				if (!nv)
					break;
				out->v = nv;
				out->cap = cap;
			}
			out->v[out->n].sock_ino = ino;
			out->v[out->n].o = o;
			out->n++;
		}
		closedir(fds);
	}
	closedir(proc);
	if (out->n) {
		size_t k = 1;

		qsort(out->v, out->n, sizeof(*out->v), cmp_owner_entry);
		/* dup'ed fds of one socket count once per process */
		for (size_t i = 1; i < out->n; i++)
			if (cmp_owner_entry(&out->v[i], &out->v[k - 1]) != 0)
				out->v[k++] = out->v[i];
		out->n = k;
	}
	st.listeners = n_inos;
	if (stats)
		*stats = st;
	return 0;
}

int owner_map_merge(struct owner_map *into, const struct owner_map *more)
{
	if (into->n + more->n > into->cap) {
		size_t cap = into->n + more->n;
		struct owner_entry *nv = realloc(into->v, cap * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		into->v = nv;
		into->cap = cap;
	}
	memcpy(into->v + into->n, more->v, more->n * sizeof(*more->v));
	into->n += more->n;
	qsort(into->v, into->n, sizeof(*into->v), cmp_owner_entry);
	return 0;
}

const struct owner_entry *owner_map_find(const struct owner_map *m, uint64_t sock_ino,
					 size_t *n)
{
	size_t lo = 0, hi = m->n;

	while (lo < hi) { /* the first entry >= sock_ino */
		size_t mid = lo + (hi - lo) / 2;

		if (m->v[mid].sock_ino < sock_ino)
			lo = mid + 1;
		else
			hi = mid;
	}
	*n = 0;
	while (lo + *n < m->n && m->v[lo + *n].sock_ino == sock_ino)
		(*n)++;
	return *n ? &m->v[lo] : NULL;
}

void owner_map_free(struct owner_map *m)
{
	free(m->v);
	memset(m, 0, sizeof(*m));
}

int proc_stat_read(pid_t pid, char *state, unsigned long *flags)
{
	char path[64], buf[1024];
	const char *rp;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	if (n < 0 && errno == ESRCH) {
		/* reaped between the open and the read: gone */
		close(fd);
		return -ESRCH;
	}
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = 0;
	/* the command name may hold anything: the fields start after its last ')'
	 * as state ppid pgrp session tty tpgid flags */
	rp = strrchr(buf, ')');
	if (!rp || sscanf(rp + 1, " %c %*d %*d %*d %*d %*d %lu", state, flags) != 2)
		return -EIO;
	return 0;
}

bool proc_cwd(pid_t pid, char *out, size_t outlen)
{
	char p[64];
	ssize_t n;

	snprintf(p, sizeof(p), "/proc/%d/cwd", pid);
	n = readlink(p, out, outlen - 1);
	if (n <= 0)
		return false;
	out[n] = 0;
	return true;
}

bool listener_abs_path(const struct unix_listener *l, pid_t owner, char *out,
		       size_t outlen)
{
	char name[sizeof(l->name) + 1], cwd[SW_PATH_MAX];
	size_t n = l->name_len;

	if (n == 0 || l->name[0] == 0)
		return false; /* unbound or abstract */
	memcpy(name, l->name, n);
	name[n] = 0;
	n = strnlen(name, n);
	name[n] = 0;
	if (name[0] == '/')
		return path_normalize(name, out, outlen);
	if (owner <= 0 || !proc_cwd(owner, cwd, sizeof(cwd)))
		return false;
	return path_join(cwd, name, out, outlen);
}

bool listener_path_matches(const struct unix_listener *l, const char *path)
{
	struct stat st;

	if (lstat(path, &st) != 0 || !S_ISSOCK(st.st_mode))
		return false;
	return st.st_ino == l->vfs_ino && st.st_dev == l->vfs_dev;
}

/* Alive and not a zombie: a killed agent its parent has not reaped yet is gone. */
bool process_alive(int pid)
{
	unsigned long flags = 0;
	char state = 0;

	return pid > 0 && proc_stat_read(pid, &state, &flags) == 0 && state != 'Z' &&
	       state != 'X';
}

int discovery_get_via(pid_t holder, uint64_t sock_ino, struct unix_listener *out)
{
	struct listener_list ll = {0};
	int rc = discovery_get(sock_ino, out);

	if (rc == 0 || holder <= 0)
		return rc;
	if (discovery_pid_listeners(holder, &ll) != 0) {
		listener_list_free(&ll);
		return rc;
	}
	rc = -ENOENT;
	for (size_t i = 0; i < ll.n; i++) {
		if (ll.v[i].sock_ino == sock_ino) {
			*out = ll.v[i];
			rc = 0;
			break;
		}
	}
	listener_list_free(&ll);
	return rc;
}
