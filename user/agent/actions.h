/*
 * Actions for servers that do not register (DESIGN §2, sockwarden.conf(5)):
 * per path, `signal` (through a pidfd to an owner verified to hold the
 * listener now, never a bare pid) or `exec` (a command with {path}, {pid} and
 * {unit} filled in as separate arguments, never through a shell). They run
 * when a path is lost and not healed, its listener dies or wedges, behind a
 * flap guard of their own, and each is an `action` event with its outcome.
 */
#ifndef SW_ACTIONS_H
#define SW_ACTIONS_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "endpoints.h"
#include "flapguard.h"
#include "loop.h"
#include "shared/events.h"

struct action_child;

struct actions {
	int epfd;
	const struct event_env *env;
	const struct flap_cfg *flap; /* the global flap settings */
	void (*emit)(void *ctx, json_t *ev);
	void *ctx;
	struct action_child *children;
	uint64_t taken, refused, suppressed;
};

void actions_init(struct actions *ac, int epfd, const struct event_env *env,
		  const struct flap_cfg *flap, void (*emit)(void *, json_t *), void *ctx);
/* Stops watching children (they run on; the agent does not kill them). */
void actions_close(struct actions *ac);
/* An event about e was emitted: run e's configured action if it calls for one. */
void actions_on_event(struct actions *ac, struct endpoint *e, const char *event,
		      const char *reason);
/* The systemd unit of a process, from its cgroup ("" when none). */
bool actions_unit_of(pid_t pid, char *out, size_t outlen);
/* Replaces {path}, {pid} and {unit} in one argument; NULL on overflow. */
char *actions_expand(const char *arg, const char *path, const char *pid, const char *unit);
#endif
