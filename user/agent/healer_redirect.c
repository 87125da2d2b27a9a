/*
 * The healer's side of the redirect (redirect.h): an endpoint is armed with
 * its guard mirror's path (guard_mirror.h) while its guard is in place,
 * marked lost while it waits for its heal, and disarmed when its listener
 * goes. Split from healer.c; the healer calls these at each decision.
 */
#include "healer.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "guard_mirror.h"
#include "shared/log.h"
#include "shared/paths.h"

/*
 * Arms (or keeps armed) the redirect of e with its guard mirror's path, the
 * name a client of e's namespace is sent to (guard_mirror.h: the same
 * permission checks as the original). Called on every look at the guard, so
 * a chmod of an original directory reaches the mirror by the next scan. A
 * mirror that cannot be brought up to date while the path is lost (its
 * directories removed with it) stays as it was: the heal re-creates them
 * with the same recorded owners and modes.
 */
void healer_redirect_arm(struct healer *h, struct endpoint *e)
{
	char target[SW_PATH_MAX];
	const char *why = NULL;
	int rc;

	if (!h->redirect || !h->redirect->on || !e->guard_ok || !e->guard.dir)
		return;
	rc = guard_mirror_make(&e->guard, e->path, e->l.vfs_dev, e->l.vfs_ino, target,
			       sizeof(target), &why);
	if (rc == 0)
		rc = redirect_arm(h->redirect, e->mntns, e->path, target);
	if (rc == 0) {
		e->redirect_armed = true;
		e->redirect_problem[0] = 0;
		return;
	}
	if (e->redirect_armed && e->redirect_lost)
		return;
	if (e->redirect_armed)
		redirect_disarm(h->redirect, e->mntns, e->path);
	e->redirect_armed = false;
	snprintf(e->redirect_problem, sizeof(e->redirect_problem), "%s",
		 why ? why : rc == -ENAMETOOLONG ? "too_long" : "map_full");
	log_debug("%s not redirected: %s", e->path, e->redirect_problem);
}

void healer_redirect_disarm(struct healer *h, struct endpoint *e)
{
	if (e->redirect_armed)
		redirect_disarm(h->redirect, e->mntns, e->path);
	e->redirect_armed = false;
	e->redirect_lost = false;
	guard_mirror_remove(&e->guard, e->l.vfs_ino);
}

/* Connects go to the guard (lost) or to the path again (not lost). */
void healer_redirect_set_lost(struct healer *h, struct endpoint *e, bool lost)
{
	if (!e->redirect_armed)
		return;
	redirect_mark(h->redirect, e->mntns, e->path, lost);
	e->redirect_lost = lost;
}

bool healer_redirect_lost(struct healer *h, struct endpoint *e)
{
	bool lost = false;

	if (!e->redirect_armed)
		return false;
	/* the originals' owners and modes as they are now, not at the last scan */
	healer_redirect_arm(h, e);
	e->redirected_at_loss = redirect_count(h->redirect, e->mntns, e->path, &lost);
	/*
	 * The kernel marks it in the unlink itself, so an entry not marked
	 * means an unlink by a relative name (marked here), or a bind() of the
	 * path since the unlink, which cleared the mark: this record is older
	 * than that bind, and the new listener must win. So a path that is
	 * back is not marked; the look comes again after the mark, so that a
	 * bind between the two is seen, and one after it clears the mark
	 * itself.
	 */
	if (!lost) {
		struct stat st;

		if (ep_lstat(e, &st) == 0)
			return false;
		healer_redirect_set_lost(h, e, true);
		if (ep_lstat(e, &st) == 0) {
			healer_redirect_set_lost(h, e, false);
			return false;
		}
	}
	e->redirect_lost = true;
	return true;
}

uint64_t healer_redirected_since_loss(struct healer *h, struct endpoint *e)
{
	uint64_t n;

	if (!e->redirect_armed)
		return 0;
	n = redirect_count(h->redirect, e->mntns, e->path, NULL);
	return n > e->redirected_at_loss ? n - e->redirected_at_loss : 0;
}

