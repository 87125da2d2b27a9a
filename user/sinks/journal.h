/*
 * The journald sink (DESIGN §6): native structured fields through libsystemd.
 * sd_journal_sendv() can block when journald is slow, so a thread of its own
 * sends, fed through a bounded queue; what does not fit is counted, never
 * waited for. A host without journald is not an error: sends fail, are
 * counted, and the agent goes on.
 */
#ifndef SW_JOURNAL_H
#define SW_JOURNAL_H
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define JOURNAL_QUEUE_MAX 4096

struct journal_entry;

struct journal_sink {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct journal_entry *head, *tail;
	size_t queued;
	bool stop, started;
	uint64_t sent, send_failed, dropped; /* dropped: queue full */
};

int journal_open(struct journal_sink *j);
/* Queues the event (the caller keeps its reference); false when dropped. */
bool journal_emit(struct journal_sink *j, json_t *ev);
/* Sends what is queued (up to a deadline) and stops the thread. */
void journal_close(struct journal_sink *j, int timeout_ms);
/* The fields of one event as journald gets them: "KEY=value" strings,
 * NULL-terminated; exposed for tests. Free with journal_fields_free. */
char **journal_fields(json_t *ev);
void journal_fields_free(char **f);
#endif
