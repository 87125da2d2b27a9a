/*
 * probe and doctor look at the host as it is now, with sock_diag and the file
 * system only, so they work where BPF cannot (a container, an old kernel).
 */
#include "probe.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "discovery.h"
#include "events.h"
#include "exitcodes.h"
#include "paths.h"

struct host_view {
	struct listener_list ll;
	struct owner_map om;
	uint64_t *inos;
};

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

	return a < b ? -1 : a > b;
}

static int host_view_load(struct host_view *h)
{
	int err;

	memset(h, 0, sizeof(*h));
	err = discovery_dump(&h->ll, ~0U);
	if (err)
		return err;
	h->inos = calloc(h->ll.n ? h->ll.n : 1, sizeof(*h->inos));
	if (!h->inos)
		return -ENOMEM;
	for (size_t i = 0; i < h->ll.n; i++)
		h->inos[i] = h->ll.v[i].sock_ino;
	qsort(h->inos, h->ll.n, sizeof(*h->inos), cmp_u64);
	return discovery_owners(h->inos, h->ll.n, &h->om, NULL);
}

static void host_view_free(struct host_view *h)
{
	listener_list_free(&h->ll);
	owner_map_free(&h->om);
	free(h->inos);
}

static json_t *owners_json(const struct host_view *h, uint64_t ino)
{
	json_t *arr = json_array();

	for (size_t i = 0; i < h->om.n; i++) {
		const struct owner *o = &h->om.v[i].o;
		json_t *j;

		if (h->om.v[i].sock_ino != ino)
			continue;
		j = json_object();
		json_object_set_new(j, "pid", json_integer(o->pid));
		json_object_set_new(j, "comm", json_string(o->comm));
		json_object_set_new(j, "uid", json_integer(o->uid));
		json_array_append_new(arr, j);
	}
	return arr;
}

static pid_t first_owner(const struct host_view *h, uint64_t ino)
{
	for (size_t i = 0; i < h->om.n; i++)
		if (h->om.v[i].sock_ino == ino)
			return h->om.v[i].o.pid;
	return 0;
}

/* A non-blocking connect with a timeout: "ok", or the errno name. */
static const char *connect_test(const char *path, int type, int timeout_ms,
				int *err_out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int rc;

	*err_out = 0;
	if (fd < 0) {
		*err_out = errno;
		return strerror(errno);
	}
	memcpy(sa.sun_path, path, strlen(path));
	rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	if (rc != 0 && errno == EINPROGRESS) {
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		socklen_t len = sizeof(rc);

		if (poll(&p, 1, timeout_ms) <= 0) {
			errno = ETIMEDOUT;
			rc = -1;
		} else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &rc, &len) == 0 && rc) {
			errno = rc;
			rc = -1;
		}
	}
	*err_out = rc ? errno : 0;
	close(fd);
	return rc ? errno_name(*err_out) : "ok";
}

