#include "healer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "endpoint_json.h"
#include "shared/clock.h"
#include "shared/config.h"
#include "shared/discovery.h"
#include "shared/log.h"
#include "shared/paths.h"


#ifdef SW_FAULT_POINTS
#include <signal.h>
/*
 * Fault injection, compiled into test builds only (make fault-build, into
 * build/fault/): when SW_FAULT_STOP names a point (or a comma-separated list
 * of them), the agent stops itself there with SIGSTOP, so a test can kill a
 * server or the agent, or connect, at exactly that step of a heal and then
 * let it go on with SIGCONT. A production build has no such code and reads
 * no such variable.
 */
void fault_point(const char *name)
{
	static char want[128];
	static bool read;
	size_t n = strlen(name);

	if (!read) {
		const char *env = getenv("SW_FAULT_STOP");

		snprintf(want, sizeof(want), ",%s,", env ? env : "");
		read = true;
	}
	for (char *p = strstr(want, name); p; p = strstr(p + 1, name)) {
		if (p[-1] != ',' || p[n] != ',')
			continue;
		/* once: the heals after it run through */
		memmove(p, p + n + 1, strlen(p + n + 1) + 1);
		raise(SIGSTOP);
		return;
	}
}
#endif

void healer_init(struct healer *h, const struct healer_cfg *cfg,
		 const struct event_env *env, void (*emit)(void *, json_t *), void *ctx)
{
	memset(h, 0, sizeof(*h));
	h->cfg = *cfg;
	h->env = env;
	h->emit = emit;
	h->emit_ctx = ctx;
	guards_init(&h->guards);
}

void healer_free(struct healer *h)
{
	guards_free(&h->guards);
}

static json_t *heal_event(struct healer *h, const char *name, const char *sev,
			  const struct endpoint *e)
{
	json_t *ev = event_new(h->env, name, sev, 0);

	event_set_path(ev, "path", e->path, strlen(e->path));
	endpoint_json_where(ev, e);
	return ev;
}

static void set_owner(json_t *ev, const struct endpoint *e)
{
	const struct owner *o = e->n_owners ? &e->owners[0] :
				e->last_owner;

	if (o) {
		event_set_proc(ev, "owner", o->pid, o->comm, o->uid);
		endpoint_json_proc_ns(json_object_get(ev, "owner"), e, e->owner_mntns);
	}
}

static void set_actor(json_t *ev, const struct endpoint *e)
{
	char comm[SW_COMM_LEN + 1];

	if (!e->have_lost_actor)
		return;
	memcpy(comm, e->lost_actor.comm, SW_COMM_LEN);
	comm[SW_COMM_LEN] = 0;
	event_set_proc(ev, "actor", (pid_t)e->lost_actor.tgid, comm, e->lost_actor.uid);
}

static void report_guard_lost(struct healer *h, struct endpoint *e, const char *why)
{
	json_t *ev;

	/* once per distinct problem, not on every scan */
	if (strcmp(e->guard_problem, why) == 0)
		return;
	snprintf(e->guard_problem, sizeof(e->guard_problem), "%s", why);
	ev = heal_event(h, "guard_lost", "warning", e);
	json_object_set_new(ev, "reason", json_string(why));
	if (e->guard.dir)
		json_object_set_new(ev, "guard_dir", json_string(e->guard.dir->mountpoint));
	h->guards_lost++;
	h->emit(h->emit_ctx, ev);
}

void healer_discover_guards(struct healer *h)
{
	char line[8192];
	FILE *f = fopen("/proc/self/mountinfo", "re");

	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char mp[4096], gp[4200];
		unsigned long long id;
		struct stat st;

		if (sscanf(line, "%llu %*u %*s %*s %4095s", &id, mp) != 2)
			continue;
		snprintf(gp, sizeof(gp), "%s/%s", strcmp(mp, "/") ? mp : "", GUARD_DIR_NAME);
		if (lstat(gp, &st) != 0 || !S_ISDIR(st.st_mode))
			continue;
		guards_register(&h->guards, id, mp);
	}
	fclose(f);
}

