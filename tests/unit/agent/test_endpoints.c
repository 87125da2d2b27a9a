/*
 * Unit tests for user/agent/endpoints.c, the endpoint table: one entry per watched
 * socket path, keyed by its absolute normalised path, with what the agent
 * knows of the listener and the directories on the way to it.
 *
 * Every kernel record is routed through this table (by path, by socket inode,
 * or by a directory that was removed above the socket), so lookups must hold
 * with long hash chains, and ep_foreach_under() must respect path component
 * boundaries: an rm -rf of /run/app concerns /run/app/x.sock, never
 * /run/application.sock.
 *
 * ep_record_fs() is tested against a real directory tree under a mkdtemp()
 * directory, with a real socket file bound in it.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>

#include "agent/endpoints.h"
#include "shared/clock.h"
#include "shared/paths.h"

static int setup_table(void **state)
{
	struct endpoint_table *t = calloc(1, sizeof(*t));

	assert_non_null(t);
	assert_int_equal(ep_table_init(t, 0), 0);
	*state = t;
	return 0;
}

/* Few buckets: every bucket holds a long chain. */
static int setup_small_table(void **state)
{
	struct endpoint_table *t = calloc(1, sizeof(*t));

	assert_non_null(t);
	assert_int_equal(ep_table_init(t, 7), 0);
	*state = t;
	return 0;
}

static int teardown_table(void **state)
{
	struct endpoint_table *t = *state;

	ep_table_free(t);
	free(t);
	return 0;
}

static struct endpoint *add(struct endpoint_table *t, const char *path)
{
	bool added = false;
	struct endpoint *e = ep_get_or_add(t, 0, path, &added);

	if (!e)
		fail_msg("ep_get_or_add(\"%s\") failed", path);
	assert_true(added);
	return e;
}

/* ----- init, add, lookup, remove ----- */

static void test_init_defaults_bucket_count(void **state)
{
	struct endpoint_table *t = *state;

	assert_int_equal(t->n_buckets, 4096);
	assert_int_equal(t->count, 0);
	assert_null(ep_lookup(t, 0, "/run/a.sock"));
}

static void test_init_with_bucket_count(void **state)
{
	struct endpoint_table t;

	(void)state;
	assert_int_equal(ep_table_init(&t, 3), 0);
	assert_int_equal(t.n_buckets, 3);
	assert_int_equal(t.count, 0);
	ep_table_free(&t);
	assert_null(t.buckets);
	assert_int_equal(t.n_buckets, 0);
}

static void test_get_or_add_adds_once_and_returns_same_entry(void **state)
{
	struct endpoint_table *t = *state;
	bool added = true;
	struct endpoint *e1, *e2;

	e1 = ep_get_or_add(t, 0, "/run/app/app.sock", &added);
	assert_non_null(e1);
	assert_true(added);
	assert_string_equal(e1->path, "/run/app/app.sock");
	assert_int_equal(t->count, 1);
	e2 = ep_get_or_add(t, 0, "/run/app/app.sock", &added);
	assert_ptr_equal(e1, e2);
	assert_false(added);
	assert_int_equal(t->count, 1);
	/* added may be NULL */
	assert_ptr_equal(ep_get_or_add(t, 0, "/run/app/app.sock", NULL), e1);
}

static void test_new_entry_is_blank(void **state)
{
	struct endpoint_table *t = *state;
	struct endpoint *e = add(t, "/run/a.sock");

	assert_false(e->has_listener);
	assert_int_equal(e->n_owners, 0);
	assert_int_equal(e->n_dirs, 0);
	assert_int_equal(e->origin, 0);
	assert_false(e->lost);
	assert_null(e->reg);
	assert_int_equal(e->flap.circuit, FLAP_CLOSED);
}

static void test_entry_owns_its_path_copy(void **state)
{
	struct endpoint_table *t = *state;
	char path[32] = "/run/a.sock";
	struct endpoint *e = add(t, path);

	assert_ptr_not_equal(e->path, path);
	strcpy(path, "/run/b.sock");
	assert_ptr_equal(ep_lookup(t, 0, "/run/a.sock"), e);
	assert_null(ep_lookup(t, 0, "/run/b.sock"));
}

static void test_get_or_add_rejects_relative_and_unnormalised(void **state)
{
	struct endpoint_table *t = *state;
	static const char *const bad[] = {
		"", "run/a.sock", "./a.sock", "a.sock", "//run/a.sock", "/run//a.sock",
		"/run/./a.sock", "/run/../a.sock", "/run/app/", "/run/app/.",
	};
	bool added = true;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (ep_get_or_add(t, 0, bad[i], &added))
			fail_msg("accepted \"%s\"", bad[i]);
		assert_false(added);
	}
	assert_int_equal(t->count, 0);
	/* the root itself is absolute and normalised */
	assert_non_null(ep_get_or_add(t, 0, "/", NULL));
}

static void test_get_or_add_rejects_path_longer_than_path_max(void **state)
{
	struct endpoint_table *t = *state;
	char *p = malloc(SW_PATH_MAX + 16);

	assert_non_null(p);
	p[0] = '/';
	memset(p + 1, 'a', SW_PATH_MAX + 8);
	p[SW_PATH_MAX + 9] = 0;
	assert_null(ep_get_or_add(t, 0, p, NULL));
	free(p);
}

static void test_lookup_is_exact(void **state)
{
	struct endpoint_table *t = *state;
	struct endpoint *e = add(t, "/run/app/a.sock");

	assert_ptr_equal(ep_lookup(t, 0, "/run/app/a.sock"), e);
	assert_null(ep_lookup(t, 0, "/run/app/a.soc"));
	assert_null(ep_lookup(t, 0, "/run/app/a.sockx"));
	assert_null(ep_lookup(t, 0, "/run/app"));
	assert_null(ep_lookup(t, 0, "/run//app/a.sock"));
}

static void test_remove(void **state)
{
	struct endpoint_table *t = *state;
	struct endpoint *a = add(t, "/run/a.sock");
	struct endpoint *b = add(t, "/run/b.sock");

	ep_remove(t, a);
	assert_int_equal(t->count, 1);
	assert_null(ep_lookup(t, 0, "/run/a.sock"));
	assert_ptr_equal(ep_lookup(t, 0, "/run/b.sock"), b);
	/* it can come back, as a new entry */
	assert_non_null(add(t, "/run/a.sock"));
	assert_int_equal(t->count, 2);
}

