/*
 * Event encoding (DESIGN §5, docs/events.md): every event is a JSON object with
 * the common fields; this component builds them with jansson and hands the
 * finished object to the sinks.
 */
#ifndef SW_EVENTS_H
#define SW_EVENTS_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define SW_EVENT_SCHEMA_VERSION 1

struct event_env {
	char host[256];
	char boot_id[64];
	/* realtime - monotonic at start, to stamp events that carry a mono time */
	int64_t real_minus_mono_ns;
};

void event_env_init(struct event_env *env);
/* A new event with the common fields; mono_ns is when it happened (0 = now). */
json_t *event_new(const struct event_env *env, const char *name,
		  const char *severity, uint64_t mono_ns);
/* Sets "path" (escaped if not UTF-8, then also "path_hex"). */
void event_set_path(json_t *ev, const char *key, const void *bytes, size_t len);
/* A process object {"pid","comm","uid"} under key; comm may be NULL. */
void event_set_proc(json_t *ev, const char *key, pid_t pid, const char *comm,
		    uid_t uid);
/* Writes bytes as a JSON-safe string: invalid UTF-8 bytes become "\\xNN". */
char *path_escape(const void *bytes, size_t len);
const char *errno_name(int err);

/* Every event type the agent emits, in one table: metrics count by index,
 * journald tags each with its fixed MESSAGE_ID. */
struct event_type {
	const char *name;
	const char *message_id; /* 128-bit, hex, as journald wants it */
};
extern const struct event_type event_types[];
extern const size_t n_event_types;
/* The index of an event name in event_types, or -1. */
int event_type_index(const char *name);
#endif
