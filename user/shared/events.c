#include "events.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "paths.h"

void event_env_init(struct event_env *env)
{
	FILE *f;

	memset(env, 0, sizeof(*env));
	if (gethostname(env->host, sizeof(env->host) - 1))
		snprintf(env->host, sizeof(env->host), "unknown");
	f = fopen("/proc/sys/kernel/random/boot_id", "re");
	if (f) {
		if (fgets(env->boot_id, sizeof(env->boot_id), f))
			env->boot_id[strcspn(env->boot_id, "\n")] = 0;
		fclose(f);
	}
	env->real_minus_mono_ns = (int64_t)clock_real_ns() - (int64_t)clock_mono_ns();
}

json_t *event_new(const struct event_env *env, const char *name,
		  const char *severity, uint64_t mono_ns)
{
	char ts[64];
	json_t *ev;

	if (!mono_ns)
		mono_ns = clock_mono_ns();
	clock_format_rfc3339((uint64_t)((int64_t)mono_ns + env->real_minus_mono_ns),
			     ts, sizeof(ts));
	ev = json_object();
	json_object_set_new(ev, "time", json_string(ts));
	json_object_set_new(ev, "mono_ns", json_integer((json_int_t)mono_ns));
	json_object_set_new(ev, "boot_id", json_string(env->boot_id));
	json_object_set_new(ev, "event", json_string(name));
	json_object_set_new(ev, "severity", json_string(severity));
	json_object_set_new(ev, "host", json_string(env->host));
	json_object_set_new(ev, "schema", json_integer(SW_EVENT_SCHEMA_VERSION));
	return ev;
}

char *path_escape(const void *bytes, size_t len)
{
	const unsigned char *s = bytes;
	char *out = malloc(len * 4 + 1), *o = out;
	size_t i = 0;

	if (!out)
		return NULL;
	while (i < len) {
		size_t n = 1;

		if (s[i] == 0) {
			/* a NUL inside a name would end the string anywhere downstream */
			o += sprintf(o, "\\x00");
			i++;
			continue;
		}
		if (s[i] >= 0x80) {
			/* copy a valid multi-byte sequence as is, escape anything else */
			n = (s[i] & 0xe0) == 0xc0 ? 2 : (s[i] & 0xf0) == 0xe0 ? 3 :
			    (s[i] & 0xf8) == 0xf0 ? 4 : 0;
			if (n == 0 || i + n > len || !utf8_valid(s + i, n)) {
				o += sprintf(o, "\\x%02x", s[i]);
				i++;
				continue;
			}
		}
		memcpy(o, s + i, n);
		o += n;
		i += n;
	}
	*o = 0;
	return out;
}

void event_set_path(json_t *ev, const char *key, const void *bytes, size_t len)
{
	const unsigned char *s = bytes;

	if (len > 0 && s[0] == 0) {
		/* abstract name: written @name */
		char *esc = path_escape(s + 1, len - 1);
		char *at = malloc(strlen(esc) + 2);

		sprintf(at, "@%s", esc);
		json_object_set_new(ev, key, json_string(at));
		free(at);
		free(esc);
		return;
	}
	if (utf8_valid(s, len) && !memchr(s, 0, len)) {
		json_object_set_new(ev, key, json_stringn((const char *)s, len));
		return;
	}
	char *esc = path_escape(s, len);
	char *hex = malloc(len * 2 + 1);
	char hexkey[64];

	for (size_t i = 0; i < len; i++)
		sprintf(hex + 2 * i, "%02x", s[i]);
	hex[2 * len] = 0;
	json_object_set_new(ev, key, json_string(esc));
	snprintf(hexkey, sizeof(hexkey), "%s_hex", key);
	json_object_set_new(ev, hexkey, json_string(hex));
	free(esc);
	free(hex);
}

void event_set_proc(json_t *ev, const char *key, pid_t pid, const char *comm,
		    uid_t uid)
{
	json_t *p = json_object();

	json_object_set_new(p, "pid", json_integer(pid));
	if (comm) {
		char *esc = path_escape(comm, strnlen(comm, 16));

		json_object_set_new(p, "comm", json_string(esc));
		free(esc);
	}
	json_object_set_new(p, "uid", json_integer(uid));
	json_object_set_new(ev, key, p);
}

const char *errno_name(int err)
{
	switch (err) {
	case ENOENT: return "ENOENT";
	case ECONNREFUSED: return "ECONNREFUSED";
	case EAGAIN: return "EAGAIN";
	default: return "EOTHER";
	}
}

/* Fixed forever: alerting rules and journalctl MESSAGE_ID= filters rely on them. */
const struct event_type event_types[] = {
	{ "agent_started", "dd67c47137ae4d9d936d93ae9dce87d5" },
	{ "agent_stopping", "2933be3cf75145509a3aa396752538f8" },
	{ "listener_orphaned", "8eb4c5f860fe4890bb514550d5e66acb" },
	{ "socket_unlinked", "17ca140dfb644be5a9494a7fd93e4689" },
	{ "connect_failing", "a89a3d81b82d491f922503347353a6af" },
	{ "connect_still_failing", "0327edc86f0b49549465eabc5667f8ea" },
	{ "connect_recovered", "b060d8dee56f4822b47786c71e3d38eb" },
	{ "stale_socket", "8b0327631b0c4d8ebf1d61142fe66417" },
	{ "listener_wedged", "1cf5dfe9d5474bbf9d1ef1039d98c3f0" },
	{ "events_lost", "51f15c601fc84166898dcf0f9ae4b7a7" },
	{ "rebind_started", "41b8d1de51cb4c88afe115718f25bec3" },
	{ "rebind_succeeded", "477ce5cbb2c042778dd28d82623479a7" },
	{ "rebind_failed", "32b9a77f417f4d24ae4894d41b2ff6ac" },
	{ "rebind_skipped", "0e3ad2f4c83540ff81ab732cc282283f" },
	{ "rebind_suppressed", "37f740d989f44958b1d5260ac8495b13" },
	{ "guard_lost", "7c389aa8701d4c3980977b9d8c3e123c" },
	{ "target_registered", "1492cde0bc01471699b34309842a913f" },
	{ "target_unregistered", "50d50af4015f4e039a1522334781b45a" },
	{ "target_exited", "fc5fc0ff78cb4430a60c8207c386e2ab" },
	{ "action", "470f2e5ba993422187908563bd6f6f40" },
};
const size_t n_event_types = sizeof(event_types) / sizeof(event_types[0]);

int event_type_index(const char *name)
{
	for (size_t i = 0; i < n_event_types; i++)
		if (strcmp(event_types[i].name, name) == 0)
			return (int)i;
	return -1;
}
