#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/fsuid.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "paths.h"

#define TCP_LISTEN_STATE 10

/* ----- codec ----- */

static const char *heal_name(enum heal_mode h)
{
	return h == HEAL_FD ? "fd" : h == HEAL_NOTIFY ? "notify" : "none";
}

const char *control_decode(const char *buf, size_t len, struct ctl_request *req)
{
	json_error_t jerr;
	json_t *root, *v;
	const char *key, *op;
	bool ok = true;

	memset(req, 0, sizeof(*req));
	if (len > CONTROL_MSG_MAX)
		return "too_large";
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return "malformed";
	if (!json_is_object(root)) {
		json_decref(root);
		return "malformed";
	}
	v = json_object_get(root, "op");
	if (!json_is_string(v)) {
		json_decref(root);
		return "malformed";
	}
	/* the whole op is matched below: a long unknown op is unknown_op */
	op = json_string_value(v);
	snprintf(req->op, sizeof(req->op), "%s", op);
	if (strcmp(op, "register") != 0 && strcmp(op, "unregister") != 0 &&
	    strcmp(op, "adopted") != 0 && strcmp(op, "status") != 0) {
		json_decref(root);
		return "unknown_op";
	}
	/* every key must be one this op takes, with the right type */
	json_object_foreach(root, key, v) {
		if (strcmp(key, "op") == 0)
			continue;
		if (strcmp(key, "path") == 0 && strcmp(op, "status") != 0) {
			if (!json_is_string(v) || json_string_length(v) == 0) {
				ok = false;
				break;
			}
			if (json_string_length(v) >= sizeof(req->path)) {
				json_decref(root);
				return "bad_path";
			}
			snprintf(req->path, sizeof(req->path), "%s", json_string_value(v));
		} else if (strcmp(key, "heal") == 0 && strcmp(op, "register") == 0) {
			const char *h = json_is_string(v) ? json_string_value(v) : "";

			if (strcmp(h, "fd") == 0)
				req->heal = HEAL_FD;
			else if (strcmp(h, "notify") == 0)
				req->heal = HEAL_NOTIFY;
			else if (strcmp(h, "none") == 0)
				req->heal = HEAL_NONE;
			else
				ok = false;
		} else if (strcmp(key, "seq") == 0 && strcmp(op, "adopted") == 0) {
			if (!json_is_integer(v) || json_integer_value(v) <= 0 ||
			    json_integer_value(v) > UINT32_MAX) {
				ok = false;
				break;
			}
			req->seq = (uint32_t)json_integer_value(v);
		} else {
			ok = false;
			break;
		}
	}
	if (ok && strcmp(op, "status") != 0 && !req->path[0])
		ok = false;
	if (ok && strcmp(op, "register") == 0 && !json_object_get(root, "heal"))
		ok = false;
	if (ok && strcmp(op, "adopted") == 0 && !req->seq)
		ok = false;
	json_decref(root);
	if (!ok)
		return "malformed";
	if (req->path[0]) {
		char norm[SW_PATH_MAX];

		if (!path_normalize(req->path, norm, sizeof(norm)) ||
		    strcmp(norm, req->path) != 0 || !path_fits_sun_path(req->path) ||
		    strlen(req->path) != strnlen(req->path, sizeof(req->path)))
			return "bad_path";
	}
	return NULL;
}

/* ----- sending ----- */

static void peer_kill(struct ctl_peer *p, const char *why, const char *reg_why);
static void peer_drop(struct ctl_peer *p, const char *why);
static void peer_bad(struct ctl_peer *p, const char *path, const char *word,
		     const char *text);

