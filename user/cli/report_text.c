/*
 * The sentences of a report: each event of a timeline, and the reasons a
 * heal was skipped, told in words.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "report_internal.h"
#include "shared/clock.h"

/* ----- sentences ----- */

__attribute__((format(printf, 2, 3)))
void text_add(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int k;

	if (t->n >= sizeof(t->s) - 1)
		return;
	va_start(ap, fmt);
	k = vsnprintf(t->s + t->n, sizeof(t->s) - t->n, fmt, ap);
	va_end(ap);
	if (k > 0)
		t->n = t->n + (size_t)k < sizeof(t->s) ? t->n + (size_t)k : sizeof(t->s) - 1;
}

/* "rm (pid 22305, uid 0)": who a process object names. */
void text_proc(struct text *t, const json_t *p)
{
	const char *comm = str_of(p, "comm");
	json_int_t pid = 0, uid = 0;
	bool has_pid = int_of(p, "pid", &pid), has_uid = int_of(p, "uid", &uid);

	if (!comm && !has_pid) {
		text_add(t, "an unknown process");
		return;
	}
	if (comm && has_pid)
		text_add(t, "%s (pid %lld", comm, (long long)pid);
	else if (comm)
		text_add(t, "%s (pid unknown", comm);
	else
		text_add(t, "pid %lld (", (long long)pid);
	if (has_uid)
		text_add(t, "%suid %lld", comm ? ", " : "", (long long)uid);
	else if (!comm)
		text_add(t, "uid unknown");
	text_add(t, ")");
}

const char *skip_reason_text(const char *reason)
{
	static const struct {
		const char *reason, *text;
	} known[] = {
		{ "listener_gone", "the listener is gone" },
		{ "owner_unlinked", "the server removed its own path (shutdown or rotation)" },
		{ "same_executable", "a new instance of the same program replaced it" },
		{ "rebound", "the path was bound again" },
		{ "replaced", "the path now names another file" },
		{ "circuit_open", "the flap guard's circuit is open" },
	};

	for (size_t i = 0; reason && i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(reason, known[i].reason) == 0)
			return known[i].text;
	return NULL;
}

/* A rebind_skipped reason that says the loss was meant to happen, or that a
 * listener is back: nothing for the agent to fix. circuit_open is a refusal,
 * not a verdict, and leaves the incident open. */
bool skip_is_deliberate(const char *reason)
{
	static const char *const deliberate[] = { "listener_gone", "owner_unlinked",
						  "same_executable", "rebound", "replaced" };

	for (size_t i = 0; reason && i < sizeof(deliberate) / sizeof(deliberate[0]); i++)
		if (strcmp(reason, deliberate[i]) == 0)
			return true;
	return false;
}

bool event_is(const struct jevent *e, const char *name)
{
	return strcmp(e->name, name) == 0;
}

