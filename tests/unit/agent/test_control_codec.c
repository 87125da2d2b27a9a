/*
 * Unit tests for control_decode() (user/agent/control_codec.c), the decoder of every
 * message a server sends the agent over the control socket
 * (docs/protocol.md). It is the agent's first line against misbehaving or
 * hostile peers: the protocol is strict on purpose (unknown keys are errors),
 * and each refusal carries a documented reason word that libraries act on.
 *
 * Each test feeds raw bytes, exactly as recvmsg() would hand them over, and
 * asserts NULL (accepted, with the decoded fields) or the exact reason word.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "agent/control.h"

/* Decodes a NUL-terminated literal (the NUL not included in len). */
static const char *decode(const char *msg, struct ctl_request *req)
{
	return control_decode(msg, strlen(msg), req);
}

static void assert_refused(const char *msg, const char *word)
{
	struct ctl_request req;
	const char *got = decode(msg, &req);

	if (!got)
		fail_msg("accepted, want \"%s\": %s", word, msg);
	if (strcmp(got, word) != 0)
		fail_msg("got \"%s\", want \"%s\": %s", got, word, msg);
}

static void assert_accepted(const char *msg, struct ctl_request *req)
{
	const char *got = decode(msg, req);

	if (got)
		fail_msg("refused with \"%s\": %s", got, msg);
}

/* A path of exactly n bytes: "/" then 'a's. */
static void make_path(char *out, size_t n)
{
	out[0] = '/';
	memset(out + 1, 'a', n - 1);
	out[n] = 0;
}

/* ----- accepted messages ----- */

static void test_register_heal_fd(void **state)
{
	struct ctl_request req;

	(void)state;
	assert_accepted("{\"op\":\"register\",\"path\":\"/run/app/app.sock\",\"heal\":\"fd\"}",
			&req);
	assert_string_equal(req.op, "register");
	assert_string_equal(req.path, "/run/app/app.sock");
	assert_int_equal(req.heal, HEAL_FD);
	assert_int_equal(req.seq, 0);
}

static void test_register_heal_notify_and_none(void **state)
{
	struct ctl_request req;

	(void)state;
	assert_accepted("{\"op\":\"register\",\"path\":\"/run/a.sock\",\"heal\":\"notify\"}",
			&req);
	assert_int_equal(req.heal, HEAL_NOTIFY);
	assert_accepted("{\"op\":\"register\",\"path\":\"/run/a.sock\",\"heal\":\"none\"}",
			&req);
	assert_int_equal(req.heal, HEAL_NONE);
}

static void test_register_keys_in_any_order_with_whitespace(void **state)
{
	struct ctl_request req;

	(void)state;
	assert_accepted("{\"heal\":\"notify\",\"path\":\"/run/a.sock\",\"op\":\"register\"}",
			&req);
	assert_string_equal(req.op, "register");
	assert_string_equal(req.path, "/run/a.sock");
	assert_int_equal(req.heal, HEAL_NOTIFY);
	assert_accepted(" \n{ \"path\" : \"/run/b.sock\" ,\t\"heal\":\"fd\", \"op\":\"register\" }\n",
			&req);
	assert_string_equal(req.path, "/run/b.sock");
	assert_int_equal(req.heal, HEAL_FD);
}

static void test_register_path_with_escapes_and_utf8(void **state)
{
	struct ctl_request req;

	(void)state;
	/* JSON escapes decode before the path checks; UTF-8 names are fine */
	assert_accepted("{\"op\":\"register\",\"path\":\"\\/run\\/caf\\u00e9.sock\",\"heal\":\"fd\"}",
			&req);
	assert_string_equal(req.path, "/run/caf\xc3\xa9.sock");
}

static void test_adopted_with_seq(void **state)
{
	struct ctl_request req;

	(void)state;
	assert_accepted("{\"op\":\"adopted\",\"path\":\"/run/a.sock\",\"seq\":7}", &req);
	assert_string_equal(req.op, "adopted");
	assert_string_equal(req.path, "/run/a.sock");
	assert_int_equal(req.seq, 7);
	assert_accepted("{\"seq\":1,\"path\":\"/run/a.sock\",\"op\":\"adopted\"}", &req);
	assert_int_equal(req.seq, 1);
}

static void test_adopted_seq_uint32_max(void **state)
{
	struct ctl_request req;

	(void)state;
	assert_accepted("{\"op\":\"adopted\",\"path\":\"/run/a.sock\",\"seq\":4294967295}", &req);
	assert_true(req.seq == UINT32_MAX);
}

