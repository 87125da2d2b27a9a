/*
 * The control server (DESIGN §4, docs/protocol.md): servers register their
 * listening sockets over SOCK_SEQPACKET and get their lost paths back through
 * their control fd (heal `fd` or `notify`) when no guard link can help.
 */
#ifndef SW_CONTROL_H
#define SW_CONTROL_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "endpoints.h"
#include "healer.h"
#include "loop.h"
#include "shared/config.h"
#include "shared/discovery.h"
#include "shared/events.h"
#include "shared/protocol.h"

/* defaults of the [agent] control_* limits (struct control_limits) */
#define CONTROL_REGS_PER_PEER 64
#define CONTROL_REGS_TOTAL 4096
#define CONTROL_PEERS_MAX 1024
#define CONTROL_IDLE_TIMEOUT_NS (30ULL * 1000000000ULL)
/* fds the rest of the agent may need beside its control connections (BPF
 * objects, timers, sinks, guard directories): kept out of the peers' share */
#define CONTROL_FD_RESERVE 256
/* protocol violations in a row before a peer is disconnected */
#define CONTROL_BAD_MSGS_MAX 8
#define CONTROL_OUTQ 16
/* fds one message may carry before it is refused as truncated (MSG_CTRUNC);
 * register takes one, the rest is room to see and close what a peer sends */
#define CONTROL_FDS_MAX 16
/* connections accepted per wake-up (a few ms of work): a flood of connects
 * cannot hold the loop; the rest wait in the listen backlog (SOMAXCONN) and
 * are taken on the next turns, as the socket stays readable */
#define CONTROL_ACCEPT_BATCH 256
/* disconnects of misbehaving peers logged per minute */
#define CONTROL_DROP_LOGS 20

enum heal_mode { HEAL_NONE = 0, HEAL_FD, HEAL_NOTIFY };

struct ctl_peer;

struct registration {
	struct ctl_peer *peer;
	struct endpoint *e;
	enum heal_mode heal;
	uint32_t seq;
	struct registration *next; /* the peer's list */
	/* a rebind in flight */
	bool inflight;
	uint32_t inflight_seq;
	int our_fd;             /* heal fd: the agent's copy of the socket it sent */
	uint64_t our_dev, our_ino; /* the file it bound at the path */
	uint64_t deadline_ns;
};

struct ctl_msg_out {
	size_t len;
	char buf[CONTROL_MSG_MAX];
};

struct ctl_peer {
	struct watcher w, w_pidfd;
	struct control *ctl;
	struct owner owner; /* pid, uid, gid from SO_PEERCRED; comm and exe from /proc */
	int pidfd;
	unsigned bad_msgs;      /* protocol violations in a row */
	uint64_t last_active_ns; /* its connect or its last message */
	struct registration *regs;
	size_t n_regs;
	struct ctl_msg_out outq[CONTROL_OUTQ];
	unsigned outq_head, outq_n;
	bool dead;
	struct ctl_peer *next;
};

struct control_hooks {
	void (*emit)(void *ctx, json_t *ev);
	/* the endpoint table changed (a registration, a new listener): the
	 * kernel's filters follow at the end of the loop's turn */
	void (*changed)(void *ctx);
	/* the kernel's filters must follow the table now: a rebind's new
	 * socket file is a new inode, watched before anyone is told of it */
	void (*sync)(void *ctx);
	/* a rebind brought e's path back: verify and end streaks */
	void (*healed)(void *ctx, struct endpoint *e);
	/* the status document for `sockwarden status` (caller's reference) */
	json_t *(*status)(void *ctx);
	void *ctx;
};

struct control {
	int epfd;
	struct watcher w_abstract, w_path;
	char path[108];
	struct ctl_peer *peers, *graveyard, *graveyard_old;
	size_t n_peers, n_regs;
	struct endpoint_table *eps;
	struct healer *healer;
	const struct event_env *env;
	struct control_hooks hooks;
	uint64_t rebind_timeout_ns;
	struct control_limits lim; /* resolved: no field is 0 */
	/* accept(2) ran out of fds: listening resumes at this time (0: listening) */
	uint64_t accept_resume_ns;
	uint64_t limit_warned_ns;
	uint64_t drop_log_ns;   /* the minute peer_drop's lines are counted in */
	unsigned drop_log_n, drop_log_skipped;
	uint64_t msgs_in, errors_sent;
	/* connections closed by the agent, by cause */
	uint64_t peers_refused, peers_evicted, peers_idle, peers_bad, peers_not_reading;
};

/* Listens on @sockwarden and on `path`; returns -errno with why set. */
int control_open(struct control *c, int epfd, const char *path,
		 struct endpoint_table *eps, struct healer *h,
		 const struct event_env *env, const struct control_hooks *hooks,
		 uint64_t rebind_timeout_ns, const struct control_limits *lim,
		 const char **why);
void control_close(struct control *c);
/* Starts a rebind of a registered endpoint; false when it cannot. */
bool control_rebind(struct control *c, struct endpoint *e);
/* A bind() of e's path was seen: a server rebinding by itself. */
void control_on_bind(struct control *c, struct endpoint *e);
/* Deadlines and deferred frees; call once per loop turn. */
void control_tick(struct control *c, uint64_t now_ns);
uint64_t control_next_deadline(const struct control *c);
/* Message codec, exposed for tests and fuzzing: 0, or a reason word. */
struct ctl_request {
	char op[16];
	char path[108];
	enum heal_mode heal;
	uint32_t seq;
};
const char *control_decode(const char *buf, size_t len, struct ctl_request *req);

/* Limit logic, pure, exposed for tests. */
/* The limits in force: `in`'s nonzero fields (in may be NULL) over the
 * defaults, the connection limit lowered so that two fds per connection (its
 * socket and its pidfd) fit under `nofile` beside CONTROL_FD_RESERVE. */
struct control_limits control_limits_resolve(const struct control_limits *in,
					     uint64_t nofile);
/* When an idle connection is closed: UINT64_MAX for one that holds
 * registrations (a server's control fd is never timed out). */
uint64_t control_idle_deadline(const struct ctl_peer *p, uint64_t idle_ns);
/* The connection a newcomer replaces when the table is full: the one silent
 * longest among those that registered nothing; NULL when all hold some. */
struct ctl_peer *control_evict_pick(struct ctl_peer *peers);
#endif
