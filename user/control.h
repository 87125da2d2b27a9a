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

#include "discovery.h"
#include "endpoints.h"
#include "events.h"
#include "healer.h"
#include "loop.h"

#define CONTROL_MSG_MAX 4096
#define CONTROL_ABSTRACT_NAME "sockwarden"
#define CONTROL_PATH_DEFAULT "/run/sockwarden/control.sock"
#define CONTROL_REGS_PER_PEER 64
#define CONTROL_REGS_TOTAL 4096
#define CONTROL_PEERS_MAX 1024
#define CONTROL_BAD_MSGS_MAX 8
#define CONTROL_OUTQ 16

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
	unsigned bad_msgs;
	struct registration *regs;
	size_t n_regs;
	struct ctl_msg_out outq[CONTROL_OUTQ];
	unsigned outq_head, outq_n;
	bool dead;
	struct ctl_peer *next;
};

struct control_hooks {
	void (*emit)(void *ctx, json_t *ev);
	/* the endpoint table changed (a registration, a new listener) */
	void (*changed)(void *ctx);
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
	struct ctl_peer *peers, *graveyard;
	size_t n_peers, n_regs;
	struct endpoint_table *eps;
	struct healer *healer;
	const struct event_env *env;
	struct control_hooks hooks;
	uint64_t rebind_timeout_ns;
	uint64_t msgs_in, errors_sent, peers_dropped;
};

/* Listens on @sockwarden and on `path`; returns -errno with why set. */
int control_open(struct control *c, int epfd, const char *path,
		 struct endpoint_table *eps, struct healer *h,
		 const struct event_env *env, const struct control_hooks *hooks,
		 uint64_t rebind_timeout_ns, const char **why);
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
#endif
