/*
 * Unit tests for user/shared/iter_records.c: the parser of the records
 * bpf/iter.bpf.c writes (struct sw_iter_listener) into listeners and owners.
 *
 * The iterator's output is the only list of the host's listeners when it is
 * the discovery source: a record misread, a split record lost or a socket
 * counted twice is a listener watched wrongly or not at all, and a stream it
 * cannot have written must fail the pass, never be half taken.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>
#include <cmocka.h>

#include "shared/discovery_iter.h"
#include "sockwarden.h"

#define REC sizeof(struct sw_iter_listener)

/* A record as the program writes it: a listener bound to a path. */
static struct sw_iter_listener rec(uint64_t sock_ino, uint32_t tgid, uint32_t fd,
				   const char *path)
{
	struct sw_iter_listener r;
	size_t n = strlen(path) + 1; /* the kernel keeps the NUL */

	memset(&r, 0, sizeof(r));
	r.magic = SW_ITER_MAGIC;
	r.tgid = tgid;
	r.fd = fd;
	r.sock_ino = sock_ino;
	r.uid = 1000;
	r.type = SOCK_STREAM;
	r.backlog = 2;
	r.max_backlog = 128;
	r.netns_ino = 4026531840u;
	r.mntns_ino = 4026531841u;
	r.cgroup_id = 4242;
	strcpy(r.comm, "server");
	memcpy(r.name, path, n);
	r.name_len = (uint16_t)n;
	r.vfs_dev = (8u << 20) | 3; /* kernel s_dev of 8:3 */
	r.vfs_ino = 777;
	r.vfs_nlink = 1;
	return r;
}

/* A record without a bound file: abstract (name[0] == 0) or unbound. */
static struct sw_iter_listener rec_unbound(uint64_t sock_ino, uint32_t tgid,
					   const char *name, size_t name_len)
{
	struct sw_iter_listener r = rec(sock_ino, tgid, 3, "");

	memset(r.name, 0, sizeof(r.name));
	memcpy(r.name, name, name_len);
	r.name_len = (uint16_t)name_len;
	r.vfs_dev = 0;
	r.vfs_ino = 0;
	r.vfs_nlink = 0;
	return r;
}

struct parsed {
	struct listener_list ll;
	struct owner_map om;
	size_t consumed;
};

static int parse(struct parsed *p, const void *buf, size_t len)
{
	return iter_records_parse(buf, len, &p->ll, &p->om, &p->consumed);
}

static void parsed_free(struct parsed *p)
{
	listener_list_free(&p->ll);
	owner_map_free(&p->om);
}

/* ----- one record ----- */

static void test_record_fills_listener_and_owner(void **state)
{
	struct sw_iter_listener r = rec(5001, 321, 7, "/run/app/app.sock");
	struct parsed p = { 0 };
	const struct unix_listener *l;
	const struct owner *o;

	(void)state;
	assert_int_equal(parse(&p, &r, sizeof(r)), 0);
	assert_int_equal(p.consumed, REC);
	assert_int_equal(p.ll.n, 1);
	l = &p.ll.v[0];
	assert_int_equal(l->sock_ino, 5001);
	assert_int_equal(l->vfs_dev, makedev(8, 3)); /* userspace dev_t */
	assert_int_equal(l->vfs_ino, 777);
	assert_int_equal(l->vfs_nlink, 1);
	assert_int_equal(l->backlog, 2);
	assert_int_equal(l->max_backlog, 128);
	assert_int_equal(l->type, SOCK_STREAM);
	assert_int_equal(l->state, TCP_LISTEN_STATE);
	assert_int_equal(l->name_len, strlen("/run/app/app.sock") + 1);
	assert_string_equal(l->name, "/run/app/app.sock");
	assert_int_equal(l->netns_ino, 4026531840u);

	assert_int_equal(p.om.n, 1);
	assert_int_equal(p.om.v[0].sock_ino, 5001);
	o = &p.om.v[0].o;
	assert_int_equal(o->pid, 321);
	assert_int_equal(o->uid, 1000);
	assert_string_equal(o->comm, "server");
	assert_int_equal(o->mntns_ino, 4026531841u);
	assert_int_equal(o->cgroup_id, 4242);
	/* left for owner_read() */
	assert_int_equal(o->gid, 0);
	assert_string_equal(o->exe, "");
	assert_string_equal(o->script, "");
	parsed_free(&p);
}

static void test_seqpacket_and_empty_buffer(void **state)
{
	struct sw_iter_listener r = rec(1, 2, 3, "/s");
	struct parsed p = { 0 };

	(void)state;
	assert_int_equal(parse(&p, &r, 0), 0);
	assert_int_equal(p.consumed, 0);
	assert_int_equal(p.ll.n, 0);
	r.type = SOCK_SEQPACKET;
	assert_int_equal(parse(&p, &r, sizeof(r)), 0);
	assert_int_equal(p.ll.v[0].type, SOCK_SEQPACKET);
	parsed_free(&p);
}

