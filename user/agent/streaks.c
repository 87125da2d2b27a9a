/*
 * Connect streaks: the kernel's first-failure and first-success records and
 * the periodic read of its exact counts, fed to the coalescer (coalescer.c),
 * which turns them into connect_failing / connect_recovered events. A streak
 * that a heal ends is credited to that heal.
 */
#include <bpf/bpf.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core.h"
#include "sockwarden.skel.h"

/* ----- connect records ----- */

const int err_of_index[SW_ERR_MAX] = { ENOENT, ECONNREFUSED, EAGAIN };

void coalesced_emit(const struct coalesced_event *c, void *ctx)
{
	struct agent *a = ctx;
	static const char *names[] = { "connect_failing", "connect_still_failing",
				       "connect_recovered" };
	json_t *ev = ev_key(a, names[c->kind],
			    c->kind == COALESCED_RECOVERED ? "info" : "warning",
			    c->mono_ns, c->path);

	json_object_set_new(ev, "errno", json_string(errno_name(c->err)));
	switch (c->kind) {
	case COALESCED_FAILING:
		event_set_proc(ev, "client", c->first_client.pid, c->first_client.comm,
			       c->first_client.uid);
		break;
	case COALESCED_STILL_FAILING:
		json_object_set_new(ev, "failures", json_integer((json_int_t)c->failures));
		json_object_set_new(ev, "streak_duration_ms",
				    json_integer((json_int_t)c->streak_duration_ms));
		break;
	case COALESCED_RECOVERED: {
		json_t *arr = json_array();

		json_object_set_new(ev, "streak_duration_ms",
				    json_integer((json_int_t)c->streak_duration_ms));
		json_object_set_new(ev, "swallowed_failures",
				    json_integer((json_int_t)c->swallowed_failures));
		json_object_set_new(ev, "total_failures",
				    json_integer((json_int_t)c->total_failures));
		json_object_set_new(ev, "how", json_string(c->how));
		for (size_t i = 0; i < c->n_clients; i++) {
			json_t *o = json_object();

			json_object_set_new(o, "pid", json_integer(c->clients[i].pid));
			json_object_set_new(o, "comm", json_string(c->clients[i].comm));
			json_object_set_new(o, "uid", json_integer(c->clients[i].uid));
			json_object_set_new(o, "failures",
					    json_integer((json_int_t)c->clients[i].failures));
			json_array_append_new(arr, o);
		}
		json_object_set_new(ev, "clients", arr);
		break;
	}
	}
	emit(a, ev);
}

/* The coalescer's name of a kernel key: the endpoint key of (mntns, path). */
#define KEY_LEN (SW_SUN_PATH_LEN + 24)
static void path_of_key(const struct sw_path_key *k, char *out)
{
	char path[SW_SUN_PATH_LEN + 1];

	memcpy(path, k->path, SW_SUN_PATH_LEN);
	path[SW_SUN_PATH_LEN] = 0;
	if (!ep_key_format(k->mntns, path, out, KEY_LEN))
		snprintf(out, KEY_LEN, "%s", path);
}

void streak_recovered(struct agent *a, const char *path, int err_index,
		      uint32_t gen, uint64_t closed_failures, uint64_t when,
		      const char *how);

/*
 * A newer generation of (path, errno) is known before the open streak's end:
 * records from two CPUs can reach the ring buffer in either order, and the
 * map scan can run between them. The open streak ended just before the new
 * one began, at counter value `new_start_failures - 1`; it is ended with that
 * count now (its own record, when it comes, finds it ended), so no failure is
 * lost and none is counted twice. A report of an older generation than the
 * open streak's is late and changes nothing.
 */
static bool streak_supersede(struct agent *a, const char *path, int err_index,
			     uint32_t new_gen, uint64_t new_start_failures, uint64_t when)
{
	struct streak *s = coalescer_find(&a->co, path, err_of_index[err_index]);

	if (coalescer_ended(&a->co, path, err_of_index[err_index], new_gen))
		return false;
	if (!s || s->gen == new_gen)
		return true;
	if ((int32_t)(new_gen - s->gen) < 0)
		return false;
	streak_recovered(a, path, err_index, s->gen, new_start_failures - 1, when, "connect");
	return true;
}

