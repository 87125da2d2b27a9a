/*
 * Rebinds (DESIGN §4): a registered server whose path is lost gets a new
 * socket bound at the path in its own directory and credentials (heal `fd`)
 * or is told to bind one itself (heal `notify`); the rebind counts only once
 * its `adopted` names a listener the server really holds.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/fsuid.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "control_internal.h"
#include "shared/clock.h"
#include "shared/log.h"
#include "shared/paths.h"

/* ----- rebinds ----- */


/* A pidfd polls readable once its process has exited. */
bool pidfd_exited(int pidfd)
{
	struct pollfd pfd = { .fd = pidfd, .events = POLLIN };

	return poll(&pfd, 1, 0) == 1;
}

/* Whether the server listens on the socket the agent sent and is alive to
 * serve it: an adoption whose `adopted` never arrived (lost in a disconnect,
 * late for the deadline) still put the path back, and it stays. */
static bool served_by_peer(const struct registration *r)
{
	int listening = 0;
	socklen_t ol = sizeof(listening);

	if (r->our_fd < 0 || r->peer->dead ||
	    getsockopt(r->our_fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ol) != 0 || !listening)
		return false;
	if (r->peer->pidfd >= 0 && pidfd_exited(r->peer->pidfd))
		return false; /* exited: the agent's copy is the last one */
	return discovery_pid_holds(r->peer->owner.pid, socket_inode_of_fd(r->our_fd));
}

/* Unlinks the path's file if it is the file (dev, ino), looked for in the
 * directory the walk without symlinks reaches, never by the path's name,
 * which a user who owns a directory on it can point elsewhere meanwhile. */
static void unlink_own_file(const struct endpoint *e, uint64_t dev, uint64_t ino)
{
	const char *why = NULL;
	int dfd = healer_parents_ensure_existing(e, &why);
	const char *base = path_basename(e->path);
	struct stat st;

	if (dfd < 0)
		return;
	if (fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_ino == ino &&
	    st.st_dev == dev)
		unlinkat(dfd, base, 0);
	close(dfd);
}

/* Discards the agent's own socket and unlinks the path only if it is still the
 * file the agent bound and nobody serves it: never a path someone else has
 * bound since, never one the server listens on. */
static void rebind_discard(struct registration *r)
{
	if (r->our_fd >= 0) {
		if (!served_by_peer(r))
			unlink_own_file(r->e, r->our_dev, r->our_ino);
		close(r->our_fd);
	}
	r->our_fd = -1;
	r->inflight = false;
}

static void rebind_failed_as(struct registration *r, const char *reason, int err, bool retry)
{
	struct control *c = r->peer->ctl;
	json_t *ev = ctl_event(c, "rebind_failed", "error", r->e);

	json_object_set_new(ev, "how", json_string(heal_name(r->heal)));
	json_object_set_new(ev, "reason", json_string(reason));
	json_object_set_new(ev, "seq", json_integer(r->inflight_seq));
	if (err)
		json_object_set_new(ev, "error", json_string(strerror(err)));
	if (retry)
		healer_retry_later(r->e, ev);
	set_peer_owner(ev, r->peer);
	r->e->recovered_how = NULL;
	rebind_discard(r);
	c->healer->heals_failed++;
	c->hooks.emit(c->hooks.ctx, ev);
}

void rebind_failed(struct registration *r, const char *reason)
{
	rebind_failed_as(r, reason, 0, false);
}

/* True if the walk from "/" without symlinks still reaches the directory pfd. */
static bool same_directory(const struct endpoint *e, int pfd)
{
	const char *why = NULL;
	int again = healer_parents_ensure_existing(e, &why);
	struct stat a, b;
	bool same;

	if (again < 0)
		return false;
	same = fstat(again, &a) == 0 && fstat(pfd, &b) == 0 && a.st_ino == b.st_ino &&
	       a.st_dev == b.st_dev;
	close(again);
	return same;
}

/* Gives the file the agent bound in pfd its recorded mode and owner, through
 * an O_PATH descriptor of that very file: by name, a chmod follows a link
 * that the directory's owner put in its place since the check. */
