/*
 * The state file (DESIGN §3): the agent's status document, which also
 * answers a live status request over the control socket, kept in a file
 * written atomically (a temporary file, then rename),
 * debounced, with the writer's pid so a reader can tell a live agent's file
 * from a dead one's and a new agent takes over a crashed one's file.
 */
#ifndef SW_STATE_FILE_H
#define SW_STATE_FILE_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "shared/protocol.h"

#define STATE_DEBOUNCE_NS (500ULL * 1000 * 1000)

struct state_writer {
	char *file;
	bool dirty;
	uint64_t dirty_since_ns, last_write_ns;
	uint64_t writes, write_errors;
};

/* Takes the file over: reports (in *previous) the pid of the agent that wrote
 * it last when that agent is gone. -errno when the directory is unusable. */
int state_writer_open(struct state_writer *w, const char *file, int *previous_pid);
void state_writer_close(struct state_writer *w);
void state_mark_dirty(struct state_writer *w, uint64_t now_ns);
/* When the next write is due, or UINT64_MAX with nothing to write. */
uint64_t state_next_deadline(const struct state_writer *w);
/* Writes doc if due (force: now, whatever the debounce says). */
int state_write(struct state_writer *w, json_t *doc, uint64_t now_ns, bool force);

#endif