static void test_unregister(void **state)
{
	struct ctl_request req;

	(void)state;
	assert_accepted("{\"op\":\"unregister\",\"path\":\"/run/a.sock\"}", &req);
	assert_string_equal(req.op, "unregister");
	assert_string_equal(req.path, "/run/a.sock");
}

static void test_path_of_107_bytes_accepted(void **state)
{
	char path[128], msg[256];
	struct ctl_request req;

	(void)state;
	make_path(path, 107);
	snprintf(msg, sizeof(msg), "{\"op\":\"unregister\",\"path\":\"%s\"}", path);
	assert_accepted(msg, &req);
	assert_string_equal(req.path, path);
}

static void test_message_of_exactly_4096_bytes_accepted(void **state)
{
	char msg[CONTROL_MSG_MAX + 1];
	const char *head = "{\"op\":\"unregister\",\"path\":\"/run/a.sock\"}";
	struct ctl_request req;
	size_t n = strlen(head);

	(void)state;
	/* pad with whitespace after the object, which JSON allows */
	memcpy(msg, head, n);
	memset(msg + n, ' ', CONTROL_MSG_MAX - n);
	assert_null(control_decode(msg, CONTROL_MSG_MAX, &req));
	assert_string_equal(req.path, "/run/a.sock");
}

static void test_decode_does_not_need_a_terminating_nul(void **state)
{
	/* recvmsg() gives bytes and a length, nothing after them */
	char msg[64];
	const char *text = "{\"op\":\"unregister\",\"path\":\"/run/a.sock\"}";
	struct ctl_request req;

	(void)state;
	memset(msg, 'x', sizeof(msg));
	memcpy(msg, text, strlen(text));
	assert_null(control_decode(msg, strlen(text), &req));
	assert_string_equal(req.path, "/run/a.sock");
}

/* ----- malformed ----- */

static void test_malformed_json(void **state)
{
	(void)state;
	assert_refused("", "malformed");
	assert_refused("{", "malformed");
	assert_refused("{\"op\":\"unregister\",\"path\":\"/run/a.sock\"", "malformed");
	assert_refused("{\"op\":\"unregister\",\"path\":\"/run/a.sock\",}", "malformed");
	assert_refused("{'op':'unregister','path':'/run/a.sock'}", "malformed");
	assert_refused("{\"op\":\"unregister\",\"path\":\"/run/a.sock\"}garbage", "malformed");
	assert_refused("{\"op\":\"unregister\",\"path\":\"/run/a.sock\"}{}", "malformed");
}

static void test_not_an_object(void **state)
{
	(void)state;
	assert_refused("[\"register\",\"/run/a.sock\",\"fd\"]", "malformed");
	assert_refused("\"register\"", "malformed");
	assert_refused("42", "malformed");
	assert_refused("null", "malformed");
	assert_refused("{}", "malformed");
}

static void test_unknown_key(void **state)
{
	(void)state;
	assert_refused("{\"op\":\"register\",\"path\":\"/run/a.sock\",\"heal\":\"fd\",\"x\":1}",
		       "malformed");
	assert_refused("{\"x\":1,\"op\":\"unregister\",\"path\":\"/run/a.sock\"}", "malformed");
	/* keys are case-sensitive */
	assert_refused("{\"op\":\"unregister\",\"Path\":\"/run/a.sock\"}", "malformed");
}

static void test_key_of_another_op(void **state)
{
	(void)state;
	/* seq belongs to adopted, heal to register */
	assert_refused("{\"op\":\"register\",\"path\":\"/run/a.sock\",\"heal\":\"fd\",\"seq\":1}",
		       "malformed");
	assert_refused("{\"op\":\"unregister\",\"path\":\"/run/a.sock\",\"heal\":\"fd\"}",
		       "malformed");
	assert_refused("{\"op\":\"unregister\",\"path\":\"/run/a.sock\",\"seq\":1}", "malformed");
	assert_refused("{\"op\":\"adopted\",\"path\":\"/run/a.sock\",\"seq\":1,\"heal\":\"fd\"}",
		       "malformed");
}

static void test_duplicate_key(void **state)
{
	(void)state;
	assert_refused("{\"op\":\"unregister\",\"path\":\"/run/a.sock\",\"path\":\"/run/b.sock\"}",
		       "malformed");
	assert_refused("{\"op\":\"register\",\"path\":\"/run/a.sock\",\"heal\":\"fd\",\"heal\":\"none\"}",
		       "malformed");
}