/* ----- records cut short ----- */

static void test_partial_record_is_left_unconsumed(void **state)
{
	struct sw_iter_listener r = rec(10, 20, 3, "/run/a.sock");
	struct parsed p = { 0 };

	(void)state;
	for (size_t len = 1; len < REC; len += 17) {
		assert_int_equal(parse(&p, &r, len), 0);
		assert_int_equal(p.consumed, 0);
		assert_int_equal(p.ll.n, 0);
		assert_int_equal(p.om.n, 0);
	}
	parsed_free(&p);
}

static void test_buffer_ending_mid_record_keeps_the_whole_ones(void **state)
{
	struct sw_iter_listener v[3];
	struct parsed p = { 0 };

	(void)state;
	for (uint32_t i = 0; i < 3; i++)
		v[i] = rec(10 + i, 20 + i, 3, "/run/a.sock");
	for (size_t whole = 0; whole < 3; whole++) {
		assert_int_equal(parse(&p, v, whole * REC + REC / 2), 0);
		assert_int_equal(p.consumed, whole * REC);
		assert_int_equal(p.ll.n, whole);
		assert_int_equal(p.om.n, whole);
		parsed_free(&p);
	}
}

/* What discovery_iter_read does: the rest of a record joins the next read. */
static void test_split_record_parses_across_two_calls(void **state)
{
	struct sw_iter_listener v[2] = { rec(10, 20, 3, "/run/a.sock"),
					 rec(11, 21, 3, "/run/b.sock") };
	const unsigned char *stream = (const unsigned char *)v;
	unsigned char buf[2 * REC];
	size_t first = REC + 77, have, rest;
	struct parsed p = { 0 };

	(void)state;
	memcpy(buf, stream, first);
	assert_int_equal(parse(&p, buf, first), 0);
	assert_int_equal(p.consumed, REC);
	assert_int_equal(p.ll.n, 1);
	/* keep the unconsumed tail, append the next read */
	rest = first - p.consumed;
	memmove(buf, buf + p.consumed, rest);
	memcpy(buf + rest, stream + first, sizeof(v) - first);
	have = rest + sizeof(v) - first;
	assert_int_equal(have, REC);
	assert_int_equal(parse(&p, buf, have), 0);
	assert_int_equal(p.consumed, REC);
	assert_int_equal(p.ll.n, 2);
	assert_int_equal(p.ll.v[1].sock_ino, 11);
	assert_string_equal(p.ll.v[1].name, "/run/b.sock");
	assert_int_equal(p.om.n, 2);
	assert_int_equal(p.om.v[1].o.pid, 21);
	parsed_free(&p);
}

/* ----- names ----- */

static void test_path_of_108_bytes_has_no_nul(void **state)
{
	char path[SW_SUN_PATH_LEN];
	struct sw_iter_listener r = rec(10, 20, 3, "/x");
	struct parsed p = { 0 };

	(void)state;
	memset(path, 'a', sizeof(path));
	path[0] = '/';
	memcpy(r.name, path, sizeof(path));
	r.name_len = SW_SUN_PATH_LEN;
	assert_int_equal(parse(&p, &r, sizeof(r)), 0);
	assert_int_equal(p.ll.n, 1);
	assert_int_equal(p.ll.v[0].name_len, 108);
	assert_memory_equal(p.ll.v[0].name, path, sizeof(path));
	parsed_free(&p);
}

static void test_abstract_name_keeps_its_leading_nul(void **state)
{
	static const char name[] = "\0app\0x"; /* an embedded NUL is part of it */
	struct sw_iter_listener r = rec_unbound(10, 20, name, sizeof(name) - 1);
	struct parsed p = { 0 };

	(void)state;
	assert_int_equal(parse(&p, &r, sizeof(r)), 0);
	assert_int_equal(p.ll.n, 1);
	assert_int_equal(p.ll.v[0].name_len, 6);
	assert_memory_equal(p.ll.v[0].name, name, 6);
	assert_int_equal(p.ll.v[0].vfs_ino, 0);
	assert_int_equal(p.ll.v[0].vfs_dev, 0);
	assert_int_equal(p.ll.v[0].vfs_nlink, 0);
	parsed_free(&p);
}

static void test_unbound_listener_has_no_name(void **state)
{
	struct sw_iter_listener r = rec_unbound(10, 20, "", 0);
	struct parsed p = { 0 };

	(void)state;
	assert_int_equal(parse(&p, &r, sizeof(r)), 0);
	assert_int_equal(p.ll.n, 1);
	assert_int_equal(p.ll.v[0].name_len, 0);
	parsed_free(&p);
}