static void test_many_entries_with_long_chains(void **state)
{
	struct endpoint_table *t = *state;
	enum { N = 10000 };
	char path[64];

	for (int i = 0; i < N; i++) {
		snprintf(path, sizeof(path), "/run/svc%d/s%d.sock", i % 97, i);
		add(t, path);
	}
	assert_int_equal(t->count, N);
	for (int i = 0; i < N; i++) {
		struct endpoint *e;

		snprintf(path, sizeof(path), "/run/svc%d/s%d.sock", i % 97, i);
		e = ep_lookup(t, 0, path);
		if (!e)
			fail_msg("lost %s", path);
		assert_string_equal(e->path, path);
	}
	/* remove the even ones: from chain heads, middles and tails */
	for (int i = 0; i < N; i += 2) {
		snprintf(path, sizeof(path), "/run/svc%d/s%d.sock", i % 97, i);
		ep_remove(t, ep_lookup(t, 0, path));
	}
	assert_int_equal(t->count, N / 2);
	for (int i = 0; i < N; i++) {
		snprintf(path, sizeof(path), "/run/svc%d/s%d.sock", i % 97, i);
		if ((ep_lookup(t, 0, path) != NULL) != (i % 2 == 1))
			fail_msg("%s: wrong presence after removals", path);
	}
}

/* ----- listener, sockets by inode ----- */

static struct unix_listener listener(uint64_t sock_ino, uint64_t vfs_ino)
{
	struct unix_listener l = { .sock_ino = sock_ino, .vfs_dev = 0x803,
				   .vfs_ino = vfs_ino, .max_backlog = 128,
				   .type = SOCK_STREAM, .state = 10 };

	return l;
}

static struct owner owner(pid_t pid, const char *comm)
{
	struct owner o = { .pid = pid, .uid = 1000, .gid = 1000 };

	snprintf(o.comm, sizeof(o.comm), "%s", comm);
	return o;
}

static void test_find_sock_ino_after_set_listener(void **state)
{
	struct endpoint_table *t = *state;
	struct endpoint *a = add(t, "/run/a.sock");
	struct endpoint *b = add(t, "/run/b.sock");
	struct unix_listener la = listener(1001, 501), lb = listener(1002, 502);
	struct owner o = owner(42, "server");

	(void)add(t, "/run/c.sock"); /* no listener */
	assert_null(ep_find_sock_ino(t, 1001));
	ep_set_listener(a, &la, &o, 1);
	ep_set_listener(b, &lb, &o, 1);
	assert_ptr_equal(ep_find_sock_ino(t, 1001), a);
	assert_ptr_equal(ep_find_sock_ino(t, 1002), b);
	assert_null(ep_find_sock_ino(t, 1003));
	/* entries without a listener have sock_ino 0: never a match for 0 */
	assert_null(ep_find_sock_ino(t, 0));
}

static void test_set_listener_records_owners(void **state)
{
	struct endpoint_table *t = *state;
	struct endpoint *e = add(t, "/run/a.sock");
	struct unix_listener l = listener(7, 8);
	struct owner o[2] = { owner(10, "master"), owner(11, "worker") };

	ep_set_listener(e, &l, o, 2);
	assert_true(e->has_listener);
	assert_true(e->l.sock_ino == 7);
	assert_true(e->l.vfs_ino == 8);
	assert_int_equal(e->n_owners, 2);
	assert_int_equal(e->owners[1].pid, 11);
	assert_non_null(e->last_owner);
	assert_int_equal(e->last_owner->pid, 10);
	assert_string_equal(e->last_owner->comm, "master");
}

static void test_set_listener_without_owners_keeps_known_owners(void **state)
{
	struct endpoint_table *t = *state;
	struct endpoint *e = add(t, "/run/a.sock");
	struct unix_listener l = listener(7, 8);
	struct owner o = owner(10, "master");

	ep_set_listener(e, &l, &o, 1);
	l.backlog = 5;
	ep_set_listener(e, &l, NULL, 0);
	assert_int_equal(e->l.backlog, 5);
	assert_int_equal(e->n_owners, 1);
	assert_int_equal(e->owners[0].pid, 10);
}

static void test_set_listener_caps_owners(void **state)
{
	struct endpoint_table *t = *state;
	struct endpoint *e = add(t, "/run/a.sock");
	struct unix_listener l = listener(7, 8);
	struct owner o[EP_MAX_OWNERS + 3];

	for (int i = 0; i < EP_MAX_OWNERS + 3; i++)
		o[i] = owner(100 + i, "w");
	ep_set_listener(e, &l, o, EP_MAX_OWNERS + 3);
	assert_int_equal(e->n_owners, EP_MAX_OWNERS);
	assert_int_equal(e->owners[EP_MAX_OWNERS - 1].pid, 100 + EP_MAX_OWNERS - 1);
}

static void test_clear_listener_keeps_last_owner(void **state)
{
	struct endpoint_table *t = *state;
	struct endpoint *e = add(t, "/run/a.sock");
	struct unix_listener l = listener(7, 8);
	struct owner o = owner(10, "master");

	ep_set_listener(e, &l, &o, 1);
	e->lost = true;
	e->wedged = true;
	ep_clear_listener(e);
	assert_false(e->has_listener);
	assert_int_equal(e->n_owners, 0);
	assert_false(e->lost);
	assert_false(e->wedged);
	assert_true(e->l.sock_ino == 0);
	assert_null(ep_find_sock_ino(t, 7));
	/* for stale_socket's last_owner */
	assert_non_null(e->last_owner);
	assert_int_equal(e->last_owner->pid, 10);
}

/* ----- iteration ----- */

struct visits {
	const char *seen[64];
	size_t n;
	struct endpoint_table *t;
	bool remove;
};

static void visit(struct endpoint *e, void *ctx)
{
	struct visits *v = ctx;

	assert_true(v->n < 64);
	v->seen[v->n++] = e->path;
	if (v->remove)
		ep_remove(v->t, e);
}

static bool visited(const struct visits *v, const char *path)
{
	size_t hits = 0;

	for (size_t i = 0; i < v->n; i++)
		hits += strcmp(v->seen[i], path) == 0;
	if (hits > 1)
		fail_msg("%s visited %zu times", path, hits);
	return hits == 1;
}

/* ----- namespaces ----- */

/* Two containers with a socket at one path are two endpoints; the agent's
 * own namespace is a third. */
