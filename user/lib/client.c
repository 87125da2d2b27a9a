/*
 * libsockwarden's client: the control connection, registrations, rebinds
 * and reconnects (sockwarden.h, docs/libsockwarden.md).
 *
 * The caller polls one epoll fd that holds the control socket (whichever it
 * currently is) and a timerfd. The timer drives every connection change:
 * the first connect, reconnects with back-off, and tearing down a
 * connection found broken while sending, so that callbacks only ever run
 * from sw_dispatch().
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "sockwarden.h"

#define TAG_TIMER 1
#define TAG_SOCK 2
#define MSGS_PER_DISPATCH 64 /* then return to the caller's loop (level-triggered) */
#define OUTQ_MAX 256         /* queued messages before the connection counts as stuck */
#define FDS_MAX 8            /* fds one received message may carry before CTRUNC */
#define HEALTHY_MS 1000      /* a connection this old resets the back-off */

struct reg {
	struct reg *next;
	uint64_t id;
	char path[SW_SOCKET_PATH_MAX + 1];
	enum sw_heal heal;
	int fd; /* the library's duplicate of the current listener */
	sw_rebind_cb cb;
	void *arg;
	bool sent; /* register went out on the current connection */
};

/* A message the agent will answer, in wire order: replies come in the same
 * order. `adopted` is answered only when it fails. */
enum req_kind { REQ_REGISTER, REQ_UNREGISTER, REQ_ADOPTED };
struct req {
	struct req *next;
	enum req_kind kind;
	uint64_t reg_id;
	char path[SW_SOCKET_PATH_MAX + 1];
};

/* A message waiting for the socket to take it; fd is a duplicate or -1. */
struct out {
	struct out *next;
	int fd;
	size_t len;
	char buf[];
};

struct sw_client {
	int epfd, tfd, sock;
	char abstract_name[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char control_path[SW_SOCKET_PATH_MAX + 1];
	char peer[SW_SOCKET_PATH_MAX + 2]; /* the address connected to, for events */
	sw_status_cb status_cb;
	void *status_arg;
	unsigned backoff_min, backoff_max, backoff; /* ms */
	struct reg *regs;
	uint64_t next_id;
	struct out *outq, **outq_tail;
	size_t outq_n;
	bool want_out;
	struct req *reqs, **reqs_tail;
	uint64_t connected_ns;
	bool heard;         /* a valid message came on this connection */
	bool reported_down; /* the outage was reported once */
	int broken;         /* -errno: sending failed, tear down at the next dispatch */
};

/* ----- helpers ----- */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void status(struct sw_client *c, enum sw_event ev, const char *path,
		   const char *detail)
{
	if (c->status_cb)
		c->status_cb(c->status_arg, ev, path ? path : "", detail ? detail : "");
}

static void arm_timer(struct sw_client *c, unsigned ms)
{
	struct itimerspec its = { 0 };

	its.it_value.tv_sec = ms / 1000;
	its.it_value.tv_nsec = (long)(ms % 1000) * 1000000L;
	if (ms == 0)
		its.it_value.tv_nsec = 1; /* zero would disarm it */
	timerfd_settime(c->tfd, 0, &its, NULL);
}

static struct reg *reg_by_path(struct sw_client *c, const char *path)
{
	for (struct reg *r = c->regs; r; r = r->next)
		if (strcmp(r->path, path) == 0)
			return r;
	return NULL;
}

static struct reg *reg_by_id(struct sw_client *c, uint64_t id)
{
	for (struct reg *r = c->regs; r; r = r->next)
		if (r->id == id)
			return r;
	return NULL;
}

static void close_fds(const int *fds, int n)
{
	for (int i = 0; i < n; i++)
		close(fds[i]);
}

/* ----- sending ----- */

/* A connection that cannot be written to is torn down at the next dispatch
 * (the timer makes the epoll fd readable); the reconnect sends every
 * registration again, so nothing needs to be kept. */
static void set_broken(struct sw_client *c, int err)
{
	if (!c->broken) {
		c->broken = err ? err : -EIO;
		arm_timer(c, 0);
	}
}

static int raw_send(int sock, const char *buf, size_t len, int fd)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cm;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (fd >= 0) {
		struct cmsghdr *h;

		memset(&cm, 0, sizeof(cm));
		mh.msg_control = cm.buf;
		mh.msg_controllen = sizeof(cm.buf);
		h = CMSG_FIRSTHDR(&mh);
		h->cmsg_level = SOL_SOCKET;
		h->cmsg_type = SCM_RIGHTS;
		h->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(h), &fd, sizeof(int));
	}
	for (;;) {
		if (sendmsg(sock, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0)
			return 0; /* SOCK_SEQPACKET: all or nothing */
		if (errno != EINTR)
			return -errno;
	}
}

