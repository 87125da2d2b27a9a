/*
 * Unit tests for user/shared/paths.c: lexical path handling and UTF-8 checks.
 *
 * Every endpoint key, every control-protocol path and every event's "path"
 * goes through these functions, and name_hash() must agree bit for bit with
 * the FNV-1a the BPF programs compute over last path components, or
 * tracepoint-mode matching silently misses watched names.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "shared/paths.h"

/* ----- path_normalize ----- */

static void assert_normalizes_to(const char *in, const char *want)
{
	char out[SW_PATH_MAX];

	if (!path_normalize(in, out, sizeof(out)))
		fail_msg("path_normalize(\"%s\") failed, want \"%s\"", in, want);
	assert_string_equal(out, want);
}

static void test_normalize_collapses_slashes_dots_and_dotdot(void **state)
{
	(void)state;
	assert_normalizes_to("//a/./b/../c", "/a/c");
	assert_normalizes_to("/run/app/app.sock", "/run/app/app.sock");
	assert_normalizes_to("/run//app///x.sock", "/run/app/x.sock");
	assert_normalizes_to("/run/app/", "/run/app");
	assert_normalizes_to("/run/./././app/.", "/run/app");
	assert_normalizes_to("/a/b/c/../../d", "/a/d");
	assert_normalizes_to("/a/b/..", "/a");
	assert_normalizes_to("/a/..", "/");
}

static void test_normalize_never_climbs_above_root(void **state)
{
	(void)state;
	assert_normalizes_to("/", "/");
	assert_normalizes_to("//", "/");
	assert_normalizes_to("/..", "/");
	assert_normalizes_to("/../..", "/");
	assert_normalizes_to("/../../run/../tmp", "/tmp");
	assert_normalizes_to("/.", "/");
}

static void test_normalize_keeps_dot_prefixed_names(void **state)
{
	(void)state;
	/* only "." and ".." are special, not names that start with dots */
	assert_normalizes_to("/run/.hidden/...", "/run/.hidden/...");
	assert_normalizes_to("/run/..x/.y", "/run/..x/.y");
}

static void test_normalize_rejects_relative_and_empty(void **state)
{
	char out[64];

	(void)state;
	assert_false(path_normalize("run/app.sock", out, sizeof(out)));
	assert_false(path_normalize("./app.sock", out, sizeof(out)));
	assert_false(path_normalize("../app.sock", out, sizeof(out)));
	assert_false(path_normalize("", out, sizeof(out)));
	assert_false(path_normalize(NULL, out, sizeof(out)));
}

static void test_normalize_rejects_output_too_small(void **state)
{
	char out[16];

	(void)state;
	/* "/abc" needs 5 bytes with its NUL */
	assert_false(path_normalize("/abc", out, 4));
	assert_true(path_normalize("/abc", out, 5));
	assert_string_equal(out, "/abc");
	/* the separator counts too: "/ab/c" needs 6 */
	assert_false(path_normalize("/ab/c", out, 5));
	assert_true(path_normalize("/ab/c", out, 6));
	assert_string_equal(out, "/ab/c");
	/* even "/" needs two bytes */
	assert_false(path_normalize("/", out, 1));
	assert_true(path_normalize("/", out, 2));
	assert_string_equal(out, "/");
}

/* ----- path_join ----- */

static void test_join_relative_onto_base(void **state)
{
	char out[SW_PATH_MAX];

	(void)state;
	assert_true(path_join("/run/app", "app.sock", out, sizeof(out)));
	assert_string_equal(out, "/run/app/app.sock");
	assert_true(path_join("/run/app/", "./sub/../x.sock", out, sizeof(out)));
	assert_string_equal(out, "/run/app/x.sock");
	assert_true(path_join("/run/app", "../../../../etc/x", out, sizeof(out)));
	assert_string_equal(out, "/etc/x");
	assert_true(path_join("/", "x.sock", out, sizeof(out)));
	assert_string_equal(out, "/x.sock");
}

static void test_join_absolute_rel_ignores_base(void **state)
{
	char out[SW_PATH_MAX];

	(void)state;
	assert_true(path_join("/run/app", "/tmp//x.sock", out, sizeof(out)));
	assert_string_equal(out, "/tmp/x.sock");
	/* even a relative, meaningless base */
	assert_true(path_join("not-absolute", "/tmp/x.sock", out, sizeof(out)));
	assert_string_equal(out, "/tmp/x.sock");
}

static void test_join_rejects_relative_base_and_small_output(void **state)
{
	char out[8];

	(void)state;
	assert_false(path_join("run", "x.sock", out, sizeof(out)));
	assert_false(path_join("/run/app", "app.sock", out, sizeof(out)));
}

/* ----- path_has_prefix ----- */