/* guard_present, keeping the look: a guard is a link to the socket file,
 * so what it shows is the file's owner and mode */
static bool guard_look(const struct endpoint *e, struct stat *st)
{
	const struct guard_ref *g = &e->guard;

	return g->dir && g->dir->dirfd >= 0 &&
	       fstatat(g->dir->dirfd, g->name, st, AT_SYMLINK_NOFOLLOW) == 0 &&
	       S_ISSOCK(st->st_mode) && st->st_dev == e->l.vfs_dev && st->st_ino == e->l.vfs_ino;
}

void healer_listener_seen(struct healer *h, struct endpoint *e)
{
	const char *why = NULL;
	bool was_ok = e->guard_ok;
	struct stat st;

	if (!h->cfg.guards)
		return;
	/* the look that finds the guard records the socket file too (a
	 * reconcile scan's every listener: one look where ep_record_fs's
	 * would be a second) */
	if (e->guard_ok && guard_look(e, &st)) {
		ep_record_file(e, &st);
		healer_redirect_arm(h, e);
		return;
	}
	if (was_ok) {
		/* it was there: something swept it */
		report_guard_lost(h, e, "swept");
	}
	/* a namespace the agent cannot reach yet has nowhere to keep a guard */
	if (e->mntns && !e->root)
		return;
	e->guard_ok = guard_make(&h->guards, e->root, e->path, e->l.vfs_dev, e->l.vfs_ino,
				 &e->guard, &why) == 0;
	if (e->guard_ok) {
		e->guard_problem[0] = 0;
		healer_redirect_arm(h, e);
		if (was_ok)
			log_debug("guard of %s re-made", e->path);
		if (guard_look(e, &st) || ep_lstat(e, &st) == 0)
			ep_record_file(e, &st);
	} else {
		report_guard_lost(h, e, why ? why : "link_failed");
	}
}

void healer_listener_gone(struct healer *h, struct endpoint *e)
{
	/* never a redirect to a dead listener: the connect fails as it would */
	healer_redirect_disarm(h, e);
	if (e->guard_ok || e->guard.name[0])
		guard_remove(&e->guard);
	memset(&e->guard, 0, sizeof(e->guard));
	e->guard_ok = false;
	e->heal_pending = false;
}

static void skip(struct healer *h, struct endpoint *e, const char *reason)
{
	json_t *ev = heal_event(h, "rebind_skipped", "info", e);

	json_object_set_new(ev, "reason", json_string(reason));
	set_actor(ev, e);
	set_owner(ev, e);
	/* not healed: connects meet what they would without the agent */
	healer_redirect_set_lost(h, e, false);
	e->heal_pending = false;
	h->heals_skipped++;
	h->emit(h->emit_ctx, ev);
}

/* Another socket took the path: it is theirs while they serve it. */
static void skip_for_rebinder(struct healer *h, struct endpoint *e)
{
	skip(h, e, "rebound");
	e->awaits_rebinder = true;
}

void healer_on_rebinder_gone(struct healer *h, struct endpoint *e)
{
	if (!e->awaits_rebinder || !e->lost || e->heal_pending)
		return;
	log_debug("%s: nobody serves the socket that took it; healing again", e->path);
	healer_on_lost(h, e);
}

static bool actor_is_owner_program(const struct endpoint *e, bool *same_process)
{
	struct owner actor;
	pid_t tgid = (pid_t)e->lost_actor.tgid;

	*same_process = false;
	for (size_t i = 0; i < e->n_owners; i++)
		if (e->owners[i].pid == tgid)
			*same_process = true;
	if (*same_process || e->n_owners == 0)
		return *same_process;
	if (owner_read(tgid, &actor) && actor.exe[0])
		return owner_same_program(&e->owners[0], &actor);
	/* The actor is gone already, so it is no new instance about to bind
	 * the path (and if one binds during the grace, the agent stands down
	 * then). Its command name alone tells nothing: an `rm` run by a
	 * python3 script and a python3 server share "python3". */
	return false;
}

