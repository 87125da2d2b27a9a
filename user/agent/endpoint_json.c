/*
 * One endpoint as the status document shows it (DESIGN §3): the same object
 * answers a live status request and lands in the state file. Reads the
 * endpoint table's entry; calls nothing of the agent but the flap guard's
 * names.
 */
#include "endpoint_json.h"

#include <string.h>

#include "control.h"
#include "flapguard.h"
#include "shared/clock.h"
#include "shared/events.h"

/* ----- endpoints ----- */

static const char *origin_name(unsigned origin)
{
	if (origin & EP_FROM_REGISTER)
		return "registered";
	if (origin & EP_FROM_WATCH)
		return "watched";
	if (origin & EP_FROM_BIND)
		return "bound";
	return "scan";
}

static json_t *time_json(uint64_t mono_ns, int64_t real_minus_mono_ns)
{
	char ts[64];

	clock_format_rfc3339((uint64_t)((int64_t)mono_ns + real_minus_mono_ns), ts, sizeof(ts));
	return json_string(ts);
}

void endpoint_json_where(json_t *j, const struct endpoint *e)
{
	const struct attribution *at = &e->attr;

	json_object_set_new(j, "mntns", json_integer(e->mntns ? e->mntns : ns_self_mntns()));
	if (e->netns)
		json_object_set_new(j, "netns", json_integer(e->netns));
	if (at->container_id[0]) {
		json_t *c = json_object();

		json_object_set_new(c, "id", json_string(at->container_id));
		json_object_set_new(c, "runtime", json_string(at->runtime));
		json_object_set_new(j, "container", c);
	}
	if (at->pod_uid[0]) {
		json_t *p = json_object();

		json_object_set_new(p, "uid", json_string(at->pod_uid));
		json_object_set_new(j, "pod", p);
	}
	if (at->unit[0] && !at->container_id[0])
		json_object_set_new(j, "unit", json_string(at->unit));
	if (e->alias) {
		json_t *al = json_object();

		event_set_path(al, "path", e->alias, strlen(e->alias));
		json_object_set_new(al, "mntns", json_integer(e->alias_mntns));
		json_object_set_new(j, "alias", al);
	}
}

void endpoint_json_proc_ns(json_t *proc, const struct endpoint *e, uint32_t proc_mntns)
{
	uint32_t own = e->mntns ? e->mntns : ns_self_mntns();

	if (proc && proc_mntns && proc_mntns != own)
		json_object_set_new(proc, "mntns", json_integer(proc_mntns));
}

json_t *state_endpoint_json(const struct endpoint *e, int64_t rmm, uint64_t now_ns)
{
	json_t *j = json_object();
	const char *state = !e->has_listener ? "no_listener" : e->lost ? "lost"
			    : e->wedged ? "wedged" : "healthy";

	event_set_path(j, "path", e->path, strlen(e->path));
	endpoint_json_where(j, e);
	json_object_set_new(j, "state", json_string(state));
	json_object_set_new(j, "origin", json_string(origin_name(e->origin)));
	if (e->lost) {
		json_object_set_new(j, "lost_since", time_json(e->lost_ns, rmm));
		json_object_set_new(j, "lost_for_s",
				    json_real((double)(now_ns - e->lost_ns) / 1e9));
	}
	if (e->has_listener && e->n_owners) {
		event_set_proc(j, "owner", e->owners[0].pid, e->owners[0].comm, e->owners[0].uid);
		json_object_set_new(j, "owners", json_integer((json_int_t)e->n_owners));
	} else if (e->last_owner) {
		event_set_proc(j, "last_owner", e->last_owner->pid, e->last_owner->comm,
			       e->last_owner->uid);
	}
	if (e->has_listener) {
		json_object_set_new(j, "inode", json_integer((json_int_t)e->l.vfs_ino));
		json_object_set_new(j, "backlog", json_integer((json_int_t)e->l.backlog));
		json_object_set_new(j, "max_backlog", json_integer((json_int_t)e->l.max_backlog));
	}
	if (e->reg) {
		static const char *heal[] = { "none", "fd", "notify" };
		json_t *r = json_object();

		json_object_set_new(r, "heal", json_string(heal[e->reg->heal]));
		json_object_set_new(r, "pid", json_integer(e->reg->peer->owner.pid));
		json_object_set_new(r, "rebind_in_flight", json_boolean(e->reg->inflight));
		json_object_set_new(j, "registered", r);
	}
	/* the redirect (redirect.h): armed while a guard is in place, lost while
	 * connects to the path go to the guard */
	json_object_set_new(j, "redirect", json_string(!e->redirect_armed ? "off" :
						       e->redirect_lost ? "redirecting" : "armed"));
	json_object_set_new(j, "guard", json_string(e->guard_ok ? "ok" :
						    e->guard_problem[0] ? e->guard_problem : "none"));
	{
		json_t *c = json_object();

		json_object_set_new(c, "state", json_string(flap_circuit_name(e->flap.circuit)));
		if (e->flap.circuit != FLAP_CLOSED)
			json_object_set_new(c, "retry_at", time_json(e->flap.retry_at_ns, rmm));
		json_object_set_new(j, "circuit", c);
	}
	if (e->last_error[0]) {
		json_t *le = json_object();

		json_object_set_new(le, "event", json_string(e->last_error));
		if (e->last_error_reason[0])
			json_object_set_new(le, "reason", json_string(e->last_error_reason));
		json_object_set_new(le, "time", time_json(e->last_error_ns, rmm));
		json_object_set_new(j, "last_error", le);
	}
	return j;
}
