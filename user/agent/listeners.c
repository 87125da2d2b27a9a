/*
 * What the endpoint table knows of listeners: bind() and listen() records
 * from the kernel, and the reconcile scan's result applied to the table.
 * The scanner gathers on its own thread (scanner.c); this file runs on the
 * loop.
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core.h"
#include "shared/mountinfo.h"

/* ----- reconcile scan ----- */

/*
 * The scanner gathers on its own thread (scanner.c); the loop applies what it
 * gathered here. The loop keeps handling records while a scan is gathered, so
 * by the time a result is applied the table may know more than the result:
 * a gathered "the path resolves to this listener" is trusted only where the
 * table agrees, anything else is asked of the file system again, and a
 * listener the table learnt of after the scan began is never taken for one
 * that closed.
 */

struct prune_ctx {
	struct agent *a;
	const struct scan_result *r;
};

/*
 * The endpoint a listener's path names in namespace mntns. A listener the
 * table knows under the agent's own namespace stays there when only its own
 * namespace still sees the path (a shared /run swept from inside a sandbox):
 * the endpoint does not change its name because it lost its path.
 */
struct endpoint *ep_for_listener(struct agent *a, uint32_t mntns, const char *path,
				 const struct unix_listener *l, bool *added)
{
	if (mntns) {
		struct endpoint *own = ep_lookup(&a->eps, 0, path);

		if (own && own->has_listener && own->l.sock_ino == l->sock_ino)
			mntns = 0;
	}
	return ep_get_or_add(&a->eps, mntns, path, added);
}

struct other_holder {
	const struct endpoint *e;
	uint64_t scan_gen;
	bool found;
};

/* Another endpoint that has e's listener, seen by this scan. */
static void other_holder_visit(struct endpoint *x, void *ctx)
{
	struct other_holder *o = ctx;

	if (x != o->e && x->has_listener && x->l.sock_ino == o->e->l.sock_ino &&
	    x->scan_gen == o->scan_gen)
		o->found = true;
}

static void scan_prune(struct endpoint *e, void *ctx)
{
	struct prune_ctx *p = ctx;
	struct agent *a = p->a;
	struct stat st;

	/* a namespace's endpoint whose listener the scan found under the
	 * agent's own name for its file: that one is the endpoint now (its
	 * guard is the same link, which stays) */
	if (e->mntns && e->has_listener && e->scan_gen != a->scan_gen) {
		struct other_holder o = { e, a->scan_gen, false };

		ep_foreach(&a->eps, other_holder_visit, &o);
		if (o.found) {
			memset(&e->guard, 0, sizeof(e->guard));
			e->guard_ok = false;
			ep_remove(&a->eps, e);
			return;
		}
	}
	if (e->has_listener && e->scan_gen != a->scan_gen &&
	    e->listener_set_ns < p->r->started_ns) {
		struct unix_listener now;

		/* A sock_diag dump resumes by position: sockets that close while
		 * it runs (the agent's own verify connects, any client) can make
		 * it skip a live one. Absent from the dump is not closed: ask
		 * the kernel for this socket by its inode. */
		if (ep_listener_now(e, &now) == 0 && now.state == 10 /* LISTEN */) {
			e->scan_gen = a->scan_gen;
			a->scan_dump_misses++;
		} else {
			log_debug("listener of %s closed", e->path);
			healer_listener_gone(&a->healer, e);
			ep_clear_listener(e);
		}
	}
	/* a namespace's endpoint goes with its listener: the table cannot look
	 * at a namespace no holder opens any more */
	if (!e->has_listener && !(e->origin & (EP_FROM_WATCH | EP_FROM_REGISTER)) &&
	    (e->mntns || ep_lstat(e, &st) != 0)) {
		bool streak = false;

		for (int err = 0; err < SW_ERR_MAX; err++) {
			static const int errs[] = { ENOENT, ECONNREFUSED, EAGAIN };

			if (coalescer_find(&a->co, e->key, errs[err]))
				streak = true;
		}
		if (!streak)
			ep_remove(&a->eps, e);
	}
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

	return a < b ? -1 : a > b;
}

