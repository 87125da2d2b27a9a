/*
 * Unit tests for user/shared/events.c and clock_format_rfc3339() (user/shared/clock.c):
 * the JSON encoding every consumer of sockwarden's events parses
 * (docs/events.md, schema version 1).
 *
 * The common fields and their exact formats are a contract with log
 * pipelines, and socket paths are arbitrary bytes: a path that is not UTF-8
 * must still produce valid JSON, readable ("path", escaped) and exact
 * ("path_hex"). The event environment (host, boot id, realtime offset) is
 * filled in by hand so that every field, the time included, is known.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "shared/clock.h"
#include "shared/events.h"

/* 2026-11-23T14:26:09.123456789Z (checked with Python's datetime) */
#define REAL_NS 1795443969123456789ULL
#define MONO_NS 86400123456789ULL

static struct event_env test_env(void)
{
	struct event_env env;

	memset(&env, 0, sizeof(env));
	strcpy(env.host, "node-7.example");
	strcpy(env.boot_id, "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0");
	env.real_minus_mono_ns = (int64_t)(REAL_NS - MONO_NS);
	return env;
}

static const char *str(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);

	if (!json_is_string(v))
		fail_msg("\"%s\" is missing or not a string", key);
	return json_string_value(v);
}

/* ----- clock_format_rfc3339 ----- */

static void assert_rfc3339(uint64_t ns, const char *want)
{
	char out[64];

	memset(out, 'x', sizeof(out));
	clock_format_rfc3339(ns, out, sizeof(out));
	assert_string_equal(out, want);
}

static void test_rfc3339_epoch(void **state)
{
	(void)state;
	assert_rfc3339(0, "1970-01-01T00:00:00.000000000Z");
}

static void test_rfc3339_known_instants(void **state)
{
	(void)state;
	assert_rfc3339(REAL_NS, "2026-11-23T14:26:09.123456789Z");
	assert_rfc3339(1700000000000000001ULL, "2023-11-14T22:13:20.000000001Z");
	assert_rfc3339(999999999ULL, "1970-01-01T00:00:00.999999999Z");
	/* a leap day, and the last nanosecond of a year */
	assert_rfc3339(1709164800000000000ULL, "2024-02-29T00:00:00.000000000Z");
	assert_rfc3339(1735689599999999999ULL, "2024-12-31T23:59:59.999999999Z");
}

static void test_rfc3339_truncates_safely(void **state)
{
	char out[11];

	(void)state;
	memset(out, 'x', sizeof(out));
	clock_format_rfc3339(REAL_NS, out, sizeof(out));
	assert_string_equal(out, "2026-11-23");
}

/* ----- event_new ----- */

static void test_event_new_has_common_fields(void **state)
{
	struct event_env env = test_env();
	json_t *ev = event_new(&env, "connect_failing", "warning", MONO_NS);

	(void)state;
	assert_non_null(ev);
	assert_string_equal(str(ev, "time"), "2026-11-23T14:26:09.123456789Z");
	assert_true(json_is_integer(json_object_get(ev, "mono_ns")));
	assert_true((uint64_t)json_integer_value(json_object_get(ev, "mono_ns")) == MONO_NS);
	assert_string_equal(str(ev, "boot_id"), "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0");
	assert_string_equal(str(ev, "event"), "connect_failing");
	assert_string_equal(str(ev, "severity"), "warning");
	assert_string_equal(str(ev, "host"), "node-7.example");
	assert_true(json_is_integer(json_object_get(ev, "schema")));
	assert_int_equal(json_integer_value(json_object_get(ev, "schema")), 1);
	assert_int_equal(SW_EVENT_SCHEMA_VERSION, 1);
	/* nothing else: "path" only where an endpoint is concerned */
	assert_int_equal(json_object_size(ev), 7);
	json_decref(ev);
}

static void test_event_new_time_follows_mono_ns(void **state)
{
	struct event_env env = test_env();
	json_t *ev = event_new(&env, "agent_started", "info", MONO_NS + 876543211ULL);

	(void)state;
	/* .123456789 + .876543211 = one second later, to the nanosecond */
	assert_string_equal(str(ev, "time"), "2026-11-23T14:26:10.000000000Z");
	json_decref(ev);
}

static void test_event_new_zero_mono_means_now(void **state)
{
	struct event_env env = test_env();
	uint64_t before = clock_mono_ns();
	json_t *ev = event_new(&env, "agent_stopping", "info", 0);
	uint64_t after = clock_mono_ns();
	uint64_t mono = (uint64_t)json_integer_value(json_object_get(ev, "mono_ns"));
	const char *t = str(ev, "time");

	(void)state;
	assert_true(mono >= before && mono <= after);
	assert_int_equal(strlen(t), strlen("2026-11-23T14:26:09.123456789Z"));
	assert_int_equal(t[10], 'T');
	assert_int_equal(t[strlen(t) - 1], 'Z');
	json_decref(ev);
}

