/*
 * `sockwarden report`: reads an event journal and tells, per endpoint, what
 * happened: when a path was lost and by whom, how many connects failed, how and
 * how fast it healed. The model it builds is docs/report.md; --json prints it.
 *
 * An incident of an endpoint is open while the journal says something is wrong
 * with it: its path is lost (socket_unlinked, listener_orphaned), nothing
 * listens (stale_socket), the listener does not accept (listener_wedged), or a
 * connect-failure streak is open (connect_failing until connect_recovered). It
 * closes when both are over: the path is back (rebind_succeeded, or a
 * connect_recovered, which proves it) and every streak has recovered. A
 * deliberate decision not to heal (rebind_skipped: the owner removed its own
 * path, a new instance replaced it, ...) ends the incident too when no client
 * is failing: nothing is broken that the agent was meant to fix.
 */
#include "report.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "exitcodes.h"

/* Skipped lines listed in the model; all are counted. A wrong file (a log, a
 * binary) has millions, and one screenful says enough. */
#define SKIPPED_LISTED_MAX 100
#define SKIPPED_SHOWN_MAX 20
/* connect_recovered carries the top 5 clients; an incident keeps as many. */
#define TOP_CLIENTS 5
/* ENOENT, ECONNREFUSED, EAGAIN and whatever a later schema adds */
#define ERRNOS_MAX 8

/* ----- the journal ----- */

/* One instant as an event gives it: mono_ns orders and measures within a boot
 * (immune to clock steps), the wall time across boots. */
struct timepoint {
	const char *boot_id; /* NULL when unknown */
	bool has_mono;
	uint64_t mono_ns;
	int64_t real_ns;
};

struct jevent {
	json_t *obj; /* the parsed line; the strings below point into it */
	size_t line;
	const char *name;
	const char *path; /* NULL: an agent-wide event */
	const char *path_hex;
	const char *host; /* "" when absent */
	const char *time; /* as written */
	struct timepoint at;
	int64_t order_ns;
};

struct skipped_line {
	size_t line;
	const char *why;
};

struct report_journal {
	struct jevent *ev;
	size_t n, cap;
	size_t lines; /* the highest line number seen */
	size_t skipped;
	struct skipped_line listed[SKIPPED_LISTED_MAX];
	size_t n_listed;
};

struct report_journal *report_journal_new(void)
{
	return calloc(1, sizeof(struct report_journal));
}

void report_journal_free(struct report_journal *j)
{
	if (!j)
		return;
	for (size_t i = 0; i < j->n; i++)
		json_decref(j->ev[i].obj);
	free(j->ev);
	free(j);
}

static bool take_digits(const char *s, int n, int *v)
{
	*v = 0;
	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return false;
		*v = *v * 10 + (s[i] - '0');
	}
	return true;
}

/* RFC 3339 to ns since the epoch: what the agent writes
 * (2026-11-23T14:37:06.922128408Z) and what other tools make of it (fewer
 * digits, a numeric offset, a space for the T). */