static void test_non_utf8_bytes_are_kept_as_bytes(void **state)
{
	static const char path[] = "/tmp/\xff\xfe\x80\xc3(.sock";
	struct sw_iter_listener r = rec(10, 20, 3, path);
	struct parsed p = { 0 };

	(void)state;
	assert_int_equal(parse(&p, &r, sizeof(r)), 0);
	assert_int_equal(p.ll.v[0].name_len, sizeof(path));
	assert_memory_equal(p.ll.v[0].name, path, sizeof(path));
	parsed_free(&p);
}

/* ----- one socket, many holders ----- */

static void test_socket_held_by_three_processes_is_one_listener(void **state)
{
	struct sw_iter_listener v[3] = { rec(10, 100, 3, "/run/pre.sock"),
					 rec(10, 101, 3, "/run/pre.sock"),
					 rec(10, 102, 5, "/run/pre.sock") };
	struct parsed p = { 0 };

	(void)state;
	strcpy(v[2].comm, "worker");
	v[2].uid = 33;
	assert_int_equal(parse(&p, v, sizeof(v)), 0);
	assert_int_equal(p.consumed, sizeof(v));
	assert_int_equal(p.ll.n, 1);
	assert_int_equal(p.om.n, 3);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(p.om.v[i].sock_ino, 10);
		assert_int_equal(p.om.v[i].o.pid, 100 + i);
	}
	assert_string_equal(p.om.v[2].o.comm, "worker");
	assert_int_equal(p.om.v[2].o.uid, 33);
	parsed_free(&p);
}

static void test_process_holding_a_socket_on_two_fds_is_one_owner(void **state)
{
	struct sw_iter_listener v[3] = { rec(10, 100, 3, "/run/a.sock"),
					 rec(11, 100, 4, "/run/b.sock"),
					 rec(10, 100, 9, "/run/a.sock") }; /* dup'ed */
	struct parsed p = { 0 };

	(void)state;
	assert_int_equal(parse(&p, v, sizeof(v)), 0);
	assert_int_equal(p.ll.n, 2);
	assert_int_equal(p.om.n, 2);
	assert_int_equal(p.om.v[0].sock_ino, 10);
	assert_int_equal(p.om.v[1].sock_ino, 11);
	parsed_free(&p);
}

static void test_holders_fold_across_calls(void **state)
{
	struct sw_iter_listener a = rec(10, 100, 3, "/run/a.sock");
	struct sw_iter_listener b = rec(10, 101, 3, "/run/a.sock");
	struct parsed p = { 0 };

	(void)state;
	assert_int_equal(parse(&p, &a, sizeof(a)), 0);
	assert_int_equal(parse(&p, &a, sizeof(a)), 0);
	assert_int_equal(parse(&p, &b, sizeof(b)), 0);
	assert_int_equal(p.ll.n, 1);
	assert_int_equal(p.om.n, 2);
	parsed_free(&p);
}

static void test_owners_come_out_sorted_across_calls(void **state)
{
	struct sw_iter_listener v[4] = { rec(20, 5, 3, "/run/b.sock"),
					 rec(10, 7, 3, "/run/a.sock"),
					 rec(10, 3, 4, "/run/a.sock"),
					 rec(15, 9, 3, "/run/c.sock") };
	static const uint64_t want_ino[4] = { 10, 10, 15, 20 };
	static const pid_t want_pid[4] = { 3, 7, 9, 5 };
	struct parsed p = { 0 };
	size_t n;

	(void)state;
	assert_int_equal(parse(&p, v, 2 * REC), 0); /* two calls: the map stays sorted */
	assert_int_equal(parse(&p, v + 2, 2 * REC), 0);
	/* a call appends its new sockets by inode */
	assert_int_equal(p.ll.n, 3);
	assert_int_equal(p.ll.v[0].sock_ino, 10);
	assert_int_equal(p.ll.v[1].sock_ino, 20);
	assert_int_equal(p.ll.v[2].sock_ino, 15);
	assert_int_equal(p.om.n, 4);
	for (size_t i = 0; i < 4; i++) {
		assert_int_equal(p.om.v[i].sock_ino, want_ino[i]);
		assert_int_equal(p.om.v[i].o.pid, want_pid[i]);
	}
	assert_non_null(owner_map_find(&p.om, 10, &n));
	assert_int_equal(n, 2);
	parsed_free(&p);
}

/* A busy host's pass: many sockets, several holders and fds each, read in
 * pieces of every size. */