static void test_event_env_init_reads_host_and_boot(void **state)
{
	struct event_env env;
	uint64_t real_then = clock_real_ns();

	(void)state;
	event_env_init(&env);
	assert_true(env.host[0] != 0);
	/* /proc/sys/kernel/random/boot_id is a UUID, without its newline */
	assert_int_equal(strlen(env.boot_id), 36);
	assert_null(strchr(env.boot_id, '\n'));
	/* mono + offset lands on the realtime clock, give or take a second */
	{
		int64_t real_now = (int64_t)clock_mono_ns() + env.real_minus_mono_ns;

		assert_true(real_now >= (int64_t)real_then - (int64_t)NSEC_PER_SEC);
		assert_true(real_now <= (int64_t)clock_real_ns() + (int64_t)NSEC_PER_SEC);
	}
}

/* ----- paths ----- */

static void test_set_path_valid_utf8_gives_path_only(void **state)
{
	static const char p[] = "/run/caf\xc3\xa9/\xe2\x82\xac.sock";
	json_t *ev = json_object();

	(void)state;
	event_set_path(ev, "path", p, strlen(p));
	assert_string_equal(str(ev, "path"), p);
	assert_null(json_object_get(ev, "path_hex"));
	assert_int_equal(json_object_size(ev), 1);
	json_decref(ev);
}

static void test_set_path_uses_len_not_nul(void **state)
{
	json_t *ev = json_object();

	(void)state;
	event_set_path(ev, "path", "/run/a.sock-and-more", strlen("/run/a.sock"));
	assert_string_equal(str(ev, "path"), "/run/a.sock");
	json_decref(ev);
}

static void test_set_path_invalid_bytes_escaped_plus_hex(void **state)
{
	static const char p[] = "/run/\xff.sock";
	json_t *ev = json_object();

	(void)state;
	event_set_path(ev, "path", p, strlen(p));
	/* each invalid byte is written \xNN: a backslash, 'x', two hex digits */
	assert_string_equal(str(ev, "path"), "/run/\\xff.sock");
	assert_string_equal(str(ev, "path_hex"), "2f72756e2fff2e736f636b");
	assert_int_equal(json_object_size(ev), 2);
	json_decref(ev);
}

static void test_set_path_mixed_valid_and_invalid_sequences(void **state)
{
	/* a valid é, an overlong '/', a truncated euro sign at the end */
	static const char p[] = "/\xc3\xa9/\xc0\xaf/\xe2\x82";
	json_t *ev = json_object();
	char *dump;

	(void)state;
	event_set_path(ev, "path", p, strlen(p));
	assert_string_equal(str(ev, "path"), "/\xc3\xa9/\\xc0\\xaf/\\xe2\\x82");
	assert_string_equal(str(ev, "path_hex"), "2fc3a92fc0af2fe282");
	/* and the whole event serialises */
	dump = json_dumps(ev, JSON_COMPACT);
	assert_non_null(dump);
	free(dump);
	json_decref(ev);
}

static void test_set_path_other_key_gets_its_own_hex_key(void **state)
{
	static const char p[] = "/tmp/\xfe";
	json_t *ev = json_object();

	(void)state;
	event_set_path(ev, "target", p, strlen(p));
	assert_string_equal(str(ev, "target"), "/tmp/\\xfe");
	assert_string_equal(str(ev, "target_hex"), "2f746d702ffe");
	assert_null(json_object_get(ev, "path"));
	assert_null(json_object_get(ev, "path_hex"));
	json_decref(ev);
}

static void test_set_path_abstract_name_written_with_at(void **state)
{
	json_t *ev = json_object();

	(void)state;
	event_set_path(ev, "path", "\0sockwarden", 11);
	assert_string_equal(str(ev, "path"), "@sockwarden");
	assert_null(json_object_get(ev, "path_hex"));
	json_decref(ev);
}

static void test_set_path_abstract_name_with_invalid_byte_is_escaped(void **state)
{
	json_t *ev = json_object();

	(void)state;
	event_set_path(ev, "path", "\0app\xff", 5);
	assert_string_equal(str(ev, "path"), "@app\\xff");
	json_decref(ev);
}

/* ----- path_escape ----- */

static void test_path_escape(void **state)
{
	char *s;

	(void)state;
	s = path_escape("/run/a.sock", 11);
	assert_string_equal(s, "/run/a.sock");
	free(s);
	s = path_escape("", 0);
	assert_string_equal(s, "");
	free(s);
	s = path_escape("\xff\xfe", 2);
	assert_string_equal(s, "\\xff\\xfe");
	free(s);
	/* a lone continuation byte, a surrogate, a valid 4-byte emoji */
	s = path_escape("\x80|\xed\xa0\x80|\xf0\x9f\x98\x80", 10);
	assert_string_equal(s, "\\x80|\\xed\\xa0\\x80|\xf0\x9f\x98\x80");
	free(s);
	/* the worst case, every byte escaped, fits its buffer */
	{
		unsigned char all[256];

		memset(all, 0xff, sizeof(all));
		s = path_escape(all, sizeof(all));
		assert_int_equal(strlen(s), 4 * sizeof(all));
		free(s);
	}
}

/* ----- processes ----- */

