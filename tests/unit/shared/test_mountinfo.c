/*
 * Unit tests for user/shared/mountinfo.c: mount tables and the names one
 * file has in two mount namespaces.
 *
 * A container often gets a host directory bind-mounted at another path
 * (host /srv/x as the container's /data): a socket bound at
 * /data/app.sock is the host's /srv/x/app.sock, and the agent can only
 * guard or report it on the host under that name. A wrong translation is
 * checked away by the caller's stat, but a missed one leaves the endpoint
 * unreachable, and a translation into a filesystem the host does not have
 * (a container's private tmpfs) must not produce a name at all. The tables
 * are given as text, in /proc/PID/mountinfo's format.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "shared/mountinfo.h"

/* The host: its disk 8:1 at "/", a tmpfs at /run. */
#define HOST_ROOT "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
#define HOST_RUN "30 22 0:25 / /run rw,nosuid shared:5 - tmpfs tmpfs rw\n"

/* A container: an overlay root, the host's /srv/x bound at /data, a tmpfs
 * of its own at /tmp. */
#define CT_ROOT "39 38 0:50 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u\n"
#define CT_DATA "40 39 8:1 /srv/x /data rw - ext4 /dev/sda1 rw\n"
#define CT_TMP "41 39 0:60 / /tmp rw,nosuid - tmpfs tmpfs rw\n"

static void parse(struct mount_table *t, const char *text)
{
	assert_int_equal(mount_table_parse(t, text), 0);
}

static void assert_entry(const struct mount_entry *m, uint64_t id, unsigned major,
			 unsigned minor, const char *root, const char *mountpoint)
{
	assert_non_null(m);
	assert_int_equal(m->mnt_id, id);
	assert_int_equal(m->major, major);
	assert_int_equal(m->minor, minor);
	assert_string_equal(m->root, root);
	assert_string_equal(m->mountpoint, mountpoint);
}

/* Records every name translate offers; accepts the one at index `accept`
 * (or none, with -1). */
struct offers {
	char names[8][256];
	int n;
	int accept;
};

static bool offer(const char *name, void *ctx)
{
	struct offers *o = ctx;

	assert_true(o->n < 8);
	assert_true(strlen(name) < sizeof(o->names[0]));
	strcpy(o->names[o->n], name);
	return o->n++ == o->accept;
}

/* ----- mount_table_parse ----- */

static void test_parse_fields(void **state)
{
	struct mount_table t;

	(void)state;
	parse(&t, HOST_ROOT HOST_RUN "31 22 259:3 /home /home rw - ext4 /dev/nvme0n1p3 rw\n");
	assert_int_equal(t.n, 3);
	assert_entry(&t.v[0], 22, 8, 1, "/", "/");
	assert_entry(&t.v[1], 30, 0, 25, "/", "/run");
	/* a major above 255 (nvme, device-mapper) and a root that is not "/" */
	assert_entry(&t.v[2], 31, 259, 3, "/home", "/home");
	mount_table_free(&t);
	assert_int_equal(t.n, 0);
	assert_null(t.v);
}

static void test_parse_decodes_octal_escapes(void **state)
{
	struct mount_table t;

	(void)state;
	/* the kernel escapes space, tab, newline and backslash in root and
	 * mount point, so that fields split on spaces and lines on '\n' */
	parse(&t, "50 22 8:2 /my\\040dir /mnt/my\\040disk rw - ext4 /dev/sda2 rw\n"
		  "51 22 8:3 /a\\011b\\012c /mnt/back\\134slash rw - ext4 /dev/sda3 rw\n");
	assert_int_equal(t.n, 2);
	assert_entry(&t.v[0], 50, 8, 2, "/my dir", "/mnt/my disk");
	assert_entry(&t.v[1], 51, 8, 3, "/a\tb\nc", "/mnt/back\\slash");
	mount_table_free(&t);

	/* a backslash not followed by three octal digits is kept as it is */
	parse(&t, "52 22 8:4 / /mnt/x\\04 rw - ext4 /dev/sda4 rw\n"
		  "53 22 8:4 / /mnt/y\\089 rw - ext4 /dev/sda4 rw\n");
	assert_int_equal(t.n, 2);
	assert_string_equal(t.v[0].mountpoint, "/mnt/x\\04");
	assert_string_equal(t.v[1].mountpoint, "/mnt/y\\089");
	mount_table_free(&t);
}