static void settle_file(const struct endpoint *e, int pfd, const struct stat *bound, mode_t mode)
{
	char proc[64];
	struct stat st;
	int f = openat(pfd, path_basename(e->path), O_PATH | O_NOFOLLOW | O_CLOEXEC);

	if (f < 0 || fstat(f, &st) != 0 || st.st_ino != bound->st_ino ||
	    st.st_dev != bound->st_dev || !S_ISSOCK(st.st_mode)) {
		log_warn("%s changed before its mode was set; left as bound", e->path);
		if (f >= 0)
			close(f);
		return;
	}
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", f);
	if (chmod(proc, mode) != 0)
		log_warn("chmod %s: %s", e->path, strerror(errno));
	if (fchownat(f, "", e->file_uid, e->file_gid, AT_EMPTY_PATH) != 0)
		log_warn("chown %s: %s", e->path, strerror(errno));
	close(f);
}

/*
 * Binds a socket at the path with its mode, as the server's uid and gid, or
 * as the user who owns a directory on the path (healer_parents_steered) when
 * there is one: bind() takes a name, and a name below that user's directory
 * goes wherever the user points it. Bound as that user, it can only land
 * where the user could have put a file themselves; the check after it then
 * finds the file outside the directory walked and leaves it alone. Returns
 * the socket, its file's identity in *bound.
 */
static int bind_as(const struct registration *r, int pfd, const struct healer_steerer *steer,
		   int type, struct stat *bound, const char **why)
{
	const struct endpoint *e = r->e;
	const char *base = path_basename(e->path);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	mode_t mode = e->file_mode ? e->file_mode : 0666;
	uid_t uid = steer->found ? steer->uid : r->peer->owner.uid;
	gid_t gid = steer->found ? steer->gid : r->peer->owner.gid;
	struct unix_listener l;
	bool known;
	int fd, rc = 0;

	memset(bound, 0, sizeof(*bound));
	fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*why = "socket_failed";
		return -errno;
	}
	/* bound by its absolute path: the name a socket is bound with is the
	 * name it carries for good (getsockname, sock_diag, the server's
	 * re-registration after an agent restart), and a relative name means
	 * nothing there */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", e->path);
	setfsgid(gid);
	setfsuid(uid);
	umask(~mode & 0777);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		rc = -errno;
		*why = rc == -EADDRINUSE ? "rebound" : "bind_failed";
	}
	umask(0);
	setfsuid(0);
	setfsgid(0);
	if (rc) {
		close(fd);
		return rc;
	}
	fault_point("bind_check_before");
	/* the bind resolved the path again: its file must be in the directory
	 * walked without following symlinks, or a parent was swapped for a link
	 * meanwhile, and nothing below may touch that file */
	rc = fstatat(pfd, base, bound, AT_SYMLINK_NOFOLLOW) != 0 ? -errno : 0;
	known = discovery_get(socket_inode_of_fd(fd), &l) == 0;
	if (rc || !known || l.vfs_ino != bound->st_ino || l.vfs_dev != bound->st_dev) {
		/* The bind landed elsewhere than the walked directory: the
		 * directory was renamed away and another took its name in
		 * between. Where the walk reaches the agent's file now, it is
		 * removed before its socket closes: left there, it would hold
		 * the path with a socket nobody serves. The inode is the open
		 * socket's own, so nothing else is ever removed. */
		if (known)
			unlink_own_file(e, l.vfs_dev, l.vfs_ino);
		close(fd);
		/* Or the new file was removed again at once (a cleanup loop): the
		 * walk still reaches the same directory, no symlink on the way. */
		if (rc == -ENOENT && same_directory(e, pfd)) {
			*why = "removed_again";
			return -ENOENT;
		}
		*why = "parent_is_symlink";
		return -ELOOP;
	}
	/* the mode exactly, whatever umask did, and the recorded owner */
	settle_file(e, pfd, bound, mode);
	return fd;
}