static void scan_apply_item(struct agent *a, const struct scan_item *it, bool initial)
{
	const struct unix_listener *l = &it->l;
	struct owner owners[EP_MAX_OWNERS];
	size_t n_owners = it->n_owners < EP_MAX_OWNERS ? it->n_owners : EP_MAX_OWNERS;
	struct endpoint *e;
	bool matches = it->matches;

	if (!path_watched(a, it->path))
		return;
	for (size_t k = 0; k < n_owners; k++)
		owners[k] = it->owner_entries[k].o;
	e = ep_for_listener(a, it->mntns, it->path, l, NULL);
	if (!e)
		return;
	e->origin |= EP_FROM_SCAN;
	if (it->alias)
		ep_set_alias(e, it->alias_mntns, it->alias);
	ep_note_holder(e, l, n_owners ? owners[0].pid : 0, it->holder_mntns);
	if (!(matches && e->mntns == it->mntns && e->has_listener &&
	      e->l.sock_ino == l->sock_ino && !e->lost && !e->heal_pending))
		matches = ep_path_is_listener(e, l);
	if (matches) {
		if (e->has_listener && e->l.sock_ino != l->sock_ino)
			healer_listener_gone(&a->healer, e); /* a new socket took the path */
		ep_set_listener(e, l, owners, n_owners);
		e->scan_gen = a->scan_gen;
		e->lost = false;
		e->heal_pending = false;
		/* ep_record_fs in two: the healer's look at the guard, a link to
		 * the socket file, records the file; without a guard, the path */
		ep_record_dirs(e);
		healer_listener_seen(&a->healer, e);
		if (!e->guard_ok) {
			struct stat st;

			if (ep_lstat(e, &st) == 0)
				ep_record_file(e, &st);
		}
		if (l->max_backlog && l->backlog >= l->max_backlog) {
			if (!e->wedged)
				report_wedged(a, e, "backlog_full", 0);
		} else {
			e->wedged = false;
		}
		return;
	}
	/* the path is gone or names another file: this listener is orphaned */
	if (e->has_listener && e->l.sock_ino == l->sock_ino) {
		e->scan_gen = a->scan_gen;
		if (!e->lost && !initial) {
			report_socket_unlinked(a, e, NULL, 0, "scan", 0);
			inode_set_add(&a->orphans_reported, l->sock_ino);
		} else if (e->lost) {
			/* nobody listens on the socket that took the path */
			healer_on_rebinder_gone(&a->healer, e);
		}
		return;
	}
	if (!inode_set_has(&a->orphans_reported, l->sock_ino))
		report_orphan(a, e, l, n_owners ? &owners[0] : NULL);
	if (!e->has_listener || e->scan_gen != a->scan_gen) {
		/* keep the orphan as this path's listener until a live one shows */
		bool was_listening = e->has_listener;

		ep_set_listener(e, l, owners, n_owners);
		e->scan_gen = a->scan_gen;
		e->lost = true;
		e->lost_ns = clock_mono_ns();
		e->have_lost_actor = false;
		if (!was_listening)
			healer_on_lost(&a->healer, e);
	}
}

/* Guards of closed listeners go; a guard of any listener the scan saw stays,
 * whoever made it (healer_reconcile says why). */
static void reconcile_guards(struct agent *a, const struct scan_result *r)
{
	struct healer_file *alive = calloc(r->n ? r->n : 1, sizeof(*alive));
	size_t n = 0;

	if (!alive)
		return; /* without the list another agent's guards would look unneeded */
	for (size_t i = 0; i < r->n; i++)
		if (r->items[i].l.vfs_ino)
			alive[n++] = (struct healer_file){ r->items[i].l.vfs_dev,
							   r->items[i].l.vfs_ino };
	healer_reconcile(&a->healer, &a->eps, alive, n);
	free(alive);
}

void scan_apply(struct agent *a, const struct scan_result *r, bool initial)
{
	uint64_t t0 = clock_mono_ns();

	if (r->err) {
		/* a partial picture would read as listeners that closed */
		log_warn("reconcile scan failed: %s", strerror(-r->err));
		return;
	}
	a->scan_gen++;
	/* many endpoints, few directories: each is looked at once */
	ep_fs_batch_begin(&a->eps);
	for (size_t i = 0; i < r->n; i++)
		scan_apply_item(a, &r->items[i], initial);
	ep_fs_batch_end(&a->eps);
	ep_foreach(&a->eps, scan_prune, &(struct prune_ctx){ a, r });
	reconcile_guards(a, r);
	/* forget orphans whose listener is gone */
	for (size_t i = 0; i < a->orphans_reported.n;) {
		if (!bsearch(&a->orphans_reported.v[i], r->inos, r->n_listeners, sizeof(*r->inos),
			     cmp_u64))
			a->orphans_reported.v[i] = a->orphans_reported.v[--a->orphans_reported.n];
		else
			i++;
	}
	bpf_agent_sync(&a->bpf, &a->eps);
	a->scans++;
	a->last_scan = (struct scan_summary){
		.started_ns = r->started_ns, .ended_ns = r->ended_ns,
		.apply_ns = clock_mono_ns() - t0, .listeners = r->n_listeners,
		.processes = r->stats.processes, .fds = r->stats.fds,
	};
}

/* The start-up scan, gathered on the loop's own thread before the loop runs. */
void reconcile_initial(struct agent *a)
{
	struct scan_result r;

	scan_gather(&r, &a->disc);
	scan_apply(a, &r, true);
	scan_result_free(&r);
	malloc_trim(0);
}

/* ----- bind / listen records ----- */