static void test_set_proc_fields(void **state)
{
	json_t *ev = json_object();
	json_t *p;

	(void)state;
	event_set_proc(ev, "client", 4242, "curl", 1000);
	p = json_object_get(ev, "client");
	assert_true(json_is_object(p));
	assert_int_equal(json_integer_value(json_object_get(p, "pid")), 4242);
	assert_string_equal(str(p, "comm"), "curl");
	assert_int_equal(json_integer_value(json_object_get(p, "uid")), 1000);
	assert_int_equal(json_object_size(p), 3);
	json_decref(ev);
}

static void test_set_proc_without_comm(void **state)
{
	json_t *ev = json_object();
	json_t *p;

	(void)state;
	event_set_proc(ev, "owner", 1, NULL, 0);
	p = json_object_get(ev, "owner");
	assert_int_equal(json_integer_value(json_object_get(p, "pid")), 1);
	assert_null(json_object_get(p, "comm"));
	assert_int_equal(json_integer_value(json_object_get(p, "uid")), 0);
	json_decref(ev);
}

static void test_set_proc_comm_of_16_bytes_without_nul(void **state)
{
	/* the kernel's comm is 16 bytes; the test gives 16 non-NUL bytes
	 * followed by more, which must not be read */
	static const char comm[] = "0123456789abcdefGARBAGE";
	json_t *ev = json_object();

	(void)state;
	event_set_proc(ev, "actor", 7, comm, 0);
	assert_string_equal(str(json_object_get(ev, "actor"), "comm"), "0123456789abcdef");
	json_decref(ev);
}

static void test_set_proc_comm_invalid_utf8_escaped(void **state)
{
	json_t *ev = json_object();

	(void)state;
	event_set_proc(ev, "actor", 7, "rm\xff", 0);
	assert_string_equal(str(json_object_get(ev, "actor"), "comm"), "rm\\xff");
	json_decref(ev);
}

static void test_set_proc_uid_above_int32(void **state)
{
	json_t *ev = json_object();

	(void)state;
	/* uids of user namespaces' high ranges, and (uid_t)-1 */
	event_set_proc(ev, "client", 5, "x", 4000000000u);
	assert_true(json_integer_value(json_object_get(json_object_get(ev, "client"), "uid")) ==
		    4000000000LL);
	json_decref(ev);
}

/* ----- errno names ----- */

static void test_errno_names(void **state)
{
	(void)state;
	assert_string_equal(errno_name(ENOENT), "ENOENT");
	assert_string_equal(errno_name(ECONNREFUSED), "ECONNREFUSED");
	assert_string_equal(errno_name(EAGAIN), "EAGAIN");
	assert_string_equal(errno_name(EWOULDBLOCK), "EAGAIN");
	assert_string_equal(errno_name(EPERM), "EOTHER");
	assert_string_equal(errno_name(0), "EOTHER");
	assert_string_equal(errno_name(-ENOENT), "EOTHER");
	assert_string_equal(errno_name(99999), "EOTHER");
}

/* Found by fuzz/event_path.c: a NUL inside a name made JSON no parser reads
 * back; it is escaped now, and the exact bytes go to path_hex. */
static void test_path_with_nul_is_escaped(void **state)
{
	json_t *ev = json_object(), *back;
	char *s;

	(void)state;
	event_set_path(ev, "path", "/a\0b", 4);
	assert_string_equal(json_string_value(json_object_get(ev, "path")), "/a\\x00b");
	assert_string_equal(json_string_value(json_object_get(ev, "path_hex")), "2f610062");
	s = json_dumps(ev, JSON_COMPACT);
	back = json_loads(s, 0, NULL);
	assert_non_null(back);
	json_decref(back);
	free(s);
	json_decref(ev);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc3339_epoch),
		cmocka_unit_test(test_rfc3339_known_instants),
		cmocka_unit_test(test_rfc3339_truncates_safely),
		cmocka_unit_test(test_event_new_has_common_fields),
		cmocka_unit_test(test_event_new_time_follows_mono_ns),
		cmocka_unit_test(test_event_new_zero_mono_means_now),
		cmocka_unit_test(test_event_env_init_reads_host_and_boot),
		cmocka_unit_test(test_set_path_valid_utf8_gives_path_only),
		cmocka_unit_test(test_set_path_uses_len_not_nul),
		cmocka_unit_test(test_set_path_invalid_bytes_escaped_plus_hex),
		cmocka_unit_test(test_set_path_mixed_valid_and_invalid_sequences),
		cmocka_unit_test(test_set_path_other_key_gets_its_own_hex_key),
		cmocka_unit_test(test_set_path_abstract_name_written_with_at),
		cmocka_unit_test(test_set_path_abstract_name_with_invalid_byte_is_escaped),
		cmocka_unit_test(test_path_escape),
		cmocka_unit_test(test_set_proc_fields),
		cmocka_unit_test(test_set_proc_without_comm),
		cmocka_unit_test(test_set_proc_comm_of_16_bytes_without_nul),
		cmocka_unit_test(test_set_proc_comm_invalid_utf8_escaped),
		cmocka_unit_test(test_set_proc_uid_above_int32),
		cmocka_unit_test(test_errno_names),
		cmocka_unit_test(test_path_with_nul_is_escaped),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
