/*
 * Metrics (DESIGN §6): Prometheus text format, names prefixed sockwarden_,
 * counters ending in _total, no pid or other unbounded label. The event loop
 * counts and renders; a textfile-collector file is replaced atomically, and
 * the HTTP endpoint (libmicrohttpd, its own thread) serves the last rendered
 * text, so a slow scraper never holds up the loop.
 */
#ifndef SW_METRICS_H
#define SW_METRICS_H
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sockwarden.h"

#define METRICS_HOW_MAX 4 /* link, fd, notify, other */

/* What the loop knows at render time and the metrics do not keep. */
struct metrics_gauges {
	const char *mode;
	const char *discovery;  /* iter or procfs */
	/* the last applied reconcile scan: how long, and what it covered */
	double scan_duration_s;
	uint64_t scan_listeners, scan_processes, scan_fds;
	uint64_t endpoints, endpoints_lost, streaks_open, registered, circuits_open;
	uint64_t failures_by_err[SW_ERR_MAX]; /* the kernel's exact counts */
	uint64_t redirected;    /* connects the redirect sent to a guard */
	bool redirect_on;       /* the redirect program is attached */
	uint64_t kernel_drops[4];             /* ringbuf, stat map, client map, inflight */
	uint64_t records;
	/* events a sink dropped, counted as they drop (not when reported) */
	uint64_t sink_dropped, journal_dropped;
	double start_time_s;
	/* SIGHUP's reload: whether the last one applied (true before any), and
	 * when the configuration was last loaded, Unix time */
	bool config_reload_ok;
	double config_reload_ok_time_s;
};

struct metrics {
	uint64_t *events_by_type; /* indexed like event_types */
	uint64_t heals_ok[METRICS_HOW_MAX], heals_failed[METRICS_HOW_MAX];
	uint64_t heals_skipped, circuits_opened, actions_ok, actions_failed;
	/* the last rendering, shared with the HTTP thread */
	pthread_mutex_t lock;
	char *text;
	size_t text_len;
	struct MHD_Daemon *httpd;
	int listen_fd; /* bound by metrics_bind, served from metrics_start */
	bool ipv6;
	char *file;
};

int metrics_init(struct metrics *m);
void metrics_free(struct metrics *m);
/* Counts one event (every event passes through here). */
void metrics_count(struct metrics *m, json_t *ev);
/* Renders the text format into a new buffer (caller frees). */
char *metrics_render(const struct metrics *m, const struct metrics_gauges *g, size_t *len);
/* Renders, publishes to the HTTP thread and rewrites the textfile. */
void metrics_publish(struct metrics *m, const struct metrics_gauges *g);
/* Serves HTTP on HOST:PORT ("127.0.0.1:9477", "[::1]:9477", ":9477");
 * -errno with why set. metrics_serve = metrics_bind + metrics_start. */
int metrics_serve(struct metrics *m, const char *addr, const char **why);
/* Binds and listens, no thread yet: the agent binds while it still holds its
 * start-up privileges and starts the server thread after dropping them (a
 * thread keeps the capabilities it was created with). */
int metrics_bind(struct metrics *m, const char *addr, const char **why);
int metrics_start(struct metrics *m, const char **why);
/* Writes a textfile-collector file at each publish. */
int metrics_textfile(struct metrics *m, const char *file);
#endif
