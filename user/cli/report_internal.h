/*
 * What the files of `sockwarden report` share; private to them. Data flows
 * one way: report_journal.c reads lines into events, report_build.c groups
 * them into endpoints and incidents, report_json.c turns those into the
 * model, report.c prints the model and runs the command; report_text.c tells
 * events in words for the last two.
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
	json_int_t mntns;  /* 0: the event named none (an older agent's) */
	json_t *where;     /* container, pod, unit of its latest event naming one */
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
	json_t *ep_index; /* host "\n" mntns "\n" path -> index in ep */
	json_t *agent_mntns_of_host; /* host -> the agent's own mount namespace */
	struct run_acc *runs;
	size_t n_runs, cap_runs;
	json_t *agent_timeline;
	json_t *lost;
	json_int_t lost_total;
	json_t *boot_of_host;  /* host -> the boot_id of its latest event */
	json_t *hosts_seen;
	bool oom;
};

/* report_journal.c */
bool int_of(const json_t *o, const char *key, json_int_t *v);
bool same_clock(const struct timepoint *a, const struct timepoint *b);
const char *str_of(const json_t *o, const char *key);
double span_s(const struct timepoint *a, const struct timepoint *b);
void journal_sort(struct report_journal *j);

/* report_text.c */
__attribute__((format(printf, 2, 3)))
void text_add(struct text *t, const char *fmt, ...);
bool event_is(const struct jevent *e, const char *name);
bool skip_is_deliberate(const char *reason);
const char *skip_reason_text(const char *reason);
void describe(struct text *t, const struct jevent *e);
void text_proc(struct text *t, const json_t *p);

/* report_build.c */
json_t *timeline_entry(const struct jevent *e, const struct jevent *origin, int incident);
struct endpoint_acc *endpoint_of(struct builder *b, const struct jevent *e);
struct incident *endpoint_event(struct endpoint_acc *ep, const struct jevent *e);
uint64_t streak_estimate(const struct errno_tally *t);
void agent_event(struct builder *b, const struct jevent *e);
void check_boot(struct builder *b, const struct jevent *e);
#endif