void on_connect_fail(struct agent *a, const struct sw_rec_connect *r)
{
	char path[KEY_LEN];
	struct coalesced_client cl = {0};
	int err_index = (int)r->key.err;
	struct endpoint *e;

	if (err_index < 0 || err_index >= SW_ERR_MAX)
		return;
	path_of_key(&r->key.path, path);
	cl.pid = (pid_t)r->hdr.proc.tgid;
	cl.uid = r->hdr.proc.uid;
	memcpy(cl.comm, r->hdr.proc.comm, sizeof(cl.comm) - 1);
	if (coalescer_find(&a->co, path, err_of_index[err_index]) &&
	    coalescer_find(&a->co, path, err_of_index[err_index])->gen == r->gen)
		return;
	if (!streak_supersede(a, path, err_index, r->gen, r->count, r->hdr.ts_ns))
		return;
	coalescer_failing(&a->co, path, err_of_index[err_index], r->gen, r->count,
			  r->hdr.ts_ns, &cl);
	e = ep_lookup_key(&a->eps, path);
	if (err_of_index[err_index] == ECONNREFUSED) {
		struct stat st;
		json_t *ev;

		/* a foreign namespace's path is looked at in it, or not at all */
		if ((e ? ep_lstat(e, &st) : r->key.path.mntns ? -ENOENT
				: (lstat(path, &st) ? -errno : 0)) != 0 || !S_ISSOCK(st.st_mode))
			return;
		ev = ev_key(a, "stale_socket", "error", r->hdr.ts_ns, path);
		if (e && e->last_owner)
			ev_owner(ev, "last_owner", e->last_owner);
		emit(a, ev);
	} else if (err_of_index[err_index] == EAGAIN && e && e->has_listener) {
		struct unix_listener l;

		if (ep_listener_now(e, &l) == 0) {
			e->l.backlog = l.backlog;
			e->l.max_backlog = l.max_backlog;
		}
		report_wedged(a, e, "connect_eagain", r->hdr.ts_ns);
	}
}

bool path_streak_open(struct agent *a, const char *path)
{
	for (int i = 0; i < SW_ERR_MAX; i++)
		if (coalescer_find(&a->co, path, err_of_index[i]))
			return true;
	return false;
}

void streak_recovered(struct agent *a, const char *path, int err_index,
		      uint32_t gen, uint64_t closed_failures, uint64_t when,
		      const char *how)
{
	struct sw_client_key keys[COALESCER_TOP_CLIENTS];
	struct sw_client_stat vals[COALESCER_TOP_CLIENTS];
	struct coalesced_client cl[COALESCER_TOP_CLIENTS];
	size_t n = bpf_agent_clients(&a->bpf, path, err_index, gen, keys, vals,
				     COALESCER_TOP_CLIENTS);
	struct endpoint *e;

	for (size_t i = 0; i < n; i++) {
		cl[i].pid = (pid_t)keys[i].tgid;
		cl[i].uid = vals[i].uid;
		memcpy(cl[i].comm, vals[i].comm, sizeof(cl[i].comm));
		cl[i].comm[sizeof(cl[i].comm) - 1] = 0;
		cl[i].failures = vals[i].failures;
	}
	/* after a heal of this path the first success is the heal's, however the
	 * agent learns of it: its verifying connect, a client's, or a map scan */
	e = ep_lookup_key(&a->eps, path);
	if (e && e->recovered_how)
		how = e->recovered_how;
	coalescer_recovered(&a->co, path, err_of_index[err_index], gen, closed_failures,
			    when, how, cl, n);
	bpf_agent_clients_forget(&a->bpf, path, err_index, gen);
	if (e && e->recovered_how && !path_streak_open(a, path))
		e->recovered_how = NULL; /* credited: a later recovery is not this heal's */
}

