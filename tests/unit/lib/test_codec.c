/*
 * Unit tests for libsockwarden's codec (user/lib/codec.c): the encoder of the
 * three messages a server sends the agent and the strict decoder of the four
 * the agent sends back (docs/protocol.md). The library trusts nothing the
 * agent's socket delivers, so every refusal here is a message the library
 * must not act on.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "codec.h"

static int decode(const char *msg, struct sw_codec_msg *m)
{
	return sw_codec_decode(msg, strlen(msg), m);
}

static void test_decode_each_agent_message(void **state)
{
	struct sw_codec_msg m;

	(void)state;
	assert_int_equal(decode("{\"op\":\"registered\",\"path\":\"/run/a.sock\"}", &m), 0);
	assert_int_equal(m.op, SW_OP_REGISTERED);
	assert_string_equal(m.path, "/run/a.sock");

	assert_int_equal(decode("{\"op\":\"rebind\",\"path\":\"/run/a.sock\",\"seq\":7}", &m), 0);
	assert_int_equal(m.op, SW_OP_REBIND);
	assert_int_equal(m.seq, 7);

	assert_int_equal(decode("{\"op\":\"unregistered\",\"path\":\"/run/a.sock\"}", &m), 0);
	assert_int_equal(m.op, SW_OP_UNREGISTERED);

	assert_int_equal(decode("{\"op\":\"error\",\"path\":\"/run/a.sock\","
				"\"reason\":\"not_listening\"}", &m), 0);
	assert_int_equal(m.op, SW_OP_ERROR);
	assert_string_equal(m.reason, "not_listening");

	/* an error about the connection as a whole names no path */
	assert_int_equal(decode("{\"op\":\"error\",\"reason\":\"malformed\"}", &m), 0);
	assert_int_equal(m.op, SW_OP_ERROR);
	assert_string_equal(m.path, "");
}

static void test_decode_keys_in_any_order_with_whitespace(void **state)
{
	struct sw_codec_msg m;

	(void)state;
	assert_int_equal(decode(" { \"seq\" : 3 , \"path\":\"/p\", \"op\":\"rebind\" } ", &m), 0);
	assert_int_equal(m.op, SW_OP_REBIND);
	assert_int_equal(m.seq, 3);
	assert_string_equal(m.path, "/p");
}

static void test_decode_refuses_what_is_not_exactly_a_message(void **state)
{
	static const char *bad[] = {
		"",
		"[]",
		"{\"op\":\"registered\"}",                                  /* missing path */
		"{\"op\":\"registered\",\"path\":\"/a\",\"x\":1}",          /* unknown key */
		"{\"op\":\"registered\",\"path\":\"/a\",\"path\":\"/b\"}",  /* duplicate key */
		"{\"op\":\"registered\",\"path\":\"/a\"} x",                /* trailing bytes */
		"{\"op\":\"registered\",\"path\":\"a\"}",                   /* relative path */
		"{\"op\":\"registered\",\"path\":\"/a/../b\"}",             /* not normalised */
		"{\"op\":\"rebind\",\"path\":\"/a\",\"seq\":0}",            /* seq starts at 1 */
		"{\"op\":\"rebind\",\"path\":\"/a\",\"seq\":\"1\"}",        /* wrong type */
		"{\"op\":\"rebind\",\"path\":\"/a\"}",                      /* missing seq */
		"{\"op\":\"hello\",\"path\":\"/a\"}",                       /* unknown op */
		"{\"op\":\"registered\",\"path\":\"/a\\u0000b\"}",          /* escaped NUL */
		"{\"op\":\"registered\",\"path\":\"/\xff\"}",               /* not UTF-8 */
	};
	struct sw_codec_msg m;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = decode(bad[i], &m);

		if (rc != -EBADMSG)
			fail_msg("accepted or misjudged (%d): %s", rc, bad[i]);
	}
}

