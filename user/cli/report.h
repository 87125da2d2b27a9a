/*
 * `sockwarden report [FILE] [--json]`: a postmortem timeline per endpoint from an
 * event journal (the JSON Lines of `sockwarden run --events FILE`, docs/events.md).
 *
 * Reading, building and rendering are separate so the unit test can feed literal
 * lines and inspect the model without files: report_journal_add_line() per line,
 * report_build() turns the journal into the model (a json_t, documented in
 * docs/report.md and printed as is by --json), report_print() renders it for a
 * person. Only report_command() touches files, stdin and stderr.
 */
#ifndef SW_REPORT_H
#define SW_REPORT_H
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

/* Bumped when a key of the model changes meaning or goes away. */
#define SW_REPORT_VERSION 1

struct report_journal;

struct report_journal *report_journal_new(void);
void report_journal_free(struct report_journal *j);

/*
 * Takes one line, without its newline; lineno counts from 1. Returns NULL when
 * the line became an event or was blank, else why it was skipped ("not JSON"),
 * a static string; the skip is also counted in the journal. -ENOMEM-style
 * failures are reported as the reason "out of memory".
 */
const char *report_journal_add_line(struct report_journal *j, const char *line,
				    size_t len, size_t lineno);

/*
 * The report model. Sorts the events (by boot, then mono_ns), then groups them
 * per endpoint into a timeline and incidents, and the path-less ones into the
 * agent section. Reads nothing but the journal; source names it in the model
 * ("-" for stdin). Returns a new reference, NULL only when out of memory.
 */
json_t *report_build(struct report_journal *j, const char *source);

/* The model for a person: a header per endpoint, its timeline, one summary
 * line per incident; "no events" for an empty journal. */
void report_print(FILE *out, const json_t *model);

#endif
