/*
 * `sockwarden report [FILE] [--json]`: a postmortem timeline per endpoint from an
 * event journal (the JSON Lines of `sockwarden run --events FILE`, docs/events.md).
 *
 * Reading, building and rendering are separate so the unit test can feed literal
 * lines and inspect the model without files: report_journal_add_line() per line
 * (or report_journal_read() for a whole FILE), report_build() turns the journal
 * into the model (a json_t, documented in docs/report.md), report_print()
 * renders it for a person. report_write() does what the last two do for a
 * journal of any size: it makes and writes the model a piece at a time. Only
 * report_command() touches stdin, stdout and stderr.
 *
 * Memory: the journal keeps 32 bytes per event (where its line is, where it
 * sorts), never a parsed line; building re-reads each line, folds it in and lets
 * it go. What grows is per endpoint and per incident, never per event, and
 * report_write() holds one timeline entry and one incident of the model at a
 * time. report_build() holds the whole model: for tests and small journals.
 */
#ifndef SW_REPORT_H
#define SW_REPORT_H
#include <jansson.h>
#include <stdbool.h>
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
 * failures are reported as the reason "out of memory". An event's line is
 * copied to the journal's spool (an unlinked temporary file, made at the first
 * line); when it cannot be written the line is skipped and
 * report_journal_errno() says why.
 */
const char *report_journal_add_line(struct report_journal *j, const char *line,
				    size_t len, size_t lineno);

/*
 * Reads all of f into an empty journal. A regular file is read in place (it
 * must stay open and unchanged until the report is made); anything else (a
 * pipe, stdin) is spooled like report_journal_add_line() does. The skipped
 * lines are in the model; the caller names them. false (errno set) when f
 * cannot be read or the spool cannot be written.
 */
bool report_journal_read(struct report_journal *j, FILE *f);

/* Why the spool could not be written, 0 when it could. */
int report_journal_errno(const struct report_journal *j);
size_t report_journal_events(const struct report_journal *j);

/*
 * The report model. Sorts the events (by boot, then mono_ns), then groups them
 * per endpoint into a timeline and incidents, and the path-less ones into the
 * agent section. Reads nothing but the journal (its lines again, by offset);
 * source names it in the model ("-" for stdin). A journal may be built more
 * than once. Returns a new reference; NULL when out of memory, when a line
 * cannot be read again (the file changed) or a temporary file not written.
 */
json_t *report_build(struct report_journal *j, const char *source);

/* The model for a person: a header per endpoint, its timeline, one summary
 * line per incident; "no events" for an empty journal. */
void report_print(FILE *out, const json_t *model);

/*
 * The report of j written to out: with json the model exactly as
 * json_dumpf(report_build(j, source), JSON_INDENT(2) | JSON_PRESERVE_ORDER |
 * JSON_REAL_PRECISION(15)) and a newline would write it, else exactly what
 * report_print() would; made a piece at a time (memory does not grow with the
 * events). 0, or -1 with errno: ENOMEM, or ESTALE when a line read in the
 * first pass cannot be read back (the file changed meanwhile), or the read's.
 */
int report_write(FILE *out, struct report_journal *j, const char *source, bool json);

#endif