int probe_main(const char *path, bool json, int timeout_ms)
{
	char norm[SW_PATH_MAX], cwd[SW_PATH_MAX];
	struct host_view h;
	struct stat st;
	json_t *out, *listeners;
	const char *verdict = "healthy", *why = NULL;
	bool exists, is_sock = false, live = false;
	int status = SW_EXIT_OK, cerr = 0, err;

	if (!getcwd(cwd, sizeof(cwd)) || !path_join(cwd, path, norm, sizeof(norm))) {
		fprintf(stderr, "sockwarden probe: cannot resolve %s\n", path);
		return SW_EXIT_USAGE;
	}
	if (!path_fits_sun_path(norm)) {
		fprintf(stderr, "sockwarden probe: %s is %zu bytes; a socket path holds at "
			"most 107\n", norm, strlen(norm));
		return SW_EXIT_USAGE;
	}
	err = host_view_load(&h);
	if (err) {
		fprintf(stderr, "sockwarden probe: sock_diag failed: %s\n", strerror(-err));
		return SW_EXIT_ENV;
	}
	/* made only now: the returns above have nothing to free */
	out = json_object();
	listeners = json_array();
	exists = lstat(norm, &st) == 0;
	is_sock = exists && S_ISSOCK(st.st_mode);
	event_set_path(out, "path", norm, strlen(norm));
	json_object_set_new(out, "exists", json_boolean(exists));
	json_object_set_new(out, "is_socket", json_boolean(is_sock));

	for (size_t i = 0; i < h.ll.n; i++) {
		const struct unix_listener *l = &h.ll.v[i];
		char lp[SW_PATH_MAX];
		json_t *j;
		bool match;

		if (!listener_abs_path(l, first_owner(&h, l->sock_ino), lp, sizeof(lp)) ||
		    strcmp(lp, norm) != 0)
			continue;
		match = listener_path_matches(l, norm);
		j = json_object();
		json_object_set_new(j, "socket_inode", json_integer((json_int_t)l->sock_ino));
		json_object_set_new(j, "inode", json_integer((json_int_t)l->vfs_ino));
		json_object_set_new(j, "listening", json_boolean(l->state == 10));
		json_object_set_new(j, "bound_here", json_boolean(match));
		json_object_set_new(j, "backlog", json_integer(l->backlog));
		json_object_set_new(j, "max_backlog", json_integer(l->max_backlog));
		json_object_set_new(j, "owners", owners_json(&h, l->sock_ino));
		json_array_append_new(listeners, j);
		if (l->state != 10)
			continue;
		if (match) {
			live = true;
			if (l->max_backlog && l->backlog >= l->max_backlog) {
				verdict = "wedged";
				why = "the listener's accept backlog is full";
			}
		} else if (strcmp(verdict, "healthy") == 0 || !live) {
			verdict = "orphaned";
			why = exists ? "a listener with this name exists but the path "
				       "names another file"
				     : "a listener with this name lives on but the path is gone";
		}
	}
	json_object_set_new(out, "listeners", listeners);
	if (live && strcmp(verdict, "orphaned") == 0) {
		/* a live listener at the path wins; the orphan is a leftover */
		verdict = "healthy_with_orphan";
		why = "the path works; an older listener with the same name lost it";
	}
	if (!live && strcmp(verdict, "orphaned") != 0) {
		if (!exists) {
			verdict = "missing";
			why = "no such path and no listener bound to it";
		} else if (!is_sock) {
			verdict = "not_a_socket";
			why = "the path exists but is not a socket";
		} else {
			verdict = "stale";
			why = "a socket file with no listener behind it";
		}
	}
	if (is_sock) {
		json_t *c = json_object();
		const char *r = connect_test(norm, SOCK_STREAM, timeout_ms, &cerr);

		if (cerr == EPROTOTYPE)
			r = connect_test(norm, SOCK_SEQPACKET, timeout_ms, &cerr);
		if (cerr == EPROTOTYPE)
			r = connect_test(norm, SOCK_DGRAM, timeout_ms, &cerr);
		json_object_set_new(c, "result", json_string(r));
		json_object_set_new(c, "timeout_ms", json_integer(timeout_ms));
		json_object_set_new(out, "connect", c);
		if (cerr == EAGAIN || cerr == ETIMEDOUT) {
			verdict = "wedged";
			why = "connect did not complete: the backlog is full";
		}
	}
	json_object_set_new(out, "verdict", json_string(verdict));
	if (why)
		json_object_set_new(out, "why", json_string(why));
	if (strcmp(verdict, "healthy") != 0 && strcmp(verdict, "healthy_with_orphan") != 0)
		status = SW_EXIT_UNHEALTHY;

	if (json) {
		json_dumpf(out, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		putchar('\n');
	} else {
		size_t i;
		json_t *l;

		printf("%s: %s\n", json_string_value(json_object_get(out, "path")), verdict);
		if (why)
			printf("  %s\n", why);
		printf("  exists: %s%s\n", exists ? "yes" : "no",
		       exists ? (is_sock ? ", a socket" : ", not a socket") : "");
		json_array_foreach(listeners, i, l) {
			size_t k;
			json_t *o;

			printf("  listener: socket inode %lld, file inode %lld, %s, "
			       "backlog %lld/%lld\n",
			       json_integer_value(json_object_get(l, "socket_inode")),
			       json_integer_value(json_object_get(l, "inode")),
			       json_is_true(json_object_get(l, "bound_here"))
				       ? "bound to this path"
				       : "ORPHANED (path lost)",
			       json_integer_value(json_object_get(l, "backlog")),
			       json_integer_value(json_object_get(l, "max_backlog")));
			json_array_foreach(json_object_get(l, "owners"), k, o)
				printf("    owner: pid %lld (%s) uid %lld\n",
				       json_integer_value(json_object_get(o, "pid")),
				       json_string_value(json_object_get(o, "comm")),
				       json_integer_value(json_object_get(o, "uid")));
		}
		if (is_sock)
			printf("  connect test: %s\n",
			       json_string_value(json_object_get(json_object_get(out, "connect"),
								 "result")));
	}
	json_decref(out);
	host_view_free(&h);
	return status;
}

/* Socket files under a directory tree that no listener is bound to. */
static void find_stale(const char *dir, const struct host_view *h, json_t *out,
		       int depth)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	if (!d || depth > 6) {
		if (d)
			closedir(d);
		return;
	}
	while ((de = readdir(d))) {
		char p[SW_PATH_MAX];
		struct stat st;
		bool bound = false;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
		    strcmp(de->d_name, ".sockwarden-guard") == 0)
			continue;
		if (snprintf(p, sizeof(p), "%s/%s", strcmp(dir, "/") ? dir : "",
			     de->d_name) >= (int)sizeof(p))
			continue;
		if (lstat(p, &st) != 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			find_stale(p, h, out, depth + 1);
			continue;
		}
		if (!S_ISSOCK(st.st_mode))
			continue;
		for (size_t i = 0; i < h->ll.n && !bound; i++)
			bound = h->ll.v[i].vfs_ino == st.st_ino &&
				h->ll.v[i].vfs_dev == st.st_dev;
		if (!bound) {
			json_t *j = json_object();

			event_set_path(j, "path", p, strlen(p));
			json_object_set_new(j, "problem", json_string("stale_socket"));
			json_array_append_new(out, j);
		}
	}
	closedir(d);
}