static bool parse_rfc3339(const char *s, int64_t *out)
{
	int y, mo, d, h, mi, sec, oh, om;
	int64_t frac = 0, scale = (int64_t)NSEC_PER_SEC, offset = 0;
	struct tm tm = { 0 };
	const char *p;
	time_t t;

	if (strlen(s) < 20 || !take_digits(s, 4, &y) || s[4] != '-' ||
	    !take_digits(s + 5, 2, &mo) || s[7] != '-' || !take_digits(s + 8, 2, &d) ||
	    !strchr("Tt ", s[10]) || !take_digits(s + 11, 2, &h) || s[13] != ':' ||
	    !take_digits(s + 14, 2, &mi) || s[16] != ':' || !take_digits(s + 17, 2, &sec))
		return false;
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		return false;
	p = s + 19;
	if (*p == '.') {
		if (!isdigit((unsigned char)p[1]))
			return false;
		for (p++; isdigit((unsigned char)*p); p++) {
			if (scale > 1) { /* digits past the nanosecond add nothing */
				scale /= 10;
				frac += (*p - '0') * scale;
			}
		}
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if ((*p == '+' || *p == '-') && take_digits(p + 1, 2, &oh) && p[3] == ':' &&
		   take_digits(p + 4, 2, &om) && oh < 24 && om < 60) {
		offset = ((int64_t)oh * 3600 + (int64_t)om * 60) * (*p == '-' ? -1 : 1);
		p += 6;
	} else {
		return false;
	}
	if (*p)
		return false;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	t = timegm(&tm);
	*out = ((int64_t)t - offset) * (int64_t)NSEC_PER_SEC + frac;
	return true;
}

static const char *str_of(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static bool int_of(const json_t *o, const char *key, json_int_t *v)
{
	const json_t *x = json_object_get(o, key);

	if (!json_is_integer(x))
		return false;
	*v = json_integer_value(x);
	return true;
}

/* Why an object cannot be an event, or NULL when e is filled in. */
static const char *event_of(json_t *obj, struct jevent *e)
{
	const json_t *path = json_object_get(obj, "path");
	json_int_t mono;

	if (!json_is_object(obj))
		return "not a JSON object";
	e->name = str_of(obj, "event");
	if (!e->name || !*e->name)
		return "no \"event\" name";
	e->time = str_of(obj, "time");
	if (!e->time)
		return "no \"time\"";
	if (!parse_rfc3339(e->time, &e->at.real_ns))
		return "\"time\" is not RFC 3339";
	if (path && !json_is_string(path))
		return "\"path\" is not a string";
	e->obj = obj;
	e->path = json_string_value(path);
	e->path_hex = str_of(obj, "path_hex");
	e->host = str_of(obj, "host");
	if (!e->host)
		e->host = "";
	e->at.boot_id = str_of(obj, "boot_id");
	if (e->at.boot_id && !*e->at.boot_id)
		e->at.boot_id = NULL; /* the agent writes "" when it could not read it */
	e->at.has_mono = int_of(obj, "mono_ns", &mono) && mono >= 0;
	e->at.mono_ns = e->at.has_mono ? (uint64_t)mono : 0;
	return NULL;
}

static void journal_skip(struct report_journal *j, size_t lineno, const char *why)
{
	j->skipped++;
	if (j->n_listed < SKIPPED_LISTED_MAX)
		j->listed[j->n_listed++] = (struct skipped_line){ lineno, why };
}

const char *report_journal_add_line(struct report_journal *j, const char *line,
				    size_t len, size_t lineno)
{
	struct jevent e = { .line = lineno };
	const char *why;
	json_t *obj;
	size_t i;

	if (lineno > j->lines)
		j->lines = lineno;
	for (i = 0; i < len && isspace((unsigned char)line[i]); i++)
		;
	if (i == len)
		return NULL; /* a blank line says nothing and breaks nothing */
	obj = json_loadb(line, len, 0, NULL);
	why = obj ? event_of(obj, &e) : "not JSON";
	if (!why && j->n == j->cap) {
		size_t cap = j->cap ? j->cap * 2 : 256;
		struct jevent *v = realloc(j->ev, cap * sizeof(*v));

		if (v) {
			j->ev = v;
			j->cap = cap;
		} else {
			why = "out of memory";
		}
	}
	if (why) {
		json_decref(obj);
		journal_skip(j, lineno, why);
		return why;
	}
	j->ev[j->n++] = e;
	return NULL;
}

static int cmp_order(const void *x, const void *y)
{
	const struct jevent *a = x, *b = y;

	if (a->order_ns != b->order_ns)
		return a->order_ns < b->order_ns ? -1 : 1;
	return a->line < b->line ? -1 : a->line > b->line;
}

/*
 * Sorts by (boot, mono_ns): within a boot mono_ns is the truth (the wall clock
 * may step); boots are placed on the wall-clock axis by the offset between the
 * two clocks in that boot's first event. An event without mono_ns or boot_id
 * is placed by its wall time. Equal instants keep the journal's order.
 */
static void journal_sort(struct report_journal *j)
{
	json_t *offsets = json_object();

	for (size_t i = 0; i < j->n; i++) {
		struct jevent *e = &j->ev[i];
		json_t *off;

		e->order_ns = e->at.real_ns;
		if (!e->at.boot_id || !e->at.has_mono)
			continue;
		off = json_object_get(offsets, e->at.boot_id);
		if (!off) {
			off = json_integer(e->at.real_ns - (int64_t)e->at.mono_ns);
			if (json_object_set_new(offsets, e->at.boot_id, off))
				continue; /* out of memory: wall time will do */
		}
		e->order_ns = (int64_t)e->at.mono_ns + json_integer_value(off);
	}
	if (j->n > 1)
		qsort(j->ev, j->n, sizeof(*j->ev), cmp_order);
	json_decref(offsets);
}

/* Seconds from a to b, by mono_ns when both are of one boot. */
static double span_s(const struct timepoint *a, const struct timepoint *b)
{
	if (a->has_mono && b->has_mono && a->boot_id && b->boot_id &&
	    strcmp(a->boot_id, b->boot_id) == 0)
		return (double)((int64_t)b->mono_ns - (int64_t)a->mono_ns) / 1e9;
	return (double)(b->real_ns - a->real_ns) / 1e9;
}

static bool same_clock(const struct timepoint *a, const struct timepoint *b)
{
	return a->has_mono && b->has_mono && a->boot_id && b->boot_id &&
	       strcmp(a->boot_id, b->boot_id) == 0;
}

/* ----- sentences ----- */

struct text {
	char s[2048];
	size_t n;
};

__attribute__((format(printf, 2, 3)))
static void text_add(struct text *t, const char *fmt, ...)
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
static void text_proc(struct text *t, const json_t *p)
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

static const char *skip_reason_text(const char *reason)
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
static bool skip_is_deliberate(const char *reason)
{
	static const char *const deliberate[] = { "listener_gone", "owner_unlinked",
						  "same_executable", "rebound", "replaced" };

	for (size_t i = 0; reason && i < sizeof(deliberate) / sizeof(deliberate[0]); i++)
		if (strcmp(reason, deliberate[i]) == 0)
			return true;
	return false;
}

static bool is(const struct jevent *e, const char *name)
{
	return strcmp(e->name, name) == 0;
}

/* One short sentence per event, for a reader who does not know the schema. */
static void describe(struct text *t, const struct jevent *e)
{
	const json_t *o = e->obj;
	const char *s, *reason = str_of(o, "reason"), *how = str_of(o, "how");
	const char *err = str_of(o, "errno");
	json_int_t n = 0, m = 0;
	double ms;

	if (is(e, "agent_started")) {
		text_add(t, "agent started");
		if (int_of(o, "pid", &n))
			text_add(t, " (pid %lld)", (long long)n);
		if ((s = str_of(o, "mode")))
			text_add(t, " in %s mode", s);
		if (int_of(o, "watched", &n))
			text_add(t, ", %lld listener%s watched", (long long)n, n == 1 ? "" : "s");
	} else if (is(e, "agent_stopping")) {
		text_add(t, "agent stopping");
		if (int_of(o, "records", &n))
			text_add(t, " after %lld kernel record%s", (long long)n, n == 1 ? "" : "s");
		if (int_of(o, "events_lost", &n))
			text_add(t, ", %lld lost", (long long)n);
	} else if (is(e, "events_lost")) {
		if (int_of(o, "count", &n))
			text_add(t, "%lld event%s lost", (long long)n, n == 1 ? "" : "s");
		else
			text_add(t, "events lost");
		if (reason)
			text_add(t, " (%s)", reason);
	} else if (is(e, "socket_unlinked")) {
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
	} else if (is(e, "listener_orphaned")) {
		text_add(t, "listener of ");
		text_proc(t, json_object_get(o, "owner"));
		text_add(t, " orphaned: its path is gone or names another file");
	} else if (is(e, "connect_failing")) {
		text_add(t, "connects failing with %s, first from ", err ? err : "an error");
		text_proc(t, json_object_get(o, "client"));
	} else if (is(e, "connect_still_failing")) {
		text_add(t, "still failing with %s", err ? err : "an error");
		if (int_of(o, "failures", &n))
			text_add(t, ": %lld failure%s in this window", (long long)n,
				 n == 1 ? "" : "s");
		if (int_of(o, "streak_duration_ms", &m))
			text_add(t, ", streak %.3f s", (double)m / 1e3);
	} else if (is(e, "connect_recovered")) {
		text_add(t, "connects work again");
		if (how && strcmp(how, "connect") != 0)
			text_add(t, " after the heal by %s", how);
		if (int_of(o, "total_failures", &n))
			text_add(t, ": %lld failure%s%s%s", (long long)n, n == 1 ? "" : "s",
				 err ? " with " : "", err ? err : "");
		if (int_of(o, "streak_duration_ms", &m))
			text_add(t, " over %.3f s", (double)m / 1e3);
	} else if (is(e, "stale_socket")) {
		text_add(t, "connect refused: the path exists, nothing listens");
		if (json_object_get(o, "last_owner")) {
			text_add(t, " (last owner ");
			text_proc(t, json_object_get(o, "last_owner"));
			text_add(t, ")");
		}
	} else if (is(e, "listener_wedged")) {
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
	} else if (is(e, "rebind_started")) {
		text_add(t, "heal by %s started", how ? how : "?");
		if (int_of(o, "seq", &n))
			text_add(t, " (seq %lld)", (long long)n);
	} else if (is(e, "rebind_succeeded")) {
		text_add(t, "healed by %s", how ? how : "?");
		if (json_is_number(json_object_get(o, "heal_ms"))) {
			ms = json_number_value(json_object_get(o, "heal_ms"));
			text_add(t, " %.1f ms after the loss", ms);
		}
		if (json_object_get(o, "owner")) {
			text_add(t, ", served by ");
			text_proc(t, json_object_get(o, "owner"));
		}
	} else if (is(e, "rebind_failed")) {
		text_add(t, "heal by %s failed: %s", how ? how : "?", reason ? reason : "?");
		if ((s = str_of(o, "error")))
			text_add(t, " (%s)", s);
	} else if (is(e, "rebind_skipped")) {
		s = skip_reason_text(reason);
		text_add(t, "not healed: %s", reason ? reason : "?");
		if (s)
			text_add(t, ", %s", s);
		if (json_object_get(o, "actor")) {
			text_add(t, "; removed by ");
			text_proc(t, json_object_get(o, "actor"));
		}
	} else if (is(e, "rebind_suppressed")) {
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
	} else if (is(e, "guard_lost")) {
		text_add(t, "guard link lost: %s", reason ? reason : "?");
	} else if (is(e, "target_registered")) {
		text_proc(t, json_object_get(o, "owner"));
		text_add(t, " registered (heal %s)", (s = str_of(o, "heal")) ? s : "?");
	} else if (is(e, "target_unregistered")) {
		text_proc(t, json_object_get(o, "owner"));
		text_add(t, " unregistered (%s)", reason ? reason : "?");
	} else if (is(e, "target_exited")) {
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

/* ----- building the model ----- */

struct errno_tally {
	char name[24];
	uint64_t counted;   /* ended streaks: total_failures, or their estimate */
	uint64_t windows;   /* the open streak: sum of connect_still_failing failures */
	bool streak_open;
	bool saw_window;    /* a connect_still_failing came for the open streak */
	bool estimated;     /* some count is a lower bound */
};

struct incident {
	int id;
	const char *opened_by;
	struct timepoint start;
	const char *start_time;
	char start_time_buf[64]; /* an estimated start, formatted */
	bool start_estimated;
	const struct jevent *last; /* its latest event */
	const struct jevent *end;  /* the event that closed it */
	const char *status;        /* NULL while open */
	bool lost;                 /* the path or listener is still bad */
	const char *via;
	unsigned removals;
	json_t *actor, *owner;
	bool owner_inherited; /* from an earlier event of the endpoint, not this incident */
	struct errno_tally err[ERRNOS_MAX];
	size_t n_err;
	json_t *clients;
	const char *heal_how, *heal_time;
	json_t *heal_ms;
	const char *recovered_how;
	unsigned heal_attempts;
	const char *stood_down; /* the rebind_skipped reason that ended it */
	json_t *problems;
	json_t *notes;
	size_t events;
};

struct endpoint_acc {
	const char *host, *path, *path_hex;
	const struct jevent *first, *last;
	json_t *timeline;
	json_t *owner; /* the server as last named by any event of the endpoint */
	struct incident *inc;
	size_t n_inc, cap_inc;
	long open; /* index of the open incident, -1 when none */
};

struct run_acc {
	const char *host;
	const struct jevent *start, *stop;
	const char *end; /* "clean", "unclean", NULL while running */
	json_int_t lost;
};

struct builder {
	struct report_journal *j;
	struct endpoint_acc *ep;
	size_t n_ep, cap_ep;
	json_t *ep_index; /* host "\n" path -> index in ep */
	struct run_acc *runs;
	size_t n_runs, cap_runs;
	json_t *agent_timeline;
	json_t *lost;
	json_int_t lost_total;
	json_t *boot_of_host;  /* host -> the boot_id of its latest event */
	json_t *hosts_seen;
	bool oom;
};

static bool grow(void **v, size_t *cap, size_t n, size_t size)
{
	void *nv;
	size_t ncap;

	if (n < *cap)
		return true;
	ncap = *cap ? *cap * 2 : 8;
	nv = realloc(*v, ncap * size);
	if (!nv)
		return false;
	memset((char *)nv + *cap * size, 0, (ncap - *cap) * size);
	*v = nv;
	*cap = ncap;
	return true;
}

/* {pid, comm, uid} of a process object, whatever else it carries. */
static json_t *proc_copy(const json_t *p)
{
	json_t *c;

	if (!json_is_object(p))
		return NULL;
	c = json_object();
	json_object_set(c, "pid", json_object_get(p, "pid") ? json_object_get(p, "pid") : json_null());
	json_object_set(c, "comm", json_object_get(p, "comm") ? json_object_get(p, "comm") : json_null());
	json_object_set(c, "uid", json_object_get(p, "uid") ? json_object_get(p, "uid") : json_null());
	return c;
}

static struct endpoint_acc *endpoint_of(struct builder *b, const struct jevent *e)
{
	char *key;
	json_t *idx;
	struct endpoint_acc *ep;

	if (asprintf(&key, "%s\n%s", e->host, e->path) < 0)
		return NULL;
	idx = json_object_get(b->ep_index, key);
	if (idx) {
		free(key);
		return &b->ep[json_integer_value(idx)];
	}
	if (!grow((void **)&b->ep, &b->cap_ep, b->n_ep, sizeof(*b->ep)) ||
	    json_object_set_new(b->ep_index, key, json_integer((json_int_t)b->n_ep))) {
		free(key);
		return NULL;
	}
	free(key);
	ep = &b->ep[b->n_ep++];
	ep->host = e->host;
	ep->path = e->path;
	ep->path_hex = e->path_hex;
	ep->first = e;
	ep->timeline = json_array();
	ep->open = -1;
	return ep;
}

static struct incident *incident_open(struct endpoint_acc *ep, const struct jevent *e)
{
	struct incident *inc;
	json_int_t streak_ms;

	if (!grow((void **)&ep->inc, &ep->cap_inc, ep->n_inc, sizeof(*ep->inc)))
		return NULL;
	inc = &ep->inc[ep->n_inc];
	inc->id = (int)ep->n_inc + 1;
	inc->opened_by = e->name;
	inc->start = e->at;
	inc->start_time = e->time;
	inc->clients = json_array();
	inc->problems = json_array();
	inc->notes = json_array();
	/* a second removal's socket_unlinked may not name the server again */
	inc->owner = json_incref(ep->owner);
	inc->owner_inherited = ep->owner != NULL;
	/* The journal joins a streak late (it began before the agent wrote to this
	 * file, or its first event was lost): the streak's own length says when. */
	if ((is(e, "connect_recovered") || is(e, "connect_still_failing")) &&
	    int_of(e->obj, "streak_duration_ms", &streak_ms) && streak_ms > 0) {
		uint64_t back = (uint64_t)streak_ms * NSEC_PER_MSEC;

		inc->start.real_ns -= (int64_t)back;
		if (inc->start.has_mono && inc->start.mono_ns >= back)
			inc->start.mono_ns -= back;
		else
			inc->start.has_mono = false;
		clock_format_rfc3339((uint64_t)inc->start.real_ns, inc->start_time_buf,
				     sizeof(inc->start_time_buf));
		inc->start_time = inc->start_time_buf;
		inc->start_estimated = true;
	}
	ep->open = (long)ep->n_inc++;
	return inc;
}

static struct errno_tally *tally_of(struct incident *inc, const char *name)
{
	struct errno_tally *t;

	if (!name)
		name = "unknown";
	for (size_t i = 0; i < inc->n_err; i++)
		if (strcmp(inc->err[i].name, name) == 0)
			return &inc->err[i];
	/* more errnos than any schema has: the last slot collects the rest */
	t = &inc->err[inc->n_err < ERRNOS_MAX ? inc->n_err++ : ERRNOS_MAX - 1];
	if (!t->name[0])
		snprintf(t->name, sizeof(t->name), "%s", name);
	return t;
}

/* What the open streak has failed so far, as the agent counts it: the first
 * window's connect_still_failing includes the connect_failing (coalescer.c
 * starts the window's base one below the first failure). */
static uint64_t streak_estimate(const struct errno_tally *t)
{
	return t->saw_window ? t->windows : 1;
}

static bool streaks_open(const struct incident *inc)
{
	for (size_t i = 0; i < inc->n_err; i++)
		if (inc->err[i].streak_open)
			return true;
	return false;
}

static bool same_proc(const json_t *a, const json_t *b)
{
	return json_equal(json_object_get(a, "pid"), json_object_get(b, "pid")) &&
	       json_equal(json_object_get(a, "comm"), json_object_get(b, "comm"));
}

/* failures < 0: the client failed, the journal does not say how often. */
static void client_add(struct incident *inc, const json_t *p, json_int_t failures)
{
	size_t i;
	json_t *c;

	if (!json_is_object(p))
		return;
	json_array_foreach(inc->clients, i, c) {
		json_t *f = json_object_get(c, "failures");

		if (!same_proc(c, p))
			continue;
		if (failures >= 0)
			json_object_set_new(c, "failures", json_integer(
				(json_is_integer(f) ? json_integer_value(f) : 0) + failures));
		return;
	}
	c = proc_copy(p);
	json_object_set_new(c, "failures", failures >= 0 ? json_integer(failures) : json_null());
	json_array_append_new(inc->clients, c);
}

static void problem_add(struct incident *inc, const struct jevent *e)
{
	static const char *const keys[] = { "how", "reason", "error", "rebinds", "window_s",
					    "retry_at" };
	json_t *p = json_object();
	struct text t = { .n = 0 };

	describe(&t, e);
	json_object_set_new(p, "time", json_string(e->time));
	json_object_set_new(p, "event", json_string(e->name));
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (json_object_get(e->obj, keys[i]))
			json_object_set(p, keys[i], json_object_get(e->obj, keys[i]));
	if (json_object_get(e->obj, "actor"))
		json_object_set_new(p, "actor", proc_copy(json_object_get(e->obj, "actor")));
	json_object_set_new(p, "text", json_string(t.s));
	json_array_append_new(inc->problems, p);
}

static void incident_note(struct incident *inc, const char *fmt, const char *arg)
{
	struct text t = { .n = 0 };

	text_add(&t, fmt, arg);
	json_array_append_new(inc->notes, json_string(t.s));
}

/* Closes inc at e if nothing is wrong any more (see the top of this file). */
static void incident_settle(struct endpoint_acc *ep, struct incident *inc,
			    const struct jevent *e)
{
	if (streaks_open(inc))
		return;
	if (inc->lost && !inc->stood_down)
		return;
	if (!inc->lost)
		inc->status = inc->heal_how ? "healed" : "recovered";
	else
		inc->status = "stood_down";
	inc->end = e;
	ep->open = -1;
}

static bool is_loss(const struct jevent *e)
{
	return is(e, "socket_unlinked") || is(e, "listener_orphaned") ||
	       is(e, "stale_socket") || is(e, "listener_wedged");
}

/* The incident bookkeeping of one endpoint event; returns the incident it
 * belongs to (NULL: none). */
static struct incident *endpoint_event(struct endpoint_acc *ep, const struct jevent *e)
{
	struct incident *inc = ep->open >= 0 ? &ep->inc[ep->open] : NULL;
	const json_t *o = e->obj;
	const json_t *owner = json_object_get(o, "owner");
	struct errno_tally *t;
	json_int_t n;
	size_t i;
	json_t *c;
	bool names_owner;

	if (!json_is_object(owner))
		owner = json_object_get(o, "last_owner");
	names_owner = json_is_object(owner);
	if (names_owner) {
		json_decref(ep->owner);
		ep->owner = proc_copy(owner);
	}

	if (is_loss(e) || is(e, "connect_failing") || is(e, "connect_still_failing") ||
	    is(e, "connect_recovered")) {
		if (!inc && !(inc = incident_open(ep, e)))
			return NULL;
	}
	if (!inc)
		return NULL;
	if (is_loss(e)) {
		inc->lost = true;
		inc->stood_down = NULL; /* a new loss needs a new decision */
		if (is(e, "socket_unlinked")) {
			inc->removals++;
			if (!inc->via)
				inc->via = str_of(o, "via");
			if (!inc->actor)
				inc->actor = proc_copy(json_object_get(o, "actor"));
		}
	} else if (is(e, "connect_failing")) {
		t = tally_of(inc, str_of(o, "errno"));
		if (t->streak_open) /* a second start: the first one's end went unseen */
			t->counted += streak_estimate(t), t->estimated = true;
		t->streak_open = true;
		t->saw_window = false;
		t->windows = 0;
		client_add(inc, json_object_get(o, "client"), -1);
	} else if (is(e, "connect_still_failing")) {
		t = tally_of(inc, str_of(o, "errno"));
		if (!t->streak_open) /* joined late: what came before is unknown */
			t->estimated = true;
		t->streak_open = true;
		t->saw_window = true;
		if (int_of(o, "failures", &n) && n > 0)
			t->windows += (uint64_t)n;
	} else if (is(e, "connect_recovered")) {
		const char *how = str_of(o, "how");

		t = tally_of(inc, str_of(o, "errno"));
		if (int_of(o, "total_failures", &n) && n >= 0) {
			t->counted += (uint64_t)n;
		} else {
			t->counted += streak_estimate(t);
			t->estimated = true;
		}
		t->streak_open = false;
		t->saw_window = false;
		t->windows = 0;
		json_array_foreach(json_object_get(o, "clients"), i, c) {
			json_int_t f;

			client_add(inc, c, int_of(c, "failures", &f) ? f : -1);
		}
		if (how && strcmp(how, "connect") != 0 && !inc->heal_how)
			inc->heal_how = how;
		inc->recovered_how = how;
		inc->lost = false; /* a connect got through: the path works */
	} else if (is(e, "rebind_started")) {
		inc->heal_attempts++;
	} else if (is(e, "rebind_succeeded")) {
		inc->heal_how = str_of(o, "how");
		inc->heal_time = e->time;
		json_decref(inc->heal_ms);
		inc->heal_ms = json_incref(json_object_get(o, "heal_ms"));
		inc->lost = false;
	} else if (is(e, "rebind_failed") || is(e, "rebind_suppressed") ||
		   is(e, "guard_lost")) {
		problem_add(inc, e);
	} else if (is(e, "rebind_skipped")) {
		problem_add(inc, e);
		if (skip_is_deliberate(str_of(o, "reason")))
			inc->stood_down = str_of(o, "reason");
	}
	if (names_owner && (!inc->owner || inc->owner_inherited)) {
		json_decref(inc->owner);
		inc->owner = json_incref(ep->owner);
		inc->owner_inherited = false;
	}
	inc->events++;
	inc->last = e;
	incident_settle(ep, inc, e);
	return inc;
}

static json_t *timeline_entry(const struct jevent *e, const struct jevent *origin,
			      int incident)
{
	struct text t = { .n = 0 };
	json_t *x = json_object();

	describe(&t, e);
	json_object_set_new(x, "time", json_string(e->time));
	json_object_set_new(x, "offset_s", json_real(span_s(&origin->at, &e->at)));
	json_object_set_new(x, "event", json_string(e->name));
	json_object_set(x, "severity", json_object_get(e->obj, "severity") ?
			json_object_get(e->obj, "severity") : json_null());
	json_object_set_new(x, "incident", incident ? json_integer(incident) : json_null());
	json_object_set_new(x, "text", json_string(t.s));
	json_object_set_new(x, "line", json_integer((json_int_t)e->line));
	return x;
}

static struct run_acc *run_open_of(struct builder *b, const char *host)
{
	for (size_t i = b->n_runs; i-- > 0;)
		if (strcmp(b->runs[i].host, host) == 0)
			return b->runs[i].end ? NULL : &b->runs[i];
	return NULL;
}

static struct run_acc *run_new(struct builder *b, const char *host)
{
	if (!grow((void **)&b->runs, &b->cap_runs, b->n_runs, sizeof(*b->runs)))
		return NULL;
	b->runs[b->n_runs].host = host;
	return &b->runs[b->n_runs++];
}

/* Open incidents of host, for what happened to the agent while they were open. */
static void note_open_incidents(struct builder *b, const char *host, const char *fmt,
				const char *arg, bool interrupt)
{
	for (size_t i = 0; i < b->n_ep; i++) {
		struct endpoint_acc *ep = &b->ep[i];
		struct incident *inc;

		if (ep->open < 0 || strcmp(ep->host, host) != 0)
			continue;
		inc = &ep->inc[ep->open];
		incident_note(inc, fmt, arg);
		if (interrupt) {
			inc->status = "interrupted";
			ep->open = -1;
		}
	}
}

static void agent_event(struct builder *b, const struct jevent *e)
{
	struct run_acc *run = run_open_of(b, e->host);
	json_int_t n;

	if (is(e, "agent_started")) {
		if (run)
			run->end = "unclean";
		run = run_new(b, e->host);
		if (run)
			run->start = e;
	} else if (is(e, "agent_stopping")) {
		if (!run && (run = run_new(b, e->host)))
			run->start = NULL; /* the journal begins inside this run */
		if (run) {
			run->stop = e;
			run->end = "clean";
		}
		note_open_incidents(b, e->host, "the agent stopped at %s while this was open: "
				    "the journal cannot tell what happened until it restarted",
				    e->time, false);
	} else if (is(e, "events_lost")) {
		json_t *l = json_object();

		n = 0;
		int_of(e->obj, "count", &n);
		json_object_set_new(l, "time", json_string(e->time));
		json_object_set_new(l, "count", json_integer(n));
		json_object_set(l, "reason", json_object_get(e->obj, "reason") ?
				json_object_get(e->obj, "reason") : json_null());
		json_array_append_new(b->lost, l);
		b->lost_total += n;
		if (run)
			run->lost += n;
	}
	json_array_append_new(b->agent_timeline,
			      timeline_entry(e, &b->j->ev[0], 0));
}

/* A new boot of a host ends whatever was open there: its sockets are gone. */
static void check_boot(struct builder *b, const struct jevent *e)
{
	const char *prev;
	struct run_acc *run;

	if (!e->at.boot_id)
		return;
	prev = str_of(b->boot_of_host, e->host);
	if (prev && strcmp(prev, e->at.boot_id) != 0) {
		note_open_incidents(b, e->host, "the host rebooted (boot_id changed at %s) "
				    "while this was open", e->time, true);
		if ((run = run_open_of(b, e->host)))
			run->end = "unclean";
	}
	json_object_set_new(b->boot_of_host, e->host, json_string(e->at.boot_id));
}

/* ----- the model as JSON ----- */

static void set_str_or_null(json_t *o, const char *key, const char *time)
{
	json_object_set_new(o, key, time ? json_string(time) : json_null());
}

static int cmp_clients(const void *x, const void *y)
{
	json_t *const *a = x, *const *b = y;
	json_t *fa = json_object_get(*a, "failures"), *fb = json_object_get(*b, "failures");
	json_int_t va = json_is_integer(fa) ? json_integer_value(fa) : -1;
	json_int_t vb = json_is_integer(fb) ? json_integer_value(fb) : -1;

	return va > vb ? -1 : va < vb;
}

static json_t *top_clients(json_t *clients)
{
	size_t n = json_array_size(clients), i;
	json_t **v = calloc(n ? n : 1, sizeof(*v)), *out = json_array(); // NOLINT(bugprone-sizeof-expression): pointers

	if (!v)
		return out;
	for (i = 0; i < n; i++)
		v[i] = json_array_get(clients, i);
	/* qsort is not stable; ties keep first-seen order through the index */
	for (i = 1; i < n; i++) {
		json_t *x = v[i];
		size_t k = i;

		while (k > 0 && cmp_clients(&v[k - 1], &x) > 0) {
			v[k] = v[k - 1];
			k--;
		}
		v[k] = x;
	}
	for (i = 0; i < n && i < TOP_CLIENTS; i++)
		json_array_append(out, v[i]);
	free(v);
	return out;
}

static void summary_failures(struct text *t, const json_t *failures, size_t n_clients)
{
	json_t *by = json_object_get(failures, "by_errno");
	json_int_t total = json_integer_value(json_object_get(failures, "total"));
	const char *name;
	json_t *v;
	bool first = true;

	if (total == 0) {
		text_add(t, ", no failed connects seen");
		return;
	}
	text_add(t, ", %s%lld failed connect%s (",
		 json_is_true(json_object_get(failures, "exact")) ? "" : "at least ",
		 (long long)total, total == 1 ? "" : "s");
	json_object_foreach(by, name, v) {
		text_add(t, "%s%s %lld", first ? "" : ", ", name, (long long)json_integer_value(v));
		first = false;
	}
	text_add(t, ")");
	if (n_clients)
		text_add(t, " from %zu client%s", n_clients, n_clients == 1 ? "" : "s");
}

/* "outage 1.234 s, 57 failed connects (ENOENT 57) from 3 clients, healed by link in 20.4 ms" */
static void incident_summary(struct text *t, const struct incident *inc, const json_t *x,
			     const char *journal_end)
{
	const char *status = inc->status ? inc->status : "open";
	double outage = json_real_value(json_object_get(x, "outage_s"));
	size_t i;
	json_t *p;
	unsigned failed = 0, skipped = 0, suppressed = 0, guards = 0;

	if (strcmp(status, "open") == 0)
		text_add(t, "still open at %s (%.3f s so far)", journal_end, outage);
	else if (strcmp(status, "interrupted") == 0)
		text_add(t, "cut short by a reboot after at least %.3f s", outage);
	else
		text_add(t, "outage %s%.3f s", inc->start_estimated ? "about " : "", outage);
	if (inc->removals > 1)
		text_add(t, ", path removed %u times", inc->removals);
	summary_failures(t, json_object_get(x, "connect_failures"),
			 (size_t)json_integer_value(json_object_get(x, "clients_total")));
	if (inc->heal_how) {
		text_add(t, ", healed by %s", inc->heal_how);
		if (json_is_number(inc->heal_ms))
			text_add(t, " in %.1f ms", json_number_value(inc->heal_ms));
	} else if (strcmp(status, "recovered") == 0) {
		text_add(t, ", recovered without a heal (connects succeeded again)");
	} else if (strcmp(status, "stood_down") == 0) {
		const char *why = skip_reason_text(inc->stood_down);

		text_add(t, ", not healed on purpose: %s", why ? why : inc->stood_down);
	}
	json_array_foreach(inc->problems, i, p) {
		const char *ev = str_of(p, "event");

		failed += strcmp(ev, "rebind_failed") == 0;
		skipped += strcmp(ev, "rebind_skipped") == 0;
		suppressed += strcmp(ev, "rebind_suppressed") == 0;
		guards += strcmp(ev, "guard_lost") == 0;
	}
	if (failed)
		text_add(t, "; %u heal%s failed", failed, failed == 1 ? "" : "s");
	if (skipped && strcmp(status, "stood_down") != 0)
		text_add(t, "; %u heal%s skipped", skipped, skipped == 1 ? "" : "s");
	if (suppressed)
		text_add(t, "; the flap guard opened the circuit");
	if (guards)
		text_add(t, "; guard link lost");
}

static json_t *incident_json(const struct incident *inc, const struct jevent *journal_end)
{
	json_t *x = json_object(), *failures = json_object(), *by = json_object();
	json_t *heal = json_null();
	const struct timepoint *until;
	struct text sum = { .n = 0 };
	json_int_t total = 0;
	bool exact = true;
	const char *status = inc->status ? inc->status : "open";

	for (size_t i = 0; i < inc->n_err; i++) {
		const struct errno_tally *t = &inc->err[i];
		uint64_t n = t->counted + (t->streak_open ? streak_estimate(t) : 0);

		json_object_set_new(by, t->name, json_integer((json_int_t)n));
		total += (json_int_t)n;
		if (t->estimated || t->streak_open)
			exact = false;
	}
	json_object_set_new(failures, "total", json_integer(total));
	json_object_set_new(failures, "by_errno", by);
	json_object_set_new(failures, "exact", json_boolean(exact));

	if (inc->end)
		until = &inc->end->at;
	else if (strcmp(status, "interrupted") == 0)
		until = &inc->last->at;
	else
		until = &journal_end->at;
	if (inc->heal_how) {
		heal = json_object();
		json_object_set_new(heal, "how", json_string(inc->heal_how));
		json_object_set(heal, "heal_ms", inc->heal_ms ? inc->heal_ms : json_null());
		set_str_or_null(heal, "time", inc->heal_time);
	}

	json_object_set_new(x, "id", json_integer(inc->id));
	json_object_set_new(x, "status", json_string(status));
	json_object_set_new(x, "opened_by", json_string(inc->opened_by));
	json_object_set_new(x, "start", json_string(inc->start_time));
	json_object_set_new(x, "start_estimated", json_boolean(inc->start_estimated));
	set_str_or_null(x, "end", inc->end ? inc->end->time : NULL);
	set_str_or_null(x, "closed_by", inc->end ? inc->end->name : NULL);
	set_str_or_null(x, "still_open_at", inc->status ? NULL : journal_end->time);
	json_object_set_new(x, "outage_s", json_real(span_s(&inc->start, until)));
	json_object_set_new(x, "outage_clock", json_string(same_clock(&inc->start, until) ?
							   "mono_ns" : "time"));
	set_str_or_null(x, "via", inc->via);
	json_object_set_new(x, "removals", json_integer(inc->removals));
	json_object_set(x, "actor", inc->actor ? inc->actor : json_null());
	json_object_set(x, "owner", inc->owner ? inc->owner : json_null());
	json_object_set_new(x, "connect_failures", failures);
	json_object_set_new(x, "clients_total",
			    json_integer((json_int_t)json_array_size(inc->clients)));
	json_object_set_new(x, "clients", top_clients(inc->clients));
	json_object_set_new(x, "heal", heal);
	json_object_set_new(x, "heal_attempts", json_integer(inc->heal_attempts));
	set_str_or_null(x, "recovered_how", inc->recovered_how);
	set_str_or_null(x, "stood_down_reason", inc->stood_down);
	json_object_set(x, "problems", inc->problems);
	json_object_set(x, "notes", inc->notes);
	json_object_set_new(x, "events", json_integer((json_int_t)inc->events));
	incident_summary(&sum, inc, x, journal_end->time);
	json_object_set_new(x, "summary", json_string(sum.s));
	return x;
}

static json_t *endpoint_json(const struct endpoint_acc *ep, const struct jevent *journal_end)
{
	json_t *x = json_object(), *incs = json_array();
	json_int_t open = 0;

	for (size_t i = 0; i < ep->n_inc; i++) {
		open += ep->inc[i].status == NULL;
		json_array_append_new(incs, incident_json(&ep->inc[i], journal_end));
	}
	json_object_set_new(x, "path", json_string(ep->path));
	if (ep->path_hex)
		json_object_set_new(x, "path_hex", json_string(ep->path_hex));
	json_object_set_new(x, "host", json_string(ep->host));
	json_object_set_new(x, "first_time", json_string(ep->first->time));
	json_object_set_new(x, "last_time", json_string(ep->last->time));
	json_object_set_new(x, "events", json_integer((json_int_t)json_array_size(ep->timeline)));
	json_object_set_new(x, "incidents_total", json_integer((json_int_t)ep->n_inc));
	json_object_set_new(x, "incidents_open", json_integer(open));
	json_object_set(x, "timeline", ep->timeline);
	json_object_set_new(x, "incidents", incs);
	return x;
}

static json_t *run_json(const struct run_acc *r)
{
	json_t *x = json_object();
	const json_t *s = r->start ? r->start->obj : NULL;
	static const char *const keys[] = { "pid", "version", "mode", "mode_reason", "kernel",
					    "watched" };

	json_object_set_new(x, "host", json_string(r->host));
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		json_t *v = json_object_get(s, keys[i]);

		/* a run whose start the journal missed still knows its mode */
		if (!v && r->stop && strcmp(keys[i], "mode") == 0)
			v = json_object_get(r->stop->obj, "mode");
		json_object_set(x, keys[i], v ? v : json_null());
	}
	set_str_or_null(x, "started", r->start ? r->start->time : NULL);
	set_str_or_null(x, "stopped", r->stop ? r->stop->time : NULL);
	json_object_set_new(x, "duration_s", r->start && r->stop ?
			    json_real(span_s(&r->start->at, &r->stop->at)) : json_null());
	json_object_set_new(x, "end", json_string(r->end ? r->end : "running"));
	json_object_set(x, "records", r->stop && json_object_get(r->stop->obj, "records") ?
			json_object_get(r->stop->obj, "records") : json_null());
	json_object_set_new(x, "events_lost", json_integer(r->lost));
	return x;
}

static void builder_free(struct builder *b)
{
	for (size_t i = 0; i < b->n_ep; i++) {
		struct endpoint_acc *ep = &b->ep[i];

		for (size_t k = 0; k < ep->n_inc; k++) {
			struct incident *inc = &ep->inc[k];

			json_decref(inc->actor);
			json_decref(inc->owner);
			json_decref(inc->clients);
			json_decref(inc->heal_ms);
			json_decref(inc->problems);
			json_decref(inc->notes);
		}
		free(ep->inc);
		json_decref(ep->timeline);
		json_decref(ep->owner);
	}
	free(b->ep);
	free(b->runs);
	json_decref(b->ep_index);
	json_decref(b->agent_timeline);
	json_decref(b->lost);
	json_decref(b->boot_of_host);
	json_decref(b->hosts_seen);
}

json_t *report_build(struct report_journal *j, const char *source)
{
	struct builder b = { .j = j };
	json_t *model = json_object(), *eps = json_array(), *agent = json_object();
	json_t *runs = json_array(), *skipped = json_array(), *hosts = json_array();
	json_int_t incidents = 0, open = 0;
	const struct jevent *last = NULL;

	b.ep_index = json_object();
	b.agent_timeline = json_array();
	b.lost = json_array();
	b.boot_of_host = json_object();
	b.hosts_seen = json_object();
	journal_sort(j);
	for (size_t i = 0; i < j->n; i++) {
		const struct jevent *e = &j->ev[i];
		struct endpoint_acc *ep;
		struct incident *inc;
		int id;

		last = e;
		if (!json_object_get(b.hosts_seen, e->host)) {
			json_object_set_new(b.hosts_seen, e->host, json_true());
			json_array_append_new(hosts, json_string(e->host));
		}
		check_boot(&b, e);
		if (!e->path) {
			agent_event(&b, e);
			continue;
		}
		if (!(ep = endpoint_of(&b, e))) {
			b.oom = true;
			break;
		}
		ep->last = e;
		inc = endpoint_event(ep, e);
		id = inc ? inc->id : 0;
		json_array_append_new(ep->timeline, timeline_entry(e, ep->first, id));
	}

	for (size_t i = 0; i < b.n_ep; i++) {
		json_t *x = endpoint_json(&b.ep[i], last);

		incidents += json_integer_value(json_object_get(x, "incidents_total"));
		open += json_integer_value(json_object_get(x, "incidents_open"));
		json_array_append_new(eps, x);
	}
	for (size_t i = 0; i < b.n_runs; i++)
		json_array_append_new(runs, run_json(&b.runs[i]));
	json_object_set_new(agent, "runs", runs);
	json_object_set_new(agent, "events_lost_total", json_integer(b.lost_total));
	json_object_set(agent, "events_lost", b.lost);
	json_object_set(agent, "timeline", b.agent_timeline);
	for (size_t i = 0; i < j->n_listed; i++) {
		json_t *s = json_object();

		json_object_set_new(s, "line", json_integer((json_int_t)j->listed[i].line));
		json_object_set_new(s, "reason", json_string(j->listed[i].why));
		json_array_append_new(skipped, s);
	}

	json_object_set_new(model, "report_version", json_integer(SW_REPORT_VERSION));
	json_object_set_new(model, "source", json_string(source ? source : "-"));
	json_object_set_new(model, "lines", json_integer((json_int_t)j->lines));
	json_object_set_new(model, "events", json_integer((json_int_t)j->n));
	json_object_set_new(model, "skipped_lines", json_integer((json_int_t)j->skipped));
	json_object_set_new(model, "skipped", skipped);
	set_str_or_null(model, "first_time", j->n ? j->ev[0].time : NULL);
	set_str_or_null(model, "last_time", last ? last->time : NULL);
	json_object_set_new(model, "hosts", hosts);
	json_object_set_new(model, "endpoints_total", json_integer((json_int_t)b.n_ep));
	json_object_set_new(model, "incidents_total", json_integer(incidents));
	json_object_set_new(model, "incidents_open", json_integer(open));
	json_object_set_new(model, "agent", agent);
	json_object_set_new(model, "endpoints", eps);
	builder_free(&b);
	if (b.oom || !model) {
		json_decref(model);
		return NULL;
	}
	return model;
}

/* ----- the model for a person ----- */

static void print_timeline(FILE *out, const json_t *timeline, bool with_incident)
{
	size_t i;
	json_t *x;

	json_array_foreach(timeline, i, x) {
		json_t *inc = json_object_get(x, "incident");

		fprintf(out, "  %+9.3fs  %s  ", json_real_value(json_object_get(x, "offset_s")),
			str_of(x, "time"));
		if (with_incident) {
			if (json_is_integer(inc))
				fprintf(out, "#%-2lld ", (long long)json_integer_value(inc));
			else
				fprintf(out, "    ");
		}
		fprintf(out, "%s\n", str_of(x, "text"));
	}
}

static void print_agent(FILE *out, const json_t *agent)
{
	json_t *runs = json_object_get(agent, "runs"), *r;
	size_t i;

	if (!json_array_size(json_object_get(agent, "timeline")))
		return;
	fprintf(out, "agent\n");
	print_timeline(out, json_object_get(agent, "timeline"), false);
	json_array_foreach(runs, i, r) {
		struct text t = { .n = 0 };
		const char *end = str_of(r, "end");
		json_t *v;

		text_add(&t, "run %zu:", i + 1);
		if (json_is_integer(v = json_object_get(r, "pid")))
			text_add(&t, " pid %lld,", (long long)json_integer_value(v));
		if (str_of(r, "mode"))
			text_add(&t, " %s mode,", str_of(r, "mode"));
		text_add(&t, " started %s", str_of(r, "started") ? str_of(r, "started") :
			 "before the journal");
		if (strcmp(end, "clean") == 0)
			text_add(&t, ", stopped %s", str_of(r, "stopped"));
		else if (strcmp(end, "unclean") == 0)
			text_add(&t, ", ended without agent_stopping (killed, crashed or rebooted)");
		else
			text_add(&t, ", still running at the end of the journal");
		if (json_is_number(v = json_object_get(r, "duration_s")))
			text_add(&t, " after %.3f s", json_number_value(v));
		if (json_is_integer(v = json_object_get(r, "records")))
			text_add(&t, ", %lld kernel records", (long long)json_integer_value(v));
		text_add(&t, ", %lld events lost",
			 (long long)json_integer_value(json_object_get(r, "events_lost")));
		fprintf(out, "  %s\n", t.s);
	}
	fprintf(out, "\n");
}

static void print_incident_details(FILE *out, const json_t *x)
{
	struct text t = { .n = 0 };
	json_t *v, *c;
	size_t i;

	if (json_is_object(v = json_object_get(x, "actor"))) {
		text_add(&t, "removed by ");
		text_proc(&t, v);
		if (str_of(x, "via"))
			text_add(&t, " via %s", str_of(x, "via"));
	} else if (str_of(x, "via")) {
		text_add(&t, "lost (found via %s)", str_of(x, "via"));
	} else {
		text_add(&t, "opened by %s", str_of(x, "opened_by"));
	}
	if (json_is_object(v = json_object_get(x, "owner"))) {
		text_add(&t, "; server ");
		text_proc(&t, v);
	}
	json_array_foreach(json_object_get(x, "clients"), i, c) {
		json_t *f = json_object_get(c, "failures");

		text_add(&t, i ? ", " : "; top clients: ");
		text_proc(&t, c);
		if (json_is_integer(f))
			text_add(&t, " %lld", (long long)json_integer_value(f));
	}
	fprintf(out, "      %s\n", t.s);
	json_array_foreach(json_object_get(x, "problems"), i, v)
		fprintf(out, "      %s at %s: %s\n", str_of(v, "event"), str_of(v, "time"),
			str_of(v, "text"));
	json_array_foreach(json_object_get(x, "notes"), i, v)
		fprintf(out, "      note: %s\n", json_string_value(v));
}

void report_print(FILE *out, const json_t *model)
{
	json_t *eps = json_object_get(model, "endpoints"), *ep, *hosts, *v;
	json_int_t skipped = json_integer_value(json_object_get(model, "skipped_lines"));
	json_int_t n_inc = json_integer_value(json_object_get(model, "incidents_total"));
	json_int_t n_open = json_integer_value(json_object_get(model, "incidents_open"));
	size_t i, k;
	bool multi_host;

	if (json_integer_value(json_object_get(model, "events")) == 0) {
		fprintf(out, "no events\n");
		return;
	}
	hosts = json_object_get(model, "hosts");
	multi_host = json_array_size(hosts) > 1;
	fprintf(out, "%s: %lld events from %s to %s", str_of(model, "source"),
		(long long)json_integer_value(json_object_get(model, "events")),
		str_of(model, "first_time"), str_of(model, "last_time"));
	json_array_foreach(hosts, i, v)
		fprintf(out, "%s%s", i ? ", " : multi_host ? ", hosts " : ", host ",
			json_string_value(v));
	if (skipped)
		fprintf(out, " (%lld line%s skipped)", (long long)skipped, skipped == 1 ? "" : "s");
	fprintf(out, "\n%zu endpoint%s, %lld incident%s, %lld still open\n\n",
		json_array_size(eps), json_array_size(eps) == 1 ? "" : "s", (long long)n_inc,
		n_inc == 1 ? "" : "s", (long long)n_open);
	print_agent(out, json_object_get(model, "agent"));
	json_array_foreach(eps, i, ep) {
		json_t *incs = json_object_get(ep, "incidents"), *x;
		json_int_t total = json_integer_value(json_object_get(ep, "incidents_total"));

		if (multi_host)
			fprintf(out, "%s: ", str_of(ep, "host"));
		fprintf(out, "%s: %lld incident%s", str_of(ep, "path"), (long long)total,
			total == 1 ? "" : "s");
		json_array_foreach(incs, k, x)
			fprintf(out, "%s%s", k ? ", " : " (", str_of(x, "status"));
		fprintf(out, "%s, %lld events from %s\n", total ? ")" : "",
			(long long)json_integer_value(json_object_get(ep, "events")),
			str_of(ep, "first_time"));
		print_timeline(out, json_object_get(ep, "timeline"), true);
		json_array_foreach(incs, k, x) {
			fprintf(out, "  incident #%lld %s: %s\n",
				(long long)json_integer_value(json_object_get(x, "id")),
				str_of(x, "status"), str_of(x, "summary"));
			print_incident_details(out, x);
		}
		fprintf(out, "\n");
	}
}

/* ----- the command ----- */

static const char report_usage[] =
	"Usage: sockwarden report [FILE] [--json]\n"
	"A postmortem timeline per endpoint from an event journal (the JSON Lines\n"
	"of `sockwarden run --events FILE`). FILE omitted or - reads stdin.\n"
	"\n"
	"  --json      the report as one JSON object (docs/report.md)\n"
	"  -h, --help  show this help and exit\n"
	"\n"
	"Lines that are not events are skipped and named on stderr.\n"
	"Exit status: 0 success, 2 usage error, 3 FILE cannot be read.\n";

static int report_usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "sockwarden report: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nTry 'sockwarden report --help' for more information.\n");
	return SW_EXIT_USAGE;
}

/* Reads f into j, naming each skipped line on stderr; false on a read error. */
static bool read_journal(FILE *f, struct report_journal *j)
{
	char *line = NULL;
	size_t cap = 0, lineno = 0, shown = 0;
	ssize_t len;

	errno = 0;
	while ((len = getline(&line, &cap, f)) >= 0) {
		const char *why;

		lineno++;
		if (len > 0 && line[len - 1] == '\n')
			len--;
		why = report_journal_add_line(j, line, (size_t)len, lineno);
		if (why && shown++ < SKIPPED_SHOWN_MAX)
			fprintf(stderr, "line %zu: %s, skipped\n", lineno, why);
	}
	free(line);
	return !ferror(f);
}

int report_command(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *file = "-";
	struct report_journal *j = NULL;
	json_t *model = NULL;
	FILE *f = NULL;
	bool json = false;
	int c, rc = SW_EXIT_OK;

	optind = 1;
	opterr = 0; /* our own messages, which name the command */
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'h':
			fputs(report_usage, stdout);
			return SW_EXIT_OK;
		default:
			return report_usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		file = argv[optind++];
	if (optind < argc)
		return report_usage_error("unexpected argument '%s': report reads one FILE",
					  argv[optind]);

	if (strcmp(file, "-") == 0) {
		f = stdin;
		if (isatty(STDIN_FILENO))
			fprintf(stderr, "sockwarden report: reading events from stdin "
				"(end with Ctrl-D)\n");
	} else if (!(f = fopen(file, "re"))) {
		fprintf(stderr, "sockwarden report: cannot open %s: %s\n", file, strerror(errno));
		return SW_EXIT_ENV;
	}
	j = report_journal_new();
	if (!j) {
		rc = SW_EXIT_ENV;
		goto out;
	}
	if (!read_journal(f, j)) {
		fprintf(stderr, "sockwarden report: cannot read %s: %s\n",
			strcmp(file, "-") ? file : "stdin", strerror(errno ? errno : EIO));
		rc = SW_EXIT_ENV;
		goto out;
	}
	if (j->skipped > SKIPPED_SHOWN_MAX)
		fprintf(stderr, "sockwarden report: skipped %zu of %zu lines (not events; "
			"the first %d are named above)\n", j->skipped, j->lines,
			SKIPPED_SHOWN_MAX);
	else if (j->skipped)
		fprintf(stderr, "sockwarden report: skipped %zu of %zu line%s (not events)\n",
			j->skipped, j->lines, j->lines == 1 ? "" : "s");
	model = report_build(j, file);
	if (!model) {
		fprintf(stderr, "sockwarden report: out of memory\n");
		rc = SW_EXIT_ENV;
		goto out;
	}
	if (json) {
		json_dumpf(model, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER |
			   JSON_REAL_PRECISION(15));
		fputc('\n', stdout);
	} else {
		report_print(stdout, model);
	}
	if (fflush(stdout) != 0) {
		fprintf(stderr, "sockwarden report: cannot write the report: %s\n",
			strerror(errno));
		rc = SW_EXIT_ENV;
	}
out:
	json_decref(model);
	report_journal_free(j);
	if (f && f != stdin)
		fclose(f);
	return rc;
}
