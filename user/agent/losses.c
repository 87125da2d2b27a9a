/*
 * Losses: an unlink or rename record confirmed against the endpoint table
 * (socket_unlinked), the heal it schedules, heal timing, and the check that a
 * healed path accepts again. The healer (healer.c) does the re-linking; the
 * control server (control.c) the rebinds through a registered server's fd.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include "core.h"

/* ----- unlink records ----- */

struct confirm_ctx {
	struct agent *a;
	const struct sw_rec_unlink *r;
	const char *via;
	size_t confirmed;
};

static void confirm_visit(struct endpoint *e, void *ctx)
{
	struct confirm_ctx *c = ctx;

	struct unix_listener now;

	if (!e->has_listener || e->lost)
		return;
	if (ep_path_is_listener(e, &e->l))
		return; /* still there: a failed race, another name, or a hash collision */
	if (ep_listener_now(e, &now) != 0 || now.state != 10) {
		/* the listener closed before its file went: a clean shutdown */
		healer_listener_gone(&c->a->healer, e);
		ep_clear_listener(e);
		return;
	}
	report_socket_unlinked(c->a, e, &c->r->hdr.proc, c->r->hdr.mntns, c->via, c->r->hdr.ts_ns);
	c->confirmed++;
}

struct dir_find {
	uint32_t mntns; /* the actor's: its own endpoints and the shared ones */
	uint64_t dev, ino;
	char path[SW_PATH_MAX];
	bool found;
};

static void dir_find_visit(struct endpoint *e, void *ctx)
{
	struct dir_find *f = ctx;
	int i;

	if (f->found || (e->mntns && e->mntns != f->mntns))
		return;
	i = ep_dir_index(e, f->dev, f->ino);
	if (i >= 0 && ep_dir_path(e, (size_t)i, f->path, sizeof(f->path)))
		f->found = true;
}

/* An absolute path for a name the actor used, relative to `base`. */
static bool resolve_name(struct agent *a, const char *name,
			 const struct sw_file_id *base, pid_t tgid, uint32_t mntns, char *out,
			 size_t outlen)
{
	struct dir_find f = { .mntns = mntns };
	char cwd[SW_PATH_MAX], link[64];
	struct stat st;

	if (name[0] == '/')
		return path_normalize(name, out, outlen);
	if (!base->ino)
		return false;
	/* the base directory is usually one the agent recorded for an endpoint,
	 * which works even after a short-lived actor (rm) has exited */
	f.dev = kdev_to_dev(base->dev);
	f.ino = base->ino;
	ep_foreach(&a->eps, dir_find_visit, &f);
	if (f.found)
		return path_join(f.path, name, out, outlen);
	/* the cwd by name as the actor's namespace sees it, and by the magic
	 * link, which reaches it in any namespace: the same directory as the
	 * record's base, or the actor has moved on */
	snprintf(link, sizeof(link), "/proc/%d/cwd", (int)tgid);
	if (proc_cwd(tgid, cwd, sizeof(cwd)) && stat(link, &st) == 0 &&
	    st.st_ino == base->ino && st.st_dev == f.dev)
		return path_join(cwd, name, out, outlen);
	return false;
}

struct inode_match {
	struct confirm_ctx *c;
	const struct sw_file_id *id;
};

static void inode_visit(struct endpoint *e, void *ctx)
{
	struct inode_match *m = ctx;
	uint64_t dev = kdev_to_dev(m->id->dev);

	if (!e->has_listener)
		return;
	if ((e->l.vfs_ino == m->id->ino && e->l.vfs_dev == dev) ||
	    ep_dir_index(e, dev, m->id->ino) > 0)
		confirm_visit(e, m->c);
}