static void test_same_path_in_two_namespaces_is_two_entries(void **state)
{
	struct endpoint_table *t = *state;
	struct endpoint *own = ep_get_or_add(t, 0, "/run/app/app.sock", NULL);
	struct endpoint *a = ep_get_or_add(t, 4026532001u, "/run/app/app.sock", NULL);
	struct endpoint *b = ep_get_or_add(t, 4026532002u, "/run/app/app.sock", NULL);

	assert_non_null(own);
	assert_non_null(a);
	assert_non_null(b);
	assert_ptr_not_equal(a, b);
	assert_ptr_not_equal(a, own);
	assert_int_equal(t->count, 3);
	assert_ptr_equal(ep_lookup(t, 4026532001u, "/run/app/app.sock"), a);
	assert_ptr_equal(ep_lookup(t, 4026532002u, "/run/app/app.sock"), b);
	assert_ptr_equal(ep_lookup(t, 0, "/run/app/app.sock"), own);
	assert_null(ep_lookup(t, 4026532003u, "/run/app/app.sock"));
	/* their directories are each namespace's own */
	assert_ptr_not_equal(a->dir, b->dir);
	assert_ptr_not_equal(a->dir, own->dir);
	assert_string_equal(own->key, "/run/app/app.sock");
	assert_string_equal(a->key, "mnt:[4026532001]/run/app/app.sock");
	assert_ptr_equal(ep_lookup_key(t, a->key), a);
	assert_ptr_equal(ep_lookup_key(t, own->key), own);
	/* no root is known yet: nothing of a foreign path can be looked at */
	struct stat st;

	assert_int_not_equal(ep_lstat(a, &st), 0);
	ep_remove(t, a);
	assert_ptr_equal(ep_lookup(t, 4026532002u, "/run/app/app.sock"), b);
	assert_null(ep_lookup(t, 4026532001u, "/run/app/app.sock"));
}

