/*
 * The journal of `sockwarden report`: each JSON Lines line parsed into an
 * event (or counted and listed as skipped), then the events sorted by boot and
 * mono_ns, with the wall-clock offsets that order events across boots.
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

/* ----- the journal ----- */

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

const char *str_of(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

bool int_of(const json_t *o, const char *key, json_int_t *v)
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
	if (!int_of(obj, "mntns", &e->mntns) || e->mntns < 0)
		e->mntns = 0;
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
void journal_sort(struct report_journal *j)
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
double span_s(const struct timepoint *a, const struct timepoint *b)
{
	if (a->has_mono && b->has_mono && a->boot_id && b->boot_id &&
	    strcmp(a->boot_id, b->boot_id) == 0)
		return (double)((int64_t)b->mono_ns - (int64_t)a->mono_ns) / 1e9;
	return (double)(b->real_ns - a->real_ns) / 1e9;
}

bool same_clock(const struct timepoint *a, const struct timepoint *b)
{
	return a->has_mono && b->has_mono && a->boot_id && b->boot_id &&
	       strcmp(a->boot_id, b->boot_id) == 0;
}
