/*
 * SIGHUP's reload of the configuration (sockwarden(8) "Reloading"). The new
 * options are built beside the running ones (shared/config_reload.c); a bad
 * file changes nothing. A good one is swapped in here, on the loop's thread,
 * between two turns of the loop: every component reads the options from this
 * thread only (the scanner thread reads the discovery source alone, which a
 * reload never changes), so no lock is needed.
 *
 * What it changes in place: the watch list and the [path] sections (heal,
 * action, window, flap settings), the globals window, reconcile, heal_delay_ms,
 * flap_max, flap_window and rebind_timeout. The endpoint table, its streaks,
 * counts, circuits, guards and registrations are the same objects before and
 * after: nothing is rebuilt. A path taken out of the watch list is let go,
 * not dropped (see unwatch_visit).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>

#include "core.h"

static void restart_key(const char *key, void *ctx)
{
	(void)ctx;
	log_warn("config reload: key \"%s\" needs a restart; the running value stays", key);
}

/* Is path one the new options name in the agent's own namespace? */
static bool configured(const struct agent_options *o, const char *path)
{
	for (size_t i = 0; i < o->n_watch; i++)
		if (strcmp(o->watch[i], path) == 0)
			return true;
	if (path_cfg_find(&o->paths, path))
		return true;
	/* with a watch list the agent watches its own control path */
	return o->n_watch && o->control_path && strcmp(o->control_path, path) == 0;
}

struct apply_ctx {
	struct agent *a;
	const struct agent_options *next;
	size_t unwatched;
};

/*
 * Every endpoint takes its section of the new options (or none); one the
 * options no longer name loses its `watch` origin. With a watch list that
 * means it is no longer watched: its guard goes and its listener is let go,
 * so a later removal of the path is neither reported nor healed. What it has
 * counted is not cut short: an open connect-failure streak runs to its end
 * and is reported whole (connect_recovered with every failure), as the
 * kernel keeps counting a path while its endpoint is in the table; the
 * endpoint then leaves status by the rule every unwatched one follows. A
 * registered path stays watched through its registration.
 */
static void endpoint_visit(struct endpoint *e, void *ctx)
{
	struct apply_ctx *x = ctx;

	e->cfg = x->next->paths.n ? path_cfg_find(&x->next->paths, e->path) : NULL;
	if (e->mntns || !(e->origin & EP_FROM_WATCH) || configured(x->next, e->path))
		return;
	e->origin &= ~(unsigned)EP_FROM_WATCH;
	x->unwatched++;
	if (!x->next->n_watch || (e->origin & EP_FROM_REGISTER))
		return; /* host-wide: every path stays watched */
	if (e->has_listener) {
		healer_listener_gone(&x->a->healer, e);
		ep_clear_listener(e);
	}
	e->lost = false;
	e->heal_pending = false;
}

static size_t watch_new_paths(struct agent *a, const struct agent_options *o)
{
	size_t added = 0;

	for (size_t i = 0; i < o->n_watch + o->paths.n + 1; i++) {
		const char *path = i < o->n_watch ? o->watch[i]
				   : i < o->n_watch + o->paths.n ? o->paths.v[i - o->n_watch].path
				   : o->n_watch ? o->control_path : NULL;
		struct endpoint *e;

		if (!path)
			continue;
		e = ep_get_or_add(&a->eps, 0, path, NULL);
		if (!e || (e->origin & EP_FROM_WATCH))
			continue;
		e->origin |= EP_FROM_WATCH;
		e->cfg = o->paths.n ? path_cfg_find(&o->paths, path) : NULL;
		added++;
	}
	return added;
}

static void apply(struct agent *a, const struct agent_options *prev,
		  const struct agent_options *next)
{
	struct apply_ctx x = { .a = a, .next = next };
	size_t added;

	a->healer.cfg.heal_delay_ns = next->heal_delay_ns;
	a->healer.cfg.flap = next->flap;
	a->actions.flap = &next->flap;
	a->ctl.rebind_timeout_ns = next->rebind_timeout_ns;
	a->have_actions = false;
	for (size_t i = 0; i < next->paths.n; i++) {
		if (next->paths.v[i].action != ACTION_NONE)
			a->have_actions = true;
		if (next->paths.v[i].action == ACTION_SIGNAL &&
		    !(a->priv.kept & PRIV_BIT(CAP_KILL)))
			log_warn("config reload: [path %s] action = signal wants CAP_KILL, which "
				 "the agent let go at start: it needs a restart",
				 next->paths.v[i].path);
	}
	a->co.window_ns = next->window_ns;
	a->co.window_of = next->paths.n ? window_of : NULL;
	if (next->reconcile_ns != prev->reconcile_ns)
		timer_arm(a->reconcile_tfd, next->reconcile_ns);
	ep_foreach(&a->eps, endpoint_visit, &x);
	added = watch_new_paths(a, next);
	/* an open streak's window is its path's new one from its current
	 * window's start on: its count goes on */
	for (struct streak *s = a->co.open; s; s = s->next)
		s->window_ns = window_of(s->path, a);
	if (added || x.unwatched) {
		sync_soon(a);
		/* a listener already at a newly watched path is found now, not at
		 * the next interval */
		if (added)
			scanner_request(&a->scanner);
	}
	log_info("config reload: %zu path(s) newly watched, %zu no longer configured", added,
		 x.unwatched);
}

void agent_reload(struct agent *a)
{
	struct agent_options *next = NULL;
	char err[512];

	if (config_reload(a->opt, &next, restart_key, NULL, err, sizeof(err)) != 0) {
		log_warn("config reload failed, the running configuration stays: %s", err);
		a->reload_ok = false;
		metrics_flush(a);
		return;
	}
	/* window_of reads a->opt: the new options are in place before apply's
	 * look at the open streaks */
	{
		const struct agent_options *prev = a->opt;
		struct agent_options *prev_owned = a->opt_owned;

		a->opt = next;
		a->opt_owned = next;
		apply(a, prev, next);
		if (prev_owned) {
			agent_options_release(prev_owned);
			free(prev_owned);
		}
	}
	a->reload_ok = true;
	a->reload_ok_real_ns = clock_real_ns();
	a->reloads++;
	log_info("config reload: configuration %s applied",
		 next->config_file ? next->config_file : "(no file: flags and defaults)");
	state_flush(a, true);
	metrics_flush(a);
}

void agent_reload_free(struct agent *a)
{
	if (a->opt_owned) {
		agent_options_release(a->opt_owned);
		free(a->opt_owned);
		a->opt_owned = NULL;
	}
}
