/*
 * `sockwarden doctor`: every path-bound listener on the host, in every
 * namespace, and its problems (an orphaned listener whose path is gone, a
 * full backlog), and socket files under the usual directories of every
 * mount namespace that no socket is bound to (stale_socket), with sock_diag
 * and the file system only.
 *
 * A listener's name means something in its holders' mount namespace (DESIGN
 * §2 "Namespaces"): it is checked there, beneath that namespace's root
 * (one root fd per namespace per run, openat2(RESOLVE_IN_ROOT)), so a
 * container's live listener is not taken for an orphan because the host has
 * no such path. The stale-file walk goes through each namespace's root too,
 * one directory fd at a time, never following a symlink; a file two
 * namespaces see (a bind mount) is reported once, by (dev, ino).
 */
#include "commands.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host_view.h"
#include "shared/discovery.h"
#include "shared/events.h"
#include "shared/exitcodes.h"
#include "shared/nsroot.h"
#include "shared/paths.h"

/* At most this many mount namespaces of one socket's holders are told apart. */
#define MAX_HOLDER_NS 16
/* How deep below each directory of stale_dirs the walk goes. */
#define STALE_DEPTH 6

static const char *const stale_dirs[] = { "/run", "/tmp", "/var/run", "/dev/shm" };

struct doctor {
	struct host_view h;
	struct ns_roots roots;    /* one root fd per mount namespace looked into */
	json_t *problems;
	struct file_id *seen;     /* socket files the walk has judged, any namespace */
	size_t n_seen, cap_seen;
	size_t n_listeners;
	size_t n_namespaces;      /* mount namespaces looked into */
	size_t unreachable;       /* ... and those whose root could not be opened */
	size_t unchecked;         /* listeners no holder's namespace could be reached for */
};

static struct ns_root *root_of(struct doctor *d, uint32_t mntns, pid_t pid)
{
	return ns_roots_get(&d->roots, mntns ? ns_key(mntns) : 0, pid);
}

static void check_listener(struct doctor *d, const struct unix_listener *l)
{
	struct ns_holder hs[MAX_HOLDER_NS];
	size_t n = holder_namespaces(&d->h, l->sock_ino, hs, MAX_HOLDER_NS);
	struct ns_holder where = n ? hs[0] : (struct ns_holder){ 0, 0 };
	char lp[SW_PATH_MAX];
	bool bound = false, checked = false;
	json_t *j;

	if (!listener_abs_path(l, where.pid, lp, sizeof(lp)) || ns_path_via_proc(lp))
		return; /* abstract, unbound, or a name no one else can reach */
	d->n_listeners++;
	if (n == 0) { /* holder unknown: an absolute name, in the CLI's namespace */
		hs[0] = where;
		n = 1;
	}
	/* bound where any of its holders' namespaces sees it */
	for (size_t k = 0; k < n && !bound; k++) {
		char p[SW_PATH_MAX];
		struct ns_root *root;

		if (!listener_abs_path(l, hs[k].pid, p, sizeof(p)))
			continue;
		root = root_of(d, hs[k].mntns, hs[k].pid);
		if (!root)
			continue;
		checked = true;
		if (ns_path_is(root, p, l->vfs_dev, l->vfs_ino)) {
			bound = true;
			where = hs[k];
			if (strcmp(p, lp) != 0)
				snprintf(lp, sizeof(lp), "%s", p);
		}
	}
	if (!checked) {
		d->unchecked++;
		return;
	}
	if (bound && !(l->max_backlog && l->backlog >= l->max_backlog))
		return;
	j = json_object();
	event_set_path(j, "path", lp, strlen(lp));
	if (!bound) {
		json_object_set_new(j, "problem", json_string("orphaned_listener"));
		json_object_set_new(j, "socket_inode", json_integer((json_int_t)l->sock_ino));
	} else {
		json_object_set_new(j, "problem", json_string("full_backlog"));
		json_object_set_new(j, "backlog", json_integer(l->backlog));
		json_object_set_new(j, "max_backlog", json_integer(l->max_backlog));
	}
	if (!where.mntns)
		where.mntns = ns_self_mntns();
	ns_json_set(j, where.mntns,
		    l->netns_ino ? l->netns_ino : (where.pid ? ns_netns_of(where.pid) : 0),
		    where.pid);
	json_object_set_new(j, "owners", owners_json(&d->h, l->sock_ino, where.mntns));
	json_array_append_new(d->problems, j);
}