static void test_many_records_in_uneven_pieces(void **state)
{
	enum { SOCKETS = 500, HOLDERS = 3, FDS = 2 };
	size_t total = (size_t)SOCKETS * HOLDERS * FDS, k = 0, off = 0, have = 0;
	struct sw_iter_listener *v = calloc(total, sizeof(*v));
	unsigned char *buf = malloc(8 * REC);
	const unsigned char *stream = (const unsigned char *)v;
	struct parsed p = { 0 };

	(void)state;
	assert_non_null(v);
	assert_non_null(buf);
	/* in the iterator's order: process by process, fd by fd */
	for (uint32_t h = 0; h < HOLDERS; h++)
		for (uint32_t s = 0; s < SOCKETS; s++)
			for (uint32_t f = 0; f < FDS; f++)
				v[k++] = rec(1000 + (s * 7919) % SOCKETS, 100 + h, 3 + f,
					     "/run/many.sock");
	for (size_t piece = 1; off < total * REC; piece = piece % (5 * REC) + 97) {
		size_t n = piece < total * REC - off ? piece : total * REC - off;

		if (n > 8 * REC - have)
			n = 8 * REC - have;
		memcpy(buf + have, stream + off, n);
		off += n;
		have += n;
		assert_int_equal(parse(&p, buf, have), 0);
		memmove(buf, buf + p.consumed, have - p.consumed);
		have -= p.consumed;
	}
	assert_int_equal(have, 0);
	assert_int_equal(p.ll.n, SOCKETS);
	assert_int_equal(p.om.n, SOCKETS * HOLDERS);
	for (size_t i = 1; i < p.om.n; i++)
		assert_true(p.om.v[i - 1].sock_ino < p.om.v[i].sock_ino ||
			    (p.om.v[i - 1].sock_ino == p.om.v[i].sock_ino &&
			     p.om.v[i - 1].o.pid < p.om.v[i].o.pid));
	parsed_free(&p);
	free(buf);
	free(v);
}

/* ----- what the program cannot have written ----- */

static void assert_rejected_after_one(struct sw_iter_listener bad)
{
	struct sw_iter_listener v[2] = { rec(10, 20, 3, "/run/ok.sock"), bad };
	struct parsed p = { 0 };

	assert_int_equal(parse(&p, v, sizeof(v)), -EBADMSG);
	assert_int_equal(p.consumed, REC); /* pointing at the bad one */
	parsed_free(&p);
}

static void test_name_len_over_108_is_rejected(void **state)
{
	struct sw_iter_listener r = rec(11, 20, 3, "/run/x.sock");

	(void)state;
	r.name_len = 109;
	assert_rejected_after_one(r);
	r.name_len = 0xffff;
	assert_rejected_after_one(r);
}

static void test_impossible_fields_are_rejected(void **state)
{
	struct sw_iter_listener r;

	(void)state;
	r = rec(11, 20, 3, "/run/x.sock");
	r.magic ^= 1; /* another layout, or a stream out of step */
	assert_rejected_after_one(r);
	r = rec(11, 20, 3, "/run/x.sock");
	r.sock_ino = 0;
	assert_rejected_after_one(r);
	r = rec(11, 0, 3, "/run/x.sock");
	assert_rejected_after_one(r);
	r = rec(11, 20, 3, "/run/x.sock");
	r.type = SOCK_DGRAM; /* datagram sockets cannot listen */
	assert_rejected_after_one(r);
	r = rec_unbound(11, 20, "\0abs", 4);
	r.vfs_ino = 5; /* an abstract name has no file */
	assert_rejected_after_one(r);
	r = rec(11, 20, 3, "/run/x.sock");
	r.name[100] = 'x'; /* bytes past name_len */
	assert_rejected_after_one(r);
	r = rec(11, 20, 3, "/run/x.sock");
	memset(r.comm, 'c', sizeof(r.comm)); /* no NUL */
	assert_rejected_after_one(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_record_fills_listener_and_owner),
		cmocka_unit_test(test_seqpacket_and_empty_buffer),
		cmocka_unit_test(test_partial_record_is_left_unconsumed),
		cmocka_unit_test(test_buffer_ending_mid_record_keeps_the_whole_ones),
		cmocka_unit_test(test_split_record_parses_across_two_calls),
		cmocka_unit_test(test_path_of_108_bytes_has_no_nul),
		cmocka_unit_test(test_abstract_name_keeps_its_leading_nul),
		cmocka_unit_test(test_unbound_listener_has_no_name),
		cmocka_unit_test(test_non_utf8_bytes_are_kept_as_bytes),
		cmocka_unit_test(test_socket_held_by_three_processes_is_one_listener),
		cmocka_unit_test(test_process_holding_a_socket_on_two_fds_is_one_owner),
		cmocka_unit_test(test_holders_fold_across_calls),
		cmocka_unit_test(test_owners_come_out_sorted_across_calls),
		cmocka_unit_test(test_many_records_in_uneven_pieces),
		cmocka_unit_test(test_name_len_over_108_is_rejected),
		cmocka_unit_test(test_impossible_fields_are_rejected),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
