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
	if (strcmp(op, "register") && strcmp(op, "unregister") && strcmp(op, "adopted") &&
	    strcmp(op, "status")) {
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

static void peer_flush(struct ctl_peer *p)
{
	while (p->outq_n) {
		struct ctl_msg_out *m = &p->outq[p->outq_head];
		int rc = peer_sendmsg(p, m->buf, m->len, -1);

		if (rc == -EAGAIN)
			break;
		if (rc) {
			peer_kill(p, "send failed", "disconnected");
			return;
		}
		p->outq_head = (p->outq_head + 1) % CONTROL_OUTQ;
		p->outq_n--;
	}
	if (!p->dead)
		loop_mod(p->ctl->epfd, &p->w, EPOLLIN | (p->outq_n ? EPOLLOUT : 0));
}

/* Replies queue behind a peer that does not read; one that never reads is
 * dropped rather than allowed to hold the agent's memory. */
static void peer_send_json(struct ctl_peer *p, json_t *msg)
{
	char *s = json_dumps(msg, JSON_COMPACT | JSON_PRESERVE_ORDER);
	size_t len = s ? strlen(s) : 0;

	json_decref(msg);
	if (!s || p->dead)
		goto out;
	if (p->outq_n == 0 && peer_sendmsg(p, s, len, -1) == 0)
		goto out;
	if (p->outq_n == CONTROL_OUTQ || len > CONTROL_MSG_MAX) {
		peer_kill(p, "does not read its replies", "disconnected");
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

/* Binds a socket at the path as the server's uid and gid, with its mode. */
static int bind_as(const struct registration *r, int pfd, int type, const char **why)
{
	const struct endpoint *e = r->e;
	const char *base = path_basename(e->path);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	mode_t mode = e->file_mode ? e->file_mode : 0666;
	int fd, rc = 0, root;

	fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*why = "socket_failed";
		return -errno;
	}
	/* bind relative to the directory fd that was opened without following
	 * symlinks: a parent swapped for a link meanwhile is not followed */
	root = open("/", O_DIRECTORY | O_PATH | O_CLOEXEC);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", base);
	setfsgid(r->peer->owner.gid);
	setfsuid(r->peer->owner.uid);
	umask(~mode & 0777);
	if (fchdir(pfd) != 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		rc = -errno;
		*why = rc == -EADDRINUSE ? "rebound" : "bind_failed";
	}
	umask(0);
	setfsuid(0);
	setfsgid(0);
	if (root >= 0) {
		if (fchdir(root) != 0)
			log_warn("cannot return to /: %s", strerror(errno));
		close(root);
	}
	if (rc) {
		close(fd);
		return rc;
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

/* The listener now at the path, if it is a listening socket. */
static bool listener_at_path(const char *path, struct unix_listener *out)
{
	struct listener_list ll = {0};
	struct stat st;
	bool found = false;

	if (lstat(path, &st) != 0 || !S_ISSOCK(st.st_mode))
		return false;
	if (discovery_dump(&ll, 1u << TCP_LISTEN_STATE) != 0)
		return false;
	for (size_t i = 0; i < ll.n && !found; i++) {
		if (ll.v[i].vfs_ino == st.st_ino && ll.v[i].vfs_dev == st.st_dev) {
			*out = ll.v[i];
			found = true;
		}
	}
	listener_list_free(&ll);
	return found;
}

static bool peer_holds(const struct ctl_peer *p, uint64_t sock_ino)
{
	return discovery_pid_holds(p->owner.pid, sock_ino);
}

/* heal notify, when the path was removed again before `adopted` came: the
 * newest listener the peer holds that is bound to the name. */
static bool peer_listener_named(const struct registration *r, struct unix_listener *out)
{
	struct listener_list ll = {0};
	size_t len = strlen(r->e->path);
	bool found = false;

	if (discovery_dump(&ll, 1u << TCP_LISTEN_STATE) != 0)
		return false;
	for (size_t i = 0; i < ll.n; i++) {
		const struct unix_listener *c = &ll.v[i];

		/* the bound name may or may not carry its NUL, as the binder chose */
		if (strnlen(c->name, c->name_len) != len || memcmp(c->name, r->e->path, len) != 0 ||
		    c->sock_ino == r->e->l.sock_ino || (found && c->sock_ino < out->sock_ino) ||
		    !peer_holds(r->peer, c->sock_ino))
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
		return (listener_at_path(r->e->path, l) && peer_holds(r->peer, l->sock_ino)) ||
		       peer_listener_named(r, l);
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

	if (!r || r->peer != p) {
		reply_error(p, req->path, "not_registered", "this connection did not register it");
		return;
	}
	if (!r->inflight || req->seq != r->inflight_seq) {
		reply_error(p, req->path, "unexpected", "no rebind with this seq is in flight");
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
		reply_error(p, req->path, "bad_fd", n_fds ? "exactly one fd, please"
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
	if (!(e && e->reg) &&
	    (p->n_regs >= CONTROL_REGS_PER_PEER || c->n_regs >= CONTROL_REGS_TOTAL)) {
		reply_error(p, req->path, "limit", "too many registrations");
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
	while (p->regs)
		registration_end(p->regs, why);
}

/* Drops a peer; its registrations end with `reg_why` (see registration_end). */
static void peer_kill(struct ctl_peer *p, const char *why, const char *reg_why)
{
	struct control *c = p->ctl;

	if (p->dead)
		return;
	log_debug("control peer pid %d dropped: %s", p->owner.pid, why);
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
}

static void peer_bad(struct ctl_peer *p, const char *path, const char *word,
		     const char *text)
{
	reply_error(p, path, word, text);
	if (++p->bad_msgs >= CONTROL_BAD_MSGS_MAX)
		peer_kill(p, "too many malformed messages", "disconnected");
}

static void on_peer_exit(struct watcher *w, uint32_t events);

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
	if (rc)
		return rc == -ENOENT;
	return flags & 0x4; /* PF_EXITING */
}

static void on_peer(struct watcher *w, uint32_t events)
{
	struct ctl_peer *p = w->ctx;
	char buf[CONTROL_MSG_MAX + 1];
	union {
		char buf[CMSG_SPACE(sizeof(int) * 16)];
		struct cmsghdr align;
	} cm;
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
			     .msg_controllen = sizeof(cm.buf) };
	struct ctl_request req;
	int fds[16], n_fds = 0;
	bool fds_lost;
	const char *word;
	ssize_t n;

	if (p->dead)
		return;
	if (events & EPOLLOUT)
		peer_flush(p);
	if (p->dead || !(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	n = recvmsg(w->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		/* a server that dies closes its control fd before its pidfd
		 * reports the exit: tell the two apart so the event is right */
		if (peer_exiting(p))
			on_peer_exit(&p->w_pidfd, EPOLLIN);
		else
			peer_kill(p, n == 0 ? "closed" : strerror(errno), "disconnected");
		return;
	}
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);

		for (size_t i = 0; i < k && n_fds < 16; i++)
			memcpy(&fds[n_fds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
	}
	p->ctl->msgs_in++;
	/* more fds than the control buffer holds: the kernel dropped the rest */
	fds_lost = mh.msg_flags & MSG_CTRUNC;
	if (fds_lost) {
		peer_bad(p, NULL, "bad_fd", "too many fds with one message");
		goto out;
	}
	if ((size_t)n > CONTROL_MSG_MAX || (mh.msg_flags & MSG_TRUNC)) {
		peer_bad(p, NULL, "too_large", "a message holds at most 4096 bytes");
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

static void on_accept(struct watcher *w, uint32_t events)
{
	struct control *c = w->ctx;

	for (;;) {
		int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct ucred cred;
		socklen_t cl = sizeof(cred);
		struct ctl_peer *p;

		if (fd < 0)
			return;
		if (c->n_peers >= CONTROL_PEERS_MAX ||
		    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0) {
			c->peers_dropped++;
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
		p->w = (struct watcher){ .fd = fd, .fn = on_peer, .ctx = p };
		/* liveness through a pidfd: never a bare pid that may be recycled */
		p->pidfd = (int)syscall(SYS_pidfd_open, cred.pid, 0);
		p->w_pidfd = (struct watcher){ .fd = p->pidfd, .fn = on_peer_exit, .ctx = p };
		if (loop_add(c->epfd, &p->w, EPOLLIN) != 0) {
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

/* ----- set-up ----- */

static int listen_seqpacket(const struct sockaddr_un *sa, socklen_t len)
{
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	if (bind(fd, (const struct sockaddr *)sa, len) != 0 || listen(fd, 128) != 0) {
		int err = errno;

		close(fd);
		return -err;
	}
	return fd;
}

int control_open(struct control *c, int epfd, const char *path,
		 struct endpoint_table *eps, struct healer *h,
		 const struct event_env *env, const struct control_hooks *hooks,
		 uint64_t rebind_timeout_ns, const char **why)
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

static void graveyard_free(struct control *c)
{
	while (c->graveyard) {
		struct ctl_peer *p = c->graveyard;

		c->graveyard = p->next;
		free(p);
	}
}

void control_close(struct control *c)
{
	while (c->peers)
		peer_kill(c->peers, "agent stopping", NULL);
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
	graveyard_free(c);
	for (struct ctl_peer *p = c->peers; p; p = p->next)
		for (struct registration *r = p->regs; r; r = r->next)
			if (r->inflight && now_ns >= r->deadline_ns)
				rebind_failed(r, "timeout");
}

uint64_t control_next_deadline(const struct control *c)
{
	uint64_t d = UINT64_MAX;

	for (const struct ctl_peer *p = c->peers; p; p = p->next)
		for (const struct registration *r = p->regs; r; r = r->next)
			if (r->inflight && r->deadline_ns < d)
				d = r->deadline_ns;
	return d;
}