/* Whether (dev, ino) was judged already (from another namespace); notes it. */
static bool seen_before(struct doctor *d, uint64_t dev, uint64_t ino)
{
	for (size_t i = 0; i < d->n_seen; i++)
		if (d->seen[i].dev == dev && d->seen[i].ino == ino)
			return true;
	if (d->n_seen == d->cap_seen) {
		size_t cap = d->cap_seen ? 2 * d->cap_seen : 64;
		struct file_id *v = realloc(d->seen, cap * sizeof(*v));

		if (!v)
			return false;
		d->seen = v;
		d->cap_seen = cap;
	}
	d->seen[d->n_seen++] = (struct file_id){ dev, ino };
	return false;
}

/* The namespace a stale file is reported in. */
struct walk_ns {
	uint32_t mntns;
	pid_t pid; /* one of its processes (attribution), 0 for the CLI's own */
};

/* Socket files under the directory dfd (named dir in the namespace) that no
 * socket is bound to. dfd is closed. */
static void find_stale(struct doctor *d, const struct walk_ns *ns, int dfd,
		       const char *dir, int depth)
{
	DIR *dp = fdopendir(dfd);
	struct dirent *de;

	if (!dp) {
		close(dfd);
		return;
	}
	while ((de = readdir(dp))) {
		char p[SW_PATH_MAX];
		struct stat st;
		json_t *j;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
		    strcmp(de->d_name, ".sockwarden-guard") == 0 ||
		    strcmp(de->d_name, ".sockwarden-redirect") == 0)
			continue;
		if (snprintf(p, sizeof(p), "%s/%s", strcmp(dir, "/") ? dir : "",
			     de->d_name) >= (int)sizeof(p))
			continue;
		if (fstatat(dirfd(dp), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			int sub;

			if (depth >= STALE_DEPTH)
				continue;
			/* one component, never ".." and never a symlink: the walk
			 * stays beneath the namespace's root */
			sub = openat(dirfd(dp), de->d_name,
				     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0)
				find_stale(d, ns, sub, p, depth + 1);
			continue;
		}
		if (!S_ISSOCK(st.st_mode) ||
		    seen_before(d, (uint64_t)st.st_dev, (uint64_t)st.st_ino) ||
		    host_view_binds(&d->h, (uint64_t)st.st_dev, (uint64_t)st.st_ino))
			continue;
		j = json_object();
		event_set_path(j, "path", p, strlen(p));
		json_object_set_new(j, "problem", json_string("stale_socket"));
		ns_json_set(j, ns->mntns, 0, ns->pid);
		json_array_append_new(d->problems, j);
	}
	closedir(dp);
}

static void walk_namespace(struct doctor *d, const struct ns_root *root,
			   const struct walk_ns *ns)
{
	for (size_t r = 0; r < sizeof(stale_dirs) / sizeof(*stale_dirs); r++) {
		/* a symlinked one (/var/run -> /run) is walked by its target's
		 * name, or not at all */
		int dfd = ns_open(root, stale_dirs[r], O_RDONLY | O_DIRECTORY, true);

		if (dfd >= 0)
			find_stale(d, ns, dfd, stale_dirs[r], 0);
	}
}

