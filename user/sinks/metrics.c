#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shared/events.h"
#include "shared/log.h"

/* See metrics_start. */
#define METRICS_CONNECTIONS_MAX 16u
#define METRICS_TIMEOUT_S 5u

static const char *how_names[METRICS_HOW_MAX] = { "link", "fd", "notify", "other" };

static int how_index(const char *how)
{
	for (int i = 0; i < METRICS_HOW_MAX - 1; i++)
		if (how && strcmp(how, how_names[i]) == 0)
			return i;
	return METRICS_HOW_MAX - 1;
}

int metrics_init(struct metrics *m)
{
	memset(m, 0, sizeof(*m));
	m->events_by_type = calloc(n_event_types, sizeof(*m->events_by_type));
	if (!m->events_by_type)
		return -ENOMEM;
	pthread_mutex_init(&m->lock, NULL);
	m->listen_fd = -1;
	return 0;
}

void metrics_free(struct metrics *m)
{
	if (m->httpd)
		MHD_stop_daemon(m->httpd);
	m->httpd = NULL;
	if (m->listen_fd >= 0)
		close(m->listen_fd);
	free(m->events_by_type);
	free(m->text);
	free(m->file);
	pthread_mutex_destroy(&m->lock);
	memset(m, 0, sizeof(*m));
}

static const char *str_field(json_t *ev, const char *key)
{
	return json_string_value(json_object_get(ev, key));
}

void metrics_count(struct metrics *m, json_t *ev)
{
	const char *name = str_field(ev, "event");
	int i = name ? event_type_index(name) : -1;

	if (i >= 0)
		m->events_by_type[i]++;
	if (!name)
		return;
	if (strcmp(name, "rebind_succeeded") == 0)
		m->heals_ok[how_index(str_field(ev, "how"))]++;
	else if (strcmp(name, "rebind_failed") == 0)
		m->heals_failed[how_index(str_field(ev, "how"))]++;
	else if (strcmp(name, "rebind_skipped") == 0)
		m->heals_skipped++;
	else if (strcmp(name, "rebind_suppressed") == 0)
		m->circuits_opened++;
	else if (strcmp(name, "action") == 0) {
		const char *outcome = str_field(ev, "outcome");

		if (outcome && (strcmp(outcome, "failed") == 0 || strcmp(outcome, "refused") == 0))
			m->actions_failed++;
		else if (outcome && strcmp(outcome, "started") != 0)
			m->actions_ok++;
	}
	/* losses are rendered from the counts of whoever lost (kernel, sinks),
	 * which grow as lines drop, not when the report gets through */
}

struct buf {
	char *p;
	size_t len, cap;
	bool failed;
};