static void update_interest(struct sw_client *c)
{
	bool want = c->outq != NULL;
	struct epoll_event ev = { .events = EPOLLIN | (want ? EPOLLOUT : 0),
				  .data.u64 = TAG_SOCK };

	if (want != c->want_out && c->sock >= 0 &&
	    epoll_ctl(c->epfd, EPOLL_CTL_MOD, c->sock, &ev) == 0)
		c->want_out = want;
}

static void flush_out(struct sw_client *c)
{
	while (c->outq && !c->broken) {
		struct out *o = c->outq;
		int rc = raw_send(c->sock, o->buf, o->len, o->fd);

		if (rc == -EAGAIN)
			break;
		if (rc) {
			set_broken(c, rc);
			break;
		}
		c->outq = o->next;
		if (!c->outq)
			c->outq_tail = &c->outq;
		c->outq_n--;
		if (o->fd >= 0)
			close(o->fd);
		free(o);
	}
	update_interest(c);
}

/* Sends one message now, or queues it behind earlier ones; never blocks. */
static void send_msg(struct sw_client *c, const char *buf, size_t len, int fd,
		     enum req_kind kind, uint64_t reg_id, const char *path)
{
	struct req *q;
	struct out *o;
	int rc;

	if (c->sock < 0 || c->broken)
		return;
	q = calloc(1, sizeof(*q));
	if (!q) {
		set_broken(c, -ENOMEM);
		return;
	}
	q->kind = kind;
	q->reg_id = reg_id;
	snprintf(q->path, sizeof(q->path), "%s", path);
	*c->reqs_tail = q;
	c->reqs_tail = &q->next;

	if (!c->outq) {
		rc = raw_send(c->sock, buf, len, fd);
		if (rc == 0)
			return;
		if (rc != -EAGAIN) {
			set_broken(c, rc);
			return;
		}
	}
	if (c->outq_n >= OUTQ_MAX) {
		set_broken(c, -ENOBUFS); /* the agent does not read */
		return;
	}
	o = malloc(sizeof(*o) + len);
	if (!o) {
		set_broken(c, -ENOMEM);
		return;
	}
	o->next = NULL;
	o->len = len;
	memcpy(o->buf, buf, len);
	o->fd = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
	if (fd >= 0 && o->fd < 0) {
		free(o);
		set_broken(c, -errno);
		return;
	}
	*c->outq_tail = o;
	c->outq_tail = &o->next;
	c->outq_n++;
	update_interest(c);
}

static void send_register(struct sw_client *c, struct reg *r)
{
	char buf[SW_MSG_MAX + 1];
	ssize_t n = sw_codec_encode_register(buf, sizeof(buf), r->path, r->heal);

	if (n > 0) {
		send_msg(c, buf, (size_t)n, r->fd, REQ_REGISTER, r->id, r->path);
		r->sent = true;
	}
}

/* ----- connection ----- */

static void clear_queues(struct sw_client *c)
{
	while (c->outq) {
		struct out *o = c->outq;

		c->outq = o->next;
		if (o->fd >= 0)
			close(o->fd);
		free(o);
	}
	c->outq_tail = &c->outq;
	c->outq_n = 0;
	while (c->reqs) {
		struct req *q = c->reqs;

		c->reqs = q->next;
		free(q);
	}
	c->reqs_tail = &c->reqs;
}

