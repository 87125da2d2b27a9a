/*
 * The journal of `sockwarden report`, the first pass: each JSON Lines line is
 * parsed to know whether it is an event (else it is counted and listed as
 * skipped) and where it sorts, then let go; the journal keeps an index entry
 * per event (where its line is, its order key), 32 bytes, never the parsed
 * line. The lines stay where they are (a regular file) or go to a spool (an
 * unlinked temporary file: stdin, a pipe, lines given one by one), from which
 * journal_event() reads each again by offset. The index is sorted by boot and
 * mono_ns, with the wall-clock offsets that order events across boots.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "report_internal.h"
#include "shared/clock.h"

/* ----- the journal ----- */

struct report_journal *report_journal_new(void)
{
	struct report_journal *j = calloc(1, sizeof(*j));

	if (j && !(j->boot_offset = json_object())) {
		free(j);
		return NULL;
	}
	return j;
}

void report_journal_free(struct report_journal *j)
{
	if (!j)
		return;
	if (j->own_store && j->store)
		fclose(j->store);
	json_decref(j->boot_offset);
	free(j->ix);
	free(j->buf);
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

/*
 * Where e sorts: within a boot mono_ns is the truth (the wall clock may step);
 * a boot is placed on the wall-clock axis by the offset between the two clocks
 * in its first event in the journal. An event without mono_ns or boot_id is
 * placed by its wall time.
 */
static int64_t order_of(struct report_journal *j, const struct jevent *e)
{
	json_t *off;

	if (!e->at.boot_id || !e->at.has_mono)
		return e->at.real_ns;
	off = json_object_get(j->boot_offset, e->at.boot_id);
	if (!off) {
		off = json_integer(e->at.real_ns - (int64_t)e->at.mono_ns);
		if (json_object_set_new(j->boot_offset, e->at.boot_id, off))
			return e->at.real_ns; /* out of memory: wall time will do */
	}
	return (int64_t)e->at.mono_ns + json_integer_value(off);
}

/* Why a non-blank line cannot be an event, or NULL when e is filled in
 * (e->obj is then the caller's to json_decref). */
static const char *parse_line(const char *line, size_t len, size_t lineno, struct jevent *e)
{
	json_t *obj = json_loadb(line, len, 0, NULL);
	const char *why;

	*e = (struct jevent){ .line = lineno };
	why = obj ? event_of(obj, e) : "not JSON";
	if (why)
		json_decref(obj);
	return why;
}

static bool is_blank(const char *line, size_t len)
{
	size_t i;

	for (i = 0; i < len && isspace((unsigned char)line[i]); i++)
		;
	return i == len;
}

/* A line at off of the store: indexed when it is an event, else counted
 * and listed. Returns the skip reason, NULL when indexed or blank. */
static const char *journal_take(struct report_journal *j, const char *line, size_t len,
				size_t lineno, uint64_t off, bool *indexed)
{
	struct jevent e;
	const char *why;
	int64_t order = 0;

	*indexed = false;
	if (lineno > j->lines)
		j->lines = lineno;
	if (is_blank(line, len))
		return NULL; /* a blank line says nothing and breaks nothing */
	if (len > UINT32_MAX)
		why = "longer than 4 GiB";
	else if (lineno > UINT32_MAX)
		why = "past line 4294967295";
	else
		why = parse_line(line, len, lineno, &e);
	if (!why) {
		order = order_of(j, &e);
		json_decref(e.obj); /* the second pass parses it again */
	}
	if (!why && j->n == j->cap) {
		size_t cap = j->cap ? j->cap * 2 : 1024;
		struct jindex *v = realloc(j->ix, cap * sizeof(*v));

		if (v) {
			j->ix = v;
			j->cap = cap;
		} else {
			why = "out of memory";
		}
	}
	if (why) {
		journal_skip(j, lineno, why);
		return why;
	}
	j->ix[j->n++] = (struct jindex){ .order_ns = order, .off = off, .len = (uint32_t)len,
					 .line = (uint32_t)lineno };
	*indexed = true;
	return NULL;
}

/*
 * A spool: an unlinked temporary file in $TMPDIR (else /tmp), gone when it is
 * closed or the process ends. tmpfile() would ignore TMPDIR, and a journal
 * piped in may be bigger than a small /tmp.
 */
FILE *spool_open(void)
{
	const char *dir = getenv("TMPDIR");
	char *name = NULL;
	FILE *f;
	int fd;

	if (!dir || !*dir)
		dir = "/tmp";
	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0 && asprintf(&name, "%s/sockwarden-report.XXXXXX", dir) >= 0) {
		fd = mkostemp(name, O_CLOEXEC);
		if (fd >= 0)
			unlink(name);
		free(name);
	}
	if (fd < 0)
		return NULL;
	if (!(f = fdopen(fd, "w+")))
		close(fd);
	return f;
}

const char *report_journal_add_line(struct report_journal *j, const char *line,
				    size_t len, size_t lineno)
{
	const char *why;
	bool indexed;

	why = journal_take(j, line, len, lineno, j->store_end, &indexed);
	if (!indexed)
		return why;
	if (!j->store && !j->store_errno) { /* at the first event */
		errno = 0;
		j->store = spool_open();
		j->own_store = j->store != NULL;
		if (!j->store)
			j->store_errno = errno ? errno : EIO;
	}
	/* only events are spooled: the second pass reads nothing else */
	if (!j->store || fwrite(line, 1, len, j->store) != len || fputc('\n', j->store) == EOF) {
		if (!j->store_errno)
			j->store_errno = errno ? errno : EIO;
		j->n--;
		journal_skip(j, lineno, "not stored (cannot write the temporary file)");
		return "not stored (cannot write the temporary file)";
	}
	j->store_end += (uint64_t)len + 1;
	return NULL;
}