static void find_stale_everywhere(struct doctor *d)
{
	struct ns_holder *mnts = NULL;
	size_t n = 0;
	struct walk_ns own = { ns_self_mntns(), 0 };

	/* the CLI's own first: a file it sees too is reported by its name here */
	walk_namespace(d, &d->roots.own, &own);
	d->n_namespaces = 1;
	if (host_mount_namespaces(&mnts, &n) != 0)
		return;
	for (size_t i = 0; i < n; i++) {
		struct walk_ns ns = { mnts[i].mntns, mnts[i].pid };
		struct ns_root *root;

		if (mnts[i].mntns == own.mntns)
			continue;
		d->n_namespaces++;
		root = root_of(d, mnts[i].mntns, mnts[i].pid);
		if (!root) {
			d->unreachable++;
			continue;
		}
		walk_namespace(d, root, &ns);
	}
	free(mnts);
}

static void print_text(const struct doctor *d)
{
	size_t i;
	json_t *p;

	printf("%zu path-bound listening sockets in %zu mount namespace%s, %zu problem%s\n",
	       d->n_listeners, d->n_namespaces, d->n_namespaces == 1 ? "" : "s",
	       json_array_size(d->problems), json_array_size(d->problems) == 1 ? "" : "s");
	if (d->unreachable)
		printf("  (%zu mount namespace%s could not be looked into)\n", d->unreachable,
		       d->unreachable == 1 ? "" : "s");
	if (d->unchecked)
		printf("  (%zu listener%s not checked: no holder's namespace could be "
		       "looked into)\n", d->unchecked, d->unchecked == 1 ? "" : "s");
	json_array_foreach(d->problems, i, p) {
		const char *kind = json_string_value(json_object_get(p, "problem"));
		json_t *owners = json_object_get(p, "owners");
		json_t *o = owners ? json_array_get(owners, 0) : NULL;
		char where[256];

		printf("  %-18s %s", kind, json_string_value(json_object_get(p, "path")));
		if (o)
			printf("  (pid %lld %s)", json_integer_value(json_object_get(o, "pid")),
			       json_string_value(json_object_get(o, "comm")));
		if (strcmp(kind, "full_backlog") == 0)
			printf("  backlog %lld/%lld",
			       json_integer_value(json_object_get(p, "backlog")),
			       json_integer_value(json_object_get(p, "max_backlog")));
		ns_text(p, where, sizeof(where));
		printf("%s\n", where);
	}
}

int doctor_main(bool json)
{
	struct doctor d = {0};
	json_t *out;
	int err;

	err = host_view_load(&d.h, true);
	if (err) {
		fprintf(stderr, "sockwarden doctor: sock_diag failed: %s\n", strerror(-err));
		host_view_free(&d.h);
		return SW_EXIT_ENV;
	}
	ns_roots_init(&d.roots);
	d.problems = json_array();
	for (size_t i = 0; i < d.h.ll.n; i++)
		if (d.h.ll.v[i].state == TCP_LISTEN_STATE)
			check_listener(&d, &d.h.ll.v[i]);
	find_stale_everywhere(&d);

	out = json_object();
	json_object_set_new(out, "listeners", json_integer((json_int_t)d.n_listeners));
	json_object_set_new(out, "mntns", json_integer(ns_self_mntns()));
	json_object_set_new(out, "namespaces", json_integer((json_int_t)d.n_namespaces));
	if (d.unreachable)
		json_object_set_new(out, "unreachable_namespaces",
				    json_integer((json_int_t)d.unreachable));
	if (d.unchecked)
		json_object_set_new(out, "unchecked_listeners",
				    json_integer((json_int_t)d.unchecked));
	json_object_set_new(out, "problems", json_incref(d.problems));
	if (json) {
		json_dumpf(out, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		putchar('\n');
	} else {
		print_text(&d);
	}
	err = json_array_size(d.problems) ? SW_EXIT_UNHEALTHY : SW_EXIT_OK;
	json_decref(out);
	json_decref(d.problems);
	ns_roots_free(&d.roots);
	free(d.seen);
	host_view_free(&d.h);
	return err;
}
