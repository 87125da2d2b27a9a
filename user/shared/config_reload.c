/*
 * A configuration reload (SIGHUP; sockwarden(8) "Reloading"): new options are
 * built exactly as at start-up (defaults, the file, the flags over it) into a
 * struct of their own, so a bad file leaves the running options untouched.
 * Settings the running agent cannot change in place (what the BPF programs
 * were loaded with, the sockets and files it opened before dropping its
 * privileges) keep their running value, and the caller is told their keys.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

const char *path_cfgs_keep_string(struct path_cfgs *p, const char *s)
{
	char **v;

	if (!s)
		return NULL;
	v = realloc(p->strings, (p->n_strings + 1) * sizeof(*v));
	if (!v)
		return NULL;
	p->strings = v;
	v[p->n_strings] = strdup(s);
	return v[p->n_strings] ? v[p->n_strings++] : NULL;
}

void agent_options_release(struct agent_options *o)
{
	for (size_t i = 0; i < o->n_watch; i++)
		free(o->watch[i]);
	free(o->watch);
	o->watch = NULL;
	o->n_watch = 0;
	path_cfgs_free(&o->paths);
}

static bool same_string(const char *x, const char *y)
{
	return x == y || (x && y && strcmp(x, y) == 0);
}

struct keep_ctx {
	const struct agent_options *running;
	struct agent_options *next;
	void (*told)(const char *key, void *ctx);
	void *ctx;
	bool oom;
};

static void keep_string(struct keep_ctx *k, const char *key, const char *running,
			const char **next)
{
	if (same_string(running, *next))
		return;
	k->told(key, k->ctx);
	*next = path_cfgs_keep_string(&k->next->paths, running);
	if (running && !*next)
		k->oom = true;
}

#define KEEP_VALUE(k, key, field)                                  \
	do {                                                       \
		if ((k)->running->field != (k)->next->field) {     \
			(k)->told(key, (k)->ctx);                  \
			(k)->next->field = (k)->running->field;    \
		}                                                  \
	} while (0)

/* Host-wide (no watch list) or a watch list is how the BPF programs were
 * loaded: the list may change, that choice may not. */
static void keep_watch_mode(struct keep_ctx *k)
{
	struct agent_options *n = k->next;
	const struct agent_options *r = k->running;

	if ((r->n_watch == 0) == (n->n_watch == 0))
		return;
	k->told("watch", k->ctx);
	for (size_t i = 0; i < n->n_watch; i++)
		free(n->watch[i]);
	free(n->watch);
	n->watch = NULL;
	n->n_watch = 0;
	for (size_t i = 0; i < r->n_watch; i++)
		if (agent_options_add_watch(n, r->watch[i]) != 0)
			k->oom = true;
}

static void keep_running_values(struct keep_ctx *k)
{
	KEEP_VALUE(k, "mode", mode);
	KEEP_VALUE(k, "discovery", discovery);
	KEEP_VALUE(k, "any_path", any_path);
	KEEP_VALUE(k, "guard", no_guard);
	KEEP_VALUE(k, "redirect", no_redirect);
	KEEP_VALUE(k, "journal", journal);
	keep_string(k, "events", k->running->events, &k->next->events);
	keep_string(k, "state", k->running->state_file, &k->next->state_file);
	keep_string(k, "metrics", k->running->metrics_addr, &k->next->metrics_addr);
	keep_string(k, "metrics_file", k->running->metrics_file, &k->next->metrics_file);
	keep_string(k, "control", k->running->control_path, &k->next->control_path);
	/* the control server's caps hold the registrations it has admitted */
	KEEP_VALUE(k, "control_max_connections", control_limits.max_connections);
	KEEP_VALUE(k, "control_max_registrations", control_limits.max_registrations);
	KEEP_VALUE(k, "control_max_registrations_per_connection",
		   control_limits.max_registrations_per_connection);
	KEEP_VALUE(k, "control_idle_timeout", control_limits.idle_timeout_ns);
	keep_watch_mode(k);
}

static void told_nobody(const char *key, void *ctx)
{
	(void)key;
	(void)ctx;
}

int config_reload(const struct agent_options *running, struct agent_options **next,
		  void (*restart_key)(const char *key, void *ctx), void *ctx, char *err,
		  size_t errlen)
{
	struct agent_options *n;
	struct keep_ctx k = { .running = running, .told = restart_key ? restart_key : told_nobody,
			      .ctx = ctx };

	if (!running->rebuild) {
		snprintf(err, errlen, "the options cannot be built again");
		return -1;
	}
	n = calloc(1, sizeof(*n));
	if (!n) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (running->rebuild(running->rebuild_ctx, n, err, errlen) != 0) {
		agent_options_release(n);
		free(n);
		return -1;
	}
	k.next = n;
	keep_running_values(&k);
	if (k.oom) {
		snprintf(err, errlen, "out of memory");
		agent_options_release(n);
		free(n);
		return -1;
	}
	n->rebuild = running->rebuild;
	n->rebuild_ctx = running->rebuild_ctx;
	*next = n;
	return 0;
}