static bool listener_alive(struct endpoint *e)
{
	struct unix_listener l;

	return ep_listener_now(e, &l) == 0 && l.state == TCP_LISTEN_STATE &&
	       l.vfs_ino == e->l.vfs_ino;
}

void healer_on_lost(struct healer *h, struct endpoint *e)
{
	bool same_process;

	e->heal_pending = false;
	e->awaits_rebinder = false;
	/* a loss found at start: a guard left by a previous run can still heal it */
	if (h->cfg.guards && !e->guard_ok)
		e->guard_ok = guard_find(&h->guards, e->l.vfs_dev, e->l.vfs_ino, &e->guard);
	if (!listener_alive(e)) {
		skip(h, e, "listener_gone");
		return;
	}
	if (e->cfg && !e->cfg->heal) {
		skip(h, e, "heal_disabled"); /* the config says detect only */
		return;
	}
	if (e->have_lost_actor && actor_is_owner_program(e, &same_process)) {
		skip(h, e, same_process ? "owner_unlinked" : "same_executable");
		return;
	}
	e->heal_pending = true;
	e->heal_at_ns = e->lost_ns + h->cfg.heal_delay_ns;
}

void healer_on_bind(struct healer *h, struct endpoint *e, const struct sw_proc *who)
{
	if (!e->heal_pending)
		return;
	(void)who;
	skip_for_rebinder(h, e);
}

/* The deepest directory on the way whose owner is someone else than root
 * and the trusted uid: that user can rename, replace or swap for a link any
 * name below it while the agent works there. */
static void note_steerer(int fd, uid_t trusted, struct healer_steerer *s)
{
	struct stat st;

	if (s && fstat(fd, &st) == 0 && st.st_uid != 0 && st.st_uid != trusted) {
		s->found = true;
		s->uid = st.st_uid;
		s->gid = st.st_gid;
	}
}

static int parents_walk(const struct endpoint *e, bool create, const char **why,
			uid_t trusted, struct healer_steerer *steer)
{
	char comp[SW_PATH_MAX];
	const char *p = e->path + 1;
	const struct ns_root *root = ep_root(e);
	/* from the namespace's own root: a walk that never follows a link
	 * cannot leave it, ".." is never a component of a normalised path */
	int fd = root->fd == NS_ROOT_OWN ? open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC)
					 : openat(root->fd, ".", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	size_t depth = 1;

	if (fd < 0)
		return -errno;
	if (steer)
		steer->found = false;
	note_steerer(fd, trusted, steer);
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t len;
		int next;

		if (!slash)
			return fd; /* p is the socket's own name */
		len = (size_t)(slash - p);
		memcpy(comp, p, len);
		comp[len] = 0;
		next = openat(fd, comp, O_DIRECTORY | O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0 && errno == ENOENT && create) {
			const struct ep_dir *d = ep_dir_at(e, depth);
			mode_t mode = d ? d->mode : 0755;

			bool made = mkdirat(fd, comp, 0700) == 0;
			struct stat st;

			if (!made && errno != EEXIST) {
				int err = errno;

				*why = "mkdir_failed";
				close(fd);
				return -err;
			}
			next = openat(fd, comp, O_DIRECTORY | O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
			/* Only the directory the agent made gets the recorded owner
			 * and mode: one that took the name meanwhile (put back by
			 * its owner) is someone's, and a chown would take it from
			 * them. The agent's and private to it: the one just made. */
			if (next >= 0 && made && fstat(next, &st) == 0 && st.st_uid == geteuid() &&
			    (st.st_mode & 0077) == 0) {
				/* owner first: chown clears set-id bits the mode may carry */
				if (d && fchown(next, d->uid, d->gid) != 0)
					log_warn("chown %s: %s", comp, strerror(errno));
				fchmod(next, mode);
			}
		}
		if (next < 0) {
			int err = errno;

			*why = (err == ELOOP || err == ENOTDIR) ? "parent_is_symlink"
							       : "parent_unreachable";
			close(fd);
			return -err;
		}
		close(fd);
		fd = next;
		note_steerer(fd, trusted, steer);
		p = slash + 1;
		while (*p == '/')
			p++;
		depth++;
	}
}