static int peer_sendmsg(struct ctl_peer *p, const char *buf, size_t len, int fd)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cm;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (fd >= 0) {
		struct cmsghdr *c;

		memset(&cm, 0, sizeof(cm));
		mh.msg_control = cm.buf;
		mh.msg_controllen = sizeof(cm.buf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	if (sendmsg(p->w.fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		return -errno;
	return 0;
}

/* A peer that hung up is just gone; any other failure is worth a line. */
static bool peer_exiting(const struct ctl_peer *p);

static void peer_send_failed(struct ctl_peer *p, int rc)
{
	/* a server that dies closes its end first: its exit, not a disconnect */
	if ((rc == -EPIPE || rc == -ECONNRESET) && peer_exiting(p))
		peer_kill(p, "exited", "target_exited");
	else if (rc == -EPIPE || rc == -ECONNRESET)
		peer_kill(p, "closed", "disconnected");
	else
		peer_drop(p, "sending its replies failed");
}

static void peer_flush(struct ctl_peer *p)
{
	while (p->outq_n) {
		struct ctl_msg_out *m = &p->outq[p->outq_head];
		int rc = peer_sendmsg(p, m->buf, m->len, -1);

		if (rc == -EAGAIN)
			break;
		if (rc) {
			peer_send_failed(p, rc);
			return;
		}
		p->outq_head = (p->outq_head + 1) % CONTROL_OUTQ;
		p->outq_n--;
	}
	if (!p->dead)
		loop_mod(p->ctl->epfd, &p->w, EPOLLIN | (p->outq_n ? EPOLLOUT : 0));
}

/* Replies queue behind a peer that does not read; one that never reads is
 * dropped rather than allowed to hold the agent's memory. Sends never
 * block: the socket buffer, then CONTROL_OUTQ replies, then the peer goes. */
static void peer_send_json(struct ctl_peer *p, json_t *msg)
{
	char *s = json_dumps(msg, JSON_COMPACT | JSON_PRESERVE_ORDER);
	size_t len = s ? strlen(s) : 0;

	json_decref(msg);
	if (!s || p->dead)
		goto out;
	if (p->outq_n == 0) {
		int rc = peer_sendmsg(p, s, len, -1);

		if (rc == 0)
			goto out;
		if (rc != -EAGAIN) {
			peer_send_failed(p, rc);
			goto out;
		}
	}
	if (p->outq_n == CONTROL_OUTQ || len > CONTROL_MSG_MAX) {
		p->ctl->peers_not_reading++;
		peer_drop(p, "it does not read its replies");
		goto out;
	}
	struct ctl_msg_out *m = &p->outq[(p->outq_head + p->outq_n) % CONTROL_OUTQ];

	memcpy(m->buf, s, len);
	m->len = len;
	p->outq_n++;
	loop_mod(p->ctl->epfd, &p->w, EPOLLIN | EPOLLOUT);
out:
	free(s);
}

static void reply_error(struct ctl_peer *p, const char *path, const char *word,
			const char *text)
{
	json_t *m = json_object();
	char reason[256];

	snprintf(reason, sizeof(reason), "%s: %s", word, text);
	json_object_set_new(m, "op", json_string("error"));
	if (path && path[0] && utf8_valid((const unsigned char *)path, strlen(path)))
		json_object_set_new(m, "path", json_string(path));
	json_object_set_new(m, "reason", json_string(reason));
	p->ctl->errors_sent++;
	peer_send_json(p, m);
}

static void reply_ok(struct ctl_peer *p, const char *op, const char *path)
{
	json_t *m = json_object();

	json_object_set_new(m, "op", json_string(op));
	json_object_set_new(m, "path", json_string(path));
	peer_send_json(p, m);
}

/* ----- events ----- */

static json_t *ctl_event(struct control *c, const char *name, const char *sev,
			 const char *path)
{
	json_t *ev = event_new(c->env, name, sev, 0);

	event_set_path(ev, "path", path, strlen(path));
	return ev;
}

static void set_peer_owner(json_t *ev, const struct ctl_peer *p)
{
	event_set_proc(ev, "owner", p->owner.pid, p->owner.comm, p->owner.uid);
}

/* ----- rebinds ----- */

static uint64_t socket_inode_of_fd(int fd);

/* A pidfd polls readable once its process has exited. */
static bool pidfd_exited(int pidfd)
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

/* Discards the agent's own socket and unlinks the path only if it is still the
 * file the agent bound and nobody serves it: never a path someone else has
 * bound since, never one the server listens on. */
static void rebind_discard(struct registration *r)
{
	struct stat st;

	if (r->our_fd >= 0) {
		if (lstat(r->e->path, &st) == 0 && st.st_ino == r->our_ino &&
		    st.st_dev == r->our_dev && !served_by_peer(r))
			unlink(r->e->path);
		close(r->our_fd);
	}
	r->our_fd = -1;
	r->inflight = false;
}

static void rebind_failed(struct registration *r, const char *reason)
{
	struct control *c = r->peer->ctl;
	json_t *ev = ctl_event(c, "rebind_failed", "error", r->e->path);

	json_object_set_new(ev, "how", json_string(heal_name(r->heal)));
	json_object_set_new(ev, "reason", json_string(reason));
	json_object_set_new(ev, "seq", json_integer(r->inflight_seq));
	set_peer_owner(ev, r->peer);
	r->e->recovered_how = NULL;
	rebind_discard(r);
	c->healer->heals_failed++;
	c->hooks.emit(c->hooks.ctx, ev);
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

/* Binds a socket at the path as the server's uid and gid, with its mode. */
static int bind_as(const struct registration *r, int pfd, int type, const char **why)
{
	const struct endpoint *e = r->e;
	const char *base = path_basename(e->path);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	mode_t mode = e->file_mode ? e->file_mode : 0666;
	struct unix_listener l;
	struct stat st;
	int fd, rc = 0;

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
	setfsgid(r->peer->owner.gid);
	setfsuid(r->peer->owner.uid);
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
	/* the bind resolved the path again: its file must be in the directory
	 * walked without following symlinks, or a parent was swapped for a link
	 * meanwhile (the bind ran as the server, so it went nowhere the server
	 * could not go), and nothing below may touch that file */
	rc = fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) != 0 ? -errno : 0;
	if (rc || discovery_get(socket_inode_of_fd(fd), &l) != 0 || l.vfs_ino != st.st_ino ||
	    l.vfs_dev != st.st_dev) {
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
	/* the mode exactly, whatever umask did; owner again in case fsuid failed */
	fchmodat(pfd, base, mode, 0);
	if (fchownat(pfd, base, e->file_uid, e->file_gid, AT_SYMLINK_NOFOLLOW) != 0)
		log_warn("chown %s: %s", e->path, strerror(errno));
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
	ev = ctl_event(c, "rebind_started", "info", e->path);
	json_object_set_new(ev, "how", json_string(heal_name(r->heal)));
	json_object_set_new(ev, "seq", json_integer(r->inflight_seq));
	c->hooks.emit(c->hooks.ctx, ev);
	r->inflight = true;
	r->our_fd = -1;
	r->deadline_ns = clock_mono_ns() + c->rebind_timeout_ns;
	if (r->heal == HEAL_FD) {
		pfd = healer_parents_ensure(e, &why);
		if (pfd < 0) {
			rebind_failed(r, why);
			return true;
		}
		fd = bind_as(r, pfd, e->l.type ? e->l.type : SOCK_STREAM, &why);
		close(pfd);
		if (fd < 0) {
			rebind_failed(r, why);
			/* removed again right after the bind: a new loss. Known gap:
			 * the scans that follow report the orphan but do not heal it
			 * again yet (docs/events.md, removed_again). */
			if (fd == -ENOENT)
				e->lost = false;
			return true;
		}
		r->our_fd = fd;
		if (lstat(e->path, &st) == 0) {
			r->our_dev = st.st_dev;
			r->our_ino = st.st_ino;
		}
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

static uint64_t socket_inode_of_fd(int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 ? st.st_ino : 0;
}

static bool peer_holds(const struct ctl_peer *p, uint64_t sock_ino)
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

static void on_adopted(struct ctl_peer *p, const struct ctl_request *req)
{
	struct control *c = p->ctl;
	struct endpoint *e = ep_lookup(c->eps, req->path);
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
	e->heal_pending = false;
	ep_record_fs(e);
	healer_listener_seen(c->healer, e);
	e->recovered_how = heal_name(r->heal);
	ev = ctl_event(c, "rebind_succeeded", "info", e->path);
	json_object_set_new(ev, "how", json_string(heal_name(r->heal)));
	json_object_set_new(ev, "heal_ms", json_real((double)(clock_mono_ns() - e->lost_ns) / 1e6));
	json_object_set_new(ev, "seq", json_integer(req->seq));
	set_peer_owner(ev, p);
	c->healer->heals_ok++;
	c->hooks.emit(c->hooks.ctx, ev);
	c->hooks.changed(c->hooks.ctx);
	c->hooks.healed(c->hooks.ctx, e);
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

/* ----- registration ----- */

/* Ends a registration; `why` is what the event says: "target_exited" when the
 * server exits, else the reason of a target_unregistered ("unregister",
 * "disconnected"). NULL ends it silently (the agent is stopping). */
static void registration_end(struct registration *r, const char *why)
{
	struct ctl_peer *p = r->peer;
	struct control *c = p->ctl;
	struct registration **pp;

	if (r->inflight)
		rebind_failed(r, why ? why : "agent_stopping");
	if (why && r->e) {
		bool exited = strcmp(why, "target_exited") == 0;
		json_t *ev = ctl_event(c, exited ? "target_exited" : "target_unregistered",
				       exited ? "warning" : "info", r->e->path);

		if (!exited)
			json_object_set_new(ev, "reason", json_string(why));
		json_object_set_new(ev, "heal", json_string(heal_name(r->heal)));
		set_peer_owner(ev, p);
		c->hooks.emit(c->hooks.ctx, ev);
	}
	for (pp = &p->regs; *pp; pp = &(*pp)->next) {
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	}
	p->n_regs--;
	c->n_regs--;
	if (r->e) {
		r->e->reg = NULL;
		r->e->origin &= ~EP_FROM_REGISTER;
	}
	free(r);
}

/* Checks a registration; the reason word, or NULL when it is acceptable. */
static const char *register_check(struct ctl_peer *p, const char *path, int fd,
				  struct unix_listener *l, const char **text)
{
	struct sockaddr_un sa;
	socklen_t sl = sizeof(sa);
	int domain = 0, listening = 0;
	socklen_t ol = sizeof(int);
	struct stat st;
	const char *why = "";
	char dir[SW_PATH_MAX];
	int dfd;

	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &ol) != 0 || domain != AF_UNIX) {
		*text = "the fd is not an AF_UNIX socket";
		return "bad_fd";
	}
	ol = sizeof(int);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ol) != 0 || !listening) {
		*text = "the fd is not a listening AF_UNIX socket";
		return "not_listening";
	}
	memset(&sa, 0, sizeof(sa));
	if (getsockname(fd, (struct sockaddr *)&sa, &sl) != 0 ||
	    sl <= offsetof(struct sockaddr_un, sun_path) ||
	    strncmp(sa.sun_path, path, sizeof(sa.sun_path)) != 0) {
		*text = "the socket is bound to another path";
		return "path_mismatch";
	}
	/* the path's directories must be real directories, not symbolic links */
	if (!path_dirname(path, dir, sizeof(dir))) {
		*text = "the path has no directory";
		return "bad_path";
	}
	{
		struct endpoint tmp = { .path = (char *)path };

		dfd = healer_parents_ensure_existing(&tmp, &why);
	}
	if (dfd < 0) {
		*text = "a directory on the way to the path is a symbolic link or missing";
		return strcmp(why, "parent_is_symlink") == 0 ? "parent_is_symlink" : "path_mismatch";
	}
	if (fstatat(dfd, path_basename(path), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
	    !S_ISSOCK(st.st_mode)) {
		close(dfd);
		*text = "the path does not resolve to a socket";
		return "path_mismatch";
	}
	close(dfd);
	if (discovery_get(socket_inode_of_fd(fd), l) != 0 || l->state != TCP_LISTEN_STATE ||
	    l->vfs_ino != st.st_ino || l->vfs_dev != st.st_dev) {
		*text = "the path resolves to another file than this socket's";
		return "path_mismatch";
	}
	if (p->owner.uid != 0 && st.st_uid != p->owner.uid) {
		*text = "the socket file belongs to another user";
		return "not_owner";
	}
	if (!peer_holds(p, l->sock_ino)) {
		*text = "the registering process does not hold this socket";
		return "not_owner";
	}
	return NULL;
}

static void on_register(struct ctl_peer *p, const struct ctl_request *req, int *fds,
			int n_fds)
{
	struct control *c = p->ctl;
	struct unix_listener l;
	struct endpoint *e;
	struct registration *r;
	const char *word, *text = "";
	json_t *ev;

	if (n_fds != 1) {
		peer_bad(p, req->path, "bad_fd", n_fds ? "exactly one fd, please"
						       : "the listening fd is missing");
		return;
	}
	word = register_check(p, req->path, fds[0], &l, &text);
	if (word) {
		reply_error(p, req->path, word, text);
		return;
	}
	e = ep_lookup(c->eps, req->path);
	if (e && e->reg && e->reg->peer != p) {
		reply_error(p, req->path, "already_registered",
			    "another connection registered this path");
		return;
	}
	if (!(e && e->reg) && p->n_regs >= c->lim.max_registrations_per_connection) {
		char text[128];

		snprintf(text, sizeof(text), "this connection holds %zu registrations, the most "
			 "one may hold (control_max_registrations_per_connection)", p->n_regs);
		reply_error(p, req->path, "limit", text);
		return;
	}
	if (!(e && e->reg) && c->n_regs >= c->lim.max_registrations) {
		char text[128];

		snprintf(text, sizeof(text), "the agent holds %zu registrations, the most it "
			 "takes (control_max_registrations)", c->n_regs);
		reply_error(p, req->path, "limit", text);
		return;
	}
	e = ep_get_or_add(c->eps, req->path, NULL);
	if (!e) {
		reply_error(p, req->path, "bad_path", "not an absolute normalised path");
		return;
	}
	r = e->reg;
	if (!r) {
		r = calloc(1, sizeof(*r));
		if (!r) {
			reply_error(p, req->path, "limit", "out of memory");
			return;
		}
		r->peer = p;
		r->e = e;
		r->our_fd = -1;
		r->next = p->regs;
		p->regs = r;
		p->n_regs++;
		c->n_regs++;
		e->reg = r;
	}
	r->heal = req->heal;
	e->origin |= EP_FROM_REGISTER;
	if (e->has_listener && e->l.sock_ino != l.sock_ino)
		healer_listener_gone(c->healer, e);
	ep_set_listener(e, &l, &p->owner, 1);
	e->lost = false;
	ep_record_fs(e);
	healer_listener_seen(c->healer, e);
	ev = ctl_event(c, "target_registered", "info", e->path);
	set_peer_owner(ev, p);
	json_object_set_new(ev, "heal", json_string(heal_name(r->heal)));
	c->hooks.emit(c->hooks.ctx, ev);
	reply_ok(p, "registered", req->path);
	c->hooks.changed(c->hooks.ctx);
}

static void on_unregister(struct ctl_peer *p, const struct ctl_request *req)
{
	struct endpoint *e = ep_lookup(p->ctl->eps, req->path);

	if (!e || !e->reg || e->reg->peer != p) {
		reply_error(p, req->path, "not_registered", "this connection did not register it");
		return;
	}
	registration_end(e->reg, "unregister");
	reply_ok(p, "unregistered", req->path);
}

/* ----- peers ----- */

static void peer_free_regs(struct ctl_peer *p, const char *why)
{
	/* registration_end unlinks the registration from p->regs before it
	 * frees it; the analyzer does not follow that through the list walk */
	while (p->regs)
		registration_end(p->regs, why); // NOLINT(clang-analyzer-unix.Malloc)
}

/* Drops a peer; its registrations end with `reg_why` (see registration_end). */
static void peer_kill(struct ctl_peer *p, const char *why, const char *reg_why)
{
	struct control *c = p->ctl;

	if (p->dead)
		return;
	log_debug("control peer pid %d (uid %u) closed: %s", p->owner.pid,
		  (unsigned)p->owner.uid, why);
	p->dead = true;
	peer_free_regs(p, reg_why);
	loop_del(c->epfd, &p->w);
	close(p->w.fd);
	if (p->pidfd >= 0) {
		loop_del(c->epfd, &p->w_pidfd);
		close(p->pidfd);
	}
	/* unlink from the live list; freed after the current loop turn */
	for (struct ctl_peer **pp = &c->peers; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	}
	c->n_peers--;
	p->next = c->graveyard;
	c->graveyard = p;
	/* a slot is free again: accepting resumes if fds ran out */
	if (c->accept_resume_ns)
		c->accept_resume_ns = 1;
}

/* Disconnects a misbehaving peer, saying why on stderr: the operator sees
 * who it was (a rate of these is a client bug or an attack). At most
 * CONTROL_DROP_LOGS lines a minute: a swarm of bad peers is not a log flood. */
static void peer_drop(struct ctl_peer *p, const char *why)
{
	struct control *c = p->ctl;
	uint64_t now = clock_mono_ns();

	if (p->dead)
		return;
	if (now - c->drop_log_ns >= 60 * NSEC_PER_SEC) {
		if (c->drop_log_skipped)
			log_warn("control: %u more peers disconnected that were not logged",
				 c->drop_log_skipped);
		c->drop_log_ns = now;
		c->drop_log_n = c->drop_log_skipped = 0;
	}
	if (c->drop_log_n < CONTROL_DROP_LOGS) {
		c->drop_log_n++;
		log_warn("control peer pid %d (%s, uid %u) disconnected: %s", p->owner.pid,
			 p->owner.comm[0] ? p->owner.comm : "?", (unsigned)p->owner.uid, why);
	} else {
		c->drop_log_skipped++;
	}
	peer_kill(p, why, "disconnected");
}

static void peer_bad(struct ctl_peer *p, const char *path, const char *word,
		     const char *text)
{
	reply_error(p, path, word, text);
	if (!p->dead && ++p->bad_msgs >= CONTROL_BAD_MSGS_MAX) {
		p->ctl->peers_bad++;
		peer_drop(p, "too many malformed or out-of-order messages in a row");
	}
}

static void on_peer_exit(struct watcher *w, uint32_t events);

/* The control server's part of the status document: its load, its limits,
 * and the connections it closed by cause. */
static json_t *control_status(const struct control *c)
{
	return json_pack("{s:I,s:I,s:I,s:I,s:{s:I,s:I,s:I,s:f},s:{s:I,s:I,s:I,s:I,s:I}}",
			 "connections", (json_int_t)c->n_peers,
			 "registrations", (json_int_t)c->n_regs,
			 "messages", (json_int_t)c->msgs_in,
			 "errors", (json_int_t)c->errors_sent,
			 "limits",
			 "max_connections", (json_int_t)c->lim.max_connections,
			 "max_registrations", (json_int_t)c->lim.max_registrations,
			 "max_registrations_per_connection",
			 (json_int_t)c->lim.max_registrations_per_connection,
			 "idle_timeout_s", (double)c->lim.idle_timeout_ns / 1e9,
			 "closed",
			 "refused", (json_int_t)c->peers_refused,
			 "evicted", (json_int_t)c->peers_evicted,
			 "idle", (json_int_t)c->peers_idle,
			 "malformed", (json_int_t)c->peers_bad,
			 "not_reading", (json_int_t)c->peers_not_reading);
}

/*
 * `sockwarden status`: the document can be larger than a message, so it goes
 * in a sealed memfd passed with the reply. Answered on the spot, ahead of
 * anything queued: status must work when everything else is busy.
 */
static void on_status(struct ctl_peer *p)
{
	struct control *c = p->ctl;
	json_t *doc, *msg;
	char *s = NULL, *m = NULL;
	int fd = -1;
	size_t len;

	if (p->owner.uid != 0) {
		reply_error(p, NULL, "not_owner", "status shows every server on the host: root only");
		return;
	}
	doc = c->hooks.status ? c->hooks.status(c->hooks.ctx) : NULL;
	if (json_is_object(doc))
		json_object_set_new(doc, "control", control_status(c));
	s = doc ? json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
	json_decref(doc);
	if (!s)
		goto fail;
	len = strlen(s);
	fd = memfd_create("sockwarden-status", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0 || write(fd, s, len) != (ssize_t)len || lseek(fd, 0, SEEK_SET) != 0)
		goto fail;
	fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
	msg = json_object();
	json_object_set_new(msg, "op", json_string("status"));
	json_object_set_new(msg, "size", json_integer((json_int_t)len));
	m = json_dumps(msg, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(msg);
	if (!m || peer_sendmsg(p, m, strlen(m), fd) != 0)
		goto fail;
	goto out;
fail:
	reply_error(p, NULL, "unexpected", "the status document could not be sent");
out:
	if (fd >= 0)
		close(fd);
	free(s);
	free(m);
}

/* Whether the peer process is exiting or gone: its pidfd is readable, or the
 * kernel has marked it PF_EXITING (set before do_exit closes its files). */
static bool peer_exiting(const struct ctl_peer *p)
{
	unsigned long flags = 0;
	char state;
	int rc;

	if (p->pidfd < 0)
		return false;
	if (pidfd_exited(p->pidfd))
		return true;
	rc = proc_stat_read(p->owner.pid, &state, &flags);
	/* A failed read can be the exit itself: the control fd closes in
	 * exit_files, before exit_notify makes the pidfd readable, and the
	 * parent may reap the process between the open and the read (ESRCH).
	 * Once the process is gone the pidfd is readable: ask it again. */
	if (rc)
		return rc == -ENOENT || rc == -ESRCH || pidfd_exited(p->pidfd);
	return flags & 0x4; /* PF_EXITING */
}

/* The SCM_RIGHTS fds of a received message, all of them, whatever else the
 * message holds: each one is the agent's to close. */
static int take_fds(struct msghdr *mh, int *fds, int max)
{
	int n = 0;

	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);

		for (size_t i = 0; i < k && n < max; i++)
			memcpy(&fds[n++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
	}
	return n;
}

static void on_peer(struct watcher *w, uint32_t events)
{
	struct ctl_peer *p = w->ctx;
	/* one byte more than a message may hold: a longer one shows as MSG_TRUNC */
	char buf[CONTROL_MSG_MAX + 1];
	/* room for CONTROL_FDS_MAX fds: more than that shows as MSG_CTRUNC, and
	 * the kernel closes what did not fit */
	union {
		char buf[CMSG_SPACE(sizeof(int) * CONTROL_FDS_MAX)];
		struct cmsghdr align;
	} cm;
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
			     .msg_controllen = sizeof(cm.buf) };
	struct ctl_request req;
	int fds[CONTROL_FDS_MAX], n_fds = 0;
	const char *word;
	unsigned bad;
	ssize_t n;

	if (p->dead)
		return;
	if (events & EPOLLOUT)
		peer_flush(p);
	if (p->dead || !(events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)))
		return;
	n = recvmsg(w->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n >= 0)
		n_fds = take_fds(&mh, fds, CONTROL_FDS_MAX);
	/* SOCK_SEQPACKET carries empty messages: 0 is the end only once the
	 * peer has shut the connection down */
	if (n < 0 || (n == 0 && (events & (EPOLLHUP | EPOLLRDHUP | EPOLLERR)))) {
		/* a server that dies closes its control fd before its pidfd
		 * reports the exit: tell the two apart so the event is right */
		if (peer_exiting(p))
			on_peer_exit(&p->w_pidfd, EPOLLIN);
		else
			peer_kill(p, n == 0 ? "closed" : strerror(errno), "disconnected");
		goto out;
	}
	p->ctl->msgs_in++;
	p->last_active_ns = clock_mono_ns();
	if (mh.msg_flags & MSG_CTRUNC) {
		peer_bad(p, NULL, "bad_fd", "too many fds with one message");
		goto out;
	}
	if ((size_t)n > CONTROL_MSG_MAX || (mh.msg_flags & MSG_TRUNC)) {
		peer_bad(p, NULL, "too_large", "a message holds at most 4096 bytes");
		goto out;
	}
	if (n == 0) {
		peer_bad(p, NULL, "malformed", "an empty message");
		goto out;
	}
	word = control_decode(buf, (size_t)n, &req);
	if (word) {
		peer_bad(p, req.path, word, strcmp(word, "unknown_op") == 0
			 ? "this op is not part of protocol version 1"
			 : "see docs/protocol.md for the message formats");
		goto out;
	}
	if (strcmp(req.op, "register") != 0 && n_fds) {
		peer_bad(p, req.path, "bad_fd", "this message takes no fd");
		goto out;
	}
	bad = p->bad_msgs;
	if (strcmp(req.op, "register") == 0)
		on_register(p, &req, fds, n_fds);
	else if (strcmp(req.op, "unregister") == 0)
		on_unregister(p, &req);
	else if (strcmp(req.op, "adopted") == 0)
		on_adopted(p, &req);
	else if (strcmp(req.op, "status") == 0)
		on_status(p);
	else
		peer_bad(p, NULL, "unknown_op", "status is asked with `sockwarden status`");
	/* a well-formed request in order ends a run of bad ones */
	if (p->bad_msgs == bad)
		p->bad_msgs = 0;
out:
	/* the agent keeps no fd a peer sent: validation is done on the spot */
	for (int i = 0; i < n_fds; i++)
		close(fds[i]);
}

static void on_peer_exit(struct watcher *w, uint32_t events)
{
	struct ctl_peer *p = w->ctx;

	(void)events;
	if (p->dead)
		return;
	peer_kill(p, "exited", "target_exited");
}

/* Says once a minute that the connection table is full: under a flood of
 * connections one line, not one per connection. */
static void limit_warn(struct control *c, uint64_t now)
{
	if (c->limit_warned_ns && now - c->limit_warned_ns < 60 * NSEC_PER_SEC)
		return;
	c->limit_warned_ns = now;
	log_warn("control connections at their limit (%u, control_max_connections): "
		 "idle ones make room for new ones, %llu refused, %llu evicted so far",
		 c->lim.max_connections, (unsigned long long)c->peers_refused,
		 (unsigned long long)c->peers_evicted);
}

static void accept_set(struct control *c, uint32_t events)
{
	if (c->w_abstract.fd >= 0)
		loop_mod(c->epfd, &c->w_abstract, events);
	if (c->w_path.fd >= 0)
		loop_mod(c->epfd, &c->w_path, events);
}

/* Makes room for a new connection when the table is full; false when every
 * connection holds registrations (those are never dropped for a newcomer). */
static bool make_room(struct control *c, uint64_t now)
{
	struct ctl_peer *victim;

	if (c->n_peers < c->lim.max_connections)
		return true;
	limit_warn(c, now);
	victim = control_evict_pick(c->peers);
	if (!victim)
		return false;
	c->peers_evicted++;
	peer_kill(victim, "evicted: the connection limit is reached", "disconnected");
	return true;
}

static void on_accept(struct watcher *w, uint32_t events)
{
	struct control *c = w->ctx;

	(void)events;
	for (int i = 0; i < CONTROL_ACCEPT_BATCH; i++) {
		int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		uint64_t now = clock_mono_ns();
		struct ucred cred;
		socklen_t cl = sizeof(cred);
		struct ctl_peer *p;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				/* the pending connection stays readable: stop listening
				 * for a moment instead of waking for it in a loop */
				log_warn("control: cannot accept a connection: %s; pausing",
					 strerror(errno));
				accept_set(c, 0);
				c->accept_resume_ns = now + 100 * NSEC_PER_MSEC;
			}
			return;
		}
		if (!make_room(c, now) || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0) {
			c->peers_refused++;
			close(fd);
			continue;
		}
		p = calloc(1, sizeof(*p));
		if (!p) {
			close(fd);
			continue;
		}
		p->ctl = c;
		if (!owner_read(cred.pid, &p->owner))
			p->owner.pid = cred.pid;
		p->owner.uid = cred.uid;
		p->owner.gid = cred.gid;
		p->last_active_ns = now;
		p->w = (struct watcher){ .fd = fd, .fn = on_peer, .ctx = p };
		/* liveness through a pidfd: never a bare pid that may be recycled */
		p->pidfd = (int)syscall(SYS_pidfd_open, cred.pid, 0);
		p->w_pidfd = (struct watcher){ .fd = p->pidfd, .fn = on_peer_exit, .ctx = p };
		if (loop_add(c->epfd, &p->w, EPOLLIN | EPOLLRDHUP) != 0) {
			if (p->pidfd >= 0)
				close(p->pidfd);
			close(fd);
			free(p);
			continue;
		}
		if (p->pidfd >= 0)
			loop_add(c->epfd, &p->w_pidfd, EPOLLIN);
		p->next = c->peers;
		c->peers = p;
		c->n_peers++;
	}
}

/* ----- limits ----- */

struct control_limits control_limits_resolve(const struct control_limits *in,
					     uint64_t nofile)
{
	struct control_limits l = {
		.max_connections = CONTROL_PEERS_MAX,
		.max_registrations = CONTROL_REGS_TOTAL,
		.max_registrations_per_connection = CONTROL_REGS_PER_PEER,
		.idle_timeout_ns = CONTROL_IDLE_TIMEOUT_NS,
	};
	uint64_t fit;

	if (in && in->max_connections)
		l.max_connections = in->max_connections;
	if (in && in->max_registrations)
		l.max_registrations = in->max_registrations;
	if (in && in->max_registrations_per_connection)
		l.max_registrations_per_connection = in->max_registrations_per_connection;
	if (in && in->idle_timeout_ns)
		l.idle_timeout_ns = in->idle_timeout_ns;
	/* a limit the fds cannot reach would turn into accept() failing */
	fit = nofile > CONTROL_FD_RESERVE + 2 ? (nofile - CONTROL_FD_RESERVE) / 2 : 1;
	if (l.max_connections > fit)
		l.max_connections = (unsigned)fit;
	return l;
}

uint64_t control_idle_deadline(const struct ctl_peer *p, uint64_t idle_ns)
{
	if (p->n_regs || p->dead)
		return UINT64_MAX;
	return p->last_active_ns + idle_ns;
}

struct ctl_peer *control_evict_pick(struct ctl_peer *peers)
{
	struct ctl_peer *pick = NULL;

	for (struct ctl_peer *p = peers; p; p = p->next)
		if (!p->n_regs && !p->dead &&
		    (!pick || p->last_active_ns < pick->last_active_ns))
			pick = p;
	return pick;
}

/* Room for two fds per connection: the soft limit is raised toward the hard
 * one (the agent uses epoll, never select), and what still does not fit
 * lowers the connection limit, said once at start. */
static void limits_apply(struct control *c, const struct control_limits *want)
{
	struct control_limits asked = control_limits_resolve(want, UINT64_MAX);
	uint64_t need = (uint64_t)asked.max_connections * 2 + CONTROL_FD_RESERVE;
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
		c->lim = asked;
		return;
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
		struct rlimit up = rl;

		up.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need
										  : rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &up) == 0)
			rl = up;
	}
	c->lim = control_limits_resolve(want, rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX
									 : rl.rlim_cur);
	if (c->lim.max_connections < asked.max_connections)
		log_warn("control: at most %u connections fit in the open-file limit (%llu), "
			 "not %u", c->lim.max_connections, (unsigned long long)rl.rlim_cur,
			 asked.max_connections);
}