static void test_key_parse_rejects_what_format_never_writes(void **state)
{
	char key[256];
	const char *path;
	uint32_t mntns = 7;

	(void)state;
	assert_true(ep_key_format(42, "/a.sock", key, sizeof(key)));
	assert_true(ep_key_parse(key, &mntns, &path));
	assert_int_equal(mntns, 42);
	assert_string_equal(path, "/a.sock");
	assert_true(ep_key_parse("/b.sock", &mntns, &path));
	assert_int_equal(mntns, 0);
	assert_false(ep_key_format(42, "/a.sock", key, 10));
	static const char *bad[] = { "mnt:[]/a", "mnt:[0]/a", "mnt:[12]a", "mnt:[12/a",
				     "mnt:[99999999999]/a", "mnt:[-1]/a", "rel", "" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(ep_key_parse(bad[i], &mntns, &path));
}

/* An unlink from a namespace names its own endpoints and the shared ones,
 * never another namespace's. */
static void test_foreach_under_stays_in_the_actor_namespace(void **state)
{
	struct endpoint_table *t = *state;
	struct visits v = {0};

	ep_get_or_add(t, 0, "/run/app/own.sock", NULL);
	ep_get_or_add(t, 11, "/run/app/a.sock", NULL);
	ep_get_or_add(t, 12, "/run/app/b.sock", NULL);
	ep_get_or_add(t, 12, "/run/app/a.sock", NULL);
	assert_int_equal(ep_foreach_under(t, 11, "/run/app", visit, &v), 2);
	assert_true(visited(&v, "/run/app/own.sock"));
	assert_true(visited(&v, "/run/app/a.sock"));
	v.n = 0;
	assert_int_equal(ep_foreach_under(t, 12, "/run/app/a.sock", visit, &v), 1);
	v.n = 0;
	assert_int_equal(ep_foreach_under(t, 0, "/run/app", visit, &v), 1);
	assert_true(visited(&v, "/run/app/own.sock"));
}

static void test_foreach_visits_every_entry_once(void **state)
{
	struct endpoint_table *t = *state;
	struct visits v = {0};
	char path[32];

	for (int i = 0; i < 40; i++) {
		snprintf(path, sizeof(path), "/run/s%d.sock", i);
		add(t, path);
	}
	ep_foreach(t, visit, &v);
	assert_int_equal(v.n, 40);
	for (int i = 0; i < 40; i++) {
		snprintf(path, sizeof(path), "/run/s%d.sock", i);
		assert_true(visited(&v, path));
	}
}

static void test_foreach_callback_may_remove_the_entry(void **state)
{
	struct endpoint_table *t = *state;
	struct visits v = { .t = t, .remove = true };
	char path[32];

	for (int i = 0; i < 40; i++) {
		snprintf(path, sizeof(path), "/run/s%d.sock", i);
		add(t, path);
	}
	ep_foreach(t, visit, &v);
	assert_int_equal(v.n, 40);
	assert_int_equal(t->count, 0);
}

static void test_foreach_under_respects_component_boundaries(void **state)
{
	struct endpoint_table *t = *state;
	struct visits v = {0};
	size_t n;

	add(t, "/run/app/x.sock");
	add(t, "/run/app/sub/y.sock");
	add(t, "/run/application.sock");
	add(t, "/run/app.sock");
	add(t, "/run/appx/z.sock");
	add(t, "/var/run/app/w.sock");

	n = ep_foreach_under(t, 0, "/run/app", visit, &v);
	assert_int_equal(n, 2);
	assert_int_equal(v.n, 2);
	assert_true(visited(&v, "/run/app/x.sock"));
	assert_true(visited(&v, "/run/app/sub/y.sock"));
}

static void test_foreach_under_the_socket_path_itself(void **state)
{
	struct endpoint_table *t = *state;
	struct visits v = {0};

	add(t, "/run/app/x.sock");
	add(t, "/run/app/x.sock2");
	add(t, "/run/app/y.sock");
	assert_int_equal(ep_foreach_under(t, 0, "/run/app/x.sock", visit, &v), 1);
	assert_int_equal(v.n, 1);
	assert_string_equal(v.seen[0], "/run/app/x.sock");
}

static void test_foreach_under_root_and_nothing(void **state)
{
	struct endpoint_table *t = *state;
	struct visits v = {0};

	add(t, "/a.sock");
	add(t, "/run/b.sock");
	add(t, "/run/x/y/c.sock");
	assert_int_equal(ep_foreach_under(t, 0, "/", visit, &v), 3);
	assert_int_equal(v.n, 3);
	v.n = 0;
	assert_int_equal(ep_foreach_under(t, 0, "/srv", visit, &v), 0);
	assert_int_equal(ep_foreach_under(t, 0, "/run/x/y/c", visit, &v), 0);
	assert_int_equal(v.n, 0);
}

/* ----- directories ----- */

static void assert_dir_path(const struct endpoint *e, size_t i, const char *want)
{
	char out[SW_PATH_MAX];

	if (!ep_dir_path(e, i, out, sizeof(out)))
		fail_msg("ep_dir_path(%s, %zu) failed, want \"%s\"", e->path, i, want);
	assert_string_equal(out, want);
}

static void test_dir_path_lists_ancestors(void **state)
{
	struct endpoint_table *t = *state;
	struct endpoint *e = add(t, "/run/app/sub/x.sock");
	char out[SW_PATH_MAX];

	assert_dir_path(e, 0, "/");
	assert_dir_path(e, 1, "/run");
	assert_dir_path(e, 2, "/run/app");
	assert_dir_path(e, 3, "/run/app/sub");
	/* the socket itself is not a directory */
	assert_false(ep_dir_path(e, 4, out, sizeof(out)));
	assert_false(ep_dir_path(e, 5, out, sizeof(out)));
}

static void test_dir_path_of_top_level_socket(void **state)
{
	struct endpoint_table *t = *state;
	struct endpoint *e = add(t, "/x.sock");
	char out[8];

	assert_dir_path(e, 0, "/");
	assert_false(ep_dir_path(e, 1, out, sizeof(out)));
}

static void test_dir_path_rejects_small_output(void **state)
{
	struct endpoint_table *t = *state;
	struct endpoint *e = add(t, "/run/app/x.sock");
	char out[16];

	assert_false(ep_dir_path(e, 0, out, 1));
	assert_true(ep_dir_path(e, 0, out, 2));
	assert_string_equal(out, "/");
	/* "/run/app" needs 9 bytes */
	assert_false(ep_dir_path(e, 2, out, 8));
	assert_true(ep_dir_path(e, 2, out, 9));
	assert_string_equal(out, "/run/app");
}

/* ----- directories and owners are the table's, shared ----- */

static void test_dirs_are_shared_by_endpoints_below_them(void **state)
{
	struct endpoint_table *t = *state;
	struct endpoint *a = add(t, "/run/app/a.sock");
	struct endpoint *b = add(t, "/run/app/b.sock");
	struct endpoint *c = add(t, "/run/other/c.sock");

	/* "/", "/run", "/run/app", "/run/other" */
	assert_int_equal(t->dirs.count, 4);
	for (size_t i = 0; i < 3; i++)
		assert_ptr_equal(ep_dir_node_at(a, i), ep_dir_node_at(b, i));
	assert_ptr_equal(ep_dir_node_at(a, 1), ep_dir_node_at(c, 1));
	assert_ptr_not_equal(ep_dir_node_at(a, 2), ep_dir_node_at(c, 2));
	assert_string_equal(ep_dir_node_at(a, 0)->path, "/");
	assert_string_equal(ep_dir_node_at(a, 1)->path, "/run");
	assert_string_equal(ep_dir_node_at(a, 2)->path, "/run/app");
	assert_string_equal(ep_dir_node_at(c, 2)->path, "/run/other");
	/* the socket itself is not one of them */
	assert_null(ep_dir_node_at(a, 3));
	/* nothing recorded yet */
	assert_null(ep_dir_at(a, 0));
	assert_int_equal(a->n_dirs, 0);
}

static void test_dirs_go_with_the_last_endpoint_below_them(void **state)
{
	struct endpoint_table *t = *state;
	struct endpoint *a = add(t, "/run/app/a.sock");
	struct endpoint *b = add(t, "/run/app/b.sock");
	struct endpoint *c = add(t, "/run/other/c.sock");

	ep_remove(t, a);
	assert_int_equal(t->dirs.count, 4); /* b still needs /run/app */
	ep_remove(t, b);
	assert_int_equal(t->dirs.count, 3); /* "/", "/run", "/run/other" */
	assert_string_equal(ep_dir_node_at(c, 2)->path, "/run/other");
	ep_remove(t, c);
	assert_int_equal(t->dirs.count, 0);
	/* and come back */
	c = add(t, "/run/other/c.sock");
	assert_int_equal(t->dirs.count, 3);
}

static void test_dirs_of_ten_thousand_endpoints_in_one_directory(void **state)
{
	struct endpoint_table *t = *state;
	enum { N = 10000 };
	struct endpoint *first = NULL;
	char path[64];

	for (int i = 0; i < N; i++) {
		struct endpoint *e;

		snprintf(path, sizeof(path), "/sw-ep-absent/scale/l%05d.sock", i);
		e = add(t, path);
		if (!first)
			first = e;
		assert_ptr_equal(e->dir, first->dir);
	}
	assert_int_equal(t->dirs.count, 3);
	assert_int_equal(first->dir->refs, N);
	/* what they record ("/" exists, the rest not) is one record */
	ep_fs_batch_begin(t);
	for (int i = 0; i < N; i++) {
		snprintf(path, sizeof(path), "/sw-ep-absent/scale/l%05d.sock", i);
		ep_record_fs(ep_lookup(t, 0, path));
	}
	ep_fs_batch_end(t);
	assert_int_equal(first->n_dirs, 1);
	assert_int_equal(t->dir_recs.count, 1);
	assert_int_equal(first->dirs->refs, N);
}

static void test_dirs_of_many_directories(void **state)
{
	struct endpoint_table *t = *state;
	enum { N = 3000 };
	char path[64];

	/* the set of directories grows past its first buckets */
	for (int i = 0; i < N; i++) {
		snprintf(path, sizeof(path), "/srv/d%d/x.sock", i);
		add(t, path);
	}
	assert_int_equal(t->dirs.count, N + 2);
	assert_true(t->dirs.n_buckets >= N);
	for (int i = 0; i < N; i++) {
		const struct endpoint *e;

		snprintf(path, sizeof(path), "/srv/d%d/x.sock", i);
		e = ep_lookup(t, 0, path);
		assert_non_null(e);
		snprintf(path, sizeof(path), "/srv/d%d", i);
		assert_string_equal(ep_dir_node_at(e, 2)->path, path);
		assert_string_equal(ep_dir_node_at(e, 1)->path, "/srv");
	}
	for (int i = 0; i < N; i++) {
		snprintf(path, sizeof(path), "/srv/d%d/x.sock", i);
		ep_remove(t, ep_lookup(t, 0, path));
	}
	assert_int_equal(t->dirs.count, 0);
}

static void test_dirs_of_top_level_and_root_paths(void **state)
{
	struct endpoint_table *t = *state;
	struct endpoint *top = add(t, "/x.sock");
	struct endpoint *root = add(t, "/");

	assert_int_equal(t->dirs.count, 1);
	assert_ptr_equal(top->dir, root->dir);
	assert_int_equal(top->dir->depth, 0);
	assert_string_equal(top->dir->path, "/");
	assert_null(ep_dir_node_at(top, 1));
}

static void test_dirs_deeper_than_max_depth_are_capped(void **state)
{
	struct endpoint_table *t = *state;
	char path[512] = "", out[512];
	struct endpoint *e;

	for (int i = 0; i < EP_MAX_DEPTH + 8; i++)
		strcat(path, "/d");
	strcat(path, "/x.sock");
	e = add(t, path);
	assert_int_equal(t->dirs.count, EP_MAX_DEPTH);
	assert_non_null(ep_dir_node_at(e, EP_MAX_DEPTH - 1));
	assert_null(ep_dir_node_at(e, EP_MAX_DEPTH));
	assert_true(ep_dir_path(e, EP_MAX_DEPTH - 1, out, sizeof(out)));
	assert_string_equal(ep_dir_node_at(e, EP_MAX_DEPTH - 1)->path, out);
	/* the names beyond are still the path's */
	assert_true(ep_dir_path(e, EP_MAX_DEPTH + 3, out, sizeof(out)));
}

struct removals {
	char seen[4][64];
	size_t n;
	bool had_dir;
};

static void on_remove(struct endpoint *e, void *ctx)
{
	struct removals *r = ctx;

	assert_true(r->n < 4);
	snprintf(r->seen[r->n++], sizeof(r->seen[0]), "%s", e->path);
	/* told before the entry goes: all of it is still there */
	r->had_dir = e->dir && strcmp(e->dir->path, "/run/app") == 0;
}

static void test_remove_tells_before_it_frees(void **state)
{
	struct endpoint_table *t = *state;
	struct removals r = {0};
	struct endpoint *a = add(t, "/run/app/a.sock");

	add(t, "/run/app/b.sock");
	t->on_remove = on_remove;
	t->on_remove_ctx = &r;
	ep_remove(t, a);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.seen[0], "/run/app/a.sock");
	assert_true(r.had_dir);
	/* freeing the table tells of the rest */
	ep_table_free(t);
	assert_int_equal(r.n, 2);
	assert_string_equal(r.seen[1], "/run/app/b.sock");
	assert_int_equal(ep_table_init(t, 0), 0); /* for the teardown */
}

