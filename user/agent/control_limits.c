/*
 * The control server's limits, pure so the unit test drives them alone:
 * the configured [agent] control_* keys resolved against the defaults and
 * the open-file limit, the idle deadline of a peer, and which peer a full
 * connection table evicts.
 */
#include "control.h"

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