static void test_decode_size_limit(void **state)
{
	static char big[SW_MSG_MAX + 2];
	struct sw_codec_msg m;

	(void)state;
	memset(big, ' ', sizeof(big) - 1);
	assert_int_equal(sw_codec_decode(big, SW_MSG_MAX + 1, &m), -EMSGSIZE);
}

static void test_decode_path_of_107_and_108_bytes(void **state)
{
	char path[SW_SOCKET_PATH_MAX + 2], msg[256];
	struct sw_codec_msg m;

	(void)state;
	memset(path, 'a', sizeof(path));
	path[0] = '/';
	path[SW_SOCKET_PATH_MAX] = 0;
	snprintf(msg, sizeof(msg), "{\"op\":\"registered\",\"path\":\"%s\"}", path);
	assert_int_equal(decode(msg, &m), 0);
	assert_int_equal(strlen(m.path), SW_SOCKET_PATH_MAX);

	path[SW_SOCKET_PATH_MAX] = 'a';
	path[SW_SOCKET_PATH_MAX + 1] = 0;
	snprintf(msg, sizeof(msg), "{\"op\":\"registered\",\"path\":\"%s\"}", path);
	assert_int_equal(decode(msg, &m), -EBADMSG);
}

static void test_encode_each_server_message(void **state)
{
	char buf[256];

	(void)state;
	assert_int_equal(sw_codec_encode_register(buf, sizeof(buf), "/run/a.sock", SW_HEAL_FD),
			 strlen("{\"op\":\"register\",\"path\":\"/run/a.sock\",\"heal\":\"fd\"}"));
	assert_string_equal(buf, "{\"op\":\"register\",\"path\":\"/run/a.sock\",\"heal\":\"fd\"}");
	assert_true(sw_codec_encode_adopted(buf, sizeof(buf), "/run/a.sock", 42) > 0);
	assert_string_equal(buf, "{\"op\":\"adopted\",\"path\":\"/run/a.sock\",\"seq\":42}");
	assert_true(sw_codec_encode_unregister(buf, sizeof(buf), "/run/a.sock") > 0);
	assert_string_equal(buf, "{\"op\":\"unregister\",\"path\":\"/run/a.sock\"}");
}

static void test_encode_escapes_the_path(void **state)
{
	char buf[256];

	(void)state;
	assert_true(sw_codec_encode_unregister(buf, sizeof(buf), "/run/a\"b\\c") > 0);
	assert_string_equal(buf, "{\"op\":\"unregister\",\"path\":\"/run/a\\\"b\\\\c\"}");
}

static void test_encode_refuses_bad_input(void **state)
{
	char buf[256], longp[SW_SOCKET_PATH_MAX + 2];

	(void)state;
	memset(longp, 'a', sizeof(longp));
	longp[0] = '/';
	longp[sizeof(longp) - 1] = 0;
	assert_int_equal(sw_codec_encode_register(buf, sizeof(buf), "rel", SW_HEAL_FD), -EINVAL);
	assert_int_equal(sw_codec_encode_register(buf, sizeof(buf), "/a", (enum sw_heal)9),
			 -EINVAL);
	assert_int_equal(sw_codec_encode_register(buf, sizeof(buf), longp, SW_HEAL_FD),
			 -ENAMETOOLONG);
	assert_int_equal(sw_codec_encode_adopted(buf, sizeof(buf), "/a", 0), -EINVAL);
	assert_int_equal(sw_codec_encode_unregister(buf, 8, "/run/a.sock"), -EMSGSIZE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode_each_agent_message),
		cmocka_unit_test(test_decode_keys_in_any_order_with_whitespace),
		cmocka_unit_test(test_decode_refuses_what_is_not_exactly_a_message),
		cmocka_unit_test(test_decode_size_limit),
		cmocka_unit_test(test_decode_path_of_107_and_108_bytes),
		cmocka_unit_test(test_encode_each_server_message),
		cmocka_unit_test(test_encode_escapes_the_path),
		cmocka_unit_test(test_encode_refuses_bad_input),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