static void test_counted_keys_are_freed_with_the_table(void **state)
{
	struct endpoint_table *t = *state;

	/* what bpf_attach.c counts lives in the table: it goes with it */
	for (uint64_t i = 0; i < 200; i++) {
		struct ep_key_count *c = calloc(1, sizeof(*c));

		assert_non_null(c);
		c->id.ino = i;
		c->link.hash = i * 7919;
		ep_intern_add(i % 2 ? &t->counted_names : &t->counted_inodes, &c->link);
	}
	assert_int_equal(t->counted_names.count, 100);
	assert_true(t->counted_names.n_buckets >= 100);
	for (struct ep_link *l = ep_intern_chain(&t->counted_inodes, 10 * 7919); l; l = l->next)
		if (((struct ep_key_count *)l)->id.ino == 10)
			return;
	fail_msg("key 10 not found");
}

static uint64_t fake_now = 1000;

static uint64_t fake_clock(void)
{
	return fake_now;
}

static void test_set_listener_takes_the_tables_clock(void **state)
{
	struct endpoint_table *t = *state;
	struct endpoint *e = add(t, "/run/a.sock");
	struct unix_listener l = listener(7, 8);

	t->clock = fake_clock;
	fake_now = 5 * NSEC_PER_SEC;
	ep_set_listener(e, &l, NULL, 0);
	assert_true(e->listener_set_ns == 5 * NSEC_PER_SEC);
	fake_now += 250 * NSEC_PER_MSEC;
	ep_set_listener(e, &l, NULL, 0);
	assert_true(e->listener_set_ns == 5 * NSEC_PER_SEC + 250 * NSEC_PER_MSEC);
}

static void test_owners_are_shared_by_listeners_of_one_server(void **state)
{
	struct endpoint_table *t = *state;
	struct endpoint *a = add(t, "/run/a.sock"), *b = add(t, "/run/b.sock");
	struct endpoint *c = add(t, "/run/c.sock");
	struct unix_listener la = listener(1, 2), lb = listener(3, 4), lc = listener(5, 6);
	struct owner o[2] = { owner(10, "master"), owner(11, "worker") };
	struct owner other = owner(20, "other");

	ep_set_listener(a, &la, o, 2);
	ep_set_listener(b, &lb, o, 2);
	ep_set_listener(c, &lc, &other, 1);
	assert_ptr_equal(a->owners, b->owners);
	assert_ptr_not_equal(a->owners, o);
	assert_ptr_not_equal(a->owners, c->owners);
	assert_int_equal(t->owner_sets.count, 2);
	/* the first owner alone is another list */
	ep_set_listener(b, &lb, o, 1);
	assert_ptr_not_equal(a->owners, b->owners);
	assert_int_equal(b->n_owners, 1);
	assert_int_equal(b->owners[0].pid, 10);
	assert_int_equal(a->n_owners, 2);
	assert_int_equal(a->owners[1].pid, 11);
	assert_int_equal(t->owner_sets.count, 3);
	/* a scan that sees the same owners again changes nothing */
	{
		const struct owner *before = a->owners;

		ep_set_listener(a, &la, o, 2);
		assert_ptr_equal(a->owners, before);
	}
	/* a cleared listener's list stays as its last owner ... */
	ep_clear_listener(c);
	assert_null(c->owners);
	assert_int_equal(c->last_owner->pid, other.pid);
	assert_int_equal(t->owner_sets.count, 3);
	/* ... and a list goes with the last endpoint that refers to it */
	ep_remove(t, c);
	assert_int_equal(t->owner_sets.count, 2);
	ep_remove(t, b);
	assert_int_equal(t->owner_sets.count, 1);
	ep_remove(t, a);
	assert_int_equal(t->owner_sets.count, 0);
}