static void test_parse_skips_malformed_lines(void **state)
{
	struct mount_table t;

	(void)state;
	/* one bad line (a truncated read, a format change) must not cost the
	 * rest of the table */
	parse(&t, "garbage\n"
		  HOST_ROOT
		  "1 2 3\n"                                       /* too few fields */
		  "x 22 8:1 / /a rw - ext4 /dev/sda1 rw\n"        /* id not a number */
		  "60 22 8-1 / /b rw - ext4 /dev/sda1 rw\n"       /* no major:minor */
		  "61 22 8:1 relative /c rw - ext4 /dev/sda1 rw\n" /* root not absolute */
		  "62 22 8:1 / relative rw - ext4 /dev/sda1 rw\n" /* mount point neither */
		  "\n\n"
		  HOST_RUN);
	assert_int_equal(t.n, 2);
	assert_entry(&t.v[0], 22, 8, 1, "/", "/");
	assert_entry(&t.v[1], 30, 0, 25, "/", "/run");
	mount_table_free(&t);
}

static void test_parse_skips_roots_outside_the_namespace(void **state)
{
	struct mount_table t;

	(void)state;
	/* an nsfs bind (ip netns) names its root "net:[...]": no path in any
	 * filesystem to map a name through */
	parse(&t, HOST_ROOT "70 30 0:4 net:[4026532001] /run/netns/ns1 rw - nsfs nsfs rw\n");
	assert_int_equal(t.n, 1);
	assert_string_equal(t.v[0].mountpoint, "/");
	mount_table_free(&t);
}

static void test_parse_empty_and_last_line_unterminated(void **state)
{
	struct mount_table t;

	(void)state;
	parse(&t, "");
	assert_int_equal(t.n, 0);
	assert_null(mount_table_covering(&t, "/etc"));
	mount_table_free(&t);
	parse(&t, "\n");
	assert_int_equal(t.n, 0);
	mount_table_free(&t);
	/* no final newline: the line still counts */
	parse(&t, "22 1 8:1 / / rw - ext4 /dev/sda1 rw");
	assert_int_equal(t.n, 1);
	mount_table_free(&t);
}

static void test_parse_grows_past_first_allocation(void **state)
{
	struct mount_table t;
	char *text = malloc(200 * 80), *p = text;

	(void)state;
	assert_non_null(text);
	/* a host with many mounts (one per container layer, per pod volume) */
	for (int i = 0; i < 200; i++)
		p += sprintf(p, "%d 22 0:%d / /m/%d rw - tmpfs tmpfs rw\n", 100 + i, 100 + i, i);
	parse(&t, text);
	free(text);
	assert_int_equal(t.n, 200);
	assert_entry(&t.v[0], 100, 0, 100, "/", "/m/0");
	assert_entry(&t.v[199], 299, 0, 299, "/", "/m/199");
	mount_table_free(&t);
}

/* ----- mount_table_covering ----- */

static void test_covering_deepest_by_components(void **state)
{
	struct mount_table t;

	(void)state;
	parse(&t, HOST_ROOT HOST_RUN "31 30 0:26 / /run/user/1000 rw - tmpfs tmpfs rw\n");
	assert_int_equal(mount_table_covering(&t, "/etc/passwd")->mnt_id, 22);
	assert_int_equal(mount_table_covering(&t, "/")->mnt_id, 22);
	assert_int_equal(mount_table_covering(&t, "/run")->mnt_id, 30);
	assert_int_equal(mount_table_covering(&t, "/run/a.sock")->mnt_id, 30);
	assert_int_equal(mount_table_covering(&t, "/run/user")->mnt_id, 30);
	assert_int_equal(mount_table_covering(&t, "/run/user/1000/bus")->mnt_id, 31);
	/* a prefix of the string is not a prefix of the path */
	assert_int_equal(mount_table_covering(&t, "/runner/a.sock")->mnt_id, 22);
	assert_int_equal(mount_table_covering(&t, "/run/user/10000/bus")->mnt_id, 30);
	/* a name that is not absolute lies on no mount */
	assert_null(mount_table_covering(&t, "run/a.sock"));
	mount_table_free(&t);
}