static bool record_path(const struct sw_rec_bind *r, char *out, size_t outlen)
{
	char name[SW_SUN_PATH_LEN + 1], cwd[SW_PATH_MAX];
	bool ok;

	memcpy(name, r->path, SW_SUN_PATH_LEN);
	name[SW_SUN_PATH_LEN] = 0;
	if (name[0] == '/') {
		ok = path_normalize(name, out, outlen);
	} else {
		/* the cwd as the binder's namespace names it */
		if (!proc_cwd((pid_t)r->hdr.proc.tgid, cwd, sizeof(cwd)))
			return false;
		ok = path_join(cwd, name, out, outlen);
	}
	/* bound through a magic link: a name no one else can reach */
	return ok && !ns_path_via_proc(out);
}


void on_bind(struct agent *a, const struct sw_rec_bind *r)
{
	char path[SW_PATH_MAX];
	struct endpoint *e;
	uint32_t mntns;
	bool added;

	if (!record_path(r, path, sizeof(path)) || !path_watched(a, path))
		return;
	/* a bind in another namespace says something of an endpoint the table
	 * has (a restarting server standing in for the heal); a new one there
	 * is met at its listen(), where its namespace and names are known */
	mntns = ns_key(r->hdr.mntns);
	if (mntns) {
		e = ep_lookup_seen(&a->eps, mntns, path);
		added = false;
	} else {
		e = ep_get_or_add(&a->eps, 0, path, &added);
	}
	if (!e)
		return;
	e->origin |= EP_FROM_BIND;
	/* The agent's own binds (a heal fd's new socket, its control socket) say
	 * nothing of the server: their records can arrive after the path is gone
	 * again, and must not read as the server rebinding it. */
	if (r->hdr.proc.tgid != (__u32)getpid()) {
		healer_on_bind(&a->healer, e, &r->hdr.proc);
		if (a->ctl_open)
			control_on_bind(&a->ctl, e);
	}
	if (added)
		sync_soon(a);
}

/* The agent's own name for the file a holder in namespace mntns binds at
 * path (a directory bind-mounted elsewhere), or NULL. */
static char *own_name_of(pid_t holder, uint32_t mntns, const char *path,
			 const struct unix_listener *l)
{
	struct mount_table theirs, own;
	char name[SW_PATH_MAX];
	bool found = false;

	if (mount_table_read(&theirs, holder) != 0)
		return NULL;
	if (ns_mntns_of(holder) == mntns && mount_table_read(&own, 0) == 0) {
		found = ns_own_name(&theirs, &own, path, l->vfs_dev, l->vfs_ino, name,
				    sizeof(name));
		mount_table_free(&own);
	}
	mount_table_free(&theirs);
	return found ? strdup(name) : NULL;
}

void on_listen(struct agent *a, const struct sw_rec_bind *r)
{
	char path[SW_PATH_MAX];
	struct unix_listener l;
	struct owner o;
	struct endpoint *e;
	uint64_t ino;
	uint32_t mntns;
	char *alias;

	if (!record_path(r, path, sizeof(path)) || !path_watched(a, path))
		return;
	ino = fd_socket_inode((pid_t)r->hdr.proc.tgid, r->fd);
	if (!ino || discovery_get_via((pid_t)r->hdr.proc.tgid, ino, &l) != 0) {
		log_debug("listener on %s closed before it could be looked at", path);
		return;
	}
	/* a listener in another namespace is that namespace's endpoint, unless
	 * the agent sees the same file at that path, or under another name */
	mntns = ns_key(r->hdr.mntns);
	if (mntns && listener_path_matches(&l, path))
		mntns = 0;
	if (mntns && (alias = own_name_of((pid_t)r->hdr.proc.tgid, mntns, path, &l))) {
		e = ep_for_listener(a, 0, alias, &l, NULL);
		if (e)
			ep_set_alias(e, mntns, path);
		free(alias);
	} else {
		e = ep_for_listener(a, mntns, path, &l, NULL);
	}
	if (!e)
		return;
	ep_note_holder(e, &l, (pid_t)r->hdr.proc.tgid, r->hdr.mntns);
	/*
	 * The path may already be gone: the record is read after the fact, and
	 * an unlink racing it is exactly what the agent is for. The listener was
	 * bound there at listen() time, so it stands for the path unless a live
	 * listener holds the path now.
	 */
	if (!ep_path_is_listener(e, &l) && e->has_listener &&
	    e->l.sock_ino != l.sock_ino && ep_path_is_listener(e, &e->l))
		return;
	e->origin |= EP_FROM_BIND;
	if (!owner_read((pid_t)r->hdr.proc.tgid, &o))
		return;
	if (e->has_listener && e->l.sock_ino != l.sock_ino)
		healer_listener_gone(&a->healer, e);
	ep_set_listener(e, &l, &o, 1);
	e->scan_gen = a->scan_gen;
	e->lost = false;
	e->wedged = false;
	e->heal_pending = false;
	ep_record_fs(e);
	if (ep_path_is_listener(e, &l))
		healer_listener_seen(&a->healer, e);
	log_debug("new listener on %s (pid %d)", path, o.pid);
	sync_soon(a);
}
