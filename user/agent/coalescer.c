#include "coalescer.h"

#include <stdlib.h>
#include <string.h>

#include "shared/clock.h"

void coalescer_init(struct coalescer *c, uint64_t window_ns, coalescer_emit_fn emit,
		    void *ctx)
{
	memset(c, 0, sizeof(*c));
	c->window_ns = window_ns;
	c->emit = emit;
	c->ctx = ctx;
}

static void streak_free(struct streak *s)
{
	free(s->path);
	free(s);
}

void coalescer_free(struct coalescer *c)
{
	struct streak *s = c->open, *next;

	for (; s; s = next) {
		next = s->next;
		streak_free(s);
	}
	c->open = NULL;
	c->n_open = 0;
	for (size_t i = 0; i < COALESCER_ENDED_MAX; i++) {
		free(c->ended[i].path);
		c->ended[i].path = NULL;
	}
}

static struct ended_streak *ended_find(const struct coalescer *c, const char *path, int err)
{
	for (size_t i = 0; i < COALESCER_ENDED_MAX; i++) {
		const struct ended_streak *x = &c->ended[i];

		if (x->path && x->err == err && strcmp(x->path, path) == 0)
			return (struct ended_streak *)x;
	}
	return NULL;
}

bool coalescer_ended(const struct coalescer *c, const char *path, int err, uint32_t gen)
{
	const struct ended_streak *x = ended_find(c, path, err);

	return x && x->gen == gen;
}

/* Keeps the streak's path (ownership passes here) as the key's last ended
 * generation, and where the counter was at its end. */
static void ended_remember(struct coalescer *c, struct streak *s, uint64_t closed_failures)
{
	struct ended_streak *x = ended_find(c, s->path, s->err);

	if (x) {
		free(s->path);
	} else {
		x = &c->ended[c->ended_next];
		c->ended_next = (c->ended_next + 1) % COALESCER_ENDED_MAX;
		free(x->path);
		x->path = s->path;
		x->err = s->err;
	}
	s->path = NULL;
	x->gen = s->gen;
	x->closed_failures = closed_failures;
}

struct streak *coalescer_find(struct coalescer *c, const char *path, int err)
{
	for (struct streak *s = c->open; s; s = s->next)
		if (s->err == err && strcmp(s->path, path) == 0)
			return s;
	return NULL;
}

void coalescer_failing(struct coalescer *c, const char *path, int err, uint32_t gen,
		       uint64_t start_failures, uint64_t start_ns,
		       const struct coalesced_client *first_client)
{
	struct streak *s = coalescer_find(c, path, err);
	struct coalesced_event ev = {0};
	const struct ended_streak *prev;
	bool after_prev;

	if (s && s->gen == gen)
		return; /* already known (the record and a map scan both saw it) */
	if (coalescer_ended(c, path, err, gen))
		return; /* a late report of a streak that has ended */
	prev = ended_find(c, path, err);
	after_prev = prev && prev->gen + 1 == gen;
	if (after_prev)
		start_failures = prev->closed_failures + 1;
	if (s) {
		/* A newer generation: the old streak's end went unseen. Treat the
		 * old one as replaced; its counts are not recoverable. */
		s->gen = gen;
		s->start_ns = start_ns;
		s->start_failures = start_failures;
		s->after_prev = after_prev;
		s->window_start_ns = start_ns;
		s->window_base = start_failures - 1;
	} else {
		s = calloc(1, sizeof(*s));
		if (!s)
			return;
		s->path = strdup(path);
		if (!s->path) {
			free(s);
			return;
		}
		s->err = err;
		s->window_ns = c->window_of ? c->window_of(path, c->ctx) : c->window_ns;
		s->gen = gen;
		s->start_ns = start_ns;
		s->start_failures = start_failures;
		s->after_prev = after_prev;
		s->window_start_ns = start_ns;
		s->window_base = start_failures - 1;
		s->next = c->open;
		c->open = s;
		c->n_open++;
	}
	ev.kind = COALESCED_FAILING;
	ev.path = path;
	ev.err = err;
	ev.mono_ns = start_ns;
	ev.failures = 1;
	if (first_client)
		ev.first_client = *first_client;
	c->emit(&ev, c->ctx);
}

void coalescer_recovered(struct coalescer *c, const char *path, int err,
			 uint32_t gen, uint64_t closed_failures, uint64_t now_ns,
			 const char *how, const struct coalesced_client *clients,
			 size_t n_clients)
{
	struct streak **pp, *s;
	struct coalesced_event ev = {0};

	for (pp = &c->open; (s = *pp); pp = &s->next)
		if (s->err == err && strcmp(s->path, path) == 0)
			break;
	if (!s || s->gen != gen)
		return; /* unknown or already ended */
	ev.kind = COALESCED_RECOVERED;
	ev.path = path;
	ev.err = err;
	ev.mono_ns = now_ns;
	/* A streak that begins after the previous one's end counts 0 when every
	 * failure of it was counted by that one (a failure that took its count
	 * before the close and then found the streak closed); one whose start
	 * is the kernel's own counts at least the failure that opened it. */
	if (closed_failures + 1 > s->start_failures)
		ev.total_failures = closed_failures + 1 - s->start_failures;
	else
		ev.total_failures = s->after_prev ? 0 : 1;
	ev.swallowed_failures = ev.total_failures ? ev.total_failures - 1 : 0;
	ev.streak_duration_ms = now_ns > s->start_ns ?
				(now_ns - s->start_ns) / NSEC_PER_MSEC : 0;
	ev.how = how ? how : "connect";
	ev.clients = clients;
	ev.n_clients = n_clients;
	*pp = s->next;
	c->n_open--;
	c->emit(&ev, c->ctx);
	ended_remember(c, s, s->start_failures - 1 + ev.total_failures);
	streak_free(s);
}

void coalescer_tick(struct coalescer *c, uint64_t now_ns, coalescer_read_fn read,
		    void *read_ctx)
{
	for (struct streak *s = c->open; s; s = s->next) {
		uint64_t failures = 0;
		struct coalesced_event ev = {0};

		if (now_ns < s->window_start_ns + s->window_ns)
			continue;
		if (!read(s->path, s->err, &failures, read_ctx))
			failures = s->window_base;
		ev.kind = COALESCED_STILL_FAILING;
		ev.path = s->path;
		ev.err = s->err;
		ev.mono_ns = now_ns;
		ev.failures = failures >= s->window_base ? failures - s->window_base : 0;
		ev.streak_duration_ms = (now_ns - s->start_ns) / NSEC_PER_MSEC;
		/* a window nobody failed in says nothing new: the streak stays
		 * open, silently, until a success or the next failure */
		if (ev.failures > 0)
			c->emit(&ev, c->ctx);
		s->window_base = failures;
		/* windows stay aligned to the streak's start, skipping missed ones */
		while (s->window_start_ns + s->window_ns <= now_ns)
			s->window_start_ns += s->window_ns;
	}
}

uint64_t coalescer_next_deadline(const struct coalescer *c)
{
	uint64_t d = UINT64_MAX;

	for (const struct streak *s = c->open; s; s = s->next)
		if (s->window_start_ns + s->window_ns < d)
			d = s->window_start_ns + s->window_ns;
	return d;
}