static void test_owners_are_a_copy(void **state)
{
	struct owner o = owner(10, "master");
	struct unix_listener l = listener(1, 2);
	struct endpoint *e = add(*state, "/run/a.sock");

	/* the caller's array is its own to change after */
	ep_set_listener(e, &l, &o, 1);
	o.pid = 99;
	snprintf(o.comm, sizeof(o.comm), "changed");
	assert_int_equal(e->owners[0].pid, 10);
	assert_string_equal(e->owners[0].comm, "master");
	assert_int_equal(e->last_owner->pid, 10);
}

static void test_owners_of_many_servers(void **state)
{
	struct endpoint_table *t = *state;
	enum { N = 2000 };
	struct unix_listener l = listener(1, 2);
	char path[64];

	/* distinct owners everywhere: the set grows past its first buckets */
	for (int i = 0; i < N; i++) {
		struct owner o = owner(1000 + i, "srv");

		snprintf(path, sizeof(path), "/run/s%d.sock", i);
		ep_set_listener(add(t, path), &l, &o, 1);
	}
	assert_int_equal(t->owner_sets.count, N);
	for (int i = 0; i < N; i++) {
		const struct endpoint *e;

		snprintf(path, sizeof(path), "/run/s%d.sock", i);
		e = ep_lookup(t, 0, path);
		assert_int_equal(e->n_owners, 1);
		assert_int_equal(e->owners[0].pid, 1000 + i);
	}
}

static void test_endpoint_of_no_table_keeps_its_own_owners(void **state)
{
	struct endpoint e = { .path = (char *)"/run/a.sock" };
	struct unix_listener l = listener(1, 2);
	struct owner o = owner(10, "master");

	(void)state;
	ep_set_listener(&e, &l, &o, 1);
	assert_int_equal(e.n_owners, 1);
	assert_int_equal(e.owners[0].pid, 10);
	assert_null(ep_dir_at(&e, 0));
	assert_int_equal(ep_dir_index(&e, 1, 2), -1);
	ep_clear_listener(&e);
	assert_null(e.owners);
	/* the last owner stays, the endpoint's own copy, until released */
	assert_int_equal(e.last_owner->pid, 10);
	ep_release(&e);
	assert_null(e.last_owner);
}

/* ----- ep_record_fs, against a real directory tree ----- */

struct tree {
	char root[64];   /* mkdtemp */
	char app[128];   /* root/app */
	char sub[160];   /* root/app/sub */
	char sock[200];  /* root/app/sub/s.sock */
	int fd;
};

/* one test at a time: the tree of the running test */
static struct tree g_tree;

/* dir + "/" + name into out, which must hold it */
static void join(char *out, size_t outlen, const char *dir, const char *name)
{
	int n = snprintf(out, outlen, "%s/%s", dir, name);

	assert_true(n > 0 && (size_t)n < outlen);
}