static void test_missing_key(void **state)
{
	(void)state;
	assert_refused("{\"path\":\"/run/a.sock\",\"heal\":\"fd\"}", "malformed");
	assert_refused("{\"op\":\"register\",\"heal\":\"fd\"}", "malformed");
	assert_refused("{\"op\":\"register\",\"path\":\"/run/a.sock\"}", "malformed");
	assert_refused("{\"op\":\"unregister\"}", "malformed");
	assert_refused("{\"op\":\"adopted\",\"path\":\"/run/a.sock\"}", "malformed");
	assert_refused("{\"op\":\"adopted\",\"seq\":3}", "malformed");
}

static void test_wrong_types(void **state)
{
	(void)state;
	assert_refused("{\"op\":1,\"path\":\"/run/a.sock\"}", "malformed");
	assert_refused("{\"op\":null,\"path\":\"/run/a.sock\"}", "malformed");
	assert_refused("{\"op\":[\"unregister\"],\"path\":\"/run/a.sock\"}", "malformed");
	assert_refused("{\"op\":\"unregister\",\"path\":42}", "malformed");
	assert_refused("{\"op\":\"unregister\",\"path\":null}", "malformed");
	assert_refused("{\"op\":\"unregister\",\"path\":[\"/run/a.sock\"]}", "malformed");
	assert_refused("{\"op\":\"unregister\",\"path\":\"\"}", "malformed");
	assert_refused("{\"op\":\"register\",\"path\":\"/run/a.sock\",\"heal\":1}", "malformed");
	assert_refused("{\"op\":\"register\",\"path\":\"/run/a.sock\",\"heal\":true}", "malformed");
	assert_refused("{\"op\":\"register\",\"path\":\"/run/a.sock\",\"heal\":null}", "malformed");
}

static void test_unknown_heal_value(void **state)
{
	(void)state;
	assert_refused("{\"op\":\"register\",\"path\":\"/run/a.sock\",\"heal\":\"link\"}",
		       "malformed");
	assert_refused("{\"op\":\"register\",\"path\":\"/run/a.sock\",\"heal\":\"FD\"}",
		       "malformed");
	assert_refused("{\"op\":\"register\",\"path\":\"/run/a.sock\",\"heal\":\"\"}",
		       "malformed");
	assert_refused("{\"op\":\"register\",\"path\":\"/run/a.sock\",\"heal\":\"fd \"}",
		       "malformed");
}

static void test_seq_wrong_type_or_range(void **state)
{
	(void)state;
	assert_refused("{\"op\":\"adopted\",\"path\":\"/run/a.sock\",\"seq\":\"7\"}", "malformed");
	assert_refused("{\"op\":\"adopted\",\"path\":\"/run/a.sock\",\"seq\":7.0}", "malformed");
	assert_refused("{\"op\":\"adopted\",\"path\":\"/run/a.sock\",\"seq\":true}", "malformed");
	assert_refused("{\"op\":\"adopted\",\"path\":\"/run/a.sock\",\"seq\":null}", "malformed");
	assert_refused("{\"op\":\"adopted\",\"path\":\"/run/a.sock\",\"seq\":0}", "malformed");
	assert_refused("{\"op\":\"adopted\",\"path\":\"/run/a.sock\",\"seq\":-1}", "malformed");
	assert_refused("{\"op\":\"adopted\",\"path\":\"/run/a.sock\",\"seq\":4294967296}",
		       "malformed");
	assert_refused("{\"op\":\"adopted\",\"path\":\"/run/a.sock\",\"seq\":99999999999999999999999}",
		       "malformed");
}

static void test_non_utf8_bytes_are_malformed(void **state)
{
	(void)state;
	assert_refused("{\"op\":\"unregister\",\"path\":\"/run/\xff.sock\"}", "malformed");
	assert_refused("{\"op\":\"unregister\",\"path\":\"/run/\xc0\xaf.sock\"}", "malformed");
	assert_refused("{\"op\":\"unregister\",\"path\":\"/run/\xed\xa0\x80.sock\"}", "malformed");
	assert_refused("{\"op\":\"unregister\",\"path\":\"/run/a.sock\",\"\xe9\":1}", "malformed");
}

