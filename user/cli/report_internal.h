/*
 * What the files of `sockwarden report` share; private to them. Data flows
 * one way: report_journal.c indexes the lines (the first pass: an offset and
 * an order key per event, no parsed line kept), report_build.c re-reads them
 * in order and folds each into endpoints and incidents (the second pass: one
 * parsed line alive at a time), report_json.c turns those into the model,
 * report.c prints the model and runs the command; report_text.c tells events
 * in words for the last two. The model is made and written a piece at a time
 * (an endpoint's head, each timeline entry re-read from the journal, each
 * incident), so memory follows the endpoints and incidents, not the events.
 */
#ifndef SW_REPORT_INTERNAL_H
#define SW_REPORT_INTERNAL_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "report.h"

/* Skipped lines listed in the model; all are counted. A wrong file (a log, a
 * binary) has millions, and one screenful says enough. */
#define SKIPPED_LISTED_MAX 100
#define SKIPPED_SHOWN_MAX 20
/* connect_recovered carries the top 5 clients; an incident keeps as many. */
#define TOP_CLIENTS 5
/* ENOENT, ECONNREFUSED, EAGAIN and whatever a later schema adds */
#define ERRNOS_MAX 8

/* One instant as an event gives it: mono_ns orders and measures within a boot
 * (immune to clock steps), the wall time across boots. */
struct timepoint {
	const char *boot_id; /* NULL when unknown */
	bool has_mono;
	uint64_t mono_ns;
	int64_t real_ns;
};

/*
 * One event while it is being folded in or told: the parsed line and what it
 * says. The strings point into obj, which lives only as long as this pass over
 * the event does; whatever a builder keeps is copied out (struct evmark,
 * intern()).
 */
struct jevent {
	json_t *obj; /* the parsed line; the strings below point into it */
	size_t line;
	const char *name;
	const char *path; /* NULL: an agent-wide event */
	const char *path_hex;
	const char *host; /* "" when absent */
	json_int_t mntns; /* the endpoint's mount namespace; 0 when absent */
	const char *time; /* as written */
	struct timepoint at;
};

/*
 * What the journal keeps of an event between the passes: where its line is
 * and where it sorts, never the parsed line (32 bytes; a journal of 200,000
 * events holds 6 MB of these). The second pass fills in which endpoint and
 * incident the event belongs to, and the output re-reads the line by offset.
 */
struct jindex {
	int64_t order_ns; /* boot-corrected: see journal_sort() */
	uint64_t off;     /* of the line in the journal's store */
	uint32_t len;     /* without its newline */
	uint32_t line;
	uint32_t ep;  /* 0: the agent section, else 1 + its index in builder.ep */
	uint32_t inc; /* its incident's id, 0: none */
};

struct skipped_line {
	size_t line;
	const char *why;
};

/*
 * The lines of a journal live in a store the report re-reads: the FILE itself
 * when it is a regular file, else (stdin, a pipe, lines given one by one) a
 * spool, an unlinked temporary file holding the event lines only.
 */
struct report_journal {
	FILE *store;
	bool own_store;     /* the spool: closed (and so gone) with the journal */
	uint64_t store_end; /* the spool's length */
	int store_errno;    /* why the spool could not be written, 0: it could */
	struct jindex *ix;
	size_t n, cap;
	size_t lines; /* the highest line number seen */
	size_t skipped;
	struct skipped_line listed[SKIPPED_LISTED_MAX];
	size_t n_listed;
	json_t *boot_offset; /* boot_id -> real_ns - mono_ns of its first event */
	char *buf;           /* the line being re-read */
	size_t buf_cap;
};

struct text {
	char s[2048];
	size_t n;
};

struct errno_tally {
	char name[24];
	uint64_t counted;   /* ended streaks: total_failures, or their estimate */
	uint64_t windows;   /* the open streak: sum of connect_still_failing failures */
	bool streak_open;
	bool saw_window;    /* a connect_still_failing came for the open streak */
	bool estimated;     /* some count is a lower bound */
};

/* What a builder keeps of an event it refers back to (an endpoint's first
 * and last, the event that closed an incident): its name and instant, its
 * time string owned, boot_id interned. */
struct evmark {
	bool set;
	const char *name;
	char *time;
	struct timepoint at;
};

/* Every string a builder keeps (a string of an event is its event's) is
 * interned in the builder's pool: names, hosts, paths, boot ids and reasons
 * are few, however many events repeat them. */
struct incident {
	int id;
	const char *opened_by;
	struct timepoint start;
	char *start_time; /* as written, or the estimated start formatted */
	bool start_estimated;
	struct timepoint last; /* its latest event's instant */
	struct evmark end;     /* the event that closed it */
	const char *status;    /* NULL while open */
	bool lost;             /* the path or listener is still bad */
	const char *via;
	unsigned removals;
	json_t *actor, *owner;
	bool owner_inherited; /* from an earlier event of the endpoint, not this incident */
	struct errno_tally err[ERRNOS_MAX];
	size_t n_err;
	json_t *clients;
	const char *heal_how;
	char *heal_time;
	json_t *heal_ms;
	const char *recovered_how;
	unsigned heal_attempts;
	const char *stood_down; /* the rebind_skipped reason that ended it */
	json_t *problems;
	json_t *notes;
	size_t events;
};