/* ----- set-up ----- */

static int listen_seqpacket(const struct sockaddr_un *sa, socklen_t len)
{
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	/* the deepest backlog the kernel grants (net.core.somaxconn caps it): a
	 * fleet of servers reconnecting at once after an agent restart queue
	 * there instead of meeting EAGAIN */
	if (bind(fd, (const struct sockaddr *)sa, len) != 0 || listen(fd, SOMAXCONN) != 0) {
		int err = errno;

		close(fd);
		return -err;
	}
	return fd;
}

int control_open(struct control *c, int epfd, const char *path,
		 struct endpoint_table *eps, struct healer *h,
		 const struct event_env *env, const struct control_hooks *hooks,
		 uint64_t rebind_timeout_ns, const struct control_limits *lim,
		 const char **why)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[SW_PATH_MAX];
	int fd;

	memset(c, 0, sizeof(*c));
	c->epfd = epfd;
	c->eps = eps;
	c->healer = h;
	c->env = env;
	c->hooks = *hooks;
	c->rebind_timeout_ns = rebind_timeout_ns;
	limits_apply(c, lim);
	c->w_abstract.fd = c->w_path.fd = -1;
	snprintf(c->path, sizeof(c->path), "%s", path);

	/* abstract: immune to unlink */
	memcpy(sa.sun_path + 1, CONTROL_ABSTRACT_NAME, strlen(CONTROL_ABSTRACT_NAME));
	fd = listen_seqpacket(&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
					       strlen(CONTROL_ABSTRACT_NAME)));
	if (fd < 0) {
		*why = fd == -EADDRINUSE ? "another agent holds @sockwarden"
					 : "cannot listen on @sockwarden";
		return fd;
	}
	c->w_abstract = (struct watcher){ .fd = fd, .fn = on_accept, .ctx = c };
	loop_add(epfd, &c->w_abstract, EPOLLIN);

	/* the path, for containers; a stale file of a crashed agent is replaced
	 * (the abstract name above proves no other agent runs) */
	if (path_dirname(path, dir, sizeof(dir)))
		mkdir(dir, 0755);
	unlink(path);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	fd = listen_seqpacket(&sa, sizeof(sa));
	if (fd < 0) {
		*why = "cannot listen on the control path";
		control_close(c);
		return fd;
	}
	/* any local process may register its own sockets */
	chmod(path, 0666);
	c->w_path = (struct watcher){ .fd = fd, .fn = on_accept, .ctx = c };
	loop_add(epfd, &c->w_path, EPOLLIN);
	return 0;
}