static void test_covering_later_of_equal_mount_points_wins(void **state)
{
	struct mount_table t;

	(void)state;
	/* /run mounted twice: the second hides the first */
	parse(&t, HOST_ROOT HOST_RUN "35 30 0:27 / /run rw - tmpfs tmpfs rw\n");
	assert_int_equal(mount_table_covering(&t, "/run/a.sock")->mnt_id, 35);
	assert_int_equal(mount_table_covering(&t, "/run")->mnt_id, 35);
	mount_table_free(&t);

	/* and not by the order of the ids: the table's order is the mounts' */
	parse(&t, HOST_ROOT "90 22 0:27 / /run rw - tmpfs tmpfs rw\n"
			    "36 90 0:28 / /run rw - tmpfs tmpfs rw\n");
	assert_int_equal(mount_table_covering(&t, "/run/a.sock")->mnt_id, 36);
	mount_table_free(&t);

	/* no "/" in the table: a path outside every mount point */
	parse(&t, HOST_RUN);
	assert_null(mount_table_covering(&t, "/etc/passwd"));
	mount_table_free(&t);
}

/*
 * A mount made later on a parent directory hides the earlier mounts below it
 * (mount /run/user/1000, then a new tmpfs on /run: the new /run has no
 * user/1000 mount on it): covering() answers the later /run.
 */
static void test_covering_parent_overmounted_later_hides_child(void **state)
{
	struct mount_table t;

	(void)state;
	parse(&t, HOST_ROOT HOST_RUN "31 30 0:26 / /run/user/1000 rw - tmpfs tmpfs rw\n"
				     "35 30 0:27 / /run rw - tmpfs tmpfs rw\n");
	assert_int_equal(mount_table_covering(&t, "/run/user/1000/bus")->mnt_id, 35);
	mount_table_free(&t);
}

/* ----- mount_table_translate ----- */

static void test_translate_bind_mount_to_host_name(void **state)
{
	struct mount_table ct, host;
	struct offers o = { .accept = 0 };

	(void)state;
	parse(&ct, CT_ROOT CT_DATA CT_TMP);
	parse(&host, HOST_ROOT HOST_RUN);
	/* /data is the host's 8:1 at /srv/x: /data/app.sock is /srv/x/app.sock */
	assert_true(mount_table_translate(&ct, &host, "/data/app.sock", offer, &o));
	assert_int_equal(o.n, 1);
	assert_string_equal(o.names[0], "/srv/x/app.sock");

	o.n = 0;
	assert_true(mount_table_translate(&ct, &host, "/data/sub/dir/s.sock", offer, &o));
	assert_string_equal(o.names[0], "/srv/x/sub/dir/s.sock");

	/* the mount point itself is the mount's root */
	o.n = 0;
	assert_true(mount_table_translate(&ct, &host, "/data", offer, &o));
	assert_int_equal(o.n, 1);
	assert_string_equal(o.names[0], "/srv/x");
	mount_table_free(&ct);
	mount_table_free(&host);
}

static void test_translate_offers_every_host_mount_in_reverse_order(void **state)
{
	struct mount_table ct, host;
	struct offers o = { .accept = -1 };

	(void)state;
	parse(&ct, CT_ROOT CT_DATA);
	/* the same disk is also mounted, whole, at /mnt/disk */
	parse(&host, HOST_ROOT HOST_RUN "45 22 8:1 / /mnt/disk rw - ext4 /dev/sda1 rw\n");
	/* none accepted: each is offered once, the table's last mount first */
	assert_false(mount_table_translate(&ct, &host, "/data/app.sock", offer, &o));
	assert_int_equal(o.n, 2);
	assert_string_equal(o.names[0], "/mnt/disk/srv/x/app.sock");
	assert_string_equal(o.names[1], "/srv/x/app.sock");

	/* a name the caller rejects (over-mounted, another file) is passed
	 * over for the next */
	o.n = 0;
	o.accept = 1;
	assert_true(mount_table_translate(&ct, &host, "/data/app.sock", offer, &o));
	assert_int_equal(o.n, 2);
	assert_string_equal(o.names[1], "/srv/x/app.sock");

	/* and the first accepted ends it */
	o.n = 0;
	o.accept = 0;
	assert_true(mount_table_translate(&ct, &host, "/data/app.sock", offer, &o));
	assert_int_equal(o.n, 1);
	mount_table_free(&ct);
	mount_table_free(&host);
}