bool control_rebind(struct control *c, struct endpoint *e)
{
	struct registration *r = e->reg;
	struct stat st;
	const char *why = NULL;
	json_t *msg, *ev;
	char *s;
	int pfd, fd = -1, rc;

	if (!r || r->heal == HEAL_NONE || r->peer->dead)
		return false;
	if (r->inflight)
		return true;
	r->inflight_seq = ++r->seq;
	ev = ctl_event(c, "rebind_started", "info", e);
	json_object_set_new(ev, "how", json_string(heal_name(r->heal)));
	json_object_set_new(ev, "seq", json_integer(r->inflight_seq));
	c->hooks.emit(c->hooks.ctx, ev);
	r->inflight = true;
	r->our_fd = -1;
	r->deadline_ns = clock_mono_ns() + c->rebind_timeout_ns;
	if (r->heal == HEAL_FD) {
		struct healer_steerer steer;

		pfd = healer_parents_steered(e, r->peer->owner.uid, &steer, &why);
		if (pfd < 0) {
			/* a directory on the way swapped for a link, a refused
			 * mkdir: what the walk met may pass */
			rebind_failed_as(r, why, -pfd, true);
			return true;
		}
		fd = bind_as(r, pfd, &steer, e->l.type ? e->l.type : SOCK_STREAM, &st, &why);
		close(pfd);
		if (fd < 0) {
			/* a parent swapped between the walk and the bind, a
			 * bind refused: tried again, later each time */
			rebind_failed_as(r, why, fd == -ELOOP ? 0 : -fd, fd != -ENOENT && fd != -EADDRINUSE);
			/* Removed again right after the bind (a cleanup loop faster
			 * than the heal): a new loss, by someone unknown. It is
			 * healed again after the grace; the caller counts this try
			 * toward the flap guard, so a loop that keeps removing the
			 * path opens the circuit and is retried with its back-off. */
			if (fd == -ENOENT) {
				e->lost = true;
				e->lost_ns = clock_mono_ns();
				e->have_lost_actor = false;
				healer_on_lost(c->healer, e);
			}
			return true;
		}
		r->our_fd = fd;
		r->our_dev = st.st_dev;
		r->our_ino = st.st_ino;
	}
	msg = json_object();
	json_object_set_new(msg, "op", json_string("rebind"));
	json_object_set_new(msg, "path", json_string(e->path));
	json_object_set_new(msg, "seq", json_integer(r->inflight_seq));
	s = json_dumps(msg, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(msg);
	rc = s ? peer_sendmsg(r->peer, s, strlen(s), fd) : -ENOMEM;
	free(s);
	if (rc) {
		/* a peer that cannot take the message now cannot adopt in time */
		rebind_failed(r, rc == -EAGAIN ? "peer_not_reading" : "send_failed");
		return true;
	}
	/* while it is in flight, the path serves again only through this rebind */
	e->recovered_how = heal_name(r->heal);
	return true;
}

uint64_t socket_inode_of_fd(int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 ? st.st_ino : 0;
}

bool peer_holds(const struct ctl_peer *p, uint64_t sock_ino)
{
	return discovery_pid_holds(p->owner.pid, sock_ino);
}

/* The listener the peer holds that the path resolves to now. The peer's own
 * sockets are looked up one by one: a dump of the host's could skip it when
 * other sockets close meanwhile. */
static bool peer_listener_at_path(const struct ctl_peer *p, const char *path,
				  struct unix_listener *out)
{
	struct listener_list ll = {0};
	struct stat st;
	bool found = false;

	if (lstat(path, &st) != 0 || !S_ISSOCK(st.st_mode))
		return false;
	discovery_pid_listeners(p->owner.pid, &ll);
	for (size_t i = 0; i < ll.n && !found; i++) {
		if (ll.v[i].vfs_ino == st.st_ino && ll.v[i].vfs_dev == st.st_dev) {
			*out = ll.v[i];
			found = true;
		}
	}
	listener_list_free(&ll);
	return found;
}

/* heal notify, when the path was removed again before `adopted` came: the
 * newest listener the peer holds that is bound to the name. */
static bool peer_listener_named(const struct registration *r, struct unix_listener *out)
{
	struct listener_list ll = {0};
	size_t len = strlen(r->e->path);
	bool found = false;

	discovery_pid_listeners(r->peer->owner.pid, &ll);
	for (size_t i = 0; i < ll.n; i++) {
		const struct unix_listener *c = &ll.v[i];

		/* the bound name may or may not carry its NUL, as the binder chose */
		if (strnlen(c->name, c->name_len) != len || memcmp(c->name, r->e->path, len) != 0 ||
		    c->sock_ino == r->e->l.sock_ino || (found && c->sock_ino < out->sock_ino))
			continue;
		*out = *c;
		found = true;
	}
	listener_list_free(&ll);
	return found;
}

/* What the server listens on now. heal fd: the very socket the agent sent,
 * found through the agent's own copy, whatever the path went through since;
 * heal notify: the listener the path resolves to. */
static bool adopted_listener(const struct registration *r, struct unix_listener *l)
{
	int listening = 0;
	socklen_t ol = sizeof(listening);

	if (r->heal != HEAL_FD)
		return peer_listener_at_path(r->peer, r->e->path, l) || peer_listener_named(r, l);
	if (r->our_fd < 0 ||
	    getsockopt(r->our_fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ol) != 0 || !listening)
		return false;
	return discovery_get(socket_inode_of_fd(r->our_fd), l) == 0 &&
	       peer_holds(r->peer, l->sock_ino);
}

void on_adopted(struct ctl_peer *p, const struct ctl_request *req)
{
	struct control *c = p->ctl;
	struct endpoint *e = peer_endpoint(p, req->path);
	struct registration *r = e ? e->reg : NULL;
	struct unix_listener l;
	json_t *ev;

	/* out of order: it counts toward a disconnect, as malformed ones do */
	if (!r || r->peer != p) {
		peer_bad(p, req->path, "not_registered", "this connection did not register it");
		return;
	}
	if (!r->inflight || req->seq != r->inflight_seq) {
		peer_bad(p, req->path, "unexpected", "no rebind with this seq is in flight");
		return;
	}
	if (!adopted_listener(r, &l)) {
		rebind_failed(r, "not_listening_after_adopt");
		return;
	}
	/* the server holds the socket now; the agent's copy goes */
	if (r->our_fd >= 0)
		close(r->our_fd);
	r->our_fd = -1;
	r->inflight = false;
	healer_listener_gone(c->healer, e); /* the old socket's guard */
	ep_set_listener(e, &l, &p->owner, 1);
	e->lost = false;
	healer_retries_reset(e);
	e->heal_pending = false;
	ep_record_fs(e);
	healer_listener_seen(c->healer, e);
	/* A removal from now on is the kernel's to see; one since the server's
	 * listen() is caught by the path check of the healed hook. Told of the
	 * heal first, a cleaner could remove the path unseen in between (the
	 * server's listen() adds nothing to the filters: it did not bind). */
	c->hooks.sync(c->hooks.ctx);
	e->recovered_how = heal_name(r->heal);
	ev = ctl_event(c, "rebind_succeeded", "info", e);
	json_object_set_new(ev, "how", json_string(heal_name(r->heal)));
	json_object_set_new(ev, "heal_ms", json_real((double)(clock_mono_ns() - e->lost_ns) / 1e6));
	json_object_set_new(ev, "seq", json_integer(req->seq));
	set_peer_owner(ev, p);
	c->healer->heals_ok++;
	c->hooks.emit(c->hooks.ctx, ev);
	c->hooks.changed(c->hooks.ctx);
	c->hooks.healed(c->hooks.ctx, e);
	fault_point("adopted_done");
}

void control_on_bind(struct control *c, struct endpoint *e)
{
	struct registration *r = e->reg;
	struct stat st;

	if (!r || !r->inflight || r->heal != HEAL_FD)
		return;
	/* a bind of the path that is not the agent's own: the server (or a new
	 * instance) took the path itself; the agent's socket must go */
	if (lstat(e->path, &st) == 0 && st.st_ino == r->our_ino && st.st_dev == r->our_dev)
		return;
	rebind_failed(r, "rebound_by_server");
}