static void schedule_reconnect(struct sw_client *c)
{
	arm_timer(c, c->backoff);
	c->backoff = c->backoff * 2 > c->backoff_max ? c->backoff_max : c->backoff * 2;
}

static void disconnect(struct sw_client *c, const char *why)
{
	if (c->sock < 0)
		return;
	epoll_ctl(c->epfd, EPOLL_CTL_DEL, c->sock, NULL);
	close(c->sock);
	c->sock = -1;
	c->want_out = false;
	c->broken = 0;
	clear_queues(c);
	for (struct reg *r = c->regs; r; r = r->next)
		r->sent = false;
	/* a connection that worked restarts the back-off from the bottom; one
	 * the agent drops at once keeps doubling it */
	if (c->heard || now_ns() - c->connected_ns >= HEALTHY_MS * 1000000ull)
		c->backoff = c->backoff_min;
	schedule_reconnect(c);
	c->reported_down = true;
	status(c, SW_EV_DISCONNECTED, "", why);
}

static int connect_to(const char *name, bool abstract)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t n = strlen(name);
	socklen_t len;
	int fd;

	if (abstract) {
		memcpy(sa.sun_path + 1, name, n);
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
	} else {
		memcpy(sa.sun_path, name, n);
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	}
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	while (connect(fd, (struct sockaddr *)&sa, len) != 0) {
		int err = errno;

		if (err == EINTR)
			continue;
		close(fd);
		return -err; /* EAGAIN: its backlog is full; try again later */
	}
	return fd;
}

static void try_connect(struct sw_client *c)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TAG_SOCK };
	char why[256] = "";
	int fd = -ENOENT;

	if (c->abstract_name[0]) {
		fd = connect_to(c->abstract_name, true);
		snprintf(c->peer, sizeof(c->peer), "@%s", c->abstract_name);
		if (fd < 0)
			snprintf(why, sizeof(why), "@%s: %s", c->abstract_name, strerror(-fd));
	}
	if (fd < 0 && c->control_path[0]) {
		size_t l = strlen(why);

		fd = connect_to(c->control_path, false);
		snprintf(c->peer, sizeof(c->peer), "%s", c->control_path);
		if (fd < 0)
			snprintf(why + l, sizeof(why) - l, "%s%s: %s", l ? "; " : "",
				 c->control_path, strerror(-fd));
	}
	if (fd >= 0 && epoll_ctl(c->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
		snprintf(why, sizeof(why), "epoll: %s", strerror(errno));
		close(fd);
		fd = -1;
	}
	if (fd < 0) {
		schedule_reconnect(c);
		if (!c->reported_down) {
			c->reported_down = true;
			status(c, SW_EV_DISCONNECTED, "", why[0] ? why : "no agent address");
		}
		return;
	}
	c->sock = fd;
	c->broken = 0;
	c->heard = false;
	c->reported_down = false;
	c->connected_ns = now_ns();
	for (struct reg *r = c->regs; r; r = r->next)
		send_register(c, r);
	status(c, SW_EV_CONNECTED, "", c->peer);
}

/* ----- receiving ----- */

static void on_reply(struct sw_client *c, const struct sw_codec_msg *m)
{
	struct req *q;
	const char *path;

	/* an `adopted` still at the head was accepted silently, unless this
	 * is its error */
	while ((q = c->reqs) && q->kind == REQ_ADOPTED) {
		c->reqs = q->next;
		if (!c->reqs)
			c->reqs_tail = &c->reqs;
		if (m->op == SW_OP_ERROR && (!m->path[0] || strcmp(m->path, q->path) == 0)) {
			status(c, SW_EV_ERROR, q->path, m->reason);
			free(q);
			return;
		}
		free(q);
	}
	if (!q) {
		if (m->op == SW_OP_ERROR)
			status(c, SW_EV_ERROR, m->path, m->reason);
		else
			status(c, SW_EV_BAD_MESSAGE, m->path, "a reply to no request");
		return;
	}
	c->reqs = q->next;
	if (!c->reqs)
		c->reqs_tail = &c->reqs;
	path = m->path[0] ? m->path : q->path;
	if (m->op == SW_OP_ERROR) {
		status(c, SW_EV_ERROR, path, m->reason);
	} else if (strcmp(m->path, q->path) != 0) {
		status(c, SW_EV_BAD_MESSAGE, path, "a reply for another path");
	} else if (q->kind == REQ_REGISTER && m->op == SW_OP_REGISTERED) {
		/* confirmations for a registration dropped meanwhile are moot */
		if (reg_by_id(c, q->reg_id))
			status(c, SW_EV_REGISTERED, path, "");
	} else if (q->kind == REQ_UNREGISTER && m->op == SW_OP_UNREGISTERED) {
		status(c, SW_EV_UNREGISTERED, path, "");
	} else {
		status(c, SW_EV_BAD_MESSAGE, path, "a reply that does not fit the request");
	}
	free(q);
}