static void test_has_prefix_on_component_boundary(void **state)
{
	(void)state;
	assert_true(path_has_prefix("/run/a/x.sock", "/run/a"));
	assert_true(path_has_prefix("/run/a", "/run/a"));
	assert_true(path_has_prefix("/run/a/b/c", "/run"));
	assert_false(path_has_prefix("/run/ab", "/run/a"));
	assert_false(path_has_prefix("/run/ab/x.sock", "/run/a"));
	assert_false(path_has_prefix("/run", "/run/a"));
	assert_false(path_has_prefix("/var/run/a", "/run"));
}

static void test_root_is_prefix_of_every_absolute_path(void **state)
{
	(void)state;
	assert_true(path_has_prefix("/", "/"));
	assert_true(path_has_prefix("/x", "/"));
	assert_true(path_has_prefix("/run/app/app.sock", "/"));
	assert_false(path_has_prefix("relative/x", "/"));
}

/* ----- basename / dirname ----- */

static void test_basename(void **state)
{
	const char *p = "/run/app/app.sock";

	(void)state;
	assert_string_equal(path_basename(p), "app.sock");
	assert_ptr_equal(path_basename(p), p + strlen("/run/app/"));
	assert_string_equal(path_basename("/x"), "x");
	assert_string_equal(path_basename("/"), "");
	assert_string_equal(path_basename("noslash"), "noslash");
}

static void test_dirname(void **state)
{
	char out[SW_PATH_MAX];

	(void)state;
	assert_true(path_dirname("/run/app/app.sock", out, sizeof(out)));
	assert_string_equal(out, "/run/app");
	assert_true(path_dirname("/run", out, sizeof(out)));
	assert_string_equal(out, "/");
	assert_true(path_dirname("/", out, sizeof(out)));
	assert_string_equal(out, "/");
	assert_false(path_dirname("noslash", out, sizeof(out)));
}

static void test_dirname_rejects_small_output(void **state)
{
	char out[16];

	(void)state;
	/* "/run/app" is 8 bytes + NUL */
	assert_false(path_dirname("/run/app/x", out, 8));
	assert_true(path_dirname("/run/app/x", out, 9));
	assert_string_equal(out, "/run/app");
	assert_false(path_dirname("/x", out, 1));
}

/* ----- utf8_valid ----- */

#define U8(lit) (const unsigned char *)(lit), sizeof(lit) - 1

static void test_utf8_accepts_ascii_and_multibyte(void **state)
{
	(void)state;
	assert_true(utf8_valid(U8("")));
	assert_true(utf8_valid(U8("/run/app.sock")));
	assert_true(utf8_valid(U8("caf\xc3\xa9")));           /* U+00E9, 2 bytes */
	assert_true(utf8_valid(U8("\xe2\x82\xac")));          /* U+20AC, 3 bytes */
	assert_true(utf8_valid(U8("\xf0\x9f\x98\x80")));      /* U+1F600, 4 bytes */
	assert_true(utf8_valid(U8("\xc2\x80")));              /* U+0080, smallest 2-byte */
	assert_true(utf8_valid(U8("\xe0\xa0\x80")));          /* U+0800, smallest 3-byte */
	assert_true(utf8_valid(U8("\xf0\x90\x80\x80")));      /* U+10000, smallest 4-byte */
	assert_true(utf8_valid(U8("\xed\x9f\xbf")));          /* U+D7FF, just below surrogates */
	assert_true(utf8_valid(U8("\xee\x80\x80")));          /* U+E000, just above */
	assert_true(utf8_valid(U8("\xf4\x8f\xbf\xbf")));      /* U+10FFFF, the last */
	/* an embedded NUL is a valid code point; len decides */
	assert_true(utf8_valid((const unsigned char *)"a\0b", 3));
}

static void test_utf8_rejects_overlong_encodings(void **state)
{
	(void)state;
	assert_false(utf8_valid(U8("\xc0\xaf")));             /* '/' in 2 bytes */
	assert_false(utf8_valid(U8("\xc1\xbf")));
	assert_false(utf8_valid(U8("\xc0\x80")));             /* NUL in 2 bytes */
	assert_false(utf8_valid(U8("\xe0\x80\xaf")));         /* '/' in 3 bytes */
	assert_false(utf8_valid(U8("\xe0\x9f\xbf")));         /* U+07FF in 3 bytes */
	assert_false(utf8_valid(U8("\xf0\x80\x80\xaf")));     /* '/' in 4 bytes */
	assert_false(utf8_valid(U8("\xf0\x8f\xbf\xbf")));     /* U+FFFF in 4 bytes */
}

static void test_utf8_rejects_surrogates_and_out_of_range(void **state)
{
	(void)state;
	assert_false(utf8_valid(U8("\xed\xa0\x80")));         /* U+D800 */
	assert_false(utf8_valid(U8("\xed\xbf\xbf")));         /* U+DFFF */
	assert_false(utf8_valid(U8("\xf4\x90\x80\x80")));     /* U+110000 */
	assert_false(utf8_valid(U8("\xf5\x80\x80\x80")));
	assert_false(utf8_valid(U8("\xf7\xbf\xbf\xbf")));
}