static void test_lone_surrogate_escape_is_malformed(void **state)
{
	(void)state;
	assert_refused("{\"op\":\"unregister\",\"path\":\"/run/\\ud800.sock\"}", "malformed");
}

/* ----- embedded NUL ----- */

static void test_path_with_escaped_nul_refused(void **state)
{
	/* "\u0000" would cut the path short in C: "/run/a.sock\0/../../etc/x"
	 * must not decode as "/run/a.sock" */
	struct ctl_request req;
	const char *msg = "{\"op\":\"unregister\",\"path\":\"/run/a.sock\\u0000/../../etc/x\"}";

	(void)state;
	/* jansson refuses \u0000 unless told to allow it: not valid JSON here */
	assert_string_equal(control_decode(msg, strlen(msg), &req), "malformed");
	assert_string_equal(decode("{\"op\":\"unregister\",\"path\":\"/run/a\\u0000\"}", &req),
			    "malformed");
}

static void test_raw_nul_inside_message_refused(void **state)
{
	/* a raw NUL byte inside the string, with len covering the bytes after it */
	static const char msg[] = "{\"op\":\"unregister\",\"path\":\"/run/a.sock\0/x\"}";
	struct ctl_request req;

	(void)state;
	/* a raw control character inside a JSON string */
	assert_string_equal(control_decode(msg, sizeof(msg) - 1, &req), "malformed");
}

static void test_trailing_nul_byte_is_not_part_of_the_protocol(void **state)
{
	/* "no trailing NUL or newline needed": a NUL after the object is a
	 * byte that is not JSON */
	static const char msg[] = "{\"op\":\"unregister\",\"path\":\"/run/a.sock\"}";
	struct ctl_request req;

	(void)state;
	assert_string_equal(control_decode(msg, sizeof(msg), &req), "malformed");
}

/* ----- too_large ----- */

static void test_too_large(void **state)
{
	char msg[CONTROL_MSG_MAX + 2];
	const char *head = "{\"op\":\"unregister\",\"path\":\"/run/a.sock\"}";
	struct ctl_request req;
	size_t n = strlen(head);

	(void)state;
	memcpy(msg, head, n);
	memset(msg + n, ' ', sizeof(msg) - n);
	assert_string_equal(control_decode(msg, CONTROL_MSG_MAX + 1, &req), "too_large");
	/* size alone decides: even garbage is too_large before it is malformed */
	memset(msg, 'x', sizeof(msg));
	assert_string_equal(control_decode(msg, CONTROL_MSG_MAX + 1, &req), "too_large");
	assert_string_equal(control_decode(msg, (size_t)-1, &req), "too_large");
}

/* ----- unknown_op ----- */

static void test_unknown_op(void **state)
{
	(void)state;
	assert_refused("{\"op\":\"rebind\",\"path\":\"/run/a.sock\",\"seq\":1}", "unknown_op");
	assert_refused("{\"op\":\"registered\",\"path\":\"/run/a.sock\"}", "unknown_op");
	assert_refused("{\"op\":\"Register\",\"path\":\"/run/a.sock\",\"heal\":\"fd\"}",
		       "unknown_op");
	assert_refused("{\"op\":\"\"}", "unknown_op");
	assert_refused("{\"op\":\"frobnicate\"}", "unknown_op");
}

static void test_unknown_op_reported_whatever_its_other_keys(void **state)
{
	(void)state;
	/* the op decides which keys are valid, so an unknown op is the reason */
	assert_refused("{\"op\":\"frobnicate\",\"x\":1}", "unknown_op");
	assert_refused("{\"x\":1,\"op\":\"frobnicate\"}", "unknown_op");
}

static void test_long_unknown_op_is_unknown_op(void **state)
{
	/* protocol.md: unknown_op is "an op this version does not know"; a
	 * newer client's longer op name must read as that, not as malformed,
	 * or it cannot tell an old agent from its own encoding mistake */
	(void)state;
	assert_refused("{\"op\":\"register_with_credentials\",\"path\":\"/run/a.sock\"}",
		       "unknown_op");
	assert_refused("{\"op\":\"0123456789abcdef\"}", "unknown_op");
}

/* ----- bad_path ----- */

static void test_relative_path(void **state)
{
	(void)state;
	assert_refused("{\"op\":\"unregister\",\"path\":\"run/a.sock\"}", "bad_path");
	assert_refused("{\"op\":\"unregister\",\"path\":\"./a.sock\"}", "bad_path");
	assert_refused("{\"op\":\"register\",\"path\":\"a.sock\",\"heal\":\"fd\"}", "bad_path");
}

