#include "flapguard.h"

#include <stdlib.h>
#include <string.h>

#include "shared/clock.h"

unsigned flap_recent(const struct flap_state *s, const struct flap_cfg *c,
		     uint64_t now_ns)
{
	unsigned n = 0;

	if (!s->heals)
		return 0;
	for (unsigned i = 0; i < s->n; i++) {
		uint64_t t = s->heals[(s->head + FLAP_MAX_TRACKED - 1 - i) % FLAP_MAX_TRACKED];

		if (now_ns - t >= c->window_ns)
			break;
		n++;
	}
	return n;
}

static void flap_open(struct flap_state *s, const struct flap_cfg *c, uint64_t now_ns)
{
	if (!s->backoff_ns)
		s->backoff_ns = c->backoff_ns;
	s->circuit = FLAP_OPEN;
	s->retry_at_ns = now_ns + s->backoff_ns;
	/* the next opening waits twice as long, up to the cap */
	s->backoff_ns = s->backoff_ns * 2 > c->backoff_max_ns ? c->backoff_max_ns
							     : s->backoff_ns * 2;
}

enum flap_verdict flap_check(struct flap_state *s, const struct flap_cfg *c,
			     uint64_t now_ns)
{
	/* switched off (flap_max = 0): every heal may go, whatever came before
	 * (a reload may have switched it off with the circuit open) */
	if (c->max_heals == 0) {
		s->circuit = FLAP_CLOSED;
		s->backoff_ns = 0;
		return FLAP_ALLOW;
	}
	switch (s->circuit) {
	case FLAP_OPEN:
		if (now_ns < s->retry_at_ns)
			return FLAP_SUPPRESSED;
		/* the back-off is over: one heal may try */
		s->circuit = FLAP_HALF_OPEN;
		return FLAP_ALLOW;
	case FLAP_HALF_OPEN:
		if (now_ns - s->last_heal_ns < c->window_ns) {
			/* lost again soon after the trial heal: open for longer */
			flap_open(s, c, now_ns);
			return FLAP_OPENED;
		}
		/* the trial heal held for a whole window: back to normal */
		s->circuit = FLAP_CLOSED;
		s->backoff_ns = 0;
		s->n = 0;
		return FLAP_ALLOW;
	case FLAP_CLOSED:
		break;
	}
	if (flap_recent(s, c, now_ns) >= c->max_heals) {
		flap_open(s, c, now_ns);
		return FLAP_OPENED;
	}
	return FLAP_ALLOW;
}

void flap_record(struct flap_state *s, const struct flap_cfg *c, uint64_t now_ns)
{
	(void)c;
	s->last_heal_ns = now_ns;
	if (!s->heals) {
		s->heals = calloc(FLAP_MAX_TRACKED, sizeof(*s->heals));
		/* out of memory: this heal is not in the window (the half-open
		 * check still sees it through last_heal_ns) */
		if (!s->heals)
			return;
		s->n = s->head = 0;
	}
	s->heals[s->head] = now_ns;
	s->head = (s->head + 1) % FLAP_MAX_TRACKED;
	if (s->n < FLAP_MAX_TRACKED)
		s->n++;
}

void flap_state_release(struct flap_state *s)
{
	free(s->heals);
	memset(s, 0, sizeof(*s));
}

const char *flap_circuit_name(enum flap_circuit c)
{
	switch (c) {
	case FLAP_OPEN: return "open";
	case FLAP_HALF_OPEN: return "half_open";
	default: return "closed";
	}
}