static void peer_list_free(struct ctl_peer *p)
{
	while (p) {
		struct ctl_peer *next = p->next;

		free(p);
		p = next;
	}
}

/*
 * A dropped peer may still have events in the batch of the loop turn it died
 * in, so it is freed one call later: control_tick runs at the end of every
 * turn and at most once inside one (from the heal timer), so by the second
 * call after its death the turn it died in is over.
 */
static void graveyard_free(struct control *c)
{
	peer_list_free(c->graveyard_old);
	c->graveyard_old = c->graveyard;
	c->graveyard = NULL;
}

void control_close(struct control *c)
{
	while (c->peers)
		peer_kill(c->peers, "agent stopping", NULL);
	graveyard_free(c);
	graveyard_free(c);
	if (c->w_abstract.fd >= 0)
		close(c->w_abstract.fd);
	if (c->w_path.fd >= 0) {
		close(c->w_path.fd);
		unlink(c->path);
	}
	c->w_abstract.fd = c->w_path.fd = -1;
}

void control_tick(struct control *c, uint64_t now_ns)
{
	struct ctl_peer *next;

	graveyard_free(c);
	for (struct ctl_peer *p = c->peers; p; p = next) {
		next = p->next; /* an idle peer leaves the list here */
		for (struct registration *r = p->regs; r; r = r->next)
			if (r->inflight && now_ns >= r->deadline_ns)
				rebind_failed(r, "timeout");
		if (control_idle_deadline(p, c->lim.idle_timeout_ns) <= now_ns) {
			c->peers_idle++;
			peer_kill(p, "idle: silent and registered nothing", "disconnected");
		}
	}
	if (c->accept_resume_ns && now_ns >= c->accept_resume_ns) {
		c->accept_resume_ns = 0;
		accept_set(c, EPOLLIN);
	}
}

uint64_t control_next_deadline(const struct control *c)
{
	uint64_t d = c->accept_resume_ns ? c->accept_resume_ns : UINT64_MAX;

	for (const struct ctl_peer *p = c->peers; p; p = p->next) {
		uint64_t idle = control_idle_deadline(p, c->lim.idle_timeout_ns);

		if (idle < d)
			d = idle;
		for (const struct registration *r = p->regs; r; r = r->next)
			if (r->inflight && r->deadline_ns < d)
				d = r->deadline_ns;
	}
	return d;
}