static void test_translate_through_host_subdir_mounts(void **state)
{
	struct mount_table ct, host;
	struct offers o = { .accept = -1 };

	(void)state;
	parse(&ct, CT_ROOT CT_DATA);
	/* host mounts of parts of 8:1: /srv bound at /export (covers /srv/x),
	 * /srv/x itself at /b, /srv/xy (a sibling, not an ancestor) at /c */
	parse(&host, "25 1 8:1 /srv /export rw - ext4 /dev/sda1 rw\n"
		     "26 1 8:1 /srv/x /b rw - ext4 /dev/sda1 rw\n"
		     "27 1 8:1 /srv/xy /c rw - ext4 /dev/sda1 rw\n");
	assert_false(mount_table_translate(&ct, &host, "/data/app.sock", offer, &o));
	assert_int_equal(o.n, 2);
	assert_string_equal(o.names[0], "/b/app.sock");
	assert_string_equal(o.names[1], "/export/x/app.sock");

	/* the bound directory itself is the host mount's mount point */
	o.n = 0;
	assert_false(mount_table_translate(&ct, &host, "/data", offer, &o));
	assert_int_equal(o.n, 2);
	assert_string_equal(o.names[0], "/b");
	assert_string_equal(o.names[1], "/export/x");
	mount_table_free(&host);

	/* a host whose "/" is itself a subdirectory of the disk */
	parse(&host, "28 1 8:1 /srv/x / rw - ext4 /dev/sda1 rw\n");
	o.n = 0;
	assert_false(mount_table_translate(&ct, &host, "/data/app.sock", offer, &o));
	assert_int_equal(o.n, 1);
	assert_string_equal(o.names[0], "/app.sock");
	o.n = 0;
	assert_false(mount_table_translate(&ct, &host, "/data", offer, &o));
	assert_int_equal(o.n, 1);
	assert_string_equal(o.names[0], "/");
	mount_table_free(&ct);
	mount_table_free(&host);
}

static void test_translate_same_filesystem_at_root(void **state)
{
	struct mount_table ct, host;
	struct offers o = { .accept = 0 };

	(void)state;
	/* a namespace sharing the host's disk at "/" (unshare -m): the same
	 * name on both sides */
	parse(&ct, HOST_ROOT);
	parse(&host, HOST_ROOT HOST_RUN);
	assert_true(mount_table_translate(&ct, &host, "/var/run/x.sock", offer, &o));
	assert_string_equal(o.names[0], "/var/run/x.sock");
	o.n = 0;
	assert_true(mount_table_translate(&ct, &host, "/", offer, &o));
	assert_string_equal(o.names[0], "/");
	mount_table_free(&ct);
	mount_table_free(&host);
}

static void test_translate_private_filesystem_has_no_host_name(void **state)
{
	struct mount_table ct, host;
	struct offers o = { .accept = 0 };

	(void)state;
	parse(&ct, CT_ROOT CT_DATA CT_TMP);
	parse(&host, HOST_ROOT HOST_RUN);
	/* the container's own tmpfs (0:60) and overlay (0:50): the host table
	 * has neither, so there is nothing to offer */
	assert_false(mount_table_translate(&ct, &host, "/tmp/s.sock", offer, &o));
	assert_false(mount_table_translate(&ct, &host, "/run/app.sock", offer, &o));
	assert_int_equal(o.n, 0);
	/* same major, other minor: another partition */
	mount_table_free(&host);
	parse(&host, "22 1 8:2 / / rw - ext4 /dev/sda2 rw\n");
	assert_false(mount_table_translate(&ct, &host, "/data/app.sock", offer, &o));
	assert_int_equal(o.n, 0);
	mount_table_free(&ct);
	mount_table_free(&host);
}

static void test_translate_subdir_outside_host_mount_roots(void **state)
{
	struct mount_table ct, host;
	struct offers o = { .accept = 0 };

	(void)state;
	parse(&ct, CT_ROOT CT_DATA);
	/* the host has 8:1 only as /var (root /var) and /srv/xy: /srv/x is
	 * on the disk but not reachable through any of the host's mounts */
	parse(&host, "23 1 8:1 /var /var rw - ext4 /dev/sda1 rw\n"
		     "24 1 8:1 /srv/xy /c rw - ext4 /dev/sda1 rw\n");
	assert_false(mount_table_translate(&ct, &host, "/data/app.sock", offer, &o));
	assert_false(mount_table_translate(&ct, &host, "/data", offer, &o));
	assert_int_equal(o.n, 0);
	mount_table_free(&ct);
	mount_table_free(&host);
}