int doctor_main(bool json)
{
	static const char *const stale_roots[] = { "/run", "/tmp", "/var/run", "/dev/shm" };
	struct host_view h;
	json_t *problems = json_array(), *out = json_object();
	size_t n_listeners = 0, i;
	json_t *p;
	int err;

	err = host_view_load(&h);
	if (err) {
		fprintf(stderr, "sockwarden doctor: sock_diag failed: %s\n", strerror(-err));
		json_decref(problems);
		json_decref(out);
		return SW_EXIT_ENV;
	}
	for (i = 0; i < h.ll.n; i++) {
		const struct unix_listener *l = &h.ll.v[i];
		char lp[SW_PATH_MAX];
		json_t *j;

		if (l->state != 10 ||
		    !listener_abs_path(l, first_owner(&h, l->sock_ino), lp, sizeof(lp)))
			continue;
		n_listeners++;
		if (!listener_path_matches(l, lp)) {
			j = json_object();
			event_set_path(j, "path", lp, strlen(lp));
			json_object_set_new(j, "problem", json_string("orphaned_listener"));
			json_object_set_new(j, "socket_inode", json_integer((json_int_t)l->sock_ino));
			json_object_set_new(j, "owners", owners_json(&h, l->sock_ino));
			json_array_append_new(problems, j);
		} else if (l->max_backlog && l->backlog >= l->max_backlog) {
			j = json_object();
			event_set_path(j, "path", lp, strlen(lp));
			json_object_set_new(j, "problem", json_string("full_backlog"));
			json_object_set_new(j, "backlog", json_integer(l->backlog));
			json_object_set_new(j, "max_backlog", json_integer(l->max_backlog));
			json_object_set_new(j, "owners", owners_json(&h, l->sock_ino));
			json_array_append_new(problems, j);
		}
	}
	for (size_t r = 0; r < sizeof(stale_roots) / sizeof(*stale_roots); r++) {
		char real[SW_PATH_MAX];

		/* /var/run is usually a link to /run: look once */
		if (!realpath(stale_roots[r], real) ||
		    (r > 0 && strcmp(real, stale_roots[r]) != 0))
			continue;
		find_stale(real, &h, problems, 0);
	}
	json_object_set_new(out, "listeners", json_integer((json_int_t)n_listeners));
	json_object_set_new(out, "problems", problems);
	if (json) {
		json_dumpf(out, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		putchar('\n');
	} else {
		printf("%zu path-bound listening sockets, %zu problem%s\n", n_listeners,
		       json_array_size(problems), json_array_size(problems) == 1 ? "" : "s");
		json_array_foreach(problems, i, p) {
			const char *kind = json_string_value(json_object_get(p, "problem"));
			json_t *owners = json_object_get(p, "owners");
			json_t *o = owners ? json_array_get(owners, 0) : NULL;

			printf("  %-18s %s", kind, json_string_value(json_object_get(p, "path")));
			if (o)
				printf("  (pid %lld %s)", json_integer_value(json_object_get(o, "pid")),
				       json_string_value(json_object_get(o, "comm")));
			if (strcmp(kind, "full_backlog") == 0)
				printf("  backlog %lld/%lld",
				       json_integer_value(json_object_get(p, "backlog")),
				       json_integer_value(json_object_get(p, "max_backlog")));
			putchar('\n');
		}
	}
	err = json_array_size(problems) ? SW_EXIT_UNHEALTHY : SW_EXIT_OK;
	json_decref(out);
	host_view_free(&h);
	return err;
}
