/*
 * One client of the control socket: what it sends (status, register,
 * unregister, adopted) read and dispatched, replies and events queued to it
 * without blocking the loop, and its end (closed, exited, misbehaving,
 * evicted), which ends its registrations.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/fsuid.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "control_internal.h"
#include "endpoint_json.h"
#include "shared/clock.h"
#include "shared/log.h"
#include "shared/paths.h"

/* ----- sending ----- */

static void peer_drop(struct ctl_peer *p, const char *why);

int peer_sendmsg(struct ctl_peer *p, const char *buf, size_t len, int fd)
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

void reply_error(struct ctl_peer *p, const char *path, const char *word,
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

void reply_ok(struct ctl_peer *p, const char *op, const char *path)
{
	json_t *m = json_object();

	json_object_set_new(m, "op", json_string(op));
	json_object_set_new(m, "path", json_string(path));
	peer_send_json(p, m);
}

/* ----- events ----- */

json_t *ctl_event(struct control *c, const char *name, const char *sev,
		  const struct endpoint *e)
{
	json_t *ev = event_new(c->env, name, sev, 0);

	event_set_path(ev, "path", e->path, strlen(e->path));
	endpoint_json_where(ev, e);
	return ev;
}

struct endpoint *peer_endpoint(const struct ctl_peer *p, const char *path)
{
	for (const struct registration *r = p->regs; r; r = r->next)
		if (r->e && strcmp(r->e->path, path) == 0)
			return r->e;
	return NULL;
}

void set_peer_owner(json_t *ev, const struct ctl_peer *p)
{
	event_set_proc(ev, "owner", p->owner.pid, p->owner.comm, p->owner.uid);
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
void peer_kill(struct ctl_peer *p, const char *why, const char *reg_why)
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

void peer_bad(struct ctl_peer *p, const char *path, const char *word,
	      const char *text)
{
	reply_error(p, path, word, text);
	if (!p->dead && ++p->bad_msgs >= CONTROL_BAD_MSGS_MAX) {
		p->ctl->peers_bad++;
		peer_drop(p, "too many malformed or out-of-order messages in a row");
	}
}


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
	/* the document of a large host is megabytes that the allocator would
	 * otherwise keep for the life of the agent */
	malloc_trim(0);
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

void on_peer(struct watcher *w, uint32_t events)
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

void on_peer_exit(struct watcher *w, uint32_t events)
{
	struct ctl_peer *p = w->ctx;

	(void)events;
	if (p->dead)
		return;
	peer_kill(p, "exited", "target_exited");
}

/* Says once a minute that the connection table is full: under a flood of
 * connections one line, not one per connection. */
