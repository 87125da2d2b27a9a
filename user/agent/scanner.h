/*
 * The scanner: gathers what the reconcile scan needs (every listening AF_UNIX
 * socket, the processes holding each, the path each is bound to and whether
 * that path still resolves to it) on a worker thread of its own, so that the
 * event loop never waits behind a walk of /proc on a large host.
 *
 * It owns the gathering only; it reads nothing of the agent and changes
 * nothing but its own result. The loop asks for a scan (scanner_request),
 * learns that it finished through an eventfd (scanner_fd) and takes the
 * result (scanner_take) to apply it to the endpoint table itself. At start-up
 * the agent gathers synchronously with scan_gather, before the loop runs.
 */
#ifndef SW_SCANNER_H
#define SW_SCANNER_H
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/discovery.h"
#include "shared/discovery_source.h"
#include "shared/paths.h"

/* A listener bound to a path (abstract and unbound ones are left out). */
struct scan_item {
	struct unix_listener l;
	char *path;               /* the bound name made absolute */
	const struct owner_entry *owner_entries; /* into scan_result.om, by pid */
	size_t n_owners;
	bool matches;             /* path resolved to this socket file when gathered */
	/* the namespace the path is the holder's in: 0 for the agent's own (and
	 * for a file it sees at the same path); the holder's mount namespace
	 * when only that namespace has it */
	uint32_t mntns;
	uint32_t holder_mntns;    /* the first holder's, 0 unknown */
	/* the holder's name for the file when path is the agent's other name
	 * for it (a directory bind-mounted elsewhere), and its namespace */
	char *alias;
	uint32_t alias_mntns;
};

struct scan_result {
	struct scan_item *items;
	size_t n;
	uint64_t *inos;           /* every listener's socket inode, sorted */
	struct owner_map om;      /* sorted by socket inode */
	size_t n_listeners;       /* every listener, path-bound or not */
	struct discovery_stats stats;
	uint64_t started_ns, ended_ns; /* CLOCK_MONOTONIC */
	int err;                  /* 0, or -errno when the listeners could not be listed */
};

/* Gathers one scan from src into out (zeroed first); what failed is in
 * out->err. */
void scan_gather(struct scan_result *out, struct discovery_source *src);
void scan_result_free(struct scan_result *r);

/* What the thread runs for one scan: scan_gather, or a test's stand-in. */
typedef void (*scan_gather_fn)(struct scan_result *out, void *ctx);

struct scanner {
	scan_gather_fn gather;
	void *gather_ctx;
	pthread_t thread;
	bool running;          /* the thread was started */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool requested, quit;
	bool in_progress;
	uint64_t current_started_ns;
	struct scan_result *done; /* finished, not yet taken by the loop */
	int efd;               /* eventfd: readable while `done` waits */
};

/* Creates the eventfd and starts the thread: 0 or -errno. gather NULL is
 * scan_gather, with ctx the struct discovery_source it reads. */
int scanner_start(struct scanner *s, scan_gather_fn gather, void *ctx);
/* Asks for a scan; false when one is already asked for or under way. */
bool scanner_request(struct scanner *s);
/* The finished scan, or NULL; the caller frees it with scan_result_free+free. */
struct scan_result *scanner_take(struct scanner *s);
/* Whether a scan is under way, and since when (CLOCK_MONOTONIC ns). */
bool scanner_busy(struct scanner *s, uint64_t *started_ns);
static inline int scanner_fd(const struct scanner *s) { return s->efd; }
/* Stops the thread (it finishes the scan under way first) and frees what is left. */
void scanner_stop(struct scanner *s);
#endif
