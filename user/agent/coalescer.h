/*
 * Coalescing of connect failures per (path, errno) (DESIGN §2 "Coalescing").
 *
 * The kernel counts every failure; this unit turns the counts into a few
 * events: connect_failing at a streak's first failure, connect_still_failing
 * once per window while it lasts, connect_recovered at its first success. It
 * never reads a clock: every call takes the time, so tests drive it directly.
 */
#ifndef SW_COALESCER_H
#define SW_COALESCER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define COALESCER_TOP_CLIENTS 5

struct coalesced_client {
	pid_t pid;
	uid_t uid;
	char comm[16];
	uint64_t failures;
};

enum coalesced_kind {
	COALESCED_FAILING,
	COALESCED_STILL_FAILING,
	COALESCED_RECOVERED,
};

struct coalesced_event {
	enum coalesced_kind kind;
	const char *path;
	int err;                   /* errno value */
	uint64_t mono_ns;          /* when it happened */
	uint64_t failures;         /* still_failing: failures in this window */
	uint64_t streak_duration_ms;
	uint64_t total_failures;   /* recovered: failures of the whole streak */
	uint64_t swallowed_failures; /* recovered: failures not reported one by one */
	const char *how;           /* recovered: "connect" or the heal that ended it */
	struct coalesced_client first_client; /* failing */
	const struct coalesced_client *clients; /* recovered: top clients */
	size_t n_clients;
};

typedef void (*coalescer_emit_fn)(const struct coalesced_event *ev, void *ctx);

struct streak {
	char *path;
	int err;
	uint32_t gen;
	uint64_t start_ns;
	uint64_t start_failures;  /* kernel counter value at the first failure */
	bool after_prev;          /* start_failures is the previous streak's end + 1 */
	uint64_t window_ns;       /* this path's window */
	uint64_t window_start_ns;
	uint64_t window_base;     /* kernel counter value before the window's first failure */
	struct streak *next;
};

/* How many ended streaks the coalescer remembers: a record and the map scan
 * can both report one streak's start or end, in either order and late, and
 * a streak already ended must not be opened (and ended) a second time. */
#define COALESCER_ENDED_MAX 1024

struct ended_streak {
	char *path;  /* NULL: a free slot */
	int err;
	uint32_t gen;
	uint64_t closed_failures; /* the counter at its end */
};

struct coalescer {
	uint64_t window_ns;
	/* a path's own window (config sections); NULL = window_ns for all */
	uint64_t (*window_of)(const char *path, void *ctx);
	coalescer_emit_fn emit;
	void *ctx;
	struct streak *open;
	size_t n_open;
	/* the last generation ended per (path, errno), oldest overwritten first */
	struct ended_streak ended[COALESCER_ENDED_MAX];
	size_t ended_next;
};

void coalescer_init(struct coalescer *c, uint64_t window_ns, coalescer_emit_fn emit,
		    void *ctx);
void coalescer_free(struct coalescer *c);
/* A streak began (kernel record or map scan). Ignored if already known.
 *
 * The streaks of a (path, errno) partition its counter: the one of `gen`
 * begins right after the end of `gen - 1`, when that end is known, whatever
 * start_failures says. The kernel's start is the counter of the failure
 * that reopened the streak, and two failures right after a close can take
 * their counts in one order and reopen it in the other: the one with the
 * lower count finds the streak open already, and would belong to neither;
 * or a failure takes its count before a close and finds the streak closed
 * after it, and would belong to both. */
void coalescer_failing(struct coalescer *c, const char *path, int err, uint32_t gen,
		       uint64_t start_failures, uint64_t start_ns,
		       const struct coalesced_client *first_client);
/* The streak of generation `gen` ended with the counter at closed_failures. */
void coalescer_recovered(struct coalescer *c, const char *path, int err,
			 uint32_t gen, uint64_t closed_failures, uint64_t now_ns,
			 const char *how, const struct coalesced_client *clients,
			 size_t n_clients);
/* Window ends: `failures_now` reads the kernel counter of a streak. */
typedef bool (*coalescer_read_fn)(const char *path, int err, uint64_t *failures,
				  void *ctx);
void coalescer_tick(struct coalescer *c, uint64_t now_ns, coalescer_read_fn read,
		    void *read_ctx);
struct streak *coalescer_find(struct coalescer *c, const char *path, int err);
/* True if the streak (path, err, gen) has ended already. */
bool coalescer_ended(const struct coalescer *c, const char *path, int err, uint32_t gen);
/* The earliest time a window ends, or UINT64_MAX with no streak open. */
uint64_t coalescer_next_deadline(const struct coalescer *c);
#endif
