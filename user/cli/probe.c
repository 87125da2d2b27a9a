/*
 * `sockwarden probe PATH [--pid PID]`: what is at a socket path now (the
 * file, the listener bound there, its owners, a test connect), with
 * sock_diag and the file system only, so it works where BPF cannot (a
 * container, an old kernel).
 *
 * A path means something in one mount namespace (DESIGN §2 "Namespaces"):
 * the CLI's own, or with --pid the one process PID is in. There every look
 * at PATH goes through PID's root directory (/proc/PID/root, opened while a
 * pidfd proves it is PID's) with openat2(RESOLVE_IN_ROOT): an absolute
 * symlink in a container resolves in the container. The connect test goes
 * to "/proc/self/fd/N", N an O_PATH fd of the socket file opened there: the
 * kernel follows that magic link to the very inode, so the connect reaches
 * the namespace's socket (a connect by name would resolve on the host), and
 * the name's length does not matter.
 */
#include "commands.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "host_view.h"
#include "shared/discovery.h"
#include "shared/events.h"
#include "shared/exitcodes.h"
#include "shared/nsroot.h"
#include "shared/paths.h"

/* At most this many mount namespaces of one socket's holders are told apart. */
#define MAX_HOLDER_NS 16

/* A non-blocking connect to sun_path with a timeout: "ok", or the errno name. */
static const char *connect_test(const char *sun_path, int type, int timeout_ms,
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
	memcpy(sa.sun_path, sun_path, strlen(sun_path));
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

/* Where PATH is looked at. */
struct probe_ns {
	pid_t pid;            /* --pid, or 0: the CLI's own namespace */
	uint32_t mntns, netns;
	struct ns_root root;  /* fd NS_ROOT_OWN without --pid */
};

/* Opens PID's root; an exit code, SW_EXIT_OK when open. */
static int probe_ns_open(struct probe_ns *ns, pid_t pid)
{
	char p[64];
	struct stat st;
	int fd;

	ns->pid = pid;
	ns->root = (struct ns_root){ .fd = NS_ROOT_OWN };
	snprintf(p, sizeof(p), "/proc/%d/ns/mnt", (int)pid);
	if (stat(p, &st) != 0) {
		/* ENOENT: no such process, or a zombie whose namespaces are gone */
		if (errno == ENOENT || errno == ESRCH ||
		    (kill(pid, 0) != 0 && errno == ESRCH)) {
			fprintf(stderr, "sockwarden probe: no process %d\n", (int)pid);
			return SW_EXIT_USAGE;
		}
		fprintf(stderr, "sockwarden probe: cannot see the mount namespace of pid %d: "
			"%s\n", (int)pid, strerror(errno));
		return SW_EXIT_ENV;
	}
	ns->mntns = (uint32_t)st.st_ino;
	ns->netns = ns_netns_of(pid);
	fd = ns_root_open(pid, ns->mntns);
	if (fd == -ESRCH) {
		fprintf(stderr, "sockwarden probe: no process %d\n", (int)pid);
		return SW_EXIT_USAGE;
	}
	if (fd == -ESTALE) {
		fprintf(stderr, "sockwarden probe: pid %d changed mount namespace while "
			"being probed\n", (int)pid);
		return SW_EXIT_ENV;
	}
	if (fd < 0) {
		fprintf(stderr, "sockwarden probe: cannot open the root of pid %d's mount "
			"namespace: %s\n", (int)pid, strerror(-fd));
		return SW_EXIT_ENV;
	}
	ns->root.mntns = ns->mntns;
	ns->root.fd = fd;
	return SW_EXIT_OK;
}

/*
 * Whether listener l is named norm in namespace mntns: one of its holders
 * is there (or in a namespace /proc does not tell), and its bound name,
 * made absolute with that holder's working directory, is norm.
 */
static bool named_here(const struct host_view *h, const struct unix_listener *l,
		       uint32_t mntns, const char *norm)
{
	struct ns_holder hs[MAX_HOLDER_NS];
	size_t n = holder_namespaces(h, l->sock_ino, hs, MAX_HOLDER_NS);
	char lp[SW_PATH_MAX];

	if (n == 0) /* no holder known: an absolute name only */
		return listener_abs_path(l, 0, lp, sizeof(lp)) && strcmp(lp, norm) == 0;
	for (size_t k = 0; k < n; k++) {
		if (hs[k].mntns && hs[k].mntns != mntns)
			continue;
		if (listener_abs_path(l, hs[k].pid, lp, sizeof(lp)) && strcmp(lp, norm) == 0)
			return true;
	}
	return false;
}

static void print_text(const json_t *out, const struct probe_ns *ns, const char *verdict,
		       const char *why, bool exists, bool is_sock)
{
	json_t *listeners = json_object_get(out, "listeners"), *l;
	const json_t *c = json_object_get(out, "container");
	size_t i;

	printf("%s: %s\n", json_string_value(json_object_get(out, "path")), verdict);
	if (why)
		printf("  %s\n", why);
	if (ns->pid) {
		printf("  namespace: mnt:[%u] net:[%u] of pid %d\n", ns->mntns, ns->netns,
		       (int)ns->pid);
		if (c) {
			const char *rt = json_string_value(json_object_get(c, "runtime"));

			printf("  container: %.12s%s%s%s\n",
			       json_string_value(json_object_get(c, "id")), rt ? " (" : "",
			       rt ? rt : "", rt ? ")" : "");
		}
		if (json_object_get(out, "pod"))
			printf("  pod: %s\n", json_string_value(json_object_get(
						      json_object_get(out, "pod"), "uid")));
		if (json_object_get(out, "unit"))
			printf("  unit: %s\n", json_string_value(json_object_get(out, "unit")));
	}
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
		json_array_foreach(json_object_get(l, "owners"), k, o) {
			printf("    owner: pid %lld (%s) uid %lld",
			       json_integer_value(json_object_get(o, "pid")),
			       json_string_value(json_object_get(o, "comm")),
			       json_integer_value(json_object_get(o, "uid")));
			if (json_object_get(o, "mntns"))
				printf(" in mnt:[%lld]",
				       json_integer_value(json_object_get(o, "mntns")));
			putchar('\n');
		}
	}
	if (is_sock)
		printf("  connect test: %s\n",
		       json_string_value(json_object_get(json_object_get(out, "connect"),
							 "result")));
}