int healer_parents_ensure(const struct endpoint *e, const char **why)
{
	return parents_walk(e, true, why, 0, NULL);
}

int healer_parents_ensure_existing(const struct endpoint *e, const char **why)
{
	return parents_walk(e, false, why, 0, NULL);
}

int healer_parents_steered(const struct endpoint *e, uid_t trusted, struct healer_steerer *steer,
			   const char **why)
{
	return parents_walk(e, true, why, trusted, steer);
}

#define HEAL_RETRY_FIRST_NS (10 * NSEC_PER_MSEC)
#define HEAL_RETRY_MAX_NS (60 * NSEC_PER_SEC)

void healer_retry_later(struct endpoint *e, json_t *ev)
{
	uint64_t wait = HEAL_RETRY_FIRST_NS;

	if (!e->lost)
		return;
	for (unsigned i = 0; i < e->heal_retries && wait < HEAL_RETRY_MAX_NS; i++)
		wait *= 2;
	if (wait > HEAL_RETRY_MAX_NS)
		wait = HEAL_RETRY_MAX_NS;
	e->heal_retries++;
	e->heal_pending = true;
	e->heal_at_ns = clock_mono_ns() + wait;
	json_object_set_new(ev, "retry_in_ms", json_integer((json_int_t)(wait / NSEC_PER_MSEC)));
}

void healer_retries_reset(struct endpoint *e)
{
	e->heal_retries = 0;
}

static void heal_failed_as(struct healer *h, struct endpoint *e, const char *how,
			   const char *reason, int err, bool retry)
{
	json_t *ev = heal_event(h, "rebind_failed", "error", e);

	json_object_set_new(ev, "how", json_string(how));
	json_object_set_new(ev, "reason", json_string(reason));
	if (err)
		json_object_set_new(ev, "error", json_string(strerror(err)));
	if (retry)
		healer_retry_later(e, ev);
	set_owner(ev, e);
	h->heals_failed++;
	h->emit(h->emit_ctx, ev);
}

static void heal_failed(struct healer *h, struct endpoint *e, const char *how,
			const char *reason, int err)
{
	heal_failed_as(h, e, how, reason, err, false);
}