/* One short sentence per event, for a reader who does not know the schema. */
void describe(struct text *t, const struct jevent *e)
{
	const json_t *o = e->obj;
	const char *s, *reason = str_of(o, "reason"), *how = str_of(o, "how");
	const char *err = str_of(o, "errno");
	json_int_t n = 0, m = 0;
	double ms;

	if (event_is(e, "agent_started")) {
		text_add(t, "agent started");
		if (int_of(o, "pid", &n))
			text_add(t, " (pid %lld)", (long long)n);
		if ((s = str_of(o, "mode")))
			text_add(t, " in %s mode", s);
		if (int_of(o, "watched", &n))
			text_add(t, ", %lld listener%s watched", (long long)n, n == 1 ? "" : "s");
	} else if (event_is(e, "agent_stopping")) {
		text_add(t, "agent stopping");
		if (int_of(o, "records", &n))
			text_add(t, " after %lld kernel record%s", (long long)n, n == 1 ? "" : "s");
		if (int_of(o, "events_lost", &n))
			text_add(t, ", %lld lost", (long long)n);
	} else if (event_is(e, "events_lost")) {
		if (int_of(o, "count", &n))
			text_add(t, "%lld event%s lost", (long long)n, n == 1 ? "" : "s");
		else
			text_add(t, "events lost");
		if (reason)
			text_add(t, " (%s)", reason);
	} else if (event_is(e, "socket_unlinked")) {
		s = str_of(o, "via");
		if (s && strcmp(s, "scan") == 0) {
			text_add(t, "path found gone by a scan");
		} else {
			text_add(t, "path %s by ", s && strcmp(s, "rename") == 0 ?
				 "replaced by a rename" : "removed");
			text_proc(t, json_object_get(o, "actor"));
			if (s)
				text_add(t, " via %s", s);
		}
		if (json_object_get(o, "owner")) {
			text_add(t, "; its listener ");
			text_proc(t, json_object_get(o, "owner"));
			text_add(t, " lives on");
		}
	} else if (event_is(e, "listener_orphaned")) {
		text_add(t, "listener of ");
		text_proc(t, json_object_get(o, "owner"));
		text_add(t, " orphaned: its path is gone or names another file");
	} else if (event_is(e, "connect_failing")) {
		text_add(t, "connects failing with %s, first from ", err ? err : "an error");
		text_proc(t, json_object_get(o, "client"));
	} else if (event_is(e, "connect_still_failing")) {
		text_add(t, "still failing with %s", err ? err : "an error");
		if (int_of(o, "failures", &n))
			text_add(t, ": %lld failure%s in this window", (long long)n,
				 n == 1 ? "" : "s");
		if (int_of(o, "streak_duration_ms", &m))
			text_add(t, ", streak %.3f s", (double)m / 1e3);
	} else if (event_is(e, "connect_recovered")) {
		text_add(t, "connects work again");
		if (how && strcmp(how, "connect") != 0)
			text_add(t, " after the heal by %s", how);
		if (int_of(o, "total_failures", &n))
			text_add(t, ": %lld failure%s%s%s", (long long)n, n == 1 ? "" : "s",
				 err ? " with " : "", err ? err : "");
		if (int_of(o, "streak_duration_ms", &m))
			text_add(t, " over %.3f s", (double)m / 1e3);
	} else if (event_is(e, "stale_socket")) {
		text_add(t, "connect refused: the path exists, nothing listens");
		if (json_object_get(o, "last_owner")) {
			text_add(t, " (last owner ");
			text_proc(t, json_object_get(o, "last_owner"));
			text_add(t, ")");
		}
	} else if (event_is(e, "listener_wedged")) {
		text_add(t, "listener ");
		if (json_object_get(o, "owner")) {
			text_proc(t, json_object_get(o, "owner"));
			text_add(t, " ");
		}
		text_add(t, "not accepting");
		if (int_of(o, "backlog", &n) && int_of(o, "max_backlog", &m))
			text_add(t, ": backlog %lld/%lld", (long long)n, (long long)m);
		if (reason)
			text_add(t, " (%s)", reason);
	} else if (event_is(e, "rebind_started")) {
		text_add(t, "heal by %s started", how ? how : "?");
		if (int_of(o, "seq", &n))
			text_add(t, " (seq %lld)", (long long)n);
	} else if (event_is(e, "rebind_succeeded")) {
		text_add(t, "healed by %s", how ? how : "?");
		if (json_is_number(json_object_get(o, "heal_ms"))) {
			ms = json_number_value(json_object_get(o, "heal_ms"));
			text_add(t, " %.1f ms after the loss", ms);
		}
		if (json_object_get(o, "owner")) {
			text_add(t, ", served by ");
			text_proc(t, json_object_get(o, "owner"));
		}
	} else if (event_is(e, "rebind_failed")) {
		text_add(t, "heal by %s failed: %s", how ? how : "?", reason ? reason : "?");
		if ((s = str_of(o, "error")))
			text_add(t, " (%s)", s);
	} else if (event_is(e, "rebind_skipped")) {
		s = skip_reason_text(reason);
		text_add(t, "not healed: %s", reason ? reason : "?");
		if (s)
			text_add(t, ", %s", s);
		if (json_object_get(o, "actor")) {
			text_add(t, "; removed by ");
			text_proc(t, json_object_get(o, "actor"));
		}
	} else if (event_is(e, "rebind_suppressed")) {
		text_add(t, "flap guard opened the circuit");
		if (int_of(o, "rebinds", &n))
			text_add(t, " after %lld heals", (long long)n);
		if (int_of(o, "window_s", &m))
			text_add(t, " in %lld s", (long long)m);
		text_add(t, "; healing stops");
		if ((s = str_of(o, "retry_at")))
			text_add(t, " until %s", s);
		if (json_object_get(o, "actor")) {
			text_add(t, "; removed again and again by ");
			text_proc(t, json_object_get(o, "actor"));
		}
	} else if (event_is(e, "guard_lost")) {
		text_add(t, "guard link lost: %s", reason ? reason : "?");
	} else if (event_is(e, "target_registered")) {
		text_proc(t, json_object_get(o, "owner"));
		text_add(t, " registered (heal %s)", (s = str_of(o, "heal")) ? s : "?");
	} else if (event_is(e, "target_unregistered")) {
		text_proc(t, json_object_get(o, "owner"));
		text_add(t, " unregistered (%s)", reason ? reason : "?");
	} else if (event_is(e, "target_exited")) {
		text_add(t, "registered server ");
		text_proc(t, json_object_get(o, "owner"));
		text_add(t, " exited");
	} else {
		/* a name this version does not know: say what it is, as written */
		text_add(t, "%s", e->name);
		if ((s = str_of(o, "severity")))
			text_add(t, " (%s)", s);
		if (reason)
			text_add(t, ": %s", reason);
	}
}