static int setup_tree(void **state)
{
	struct tree *tr = &g_tree;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	setup_table(state);
	memset(tr, 0, sizeof(*tr));
	strcpy(tr->root, "/tmp/sw-ep.XXXXXX");
	assert_non_null(mkdtemp(tr->root));
	join(tr->app, sizeof(tr->app), tr->root, "app");
	join(tr->sub, sizeof(tr->sub), tr->app, "sub");
	join(tr->sock, sizeof(tr->sock), tr->sub, "s.sock");
	assert_int_equal(mkdir(tr->app, 0750), 0);
	assert_int_equal(mkdir(tr->sub, 0700), 0);
	assert_int_equal(chmod(tr->app, 0750), 0); /* whatever the umask */
	tr->fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(tr->fd >= 0);
	assert_true(strlen(tr->sock) < sizeof(sa.sun_path));
	strcpy(sa.sun_path, tr->sock);
	assert_int_equal(bind(tr->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(chmod(tr->sock, 0660), 0);
	return 0;
}

static int teardown_tree(void **state)
{
	struct tree *tr = &g_tree;
	char file[256];

	close(tr->fd);
	join(file, sizeof(file), tr->root, "file");
	unlink(file);
	unlink(tr->sock);
	rmdir(tr->sub);
	rmdir(tr->app);
	rmdir(tr->root);
	return teardown_table(state);
}

static void assert_dir_recorded(const struct ep_dir *d, const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	if (d->dev != (uint64_t)st.st_dev || d->ino != (uint64_t)st.st_ino)
		fail_msg("%s: recorded %llx:%llu, is %llx:%llu", path,
			 (unsigned long long)d->dev, (unsigned long long)d->ino,
			 (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
	assert_int_equal(d->uid, st.st_uid);
	assert_int_equal(d->gid, st.st_gid);
	assert_int_equal(d->mode, st.st_mode & 07777);
}

static size_t depth_of(const char *path)
{
	size_t n = 0;

	for (const char *p = path; *p; p++)
		n += *p == '/';
	return n; /* "/a/b/c": 3 directories, "/", "/a" and "/a/b" */
}

static void test_record_fs_records_dirs_and_socket_file(void **state)
{
	struct endpoint_table *t = *state;
	struct tree *tr = &g_tree;
	struct endpoint *e = add(t, tr->sock);
	char dir[SW_PATH_MAX];
	struct stat st;

	ep_record_fs(e);
	assert_int_equal(e->n_dirs, depth_of(tr->sock));
	for (size_t i = 0; i < e->n_dirs; i++) {
		assert_true(ep_dir_path(e, i, dir, sizeof(dir)));
		assert_dir_recorded(ep_dir_at(e, i), dir);
	}
	assert_int_equal(ep_dir_at(e, e->n_dirs - 1)->mode, 0700);   /* sub */
	assert_int_equal(ep_dir_at(e, e->n_dirs - 2)->mode, 0750);   /* app */
	assert_null(ep_dir_at(e, e->n_dirs));
	assert_int_equal(lstat(tr->sock, &st), 0);
	assert_int_equal(e->file_uid, st.st_uid);
	assert_int_equal(e->file_gid, st.st_gid);
	assert_int_equal(e->file_mode, 0660);
	/* and the recorded identities find their index */
	assert_int_equal(lstat(tr->app, &st), 0);
	assert_int_equal(ep_dir_index(e, st.st_dev, st.st_ino), (int)e->n_dirs - 2);
}

static void test_record_fs_keeps_what_it_knew_of_removed_dirs(void **state)
{
	struct endpoint_table *t = *state;
	struct tree *tr = &g_tree;
	struct endpoint *e = add(t, tr->sock);
	struct ep_dir sub, app;
	size_t n;

	ep_record_fs(e);
	n = e->n_dirs;
	sub = *ep_dir_at(e, n - 1);
	app = *ep_dir_at(e, n - 2);
	/* a cleanup job removes app/sub and the socket file in it */
	assert_int_equal(unlink(tr->sock), 0);
	assert_int_equal(rmdir(tr->sub), 0);
	ep_record_fs(e);
	assert_int_equal(e->n_dirs, n);
	assert_memory_equal(ep_dir_at(e, n - 1), &sub, sizeof(sub));
	assert_memory_equal(ep_dir_at(e, n - 2), &app, sizeof(app));
	/* the socket file's recorded owner and mode survive too */
	assert_int_equal(e->file_mode, 0660);
}

static void test_record_fs_ignores_a_non_socket_at_the_path(void **state)
{
	struct endpoint_table *t = *state;
	struct tree *tr = &g_tree;
	struct endpoint *e = add(t, tr->sock);
	FILE *f;

	ep_record_fs(e);
	assert_int_equal(e->file_mode, 0660);
	/* the path now names a regular file: nothing to learn about the socket */
	assert_int_equal(unlink(tr->sock), 0);
	f = fopen(tr->sock, "w");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(chmod(tr->sock, 0604), 0);
	ep_record_fs(e);
	assert_int_equal(e->file_mode, 0660);
}

static void test_record_fs_stops_at_a_non_directory(void **state)
{
	struct endpoint_table *t = *state;
	struct tree *tr = &g_tree;
	char path[256];
	struct endpoint *e;
	FILE *f;

	/* root/file/x.sock: "file" is not a directory */
	join(path, sizeof(path), tr->root, "file");
	f = fopen(path, "w");
	assert_non_null(f);
	fclose(f);
	strcat(path, "/x.sock");
	e = add(t, path);
	ep_record_fs(e);
	assert_int_equal(e->n_dirs, depth_of(tr->root) + 1); /* "/" ... root */
}

static void test_record_dirs_and_file_apart(void **state)
{
	struct endpoint_table *t = *state;
	struct tree *tr = &g_tree;
	struct endpoint *e = add(t, tr->sock);
	struct stat st;

	/* the directories alone leave the socket file's record as it was */
	ep_record_dirs(e);
	assert_int_equal(e->n_dirs, depth_of(tr->sock));
	assert_int_equal(e->file_mode, 0);
	/* a look at the file from elsewhere (its guard: the same inode) */
	assert_int_equal(lstat(tr->sock, &st), 0);
	ep_record_file(e, &st);
	assert_int_equal(e->file_mode, 0660);
	assert_int_equal(e->file_uid, st.st_uid);
	assert_int_equal(e->file_gid, st.st_gid);
	/* a look at anything but a socket says nothing of it */
	assert_int_equal(stat(tr->sub, &st), 0);
	ep_record_file(e, &st);
	assert_int_equal(e->file_mode, 0660);
}

static void test_dir_index_by_identity(void **state)
{
	struct endpoint_table *t = *state;
	struct tree *tr = &g_tree;
	struct endpoint *e = add(t, tr->sock);
	struct stat root, app, sub, sock;
	char path[256];
	struct endpoint *gone;

	assert_int_equal(stat("/", &root), 0);
	assert_int_equal(stat(tr->app, &app), 0);
	assert_int_equal(stat(tr->sub, &sub), 0);
	assert_int_equal(lstat(tr->sock, &sock), 0);
	/* only what was recorded counts */
	assert_int_equal(ep_dir_index(e, app.st_dev, app.st_ino), -1);
	ep_record_fs(e);
	assert_int_equal(ep_dir_index(e, root.st_dev, root.st_ino), 0);
	assert_int_equal(ep_dir_index(e, app.st_dev, app.st_ino), (int)e->n_dirs - 2);
	assert_int_equal(ep_dir_index(e, sub.st_dev, sub.st_ino), (int)e->n_dirs - 1);
	/* both dev and ino must match; the socket file is no directory of it */
	assert_int_equal(ep_dir_index(e, app.st_dev + 1, app.st_ino), -1);
	assert_int_equal(ep_dir_index(e, sock.st_dev, sock.st_ino), -1);
	/* root/gone/x.sock: "gone" was never there to record */
	join(path, sizeof(path), tr->root, "gone/x.sock");
	gone = add(t, path);
	ep_record_fs(gone);
	assert_int_equal(gone->n_dirs, depth_of(tr->root) + 1);
	assert_int_equal(ep_dir_index(gone, app.st_dev, app.st_ino), -1);
	assert_int_equal(stat(tr->root, &sock), 0);
	assert_int_equal(ep_dir_index(gone, sock.st_dev, sock.st_ino), (int)depth_of(tr->root));
}

/* The tree's socket (recorded) and a neighbour in its directory (no socket
 * at that path, not recorded) as endpoints of the table; the socket's depth. */
static size_t add_neighbours(struct endpoint_table *t, struct endpoint **e,
			     struct endpoint **n)
{
	char path[256];

	join(path, sizeof(path), g_tree.sub, "other.sock");
	*n = add(t, path);
	*e = add(t, g_tree.sock);
	ep_record_fs(*e);
	return (*e)->n_dirs;
}

static void test_records_are_each_endpoints_own_shared_while_equal(void **state)
{
	struct endpoint_table *t = *state;
	struct tree *tr = &g_tree;
	struct endpoint *n, *e;
	size_t depth = add_neighbours(t, &e, &n);

	/* the neighbour records for itself: its n_dirs is its own */
	assert_int_equal(n->n_dirs, 0);
	assert_null(ep_dir_at(n, 0));
	ep_record_fs(n); /* no socket at its path: the directories still count */
	assert_int_equal(n->n_dirs, depth);
	/* the same directories, the same record: one copy for both */
	assert_ptr_equal(n->dirs, e->dirs);
	assert_int_equal(t->dir_recs.count, 1);
	assert_int_equal(e->dirs->refs, 2);
	/* a look by one changes nothing of the other's: a directory made anew
	 * by someone else is not what the other recorded */
	assert_int_equal(chmod(tr->sub, 0711), 0);
	ep_record_fs(n);
	assert_ptr_not_equal(n->dirs, e->dirs);
	assert_int_equal(ep_dir_at(n, depth - 1)->mode, 0711);
	assert_int_equal(ep_dir_at(e, depth - 1)->mode, 0700);
	assert_int_equal(t->dir_recs.count, 2);
	/* until it looks too: shared again, the old record gone */
	ep_record_fs(e);
	assert_ptr_equal(n->dirs, e->dirs);
	assert_int_equal(t->dir_recs.count, 1);
	assert_int_equal(n->file_mode, 0);
	assert_int_equal(e->file_mode, 0660);
	/* records go with the last endpoint holding them */
	ep_remove(t, n);
	assert_int_equal(e->dirs->refs, 1);
	ep_remove(t, e);
	assert_int_equal(t->dir_recs.count, 0);
	assert_int_equal(chmod(tr->sub, 0700), 0);
}

static void test_record_fs_in_a_batch_looks_at_each_dir_once(void **state)
{
	struct endpoint_table *t = *state;
	struct tree *tr = &g_tree;
	struct endpoint *n, *e;
	size_t depth;

	ep_fs_batch_begin(t);
	depth = add_neighbours(t, &e, &n);
	/* changed after the batch's look: the batch keeps what it saw */
	assert_int_equal(chmod(tr->sub, 0711), 0);
	ep_record_fs(n);
	assert_int_equal(n->n_dirs, depth);
	assert_int_equal(ep_dir_at(n, depth - 1)->mode, 0700);
	assert_ptr_equal(n->dirs, e->dirs);
	/* the socket file is looked at each time, it is the endpoint's own */
	assert_int_equal(chmod(tr->sock, 0600), 0);
	ep_record_fs(e);
	assert_int_equal(e->file_mode, 0600);
	ep_fs_batch_end(t);
	/* outside a batch every call looks */
	ep_record_fs(n);
	assert_int_equal(ep_dir_at(n, depth - 1)->mode, 0711);
	/* and a new batch looks again */
	assert_int_equal(chmod(tr->sub, 0701), 0);
	ep_fs_batch_begin(t);
	ep_record_fs(n);
	assert_int_equal(ep_dir_at(n, depth - 1)->mode, 0701);
	ep_fs_batch_end(t);
	assert_int_equal(chmod(tr->sub, 0700), 0);
}

static void test_record_fs_in_a_batch_keeps_a_failed_look(void **state)
{
	struct endpoint_table *t = *state;
	struct tree *tr = &g_tree;
	struct endpoint *n, *e;
	size_t depth = add_neighbours(t, &e, &n);

	/* sub is gone when the batch looks: neither endpoint finds it now, and
	 * both keep the record from before */
	assert_int_equal(unlink(tr->sock), 0);
	assert_int_equal(rmdir(tr->sub), 0);
	ep_fs_batch_begin(t);
	ep_record_fs(n);
	assert_int_equal(n->n_dirs, depth - 1);
	assert_int_equal(mkdir(tr->sub, 0700), 0);
	ep_record_fs(e);
	ep_fs_batch_end(t);
	assert_int_equal(e->n_dirs, depth);
	assert_int_equal(n->n_dirs, depth - 1);
	ep_record_fs(n);
	assert_int_equal(n->n_dirs, depth);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup_table, teardown_table)
#define TS(fn) cmocka_unit_test_setup_teardown(fn, setup_small_table, teardown_table)
#define TT(fn) cmocka_unit_test_setup_teardown(fn, setup_tree, teardown_tree)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_init_defaults_bucket_count),
		cmocka_unit_test(test_init_with_bucket_count),
		cmocka_unit_test(test_key_parse_rejects_what_format_never_writes),
		T(test_same_path_in_two_namespaces_is_two_entries),
		T(test_foreach_under_stays_in_the_actor_namespace),
		T(test_get_or_add_adds_once_and_returns_same_entry),
		T(test_new_entry_is_blank),
		T(test_entry_owns_its_path_copy),
		T(test_get_or_add_rejects_relative_and_unnormalised),
		T(test_get_or_add_rejects_path_longer_than_path_max),
		T(test_lookup_is_exact),
		TS(test_remove),
		TS(test_many_entries_with_long_chains),
		T(test_find_sock_ino_after_set_listener),
		T(test_set_listener_records_owners),
		T(test_set_listener_without_owners_keeps_known_owners),
		T(test_set_listener_caps_owners),
		T(test_clear_listener_keeps_last_owner),
		TS(test_foreach_visits_every_entry_once),
		TS(test_foreach_callback_may_remove_the_entry),
		TS(test_foreach_under_respects_component_boundaries),
		TS(test_foreach_under_the_socket_path_itself),
		TS(test_foreach_under_root_and_nothing),
		T(test_dir_path_lists_ancestors),
		T(test_dir_path_of_top_level_socket),
		T(test_dir_path_rejects_small_output),
		TT(test_record_fs_records_dirs_and_socket_file),
		TT(test_record_fs_keeps_what_it_knew_of_removed_dirs),
		TT(test_record_fs_ignores_a_non_socket_at_the_path),
		TT(test_record_fs_stops_at_a_non_directory),
		TT(test_dir_index_by_identity),
		TT(test_record_dirs_and_file_apart),
		TT(test_records_are_each_endpoints_own_shared_while_equal),
		TT(test_record_fs_in_a_batch_looks_at_each_dir_once),
		TT(test_record_fs_in_a_batch_keeps_a_failed_look),
		TS(test_dirs_are_shared_by_endpoints_below_them),
		TS(test_dirs_go_with_the_last_endpoint_below_them),
		T(test_dirs_of_ten_thousand_endpoints_in_one_directory),
		TS(test_dirs_of_many_directories),
		T(test_dirs_of_top_level_and_root_paths),
		T(test_dirs_deeper_than_max_depth_are_capped),
		T(test_set_listener_takes_the_tables_clock),
		TS(test_remove_tells_before_it_frees),
		T(test_counted_keys_are_freed_with_the_table),
		T(test_owners_are_shared_by_listeners_of_one_server),
		T(test_owners_are_a_copy),
		TS(test_owners_of_many_servers),
		cmocka_unit_test(test_endpoint_of_no_table_keeps_its_own_owners),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
