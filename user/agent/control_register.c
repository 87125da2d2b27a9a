/*
 * Registrations: `register` checks that the fd and path name a listener the
 * peer holds, adds the path to the endpoint table, and `unregister` or the
 * peer's end removes it.
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

/* ----- registration ----- */

/* Ends a registration; `why` is what the event says: "target_exited" when the
 * server exits, else the reason of a target_unregistered ("unregister",
 * "disconnected"). NULL ends it silently (the agent is stopping). */
void registration_end(struct registration *r, const char *why)
{
	struct ctl_peer *p = r->peer;
	struct control *c = p->ctl;
	struct registration **pp;

	if (r->inflight)
		rebind_failed(r, why ? why : "agent_stopping");
	if (why && r->e) {
		bool exited = strcmp(why, "target_exited") == 0;
		json_t *ev = ctl_event(c, exited ? "target_exited" : "target_unregistered",
				       exited ? "warning" : "info", r->e);

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
				  struct ns_root *root, uint32_t mntns,
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
		struct endpoint tmp = { .path = (char *)path, .mntns = mntns, .root = root };

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
	if (discovery_get_via(p->owner.pid, socket_inode_of_fd(fd), l) != 0 ||
	    l->state != TCP_LISTEN_STATE ||
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

void on_register(struct ctl_peer *p, const struct ctl_request *req, int *fds,
		 int n_fds)
{
	struct control *c = p->ctl;
	struct unix_listener l;
	struct endpoint *e;
	struct registration *r;
	const char *word, *text = "";
	struct ns_root *root = NULL;
	uint32_t peer_ns;
	json_t *ev;

	if (n_fds != 1) {
		peer_bad(p, req->path, "bad_fd", n_fds ? "exactly one fd, please"
						       : "the listening fd is missing");
		return;
	}
	/* the path as the peer's own mount namespace names it (a server in a
	 * container reaches the agent through the control path mounted in) */
	peer_ns = ns_key(ns_mntns_of(p->owner.pid));
	if (peer_ns) {
		root = c->eps->roots ? ns_roots_get(c->eps->roots, peer_ns, p->owner.pid) : NULL;
		if (!root) {
			reply_error(p, req->path, "unsupported",
				    "the agent cannot reach the mount namespace of the registering "
				    "process");
			return;
		}
	}
	word = register_check(p, req->path, fds[0], root, peer_ns, &l, &text);
	/* a file the agent's own namespace sees at the same path is its endpoint */
	if (!word && peer_ns && listener_path_matches(&l, req->path))
		peer_ns = 0;
	if (!word && peer_ns && req->heal == HEAL_FD) {
		word = "unsupported";
		text = "heal fd binds the path in the agent's mount namespace: from another "
		       "namespace register with heal notify (or rely on the guard link)";
	}
	if (word) {
		reply_error(p, req->path, word, text);
		goto out;
	}
	e = ep_lookup(c->eps, peer_ns, req->path);
	if (e && e->reg && e->reg->peer != p) {
		reply_error(p, req->path, "already_registered",
			    "another connection registered this path");
		goto out;
	}
	if (!(e && e->reg) && p->n_regs >= c->lim.max_registrations_per_connection) {
		char text[128];

		snprintf(text, sizeof(text), "this connection holds %zu registrations, the most "
			 "one may hold (control_max_registrations_per_connection)", p->n_regs);
		reply_error(p, req->path, "limit", text);
		goto out;
	}
	if (!(e && e->reg) && c->n_regs >= c->lim.max_registrations) {
		char text[128];

		snprintf(text, sizeof(text), "the agent holds %zu registrations, the most it "
			 "takes (control_max_registrations)", c->n_regs);
		reply_error(p, req->path, "limit", text);
		goto out;
	}
	e = ep_get_or_add(c->eps, peer_ns, req->path, NULL);
	if (e && peer_ns && !e->root)
		e->root = ns_root_ref(root);
	if (!e) {
		reply_error(p, req->path, "bad_path", "not an absolute normalised path");
		goto out;
	}
	r = e->reg;
	if (!r) {
		r = calloc(1, sizeof(*r));
		if (!r) {
			reply_error(p, req->path, "limit", "out of memory");
			goto out;
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
	ep_note_holder(e, &l, p->owner.pid, ns_mntns_of(p->owner.pid));
	e->lost = false;
	ep_record_fs(e);
	healer_listener_seen(c->healer, e);
	ev = ctl_event(c, "target_registered", "info", e);
	set_peer_owner(ev, p);
	json_object_set_new(ev, "heal", json_string(heal_name(r->heal)));
	c->hooks.emit(c->hooks.ctx, ev);
	reply_ok(p, "registered", req->path);
	c->hooks.changed(c->hooks.ctx);
out:
	if (root && c->eps->roots)
		ns_root_put(c->eps->roots, root);
}

void on_unregister(struct ctl_peer *p, const struct ctl_request *req)
{
	struct endpoint *e = peer_endpoint(p, req->path);

	if (!e || !e->reg || e->reg->peer != p) {
		reply_error(p, req->path, "not_registered", "this connection did not register it");
		return;
	}
	registration_end(e->reg, "unregister");
	reply_ok(p, "unregistered", req->path);
}