static void bprintf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->failed)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->failed = true;
			return;
		}
		if ((size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = (b->cap + (size_t)n + 1) * 2;
		char *np = realloc(b->p, cap);

		if (!np) {
			b->failed = true;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
}

static void family(struct buf *b, const char *name, const char *type, const char *help)
{
	bprintf(b, "# HELP sockwarden_%s %s\n# TYPE sockwarden_%s %s\n", name, help, name, type);
}

char *metrics_render(const struct metrics *m, const struct metrics_gauges *g, size_t *len)
{
	static const char *err_names[SW_ERR_MAX] = { "ENOENT", "ECONNREFUSED", "EAGAIN" };
	static const char *drop_names[4] = { "ringbuf_full", "connect_stat_map_full",
					     "client_map_full", "inflight_map_full" };
	struct buf b = { .p = malloc(4096), .cap = 4096 };

	if (!b.p)
		return NULL;
	b.p[0] = 0;
	family(&b, "build_info", "gauge",
	       "Version, attach mode and discovery source of the running agent.");
	bprintf(&b, "sockwarden_build_info{version=\"%s\",mode=\"%s\",discovery=\"%s\"} 1\n",
		SOCKWARDEN_VERSION, g->mode ? g->mode : "none",
		g->discovery ? g->discovery : "none");
	family(&b, "discovery_info", "gauge", "Where the agent's scans find listeners.");
	bprintf(&b, "sockwarden_discovery_info{source=\"%s\"} 1\n",
		g->discovery ? g->discovery : "none");
	family(&b, "scan_duration_seconds", "gauge",
	       "How long the last reconcile scan took, gathering and applying.");
	bprintf(&b, "sockwarden_scan_duration_seconds %.6f\n", g->scan_duration_s);
	family(&b, "scan_listeners", "gauge", "Listening AF_UNIX sockets the last scan found.");
	bprintf(&b, "sockwarden_scan_listeners %llu\n", (unsigned long long)g->scan_listeners);
	family(&b, "scan_processes", "gauge", "Processes the last scan looked at.");
	bprintf(&b, "sockwarden_scan_processes %llu\n", (unsigned long long)g->scan_processes);
	family(&b, "scan_fds", "gauge", "File descriptors the last scan looked at.");
	bprintf(&b, "sockwarden_scan_fds %llu\n", (unsigned long long)g->scan_fds);
	family(&b, "start_time_seconds", "gauge", "When the agent started, Unix time.");
	bprintf(&b, "sockwarden_start_time_seconds %.3f\n", g->start_time_s);
	family(&b, "config_last_reload_successful", "gauge",
	       "1 if the last configuration reload (SIGHUP) applied, 0 if it failed; 1 at start.");
	bprintf(&b, "sockwarden_config_last_reload_successful %d\n", g->config_reload_ok ? 1 : 0);
	family(&b, "config_last_reload_success_timestamp_seconds", "gauge",
	       "When the configuration was last loaded (start or reload), Unix time.");
	bprintf(&b, "sockwarden_config_last_reload_success_timestamp_seconds %.3f\n",
		g->config_reload_ok_time_s);
	family(&b, "events_total", "counter", "Events emitted, by event type.");
	for (size_t i = 0; i < n_event_types; i++)
		bprintf(&b, "sockwarden_events_total{event=\"%s\"} %llu\n", event_types[i].name,
			(unsigned long long)m->events_by_type[i]);
	family(&b, "connect_failures_total", "counter",
	       "Failed connect() calls to watched Unix socket paths, by errno (exact kernel counts).");
	for (int i = 0; i < SW_ERR_MAX; i++)
		bprintf(&b, "sockwarden_connect_failures_total{errno=\"%s\"} %llu\n", err_names[i],
			(unsigned long long)g->failures_by_err[i]);
	family(&b, "connects_redirected_total", "counter",
	       "Connects to a lost path the kernel sent to its guard link (not failures).");
	bprintf(&b, "sockwarden_connects_redirected_total %llu\n",
		(unsigned long long)g->redirected);
	family(&b, "redirect_enabled", "gauge",
	       "1 while the connect redirect is attached (kernels 6.7+), else 0.");
	bprintf(&b, "sockwarden_redirect_enabled %d\n", g->redirect_on ? 1 : 0);
	family(&b, "heals_total", "counter", "Heals tried, by how and outcome.");
	for (int i = 0; i < METRICS_HOW_MAX; i++) {
		bprintf(&b, "sockwarden_heals_total{how=\"%s\",outcome=\"succeeded\"} %llu\n",
			how_names[i], (unsigned long long)m->heals_ok[i]);
		bprintf(&b, "sockwarden_heals_total{how=\"%s\",outcome=\"failed\"} %llu\n",
			how_names[i], (unsigned long long)m->heals_failed[i]);
	}
	family(&b, "heals_skipped_total", "counter", "Lost paths deliberately not healed.");
	bprintf(&b, "sockwarden_heals_skipped_total %llu\n", (unsigned long long)m->heals_skipped);
	family(&b, "circuits_opened_total", "counter", "Times the flap guard stopped healing a path.");
	bprintf(&b, "sockwarden_circuits_opened_total %llu\n",
		(unsigned long long)m->circuits_opened);
	family(&b, "actions_total", "counter", "Configured actions (signal, exec), by outcome.");
	bprintf(&b, "sockwarden_actions_total{outcome=\"ok\"} %llu\n",
		(unsigned long long)m->actions_ok);
	bprintf(&b, "sockwarden_actions_total{outcome=\"failed\"} %llu\n",
		(unsigned long long)m->actions_failed);
	family(&b, "records_total", "counter", "Kernel records read from the ring buffer.");
	bprintf(&b, "sockwarden_records_total %llu\n", (unsigned long long)g->records);
	family(&b, "lost_total", "counter",
	       "Records or events lost: kernel records not queued (ringbuf_full), events "
	       "the JSON Lines sink (sink_overflow) or journald's queue (journal_overflow) "
	       "dropped.");
	bprintf(&b, "sockwarden_lost_total{reason=\"ringbuf_full\"} %llu\n",
		(unsigned long long)g->kernel_drops[0]);
	bprintf(&b, "sockwarden_lost_total{reason=\"sink_overflow\"} %llu\n",
		(unsigned long long)g->sink_dropped);
	bprintf(&b, "sockwarden_lost_total{reason=\"journal_overflow\"} %llu\n",
		(unsigned long long)g->journal_dropped);
	family(&b, "kernel_map_full_total", "counter",
	       "Kernel map entries that could not be created (counts stay exact elsewhere).");
	for (int i = 1; i < 4; i++)
		bprintf(&b, "sockwarden_kernel_map_full_total{map=\"%s\"} %llu\n", drop_names[i],
			(unsigned long long)g->kernel_drops[i]);
	family(&b, "endpoints", "gauge", "Watched socket paths.");
	bprintf(&b, "sockwarden_endpoints %llu\n", (unsigned long long)g->endpoints);
	family(&b, "endpoints_lost", "gauge", "Watched paths lost right now.");
	bprintf(&b, "sockwarden_endpoints_lost %llu\n", (unsigned long long)g->endpoints_lost);
	family(&b, "streaks_open", "gauge", "Connect-failure streaks open right now.");
	bprintf(&b, "sockwarden_streaks_open %llu\n", (unsigned long long)g->streaks_open);
	family(&b, "registered_servers", "gauge", "Paths registered over the control protocol.");
	bprintf(&b, "sockwarden_registered_servers %llu\n", (unsigned long long)g->registered);
	family(&b, "circuits_open", "gauge", "Paths whose flap-guard circuit is open.");
	bprintf(&b, "sockwarden_circuits_open %llu\n", (unsigned long long)g->circuits_open);
	if (b.failed) {
		free(b.p);
		return NULL;
	}
	*len = b.len;
	return b.p;
}

/* Replaces the file atomically: a scraper reads the old text or the new. */
static int write_atomically(const char *file, const char *text, size_t len)
{
	char tmp[4200];
	int fd;

	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", file, (int)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	if (write(fd, text, len) != (ssize_t)len) {
		int err = errno ? errno : EIO;

		close(fd);
		unlink(tmp);
		return -err;
	}
	close(fd);
	if (rename(tmp, file) != 0) {
		int err = errno;

		unlink(tmp);
		return -err;
	}
	return 0;
}

void metrics_publish(struct metrics *m, const struct metrics_gauges *g)
{
	size_t len = 0;
	char *text = metrics_render(m, g, &len), *old;

	if (!text)
		return;
	/* every tick renders; only a change is published and written out */
	if (m->text && len == m->text_len && memcmp(text, m->text, len) == 0) {
		free(text);
		return;
	}
	if (m->file) {
		int rc = write_atomically(m->file, text, len);

		if (rc)
			log_warn("metrics file %s: %s", m->file, strerror(-rc));
	}
	pthread_mutex_lock(&m->lock);
	old = m->text;
	m->text = text;
	m->text_len = len;
	pthread_mutex_unlock(&m->lock);
	free(old);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version,
				  const char *upload_data, size_t *upload_size, void **req_cls)
{
	struct metrics *m = cls;
	struct MHD_Response *resp;
	enum MHD_Result ret;
	unsigned status = MHD_HTTP_OK;
	char *copy = NULL;
	size_t len = 0;

	(void)version;
	(void)upload_data;
	(void)upload_size;
	(void)req_cls;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		static const char msg[] = "only GET\n";

		resp = MHD_create_response_from_buffer(sizeof(msg) - 1, (void *)msg,
						       MHD_RESPMEM_PERSISTENT);
		status = MHD_HTTP_METHOD_NOT_ALLOWED;
	} else if (strcmp(url, "/metrics") != 0) {
		static const char msg[] = "sockwarden: metrics are at /metrics\n";

		resp = MHD_create_response_from_buffer(sizeof(msg) - 1, (void *)msg,
						       MHD_RESPMEM_PERSISTENT);
		status = MHD_HTTP_NOT_FOUND;
	} else {
		pthread_mutex_lock(&m->lock);
		if (m->text) {
			copy = malloc(m->text_len);
			if (copy) {
				memcpy(copy, m->text, m->text_len);
				len = m->text_len;
			}
		}
		pthread_mutex_unlock(&m->lock);
		resp = MHD_create_response_from_buffer(len, copy ? copy : (void *)"",
						       copy ? MHD_RESPMEM_MUST_FREE
							    : MHD_RESPMEM_PERSISTENT);
		if (resp)
			MHD_add_response_header(resp, "Content-Type",
						"text/plain; version=0.0.4; charset=utf-8");
	}
	if (!resp) {
		free(copy);
		return MHD_NO;
	}
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

int metrics_bind(struct metrics *m, const char *addr, const char **why)
{
	char host[256], *colon;
	const char *port;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE |
										AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	int fd, one = 1;

	snprintf(host, sizeof(host), "%s", addr);
	colon = strrchr(host, ':');
	if (!colon || !colon[1]) {
		*why = "expected HOST:PORT";
		return -EINVAL;
	}
	*colon = 0;
	port = colon + 1;
	if (host[0] == '[') {
		size_t n = strlen(host);

		if (n < 2 || host[n - 1] != ']') {
			*why = "expected [IPv6]:PORT";
			return -EINVAL;
		}
		host[n - 1] = 0;
		memmove(host, host + 1, n - 1);
	}
	if (getaddrinfo(host[0] ? host : NULL, port, &hints, &res) != 0 || !res) {
		*why = "cannot resolve the address";
		return -EINVAL;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd >= 0) {
		/* as libmicrohttpd sets up a socket of its own */
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (res->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	}
	if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 32) != 0) {
		int err = errno;

		if (fd >= 0)
			close(fd);
		freeaddrinfo(res);
		*why = err == EACCES ? "cannot listen there (a port below 1024 needs "
				       "CAP_NET_BIND_SERVICE)"
				     : "cannot listen there (in use, or not an address of this host)";
		return -err;
	}
	m->ipv6 = res->ai_family == AF_INET6;
	freeaddrinfo(res);
	m->listen_fd = fd;
	return 0;
}

int metrics_start(struct metrics *m, const char **why)
{
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL;

	if (m->ipv6)
		flags |= MHD_USE_IPv6;
	/* A few scrapers at a time, each with a deadline: a client that connects
	 * and never sends holds one slot for CONNECTION_TIMEOUT seconds, not the
	 * server, and never the event loop (this is another thread, serving the
	 * last rendered text). */
	m->httpd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, m,
				    MHD_OPTION_LISTEN_SOCKET, m->listen_fd,
				    MHD_OPTION_CONNECTION_LIMIT, METRICS_CONNECTIONS_MAX,
				    MHD_OPTION_CONNECTION_TIMEOUT, METRICS_TIMEOUT_S,
				    MHD_OPTION_END);
	if (!m->httpd) {
		*why = "cannot start the HTTP server";
		return -EIO;
	}
	m->listen_fd = -1; /* the daemon's now: MHD_stop_daemon closes it */
	return 0;
}

int metrics_serve(struct metrics *m, const char *addr, const char **why)
{
	int rc = metrics_bind(m, addr, why);

	return rc ? rc : metrics_start(m, why);
}

int metrics_textfile(struct metrics *m, const char *file)
{
	m->file = strdup(file);
	return m->file ? 0 : -ENOMEM;
}