static bool is_listening(int fd)
{
	int on = 0;
	socklen_t l = sizeof(on);

	return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &l) == 0 && on;
}

static void on_rebind(struct sw_client *c, const struct sw_codec_msg *m, int new_fd)
{
	struct reg *r = reg_by_path(c, m->path);
	char buf[SW_MSG_MAX + 1], why[128];
	uint64_t id;
	ssize_t n;
	int ret, dup;

	if (!r || !r->cb) {
		if (new_fd >= 0)
			close(new_fd);
		status(c, SW_EV_REBIND_FAILED, m->path,
		       r ? "registered without a callback" : "not registered by this client");
		return;
	}
	id = r->id;
	ret = r->cb(r->arg, m->path, new_fd);
	r = reg_by_id(c, id); /* the callback may have unregistered it */
	if (ret < 0) {
		if (new_fd >= 0)
			close(new_fd);
		snprintf(why, sizeof(why), "the callback failed: %s", strerror(-ret));
		status(c, SW_EV_REBIND_FAILED, m->path, why);
		return;
	}
	if (!r) {
		status(c, SW_EV_REBIND_FAILED, m->path, "unregistered during the rebind");
		return;
	}
	if (!is_listening(ret)) {
		status(c, SW_EV_REBIND_FAILED, m->path,
		       "the callback returned an fd that is not listening");
		return;
	}
	dup = fcntl(ret, F_DUPFD_CLOEXEC, 0);
	if (dup < 0) {
		snprintf(why, sizeof(why), "dup: %s", strerror(errno));
		status(c, SW_EV_REBIND_FAILED, m->path, why);
		return;
	}
	close(r->fd);
	r->fd = dup; /* the registration follows the new listener */
	n = sw_codec_encode_adopted(buf, sizeof(buf), r->path, m->seq);
	if (n > 0)
		send_msg(c, buf, (size_t)n, -1, REQ_ADOPTED, r->id, r->path);
	status(c, SW_EV_ADOPTED, m->path, new_fd >= 0 ? "fd" : "notify");
}

static void on_message(struct sw_client *c, const char *buf, size_t len, bool trunc,
		       int *fds, int n_fds)
{
	struct sw_codec_msg m;
	int rc = trunc ? -EMSGSIZE : sw_codec_decode(buf, len, &m);
	int new_fd = -1;

	if (rc) {
		close_fds(fds, n_fds); /* a rebind that does not decode is ignored */
		status(c, SW_EV_BAD_MESSAGE, "",
		       rc == -EMSGSIZE ? "a message over 4096 bytes"
				       : "not a message of protocol version 1");
		return;
	}
	c->heard = true;
	if (m.op == SW_OP_REBIND && n_fds > 0) {
		new_fd = fds[0];
		close_fds(fds + 1, n_fds - 1);
	} else {
		close_fds(fds, n_fds); /* only a rebind carries an fd */
	}
	if (m.op == SW_OP_REBIND)
		on_rebind(c, &m, new_fd);
	else
		on_reply(c, &m);
}

