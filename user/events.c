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
	if (utf8_valid(s, len)) {
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