/*
 * A regular file is its own store: its lines are indexed where they are, and
 * the second pass reads them there (lines appended meanwhile are not read). A
 * pipe, a terminal or a socket is read once: its event lines are spooled.
 */
bool report_journal_read(struct report_journal *j, FILE *f)
{
	struct stat st;
	char *line = NULL;
	size_t cap = 0, lineno = 0;
	ssize_t len;
	off_t pos = -1;
	bool direct, indexed;

	if (j->store || j->n)
		return errno = EINVAL, false; /* one source per journal */
	direct = fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && (pos = ftello(f)) >= 0;
	if (direct)
		j->store = f;
	errno = 0;
	while ((len = getline(&line, &cap, f)) >= 0) {
		size_t n = (size_t)len;

		lineno++;
		if (n > 0 && line[n - 1] == '\n')
			n--;
		if (direct) {
			journal_take(j, line, n, lineno, (uint64_t)pos, &indexed);
			pos += len;
		} else {
			report_journal_add_line(j, line, n, lineno);
			if (j->store_errno)
				break;
		}
	}
	free(line);
	if (j->store_errno)
		return errno = j->store_errno, false;
	if (ferror(f))
		return false;
	if (j->own_store && fflush(j->store) != 0)
		return false;
	return true;
}

int report_journal_errno(const struct report_journal *j)
{
	return j->store_errno;
}

size_t report_journal_events(const struct report_journal *j)
{
	return j->n;
}

static int cmp_order(const struct jindex *a, const struct jindex *b)
{
	if (a->order_ns != b->order_ns)
		return a->order_ns < b->order_ns ? -1 : 1;
	return a->line < b->line ? -1 : a->line > b->line;
}

static int cmp_group(const struct jindex *a, const struct jindex *b)
{
	if (a->ep != b->ep)
		return a->ep < b->ep ? -1 : 1;
	return cmp_order(a, b);
}

static void sift_down(struct jindex *v, size_t root, size_t n,
		      int (*cmp)(const struct jindex *, const struct jindex *))
{
	for (size_t child; (child = 2 * root + 1) < n; root = child) {
		struct jindex t;

		if (child + 1 < n && cmp(&v[child], &v[child + 1]) < 0)
			child++;
		if (cmp(&v[root], &v[child]) >= 0)
			return;
		t = v[root];
		v[root] = v[child];
		v[child] = t;
	}
}

/* A heapsort: in place, where glibc's qsort() takes a copy of the array (as
 * big as the index itself) for its merge sort. Both orders are total (the
 * line number breaks every tie), so stability does not matter. */
static void index_sort(struct jindex *v, size_t n,
		       int (*cmp)(const struct jindex *, const struct jindex *))
{
	for (size_t i = n / 2; i-- > 0;)
		sift_down(v, i, n, cmp);
	for (size_t end = n; end-- > 1;) {
		struct jindex t = v[0];

		v[0] = v[end];
		v[end] = t;
		sift_down(v, 0, end, cmp);
	}
}

/* Sorts the index by (boot, mono_ns) (order_of()); equal instants keep the
 * journal's order. */
void journal_sort(struct report_journal *j)
{
	index_sort(j->ix, j->n, cmp_order);
}

/* Once the second pass has said whose each event is: the agent's events
 * first, then each endpoint's, each in order, so a timeline is a range. */
void journal_group(struct report_journal *j)
{
	index_sort(j->ix, j->n, cmp_group);
}

/*
 * Reads x's line again and parses it into e; false (errno set) when it cannot
 * be read or is no longer the event it was (the file was truncated or
 * rewritten between the passes). e->obj is the caller's to json_decref.
 */
bool journal_event(struct report_journal *j, const struct jindex *x, struct jevent *e)
{
	if ((j->own_store && fflush(j->store) != 0) ||
	    !store_read(j->store, x->off, x->len, &j->buf, &j->buf_cap))
		return false;
	if (parse_line(j->buf, x->len, x->line, e))
		return errno = ESTALE, false;
	return true;
}

/* len bytes at off of f's file (what was written through f is flushed
 * first by the caller) into *buf, NUL-terminated; false (errno; ESTALE: the
 * file is shorter now) when they cannot be read. */
bool store_read(FILE *f, uint64_t off, size_t len, char **buf, size_t *cap)
{
	size_t got = 0;

	if (len + 1 > *cap) {
		size_t ncap = len + 1 < 4096 ? 4096 : len + 1;
		char *nb = realloc(*buf, ncap);

		if (!nb)
			return errno = ENOMEM, false;
		*buf = nb;
		*cap = ncap;
	}
	while (got < len) {
		ssize_t k = pread(fileno(f), *buf + got, len - got, (off_t)(off + got));

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return errno = k < 0 ? errno : ESTALE, false;
		got += (size_t)k;
	}
	(*buf)[len] = 0;
	return true;
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