static void read_messages(struct sw_client *c)
{
	for (int i = 0; i < MSGS_PER_DISPATCH && c->sock >= 0 && !c->broken; i++) {
		char buf[SW_MSG_MAX + 1];
		union {
			char buf[CMSG_SPACE(sizeof(int) * FDS_MAX)];
			struct cmsghdr align;
		} cm;
		struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
				     .msg_control = cm.buf, .msg_controllen = sizeof(cm.buf) };
		int fds[FDS_MAX], n_fds = 0;
		ssize_t n;

		n = recvmsg(c->sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			disconnect(c, n == 0 ? "the agent closed the connection" : strerror(errno));
			return;
		}
		for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); h; h = CMSG_NXTHDR(&mh, h)) {
			size_t k;

			if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
				continue;
			k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t j = 0; j < k; j++) {
				int fd;

				memcpy(&fd, CMSG_DATA(h) + j * sizeof(int), sizeof(int));
				if (n_fds < FDS_MAX)
					fds[n_fds++] = fd;
				else
					close(fd);
			}
		}
		/* fds beyond the control buffer (MSG_CTRUNC) were closed by the kernel */
		on_message(c, buf, (size_t)n, (mh.msg_flags & MSG_TRUNC) || n > SW_MSG_MAX,
			   fds, n_fds);
	}
}

/* ----- API ----- */

SW_API const char *sw_event_name(enum sw_event ev)
{
	switch (ev) {
	case SW_EV_CONNECTED: return "connected";
	case SW_EV_DISCONNECTED: return "disconnected";
	case SW_EV_REGISTERED: return "registered";
	case SW_EV_UNREGISTERED: return "unregistered";
	case SW_EV_ERROR: return "error";
	case SW_EV_ADOPTED: return "adopted";
	case SW_EV_REBIND_FAILED: return "rebind_failed";
	case SW_EV_BAD_MESSAGE: return "bad_message";
	}
	return "unknown";
}

static int copy_opt(char *dst, size_t cap, const char *val, const char *def, bool is_path)
{
	const char *s = val ? val : def;

	if (strlen(s) >= cap)
		return -ENAMETOOLONG;
	if (is_path && s[0] && s[0] != '/')
		return -EINVAL;
	memcpy(dst, s, strlen(s) + 1);
	return 0;
}

SW_API struct sw_client *sw_client_open(const struct sw_client_opts *opts)
{
	static const struct sw_client_opts defaults;
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TAG_TIMER };
	struct sw_client *c;
	int rc;

	if (!opts)
		opts = &defaults;
	c = calloc(1, sizeof(*c));
	if (!c) {
		errno = ENOMEM;
		return NULL;
	}
	c->epfd = c->tfd = c->sock = -1;
	c->outq_tail = &c->outq;
	c->reqs_tail = &c->reqs;
	c->next_id = 1;
	/* the abstract name fills sun_path after its leading NUL */
	rc = copy_opt(c->abstract_name, sizeof(c->abstract_name) - 1, opts->abstract_name,
		      SW_ABSTRACT_NAME_DEFAULT, false);
	if (!rc)
		rc = copy_opt(c->control_path, sizeof(c->control_path), opts->control_path,
			      SW_CONTROL_PATH_DEFAULT, true);
	if (rc) {
		free(c);
		errno = -rc;
		return NULL;
	}
	c->status_cb = opts->status_cb;
	c->status_arg = opts->status_arg;
	c->backoff_min = opts->backoff_min_ms ? opts->backoff_min_ms : 50;
	c->backoff_max = opts->backoff_max_ms ? opts->backoff_max_ms : 5000;
	if (c->backoff_max < c->backoff_min)
		c->backoff_max = c->backoff_min;
	c->backoff = c->backoff_min;

	c->epfd = epoll_create1(EPOLL_CLOEXEC);
	c->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (c->epfd < 0 || c->tfd < 0 || epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->tfd, &ev) != 0) {
		int err = errno;

		sw_client_close(c);
		errno = err;
		return NULL;
	}
	arm_timer(c, 0); /* the first sw_dispatch() connects */
	return c;
}

