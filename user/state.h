/*
 * The agent's state for `sockwarden status` (DESIGN §3): the same JSON
 * document answers a live status request over the control socket and is kept
 * in the state file, written atomically (a temporary file, then rename),
 * debounced, with the writer's pid so a reader can tell a live agent's file
 * from a dead one's and a new agent takes over a crashed one's file.
 */
#ifndef SW_STATE_H
#define SW_STATE_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "endpoints.h"

#define STATE_FILE_DEFAULT "/run/sockwarden/state.json"
#define STATE_DEBOUNCE_NS (500ULL * 1000 * 1000)
#define STATE_SCHEMA_VERSION 1

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

/* One endpoint as status shows it. */
json_t *state_endpoint_json(const struct endpoint *e, int64_t real_minus_mono_ns,
			    uint64_t now_ns);

/* `sockwarden status [--json] [--state FILE] [--control PATH]` */
int status_main(int argc, char **argv);
#endif
