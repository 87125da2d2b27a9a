/*
 * The flap guard (DESIGN §2): more than `max_heals` heals of one path inside
 * `window_ns` opens a circuit: healing stops, and a half-open retry follows
 * after a back-off that doubles up to a cap. Pure logic: every call takes the
 * time, so tests drive it without sleeping.
 */
#ifndef SW_FLAPGUARD_H
#define SW_FLAPGUARD_H
#include <stdbool.h>
#include <stdint.h>

#include "shared/config.h"

enum flap_circuit { FLAP_CLOSED = 0, FLAP_OPEN, FLAP_HALF_OPEN };

struct flap_state {
	/* ring of FLAP_MAX_TRACKED recent heal times, allocated by the first
	 * heal: most endpoints of a large host are never healed */
	uint64_t *heals;
	unsigned n, head;
	enum flap_circuit circuit;
	uint64_t retry_at_ns;
	uint64_t backoff_ns;  /* the back-off the next opening uses */
	uint64_t last_heal_ns;
};

enum flap_verdict {
	FLAP_ALLOW,        /* heal */
	FLAP_OPENED,       /* do not heal: the circuit opens now (report it) */
	FLAP_SUPPRESSED,   /* do not heal: the circuit was already open */
};

/* May a heal happen now? Opens the circuit when it would be one too many. */
enum flap_verdict flap_check(struct flap_state *s, const struct flap_cfg *c,
			     uint64_t now_ns);
void flap_record(struct flap_state *s, const struct flap_cfg *c, uint64_t now_ns);
/* Heals of this path inside the window ending now. */
unsigned flap_recent(const struct flap_state *s, const struct flap_cfg *c,
		     uint64_t now_ns);
const char *flap_circuit_name(enum flap_circuit c);
/* Frees the ring; the state is closed and empty again. */
void flap_state_release(struct flap_state *s);
#endif