int probe_main(const char *path, bool json, int timeout_ms, pid_t pid)
{
	char norm[SW_PATH_MAX], cwd[SW_PATH_MAX], via[64];
	struct probe_ns ns = { .root = { .fd = NS_ROOT_OWN } };
	struct host_view h;
	struct stat st;
	json_t *out, *listeners;
	const char *verdict = "healthy", *why = NULL;
	bool exists = false, is_sock = false, live = false;
	int status = SW_EXIT_OK, cerr = 0, err, fd;

	if (pid) {
		/* a name as PID sees it: its working directory is not ours to
		 * guess for the caller */
		if (path[0] != '/') {
			fprintf(stderr, "sockwarden probe: with --pid, PATH must be absolute "
				"(as pid %d sees it): %s\n", (int)pid, path);
			return SW_EXIT_USAGE;
		}
		if (!path_normalize(path, norm, sizeof(norm))) {
			fprintf(stderr, "sockwarden probe: cannot resolve %s\n", path);
			return SW_EXIT_USAGE;
		}
		status = probe_ns_open(&ns, pid);
		if (status != SW_EXIT_OK)
			return status;
	} else {
		if (!getcwd(cwd, sizeof(cwd)) || !path_join(cwd, path, norm, sizeof(norm))) {
			fprintf(stderr, "sockwarden probe: cannot resolve %s\n", path);
			return SW_EXIT_USAGE;
		}
		if (!path_fits_sun_path(norm)) {
			fprintf(stderr, "sockwarden probe: %s is %zu bytes; a socket path holds "
				"at most 107 (--pid PID reaches a longer one)\n", norm,
				strlen(norm));
			return SW_EXIT_USAGE;
		}
		ns.mntns = ns_self_mntns();
		ns.netns = ns_netns_of(getpid());
	}

	/* the file, looked at once: the same inode is matched against the
	 * listeners and connected to (a final symlink is not followed) */
	fd = ns_open(&ns.root, norm, O_PATH, true);
	if (fd >= 0 && fstat(fd, &st) != 0)
		fd = -errno;
	if (fd == -EACCES || fd == -EPERM) {
		fprintf(stderr, "sockwarden probe: cannot look at %s%s: %s\n", norm,
			pid ? " in that namespace" : "", strerror(-fd));
		if (ns.root.fd >= 0)
			close(ns.root.fd);
		return SW_EXIT_ENV;
	}
	/* ENOENT, ENOTDIR; ELOOP: a symlink loop, or a magic link on the way */
	exists = fd >= 0;
	is_sock = exists && S_ISSOCK(st.st_mode);

	err = host_view_load(&h, pid != 0);
	if (err) {
		fprintf(stderr, "sockwarden probe: sock_diag failed: %s\n", strerror(-err));
		if (fd >= 0)
			close(fd);
		if (ns.root.fd >= 0)
			close(ns.root.fd);
		return SW_EXIT_ENV;
	}
	/* made only now: the returns above have nothing to free */
	out = json_object();
	listeners = json_array();
	event_set_path(out, "path", norm, strlen(norm));
	if (pid)
		json_object_set_new(out, "pid", json_integer(pid));
	ns_json_set(out, ns.mntns, ns.netns, pid);
	json_object_set_new(out, "exists", json_boolean(exists));
	json_object_set_new(out, "is_socket", json_boolean(is_sock));

	for (size_t i = 0; i < h.ll.n; i++) {
		const struct unix_listener *l = &h.ll.v[i];
		bool match = is_sock && l->vfs_ino == (uint64_t)st.st_ino &&
			     l->vfs_dev == (uint64_t)st.st_dev;
		json_t *j;

		/* the listener bound to this very file (whatever name it was
		 * bound by, in whichever namespace), or one named so here */
		if (!match && !named_here(&h, l, ns.mntns, norm))
			continue;
		j = json_object();
		json_object_set_new(j, "socket_inode", json_integer((json_int_t)l->sock_ino));
		json_object_set_new(j, "inode", json_integer((json_int_t)l->vfs_ino));
		json_object_set_new(j, "listening", json_boolean(l->state == TCP_LISTEN_STATE));
		json_object_set_new(j, "bound_here", json_boolean(match));
		json_object_set_new(j, "backlog", json_integer(l->backlog));
		json_object_set_new(j, "max_backlog", json_integer(l->max_backlog));
		if (l->netns_ino && l->netns_ino != ns.netns)
			json_object_set_new(j, "netns", json_integer(l->netns_ino));
		json_object_set_new(j, "owners", owners_json(&h, l->sock_ino, ns.mntns));
		json_array_append_new(listeners, j);
		if (l->state != TCP_LISTEN_STATE)
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
			why = pid ? "no such path in that mount namespace and no listener "
				    "bound to it"
				  : "no such path and no listener bound to it";
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
		const char *target = norm, *r;

		/* in another namespace, through the inode itself */
		if (pid) {
			snprintf(via, sizeof(via), "/proc/self/fd/%d", fd);
			target = via;
		}
		r = connect_test(target, SOCK_STREAM, timeout_ms, &cerr);
		if (cerr == EPROTOTYPE)
			r = connect_test(target, SOCK_SEQPACKET, timeout_ms, &cerr);
		if (cerr == EPROTOTYPE)
			r = connect_test(target, SOCK_DGRAM, timeout_ms, &cerr);
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
		print_text(out, &ns, verdict, why, exists, is_sock);
	}
	json_decref(out);
	host_view_free(&h);
	if (fd >= 0)
		close(fd);
	if (ns.root.fd >= 0)
		close(ns.root.fd);
	return status;
}