/* Returns true when the path is back. */
static bool heal_link(struct healer *h, struct endpoint *e, uint64_t now_ns)
{
	const struct flap_cfg fc = path_cfg_flap(e->cfg, &h->cfg.flap);
	const char *why = NULL;
	struct stat st;
	uint64_t linked_ns;
	json_t *ev;
	int pfd;

	e->heal_pending = false;
	if (!listener_alive(e)) {
		skip(h, e, "listener_gone");
		return false;
	}
	if (ep_lstat(e, &st) == 0) {
		if (S_ISSOCK(st.st_mode) && st.st_ino == e->l.vfs_ino && st.st_dev == e->l.vfs_dev)
			e->lost = false; /* put back by someone else */
		if (S_ISSOCK(st.st_mode))
			skip_for_rebinder(h, e);
		else
			skip(h, e, "replaced");
		return false;
	}
	switch (flap_check(&e->flap, &fc, now_ns)) {
	case FLAP_ALLOW:
		break;
	case FLAP_OPENED:
		ev = heal_event(h, "rebind_suppressed", "error", e);
		json_object_set_new(ev, "rebinds",
				    json_integer(flap_recent(&e->flap, &fc, now_ns)));
		json_object_set_new(ev, "window_s",
				    json_integer((json_int_t)(fc.window_ns / NSEC_PER_SEC)));
		json_object_set_new(ev, "retry_in_s",
				    json_integer((json_int_t)((e->flap.retry_at_ns - now_ns) /
							      NSEC_PER_SEC)));
		{
			char ts[64];

			clock_format_rfc3339(e->flap.retry_at_ns +
					     (uint64_t)h->env->real_minus_mono_ns, ts, sizeof(ts));
			json_object_set_new(ev, "retry_at", json_string(ts));
		}
		set_actor(ev, e);
		set_owner(ev, e);
		healer_redirect_set_lost(h, e, false); /* the circuit is open: no heal, no redirect */
		h->suppressed++;
		h->emit(h->emit_ctx, ev);
		return false;
	case FLAP_SUPPRESSED:
		skip(h, e, "circuit_open");
		return false;
	}
	if (!h->cfg.guards || !e->guard_ok ||
	    !guard_present(&e->guard, e->l.vfs_dev, e->l.vfs_ino)) {
		e->guard_ok = false;
		/* a registered server heals through its control fd */
		if (h->rebind && h->rebind(h->rebind_ctx, e)) {
			flap_record(&e->flap, &fc, now_ns);
			return false; /* in flight: the control server reports the outcome */
		}
		if (h->cfg.guards)
			heal_failed(h, e, "link", "no_guard", 0);
		return false;
	}
	ev = heal_event(h, "rebind_started", "info", e);
	json_object_set_new(ev, "how", json_string("link"));
	h->emit(h->emit_ctx, ev);

	pfd = healer_parents_ensure(e, &why);
	if (pfd < 0) {
		/* a directory on the way swapped for a link, a mkdir refused:
		 * what the walk met may pass */
		heal_failed_as(h, e, "link", why, -pfd, true);
		return false;
	}
	fault_point("link_before");
	/* The path is back from inside linkat() on: a client's connect can
	 * succeed, and the kernel stamp that ends its streak, before linkat()
	 * even returns. rebind_succeeded is stamped with this instant, which
	 * precedes any connect the link lets through, so a journal sorted by
	 * mono_ns tells the heal before the recovery it caused. */
	linked_ns = clock_mono_ns();
	if (linkat(e->guard.dir->dirfd, e->guard.name, pfd, path_basename(e->path), 0) != 0) {
		int err = errno;

		close(pfd);
		if (err == EEXIST) {
			skip_for_rebinder(h, e); /* someone bound it a moment ago */
			return false;
		}
		if (err == EXDEV)
			heal_failed(h, e, "link", "cross_mount", err);
		else
			heal_failed_as(h, e, "link", "link_failed", err, true);
		return false;
	}
	fault_point("link_after");
	if (!listener_alive(e)) {
		/* the server died during the heal: the link put its dead socket's
		 * file back, which would only refuse connections; the agent takes
		 * back that file, never one that replaced it since */
		if (fstatat(pfd, path_basename(e->path), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    st.st_ino == e->l.vfs_ino && st.st_dev == e->l.vfs_dev)
			unlinkat(pfd, path_basename(e->path), 0);
		close(pfd);
		/* nor a redirect to it */
		healer_redirect_disarm(h, e);
		heal_failed(h, e, "link", "listener_gone", 0);
		return false;
	}
	close(pfd);
	/* link() put the listener's own file at the path: the heal is done. A
	 * path gone or different by now was removed again after it, a new loss
	 * that its own record (or the scan) reports and heals, which only happens
	 * if this endpoint is no longer marked lost */
	if (ep_lstat(e, &st) != 0 || st.st_ino != e->l.vfs_ino)
		log_debug("%s was removed again right after its heal", e->path);
	flap_record(&e->flap, &fc, now_ns);
	e->lost = false;
	healer_retries_reset(e);
	e->recovered_how = "link";
	/* the path is back: connects take it again */
	healer_redirect_set_lost(h, e, false);
	ev = event_new(h->env, "rebind_succeeded", "info", linked_ns);
	event_set_path(ev, "path", e->path, strlen(e->path));
	endpoint_json_where(ev, e);
	json_object_set_new(ev, "how", json_string("link"));
	json_object_set_new(ev, "heal_ms", json_real((double)(linked_ns - e->lost_ns) / 1e6));
	if (e->redirect_armed)
		json_object_set_new(ev, "redirected_connects",
				    json_integer((json_int_t)healer_redirected_since_loss(h, e)));
	set_owner(ev, e);
	h->heals_ok++;
	h->emit(h->emit_ctx, ev);
	return true;
}

struct due_ctx {
	struct healer *h;
	uint64_t now;
	size_t healed;
};

static void due_visit(struct endpoint *e, void *ctx)
{
	struct due_ctx *d = ctx;

	if (e->heal_pending && e->heal_at_ns <= d->now && heal_link(d->h, e, d->now))
		d->healed++;
}

size_t healer_run_due(struct healer *h, struct endpoint_table *t, uint64_t now_ns)
{
	struct due_ctx d = { h, now_ns, 0 };

	ep_foreach(t, due_visit, &d);
	return d.healed;
}

static void deadline_visit(struct endpoint *e, void *ctx)
{
	uint64_t *d = ctx;

	if (e->heal_pending && e->heal_at_ns < *d)
		*d = e->heal_at_ns;
}

uint64_t healer_next_deadline(const struct endpoint_table *t)
{
	uint64_t d = UINT64_MAX;

	ep_foreach(t, deadline_visit, &d);
	return d;
}

/* The socket files of live listeners, sorted: a guard is kept when its
 * (dev, ino) is among them (a lookup per guard, not a walk of the table). */
struct live_files {
	struct healer_file *v;
	size_t n, cap;
	bool oom;
};

static void live_add(struct live_files *f, uint64_t dev, uint64_t ino)
{
	if (f->oom)
		return;
	if (f->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 64;
		void *nv = realloc(f->v, cap * sizeof(*f->v));

		if (!nv) {
			f->oom = true;
			return;
		}
		f->v = nv;
		f->cap = cap;
	}
	f->v[f->n++] = (struct healer_file){ dev, ino };
}

static int cmp_file_key(const void *x, const void *y)
{
	const struct healer_file *a = x, *b = y;

	if (a->dev != b->dev)
		return a->dev < b->dev ? -1 : 1;
	return (a->ino > b->ino) - (a->ino < b->ino);
}

static void live_visit(struct endpoint *e, void *ctx)
{
	if (e->has_listener)
		live_add(ctx, e->l.vfs_dev, e->l.vfs_ino);
}

static bool guard_keep(uint64_t dev, uint64_t ino, void *ctx)
{
	const struct live_files *f = ctx;
	struct healer_file k = { dev, ino };

	return f->n && bsearch(&k, f->v, f->n, sizeof(*f->v), cmp_file_key);
}

void healer_reconcile(struct healer *h, struct endpoint_table *t,
		      const struct healer_file *alive, size_t n_alive)
{
	struct live_files f = {0};
	size_t n;

	ep_foreach(t, live_visit, &f);
	for (size_t i = 0; i < n_alive; i++)
		live_add(&f, alive[i].dev, alive[i].ino);
	if (f.oom) {
		/* without the full list every guard would look unneeded */
		free(f.v);
		return;
	}
	if (f.n)
		qsort(f.v, f.n, sizeof(*f.v), cmp_file_key);
	n = guards_prune(&h->guards, guard_keep, &f);
	free(f.v);
	if (n)
		log_debug("pruned %zu guard link%s of closed listeners", n, n == 1 ? "" : "s");
}