static void test_translate_uncovered_path_or_empty_tables(void **state)
{
	struct mount_table ct, host, empty;
	struct offers o = { .accept = 0 };

	(void)state;
	parse(&ct, CT_DATA);
	parse(&host, HOST_ROOT);
	parse(&empty, "");
	/* no mount of the from table covers it */
	assert_false(mount_table_translate(&ct, &host, "/etc/x.sock", offer, &o));
	assert_false(mount_table_translate(&ct, &host, "data/app.sock", offer, &o));
	assert_false(mount_table_translate(&empty, &host, "/data/app.sock", offer, &o));
	assert_false(mount_table_translate(&ct, &empty, "/data/app.sock", offer, &o));
	assert_int_equal(o.n, 0);
	mount_table_free(&ct);
	mount_table_free(&host);
	mount_table_free(&empty);
}

static void test_translate_decodes_escaped_names(void **state)
{
	struct mount_table ct, host;
	struct offers o = { .accept = 0 };

	(void)state;
	parse(&ct, CT_ROOT "40 39 8:1 /srv/my\\040app /my\\040data rw - ext4 /dev/sda1 rw\n");
	parse(&host, HOST_ROOT);
	assert_true(mount_table_translate(&ct, &host, "/my data/app.sock", offer, &o));
	assert_string_equal(o.names[0], "/srv/my app/app.sock");
	mount_table_free(&ct);
	mount_table_free(&host);
}

/* ----- mount_table_read ----- */

static void test_read_own_mountinfo(void **state)
{
	struct mount_table t, t2;
	const struct mount_entry *m;
	bool has_root = false;
	pid_t pid;

	(void)state;
	assert_int_equal(mount_table_read(&t, 0), 0);
	assert_true(t.n > 0);
	for (size_t i = 0; i < t.n; i++)
		has_root |= strcmp(t.v[i].mountpoint, "/") == 0;
	assert_true(has_root);
	m = mount_table_covering(&t, "/etc");
	assert_non_null(m);
	/* "/" or a mount on /etc itself */
	assert_true(strcmp(m->mountpoint, "/") == 0 || strcmp(m->mountpoint, "/etc") == 0);

	/* by pid: the same namespace, the same table */
	assert_int_equal(mount_table_read(&t2, getpid()), 0);
	assert_int_equal(t2.n, t.n);
	mount_table_free(&t2);
	mount_table_free(&t);

	/* a pid that is gone has no table */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(0);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	assert_int_equal(mount_table_read(&t, pid), -ENOENT);
	assert_int_equal(t.n, 0);
	mount_table_free(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_fields),
		cmocka_unit_test(test_parse_decodes_octal_escapes),
		cmocka_unit_test(test_parse_skips_malformed_lines),
		cmocka_unit_test(test_parse_skips_roots_outside_the_namespace),
		cmocka_unit_test(test_parse_empty_and_last_line_unterminated),
		cmocka_unit_test(test_parse_grows_past_first_allocation),
		cmocka_unit_test(test_covering_deepest_by_components),
		cmocka_unit_test(test_covering_later_of_equal_mount_points_wins),
		cmocka_unit_test(test_covering_parent_overmounted_later_hides_child),
		cmocka_unit_test(test_translate_bind_mount_to_host_name),
		cmocka_unit_test(test_translate_offers_every_host_mount_in_reverse_order),
		cmocka_unit_test(test_translate_through_host_subdir_mounts),
		cmocka_unit_test(test_translate_same_filesystem_at_root),
		cmocka_unit_test(test_translate_private_filesystem_has_no_host_name),
		cmocka_unit_test(test_translate_subdir_outside_host_mount_roots),
		cmocka_unit_test(test_translate_uncovered_path_or_empty_tables),
		cmocka_unit_test(test_translate_decodes_escaped_names),
		cmocka_unit_test(test_read_own_mountinfo),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