static void test_unnormalised_path(void **state)
{
	(void)state;
	assert_refused("{\"op\":\"unregister\",\"path\":\"/a/../b\"}", "bad_path");
	assert_refused("{\"op\":\"unregister\",\"path\":\"/run/./a.sock\"}", "bad_path");
	assert_refused("{\"op\":\"unregister\",\"path\":\"//run/a.sock\"}", "bad_path");
	assert_refused("{\"op\":\"unregister\",\"path\":\"/run/app/\"}", "bad_path");
	assert_refused("{\"op\":\"adopted\",\"path\":\"/run/../run/a.sock\",\"seq\":1}", "bad_path");
}

static void test_path_of_108_bytes_too_long(void **state)
{
	char path[256], msg[512];

	(void)state;
	make_path(path, 108);
	snprintf(msg, sizeof(msg), "{\"op\":\"unregister\",\"path\":\"%s\"}", path);
	assert_refused(msg, "bad_path");
	make_path(path, 200);
	snprintf(msg, sizeof(msg), "{\"op\":\"register\",\"path\":\"%s\",\"heal\":\"fd\"}", path);
	assert_refused(msg, "bad_path");
}

static void test_path_with_many_dot_components_refused(void **state)
{
	/* a path is judged as sent, not as it would normalise: the server
	 * bound exactly this name */
	char msg[512];
	char dots[300] = "/run";

	(void)state;
	for (int i = 0; i < 40; i++)
		strcat(dots, "/.");
	strcat(dots, "/a.sock");
	snprintf(msg, sizeof(msg), "{\"op\":\"unregister\",\"path\":\"%s\"}", dots);
	assert_refused(msg, "bad_path");
}

static void test_refusal_clears_the_request(void **state)
{
	struct ctl_request req;

	(void)state;
	memset(&req, 0x5a, sizeof(req));
	assert_non_null(decode("{\"op\":\"unregister\",\"path\":\"run\"}", &req));
	/* nothing half-decoded from an earlier message survives a new decode */
	assert_null(decode("{\"op\":\"unregister\",\"path\":\"/run/a.sock\"}", &req));
	assert_int_equal(req.heal, HEAL_NONE);
	assert_int_equal(req.seq, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_register_heal_fd),
		cmocka_unit_test(test_register_heal_notify_and_none),
		cmocka_unit_test(test_register_keys_in_any_order_with_whitespace),
		cmocka_unit_test(test_register_path_with_escapes_and_utf8),
		cmocka_unit_test(test_adopted_with_seq),
		cmocka_unit_test(test_adopted_seq_uint32_max),
		cmocka_unit_test(test_unregister),
		cmocka_unit_test(test_path_of_107_bytes_accepted),
		cmocka_unit_test(test_message_of_exactly_4096_bytes_accepted),
		cmocka_unit_test(test_decode_does_not_need_a_terminating_nul),
		cmocka_unit_test(test_malformed_json),
		cmocka_unit_test(test_not_an_object),
		cmocka_unit_test(test_unknown_key),
		cmocka_unit_test(test_key_of_another_op),
		cmocka_unit_test(test_duplicate_key),
		cmocka_unit_test(test_missing_key),
		cmocka_unit_test(test_wrong_types),
		cmocka_unit_test(test_unknown_heal_value),
		cmocka_unit_test(test_seq_wrong_type_or_range),
		cmocka_unit_test(test_non_utf8_bytes_are_malformed),
		cmocka_unit_test(test_lone_surrogate_escape_is_malformed),
		cmocka_unit_test(test_path_with_escaped_nul_refused),
		cmocka_unit_test(test_raw_nul_inside_message_refused),
		cmocka_unit_test(test_trailing_nul_byte_is_not_part_of_the_protocol),
		cmocka_unit_test(test_too_large),
		cmocka_unit_test(test_unknown_op),
		cmocka_unit_test(test_unknown_op_reported_whatever_its_other_keys),
		cmocka_unit_test(test_long_unknown_op_is_unknown_op),
		cmocka_unit_test(test_relative_path),
		cmocka_unit_test(test_unnormalised_path),
		cmocka_unit_test(test_path_of_108_bytes_too_long),
		cmocka_unit_test(test_path_with_many_dot_components_refused),
		cmocka_unit_test(test_refusal_clears_the_request),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
