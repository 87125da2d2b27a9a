/*
 * Sinks: where events go. Every sink writes without blocking the event loop:
 * a line that cannot be written now waits in a bounded queue, and what does not
 * fit is counted (and reported as events_lost once the consumer reads again).
 */
#ifndef SW_SINKS_H
#define SW_SINKS_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SINK_QUEUE_MAX_DEFAULT (4u << 20)

struct line_queue {
	char *buf;
	size_t off, len, cap, max;
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
/* false: the line did not fit and was counted as dropped */
bool line_queue_push(struct line_queue *q, const char *line, size_t len);
/* Writes what it can to fd; returns -1 on a broken fd, else the bytes left. */
long line_queue_flush(struct line_queue *q, int fd);
void line_queue_free(struct line_queue *q);

/* path "-" or NULL = stdout; else appended to. Returns -errno. */
int sinks_open_jsonl(struct sinks *s, const char *path, size_t queue_max);
/* After a log rotation (SIGHUP): the events file opened again by name. */
int sinks_reopen_jsonl(struct sinks *s, const char *path);
void sinks_emit(struct sinks *s, json_t *ev);
/* Flushes queues; true when something still waits (poll for writability). */
bool sinks_flush(struct sinks *s);
/* Blocking drain with a deadline, for a clean stop. */
void sinks_drain(struct sinks *s, int timeout_ms);
int sinks_pending_fd(struct sinks *s);
void sinks_close(struct sinks *s);
#endif