/* A closed incident: final (nothing later changes it), its model written to
 * the builder's incident spool when it closed; here is where. */
struct incident_ref {
	uint64_t off;
	size_t len;
	const char *status;
};

struct endpoint_acc {
	const char *host, *path, *path_hex;
	json_int_t mntns;  /* 0: the event named none (an older agent's) */
	json_t *where;     /* container, pod, unit of its latest event naming one */
	struct evmark first, last;
	size_t events;
	size_t tl_begin, tl_end; /* its timeline: journal.ix[tl_begin, tl_end) once grouped */
	json_t *owner; /* the server as last named by any event of the endpoint */
	size_t n_inc;  /* incidents so far: the closed ones in done, then the open one */
	struct incident_ref *done;
	size_t cap_done;
	struct incident cur; /* the open incident, if open >= 0 */
	long open;           /* index of the open incident (n_inc - 1), -1 when none */
};

struct run_acc {
	const char *host;
	struct evmark start, stop;
	json_t *start_obj, *stop_obj; /* their lines: a run is told by their fields */
	const char *end; /* "clean", "unclean", NULL while running */
	json_int_t lost;
};

struct builder {
	struct report_journal *j;
	json_t *strings; /* the intern pool: its keys */
	struct endpoint_acc *ep;
	size_t n_ep, cap_ep;
	json_t *ep_index; /* host "\n" mntns "\n" path -> index in ep */
	json_t *agent_mntns_of_host; /* host -> the agent's own mount namespace */
	struct run_acc *runs;
	size_t n_runs, cap_runs;
	size_t agent_events, tl_agent_end; /* the agent's timeline: ix[0, tl_agent_end) */
	json_t *lost;
	json_int_t lost_total;
	json_t *boot_of_host;  /* host -> the boot_id of its latest event */
	json_t *hosts;         /* in the order first seen */
	json_t *hosts_seen;
	struct evmark first, last; /* the journal's, in order */
	FILE *inc_spool; /* the closed incidents' models, one JSON text each */
	uint64_t inc_spool_end;
	char *buf; /* an incident being read back */
	size_t buf_cap;
	bool oom;
	int io_errno; /* a line could not be read again, a spool not written */
};

/* report_journal.c */
bool int_of(const json_t *o, const char *key, json_int_t *v);
bool same_clock(const struct timepoint *a, const struct timepoint *b);
const char *str_of(const json_t *o, const char *key);
double span_s(const struct timepoint *a, const struct timepoint *b);
void journal_sort(struct report_journal *j);
void journal_group(struct report_journal *j);
bool journal_event(struct report_journal *j, const struct jindex *x, struct jevent *e);
bool store_read(FILE *f, uint64_t off, size_t len, char **buf, size_t *cap);
FILE *spool_open(void);

/* report_text.c */
__attribute__((format(printf, 2, 3)))
void text_add(struct text *t, const char *fmt, ...);
bool event_is(const struct jevent *e, const char *name);
bool skip_is_deliberate(const char *reason);
const char *skip_reason_text(const char *reason);
void describe(struct text *t, const struct jevent *e);
void text_proc(struct text *t, const json_t *p);

/* report_build.c */
const char *intern(struct builder *b, const char *s);
void mark_set(struct builder *b, struct evmark *m, const struct jevent *e);
bool builder_init(struct builder *b, struct report_journal *j);
bool builder_fold(struct builder *b);
void builder_free(struct builder *b);
json_t *timeline_entry(const struct jevent *e, const struct timepoint *origin, int incident);
json_t *timeline_entry_at(struct builder *b, size_t pos, const struct timepoint *origin);
struct endpoint_acc *endpoint_of(struct builder *b, const struct jevent *e);
int endpoint_event(struct builder *b, struct endpoint_acc *ep, const struct jevent *e);
uint64_t streak_estimate(const struct errno_tally *t);
void agent_event(struct builder *b, const struct jevent *e);
void check_boot(struct builder *b, const struct jevent *e);
const char *incident_status(const struct endpoint_acc *ep, size_t k);
json_t *incident_at(struct builder *b, const struct endpoint_acc *ep, size_t k);

/* report_json.c: the model a piece at a time, for report_build() and
 * report_write() alike */
json_t *model_head(const struct builder *b, const char *source);
json_t *endpoint_head(const struct builder *b, const struct endpoint_acc *ep);
json_t *incident_json(const struct incident *inc, const struct evmark *journal_end);
/* journal_end: NULL for a closed incident, which does not need it */
int model_write_json(FILE *out, struct builder *b, const char *source);

/* report.c: the model for a person, a piece at a time */
void print_head(FILE *out, const json_t *head);
void print_timeline_entry(FILE *out, const json_t *x, bool with_incident);
void print_runs(FILE *out, const json_t *agent);
void print_endpoint_header(FILE *out, const json_t *ep, const json_t *statuses, bool multi_host);
void print_incident(FILE *out, const json_t *x);
#endif
