#include "journal.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <time.h>

#include "shared/events.h"

#define JOURNAL_FIELDS_MAX 64

struct journal_entry {
	char **fields;
	struct journal_entry *next;
};

static int priority_of(const char *severity)
{
	if (severity && strcmp(severity, "error") == 0)
		return 3;   /* LOG_ERR */
	if (severity && strcmp(severity, "warning") == 0)
		return 4;   /* LOG_WARNING */
	return 6;           /* LOG_INFO */
}

static bool add(char **f, size_t *n, char *s)
{
	if (!s)
		return false;
	if (*n >= JOURNAL_FIELDS_MAX) {
		free(s);
		return false;
	}
	f[(*n)++] = s;
	return true;
}

static char *fmt(const char *format, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *format, ...)
{
	va_list ap;
	char *s = NULL;

	va_start(ap, format);
	if (vasprintf(&s, format, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

/* SOCKWARDEN_<PREFIX_KEY>: journald field names are upper case letters,
 * digits and underscores. */
static void field_name(char *out, size_t outlen, const char *prefix, const char *key)
{
	size_t n = (size_t)snprintf(out, outlen, "SOCKWARDEN_%s%s%s", prefix ? prefix : "",
				    prefix ? "_" : "", key);

	for (size_t i = 0; i < n && i < outlen; i++)
		out[i] = isalnum((unsigned char)out[i]) ? (char)toupper((unsigned char)out[i]) : '_';
}

static void add_scalars(char **f, size_t *n, json_t *obj, const char *prefix)
{
	const char *key;
	json_t *v;
	char name[128];

	json_object_foreach(obj, key, v) {
		field_name(name, sizeof(name), prefix, key);
		if (json_is_string(v))
			add(f, n, fmt("%s=%s", name, json_string_value(v)));
		else if (json_is_integer(v))
			add(f, n, fmt("%s=%lld", name, (long long)json_integer_value(v)));
		else if (json_is_real(v))
			add(f, n, fmt("%s=%.3f", name, json_real_value(v)));
		else if (json_is_boolean(v))
			add(f, n, fmt("%s=%s", name, json_is_true(v) ? "true" : "false"));
		else if (json_is_object(v) && !prefix)
			add_scalars(f, n, v, key); /* owner.pid -> SOCKWARDEN_OWNER_PID */
	}
}

/* One line a person reads in `journalctl`; the fields carry the rest. */
static char *message_of(json_t *ev)
{
	const char *name = json_string_value(json_object_get(ev, "event"));
	const char *path = json_string_value(json_object_get(ev, "path"));
	const char *reason = json_string_value(json_object_get(ev, "reason"));
	const char *how = json_string_value(json_object_get(ev, "how"));
	json_t *actor = json_object_get(ev, "actor"), *owner = json_object_get(ev, "owner");
	char who[96] = "";

	if (json_is_object(actor))
		snprintf(who, sizeof(who), " by %s[%lld]",
			 json_string_value(json_object_get(actor, "comm")) ?: "?",
			 (long long)json_integer_value(json_object_get(actor, "pid")));
	else if (json_is_object(owner))
		snprintf(who, sizeof(who), " (owner %s[%lld])",
			 json_string_value(json_object_get(owner, "comm")) ?: "?",
			 (long long)json_integer_value(json_object_get(owner, "pid")));
	return fmt("MESSAGE=%s%s%s%s%s%s%s%s", name ? name : "event", path ? " " : "", path ? path : "",
		   who, how ? " how=" : "", how ? how : "", reason ? " reason=" : "",
		   reason ? reason : "");
}

char **journal_fields(json_t *ev)
{
	char **f = calloc(JOURNAL_FIELDS_MAX + 1, sizeof(*f));
	const char *name = json_string_value(json_object_get(ev, "event"));
	int type = name ? event_type_index(name) : -1;
	size_t n = 0;
	char *json;

	if (!f)
		return NULL;
	add(f, &n, message_of(ev));
	add(f, &n, fmt("PRIORITY=%d",
		       priority_of(json_string_value(json_object_get(ev, "severity")))));
	if (type >= 0)
		add(f, &n, fmt("MESSAGE_ID=%s", event_types[type].message_id));
	add(f, &n, fmt("SYSLOG_IDENTIFIER=sockwarden"));
	json = json_dumps(ev, JSON_COMPACT | JSON_REAL_PRECISION(9));
	if (json) {
		add(f, &n, fmt("SOCKWARDEN_JSON=%s", json));
		free(json);
	}
	add_scalars(f, &n, ev, NULL); /* stops at JOURNAL_FIELDS_MAX */
	f[n] = NULL;
	return f;
}

void journal_fields_free(char **f)
{
	if (!f)
		return;
	for (size_t i = 0; f[i]; i++)
		free(f[i]);
	free(f);
}

static void send_entry(struct journal_sink *j, char **fields)
{
	struct iovec iov[JOURNAL_FIELDS_MAX];
	int n = 0;

	for (; n < JOURNAL_FIELDS_MAX && fields[n]; n++) {
		iov[n].iov_base = fields[n];
		iov[n].iov_len = strlen(fields[n]);
	}
	if (sd_journal_sendv(iov, n) < 0)
		__atomic_add_fetch(&j->send_failed, 1, __ATOMIC_RELAXED);
	else
		__atomic_add_fetch(&j->sent, 1, __ATOMIC_RELAXED);
}

static void *journal_thread(void *arg)
{
	struct journal_sink *j = arg;

	pthread_mutex_lock(&j->lock);
	for (;;) {
		while (!j->head && !j->stop)
			pthread_cond_wait(&j->cond, &j->lock);
		if (!j->head)
			break;
		struct journal_entry *e = j->head;

		j->head = e->next;
		if (!j->head)
			j->tail = NULL;
		j->queued--;
		pthread_mutex_unlock(&j->lock);
		send_entry(j, e->fields);
		journal_fields_free(e->fields);
		free(e);
		pthread_mutex_lock(&j->lock);
	}
	pthread_mutex_unlock(&j->lock);
	return NULL;
}

int journal_open(struct journal_sink *j)
{
	memset(j, 0, sizeof(*j));
	pthread_mutex_init(&j->lock, NULL);
	pthread_cond_init(&j->cond, NULL);
	if (pthread_create(&j->thread, NULL, journal_thread, j) != 0)
		return -errno;
	j->started = true;
	return 0;
}

bool journal_emit(struct journal_sink *j, json_t *ev)
{
	struct journal_entry *e;

	if (!j->started)
		return false;
	pthread_mutex_lock(&j->lock);
	if (j->queued >= JOURNAL_QUEUE_MAX) {
		j->dropped++;
		pthread_mutex_unlock(&j->lock);
		return false;
	}
	pthread_mutex_unlock(&j->lock);
	e = calloc(1, sizeof(*e));
	if (!e || !(e->fields = journal_fields(ev))) {
		free(e);
		__atomic_add_fetch(&j->dropped, 1, __ATOMIC_RELAXED);
		return false;
	}
	pthread_mutex_lock(&j->lock);
	if (j->tail)
		j->tail->next = e;
	else
		j->head = e;
	j->tail = e;
	j->queued++;
	pthread_cond_signal(&j->cond);
	pthread_mutex_unlock(&j->lock);
	return true;
}

void journal_close(struct journal_sink *j, int timeout_ms)
{
	struct timespec deadline;

	if (!j->started)
		return;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&j->lock);
	j->stop = true;
	pthread_cond_signal(&j->cond);
	pthread_mutex_unlock(&j->lock);
	/* a journald that does not read must not hold up the stop */
	if (pthread_timedjoin_np(j->thread, NULL, &deadline) != 0) {
		pthread_cancel(j->thread);
		pthread_join(j->thread, NULL);
	}
	while (j->head) {
		struct journal_entry *e = j->head;

		j->head = e->next;
		journal_fields_free(e->fields);
		free(e);
		j->dropped++;
	}
	j->started = false;
}