void on_unlink(struct agent *a, const struct sw_rec_unlink *r)
{
	bool rename = r->syscall >= SW_SYS_RENAME && r->syscall != SW_SYS_VFS_UNLINK;
	struct confirm_ctx c = { .a = a, .r = r, .via = rename ? "rename" : "unlink" };

	for (int i = 0; i < 2; i++) {
		char name[SW_NAME_LEN + 1], abs[SW_PATH_MAX];

		if (!(r->match & (i == 0 ? SW_UNLINK_MATCH_OLD : SW_UNLINK_MATCH_NEW)))
			continue;
		if (r->target[i].ino) {
			/* fentry mode: the exact inode */
			struct inode_match m = { &c, &r->target[i] };

			ep_foreach(&a->eps, inode_visit, &m);
			continue;
		}
		memcpy(name, r->name[i], SW_NAME_LEN);
		name[SW_NAME_LEN] = 0;
		if (!resolve_name(a, name, &r->base[i], (pid_t)r->hdr.proc.tgid,
				  ns_key(r->hdr.mntns), abs, sizeof(abs))) {
			log_debug("cannot resolve %s (pid %u); the scan will decide",
				  name, r->hdr.proc.tgid);
			continue;
		}
		ep_foreach_under(&a->eps, ns_key(r->hdr.mntns), abs, confirm_visit, &c);
	}
	if (c.confirmed)
		bpf_agent_sync(&a->bpf, &a->eps);
}

/* ----- healing ----- */

/*
 * A healed path with an open connect-failure streak is verified with one
 * connect of the agent's own: the kernel sees the success and ends the streak,
 * and the recovery is credited to the heal.
 */
static void heal_verify(struct endpoint *e, void *ctx)
{
	struct agent *a = ctx;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct sw_connect_stat st;
	bool open = false;
	int fd;

	if (!e->recovered_how)
		return;
	for (int i = 0; i < SW_ERR_MAX; i++)
		if (bpf_agent_connect_stat(&a->bpf, e->key, i, &st) == 0 && st.open)
			open = true;
	/* a connect of the agent's own names the path in the agent's namespace:
	 * another namespace's streak ends with its clients' first success */
	if (!open || e->mntns || !path_fits_sun_path(e->path)) {
		/* a streak the kernel has closed but whose end the agent has not
		 * read yet is still this heal's to credit (streak_recovered clears) */
		if (!path_streak_open(a, e->key))
			e->recovered_how = NULL;
		return;
	}
	/* removed again since the heal: the connect would only add a failure of
	 * the agent's own to the streak (the unlink's record reports the loss) */
	if (!ep_path_is_listener(e, &e->l))
		return;
	fd = socket(AF_UNIX, e->l.type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	memcpy(sa.sun_path, e->path, strlen(e->path));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		log_debug("verifying %s after the heal: %s", e->path, strerror(errno));
	close(fd);
}

void heal_due(struct agent *a)
{
	if (a->ctl_open)
		control_tick(&a->ctl, clock_mono_ns());
	if (healer_run_due(&a->healer, &a->eps, clock_mono_ns()) == 0)
		return;
	bpf_agent_sync(&a->bpf, &a->eps);
	ep_foreach(&a->eps, heal_verify, a);
}

void heal_timer_arm(struct agent *a)
{
	uint64_t d = healer_next_deadline(&a->eps);

	if (a->ctl_open) {
		uint64_t c = control_next_deadline(&a->ctl);

		if (c < d)
			d = c;
	}
	struct itimerspec its = {0};

	if (d != UINT64_MAX) {
		if (d == 0)
			d = 1;
		its.it_value.tv_sec = (time_t)(d / NSEC_PER_SEC);
		its.it_value.tv_nsec = (long)(d % NSEC_PER_SEC);
	}
	timerfd_settime(a->heal_tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

void ctl_emit(void *ctx, json_t *ev)
{
	emit(ctx, ev);
}

void ctl_changed(void *ctx)
{
	sync_soon(ctx);
}

void ctl_sync(void *ctx)
{
	struct agent *a = ctx;

	bpf_agent_sync(&a->bpf, &a->eps);
}

void ctl_healed(void *ctx, struct endpoint *e)
{
	struct agent *a = ctx;

	/* the path may have been removed again while the server was adopting:
	 * that loss belongs to the new listener, and is healed like any other */
	if (!ep_path_is_listener(e, &e->l)) {
		e->recovered_how = NULL;
		report_socket_unlinked(a, e, NULL, 0, "scan", 0);
		heal_timer_arm(a);
		return;
	}
	heal_verify(e, a);
}

bool healer_rebind(void *ctx, struct endpoint *e)
{
	struct agent *a = ctx;

	return a->ctl_open && control_rebind(&a->ctl, e);
}

void guard_remove_visit(struct endpoint *e, void *ctx)
{
	healer_listener_gone(ctx, e);
}
