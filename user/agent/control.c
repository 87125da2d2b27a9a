/*
 * The control server's socket (DESIGN §4): listening, accepting within the
 * connection limits, idle and eviction deadlines, and start-up and shutdown.
 * A conversation with one client is control_peer.c's; registrations and
 * rebinds are control_register.c's and control_rebind.c's.
 */
#include "control.h"
#include "control_internal.h"

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

#include "shared/clock.h"
#include "shared/log.h"
#include "shared/paths.h"


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
