/*
 * `sockwarden probe PATH`: what is at a socket path now (the file, the
 * listener bound there, its owners, a test connect), with sock_diag and the
 * file system only, so it works where BPF cannot (a container, an old
 * kernel).
 */
#include "commands.h"

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

#include "host_view.h"
#include "shared/clock.h"
#include "shared/discovery.h"
#include "shared/events.h"
#include "shared/exitcodes.h"
#include "shared/paths.h"

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
		json_object_set_new(j, "listening", json_boolean(l->state == TCP_LISTEN_STATE));
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