static void test_utf8_rejects_truncated_sequences(void **state)
{
	(void)state;
	assert_false(utf8_valid(U8("\xc3")));
	assert_false(utf8_valid(U8("abc\xe2\x82")));
	assert_false(utf8_valid(U8("\xf0\x9f\x98")));
	/* a continuation byte replaced by ASCII */
	assert_false(utf8_valid(U8("\xe2\x41\xac")));
	/* truncated by len, although the bytes after it would complete it */
	assert_false(utf8_valid((const unsigned char *)"\xe2\x82\xac", 2));
}

static void test_utf8_rejects_stray_and_impossible_bytes(void **state)
{
	(void)state;
	assert_false(utf8_valid(U8("\xff")));
	assert_false(utf8_valid(U8("\xfe")));
	assert_false(utf8_valid(U8("/run/\xff.sock")));
	assert_false(utf8_valid(U8("\x80")));                 /* lone continuation */
	assert_false(utf8_valid(U8("a\xbf")));
	assert_false(utf8_valid(U8("\xf8\x88\x80\x80\x80"))); /* 5-byte form */
}

/* ----- path_fits_sun_path ----- */

static void test_fits_sun_path_at_107_not_108(void **state)
{
	char p[200];

	(void)state;
	memset(p, 'a', sizeof(p));
	p[0] = '/';
	p[107] = 0;
	assert_int_equal(strlen(p), 107);
	assert_true(path_fits_sun_path(p));
	p[107] = 'a';
	p[108] = 0;
	assert_false(path_fits_sun_path(p));
	assert_true(path_fits_sun_path("/"));
}

/* ----- name_hash ----- */

static void test_name_hash_is_fnv1a_64(void **state)
{
	(void)state;
	/* the published FNV-1a 64 test vectors */
	assert_true(name_hash("", 0) == 0xcbf29ce484222325ULL);
	assert_true(name_hash("a", 1) == 0xaf63dc4c8601ec8cULL);
	assert_true(name_hash("foobar", 6) == 0x85944171f73967e8ULL);
	assert_true(name_hash("app.sock", 8) == 0xbc1b3117bfead676ULL);
}

static void test_name_hash_uses_len_and_unsigned_bytes(void **state)
{
	(void)state;
	/* len, not NUL, ends the name; bytes >= 0x80 are not sign-extended */
	assert_true(name_hash("\xff\0x", 3) == 0xf920b11be415a916ULL);
	assert_true(name_hash("foobarbaz", 6) == name_hash("foobar", 6));
	assert_true(name_hash("a", 1) != name_hash("b", 1));
}

static void test_name_hash_of_basename_matches_bpf_last_component(void **state)
{
	/* The BPF side restarts the hash at each '/', so what it computes for
	 * "/run/app/app.sock" is FNV-1a over "app.sock". */
	const char *p = "/run/app/app.sock";
	const char *b = path_basename(p);

	(void)state;
	assert_true(name_hash(b, strlen(b)) == 0xbc1b3117bfead676ULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_normalize_collapses_slashes_dots_and_dotdot),
		cmocka_unit_test(test_normalize_never_climbs_above_root),
		cmocka_unit_test(test_normalize_keeps_dot_prefixed_names),
		cmocka_unit_test(test_normalize_rejects_relative_and_empty),
		cmocka_unit_test(test_normalize_rejects_output_too_small),
		cmocka_unit_test(test_join_relative_onto_base),
		cmocka_unit_test(test_join_absolute_rel_ignores_base),
		cmocka_unit_test(test_join_rejects_relative_base_and_small_output),
		cmocka_unit_test(test_has_prefix_on_component_boundary),
		cmocka_unit_test(test_root_is_prefix_of_every_absolute_path),
		cmocka_unit_test(test_basename),
		cmocka_unit_test(test_dirname),
		cmocka_unit_test(test_dirname_rejects_small_output),
		cmocka_unit_test(test_utf8_accepts_ascii_and_multibyte),
		cmocka_unit_test(test_utf8_rejects_overlong_encodings),
		cmocka_unit_test(test_utf8_rejects_surrogates_and_out_of_range),
		cmocka_unit_test(test_utf8_rejects_truncated_sequences),
		cmocka_unit_test(test_utf8_rejects_stray_and_impossible_bytes),
		cmocka_unit_test(test_fits_sun_path_at_107_not_108),
		cmocka_unit_test(test_name_hash_is_fnv1a_64),
		cmocka_unit_test(test_name_hash_uses_len_and_unsigned_bytes),
		cmocka_unit_test(test_name_hash_of_basename_matches_bpf_last_component),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