void on_connect_ok(struct agent *a, const struct sw_rec_connect *r)
{
	char path[KEY_LEN];
	struct sw_connect_stat st;
	struct streak *s;
	int err_index = (int)r->key.err;

	if (err_index < 0 || err_index >= SW_ERR_MAX)
		return;
	path_of_key(&r->key.path, path);
	s = coalescer_find(&a->co, path, err_of_index[err_index]);
	if ((!s || s->gen != r->gen) &&
	    bpf_agent_connect_stat(&a->bpf, path, err_index, &st) == 0 && st.gen == r->gen) {
		/* the streak's opening record was lost; the map still has its start */
		struct coalesced_client cl = { .pid = (pid_t)st.last_client.tgid,
					       .uid = st.last_client.uid };

		memcpy(cl.comm, st.last_client.comm, sizeof(cl.comm) - 1);
		if (streak_supersede(a, path, err_index, st.gen, st.streak_start_failures,
				     st.streak_start_ns))
			coalescer_failing(&a->co, path, err_of_index[err_index], st.gen,
					  st.streak_start_failures, st.streak_start_ns, &cl);
	}
	streak_recovered(a, path, err_index, r->gen, r->count, r->hdr.ts_ns, "connect");
}

/* ----- periodic work ----- */

bool read_failures(const char *path, int err, uint64_t *failures, void *ctx)
{
	struct agent *a = ctx;
	struct sw_connect_stat st;

	for (int i = 0; i < SW_ERR_MAX; i++) {
		if (err_of_index[i] != err)
			continue;
		if (bpf_agent_connect_stat(&a->bpf, path, i, &st))
			return false;
		*failures = st.failures;
		return true;
	}
	return false;
}

static bool stat_bounds_same(const struct sw_connect_stat *a, const struct sw_connect_stat *b)
{
	return a->gen == b->gen && a->open == b->open &&
	       a->streak_start_failures == b->streak_start_failures &&
	       a->streak_start_ns == b->streak_start_ns &&
	       a->closed_failures == b->closed_failures && a->closed_ns == b->closed_ns;
}

/*
 * The maps are the truth; records are prompts. This catches streaks whose
 * records the ring buffer could not take: opened unseen, or ended unseen.
 */
void streaks_reconcile(struct agent *a)
{
	int fd = bpf_map__fd(a->bpf.skel->maps.connect_stats);
	struct sw_connect_stat_key cur, next;
	void *prev = NULL;

	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		struct sw_connect_stat st, again;
		char path[KEY_LEN];
		struct streak *s;

		cur = next;
		prev = &cur;
		if (cur.err >= SW_ERR_MAX || bpf_map_lookup_elem(fd, &cur, &st))
			continue;
		/* The kernel updates the value field by field while this copy is
		 * taken: a streak that opens meanwhile can show its new gen with
		 * the old start. Only a streak's bounds that two copies agree on
		 * are acted on; ones that change are read again at the next scan
		 * (failures and the last client change with every failure, and
		 * are not looked at). */
		if (bpf_map_lookup_elem(fd, &cur, &again) || !stat_bounds_same(&st, &again))
			continue;
		path_of_key(&cur.path, path);
		/* The kernel clears `open` before it stores closed_failures and
		 * closed_ns, and this copy is not atomic: a closing still in flight
		 * shows the previous streak's closing. Its record, or the next
		 * scan, ends the streak with the right count. */
		if (!st.open && st.closed_ns < st.streak_start_ns)
			continue;
		s = coalescer_find(&a->co, path, err_of_index[cur.err]);
		if (s && (s->gen != st.gen || !st.open)) {
			/* ended (and maybe reopened) without a record reaching us */
			uint64_t closed = s->gen == st.gen ? st.closed_failures
							   : st.streak_start_failures - 1;

			streak_recovered(a, path, (int)cur.err, s->gen, closed,
					 s->gen == st.gen ? st.closed_ns : st.streak_start_ns,
					 "connect");
			s = NULL;
		}
		if (!s && st.open) {
			struct coalesced_client cl = { .pid = (pid_t)st.last_client.tgid,
						       .uid = st.last_client.uid };

			memcpy(cl.comm, st.last_client.comm, sizeof(cl.comm) - 1);
			coalescer_failing(&a->co, path, err_of_index[cur.err], st.gen,
					  st.streak_start_failures, st.streak_start_ns, &cl);
		}
	}
}
