/*
 * Sinks: where events go. Every sink writes without blocking the event loop:
 * a line that cannot be written now waits in a bounded queue, and what does not
 * fit is counted (and reported as events_lost once the consumer reads again).
 *
 * An overflow opens a gap: from the first line that does not fit, every line
 * is dropped and counted until the queue has drained to half its size; then
 * the caller closes the gap with one events_lost line and lines flow again.
 * So the stream reads: what was queued, the report of what is missing, what
 * came after; never a line from after the gap ahead of the report.
 */
#ifndef SW_SINKS_H
#define SW_SINKS_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SINK_QUEUE_MAX_DEFAULT (4u << 20)
/* A queue smaller than a few events would open a gap at every burst. */
#define SINK_QUEUE_MIN (16u << 10)
#define SINK_QUEUE_LIMIT (1u << 30)

struct line_queue {
	char *buf;
	size_t off, len, cap, max;
	bool gap;               /* lines are being dropped until the gap is closed */
	uint64_t dropped;       /* lines dropped since the last report */
	uint64_t dropped_total;
};

struct sink_jsonl {
	int fd;
	bool owns_fd;
	bool broken; /* the reader went away (EPIPE): stop writing, keep counting */
	struct line_queue q;
};

struct sinks {
	struct sink_jsonl jsonl;
	bool have_jsonl;
	uint64_t emitted_total;
};

void line_queue_init(struct line_queue *q, size_t max);
/* false: the line did not fit, or a gap is open: it was counted as dropped */
bool line_queue_push(struct line_queue *q, const char *line, size_t len);
/* Counts one line that could not even be rendered; it opens a gap too. */
void line_queue_drop(struct line_queue *q);
/* Writes what it can to fd; returns -1 on a broken fd, else the bytes left. */
long line_queue_flush(struct line_queue *q, int fd);
/* The lines dropped in the open gap once it can be closed (the queue holds
 * half its size or less), else 0. */
uint64_t line_queue_gap_ready(const struct line_queue *q);
/* Queues the gap's report line, whatever the gap, and lets lines in again. */
bool line_queue_close_gap(struct line_queue *q, const char *line, size_t len);
void line_queue_free(struct line_queue *q);

/* path "-" or NULL = stdout; else appended to. Returns -errno. */
int sinks_open_jsonl(struct sinks *s, const char *path, size_t queue_max);
/* After a log rotation (SIGHUP): the events file opened again by name. */
int sinks_reopen_jsonl(struct sinks *s, const char *path);
void sinks_emit(struct sinks *s, json_t *ev);
/* Lines the JSON Lines sink dropped in its open gap, once the gap can be
 * closed (its consumer reads again); else 0. */
uint64_t sinks_gap_ready(const struct sinks *s);
/* Writes the gap's events_lost ahead of every later line and ends the gap. */
void sinks_close_gap(struct sinks *s, json_t *report);
uint64_t sinks_dropped_total(const struct sinks *s);
/* Flushes queues; true when something still waits (poll for writability). */
bool sinks_flush(struct sinks *s);
/* Blocking drain with a deadline, for a clean stop. */
void sinks_drain(struct sinks *s, int timeout_ms);
int sinks_pending_fd(struct sinks *s);
void sinks_close(struct sinks *s);
#endif
