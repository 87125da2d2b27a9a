/*
 * `sockwarden doctor`: every path-bound listener on the host and its
 * problems (an orphaned listener whose path is gone, a full backlog), and
 * socket files under the usual directories that no listener is bound to
 * (stale_socket), with sock_diag and the file system only.
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