SW_API int sw_client_fd(const struct sw_client *c)
{
	return c ? c->epfd : -EINVAL;
}

SW_API int sw_client_connected(const struct sw_client *c)
{
	return c && c->sock >= 0 && !c->broken;
}

SW_API int sw_dispatch(struct sw_client *c)
{
	struct epoll_event evs[4];
	int n;

	if (!c)
		return -EINVAL;
	n = epoll_wait(c->epfd, evs, 4, 0);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (int i = 0; i < n; i++) {
		if (evs[i].data.u64 == TAG_TIMER) {
			uint64_t ticks;

			if (read(c->tfd, &ticks, sizeof(ticks)) < 0) {
				if (errno != EAGAIN)
					return -errno;
				continue; /* re-armed since it fired: not yet */
			}
			if (c->sock >= 0 && c->broken)
				disconnect(c, strerror(-c->broken));
			else if (c->sock < 0)
				try_connect(c);
		} else if (evs[i].data.u64 == TAG_SOCK && c->sock >= 0) {
			if (c->broken) {
				disconnect(c, strerror(-c->broken));
				continue;
			}
			if (evs[i].events & EPOLLOUT)
				flush_out(c);
			if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
				read_messages(c);
		}
	}
	return 0;
}

SW_API int sw_register(struct sw_client *c, int listen_fd, const char *path,
		       enum sw_heal heal, sw_rebind_cb cb, void *arg)
{
	struct reg *r, **pp;
	int rc, domain = 0;
	socklen_t l = sizeof(domain);

	if (!c)
		return -EINVAL;
	rc = sw_codec_check_path(path);
	if (rc)
		return rc;
	if (!sw_heal_name(heal) || (heal != SW_HEAL_NONE && !cb))
		return -EINVAL;
	if (reg_by_path(c, path))
		return -EEXIST;
	if (listen_fd < 0 || fcntl(listen_fd, F_GETFD) < 0)
		return -EBADF;
	if (getsockopt(listen_fd, SOL_SOCKET, SO_DOMAIN, &domain, &l) != 0)
		return errno == ENOTSOCK ? -ENOTSOCK : -errno;
	if (domain != AF_UNIX || !is_listening(listen_fd))
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->fd = fcntl(listen_fd, F_DUPFD_CLOEXEC, 0);
	if (r->fd < 0) {
		rc = -errno;
		free(r);
		return rc;
	}
	r->id = c->next_id++;
	snprintf(r->path, sizeof(r->path), "%s", path);
	r->heal = heal;
	r->cb = cb;
	r->arg = arg;
	/* in order: a reconnect registers in the order the caller did */
	for (pp = &c->regs; *pp; pp = &(*pp)->next)
		;
	*pp = r;
	if (c->sock >= 0)
		send_register(c, r);
	return 0;
}

SW_API int sw_unregister(struct sw_client *c, const char *path)
{
	struct reg *r, **pp;
	int rc;

	if (!c)
		return -EINVAL;
	rc = sw_codec_check_path(path);
	if (rc)
		return rc;
	for (pp = &c->regs; (r = *pp); pp = &r->next)
		if (strcmp(r->path, path) == 0)
			break;
	if (!r)
		return -ENOENT;
	*pp = r->next;
	if (r->sent && c->sock >= 0) {
		char buf[SW_MSG_MAX + 1];
		ssize_t n = sw_codec_encode_unregister(buf, sizeof(buf), r->path);

		if (n > 0)
			send_msg(c, buf, (size_t)n, -1, REQ_UNREGISTER, r->id, r->path);
	}
	close(r->fd);
	free(r);
	return 0;
}

SW_API void sw_client_close(struct sw_client *c)
{
	if (!c)
		return;
	if (c->sock >= 0)
		close(c->sock); /* the agent ends every registration of this connection */
	clear_queues(c);
	while (c->regs) {
		struct reg *r = c->regs;

		c->regs = r->next;
		close(r->fd);
		free(r);
	}
	if (c->tfd >= 0)
		close(c->tfd);
	if (c->epfd >= 0)
		close(c->epfd);
	free(c);
}
