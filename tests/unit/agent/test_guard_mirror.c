/*
 * guard_mirror: the redirect's target, built on a real directory tree (a
 * scratch directory stands in for a mount's root) with a real listening
 * socket. Needs root (the mirrors take others' owners), as the agent does.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/guard_mirror.h"

struct fixture {
	char root[64];     /* the "mount" */
	char path[108];    /* root/a/b/s.sock */
	int lfd;           /* its listener */
	struct stat sock;  /* its file */
	struct guard_dir dir;
	struct guard_ref ref;
};

static void at(char *out, size_t len, const struct fixture *f, const char *rel)
{
	snprintf(out, len, "%s/%s", f->root, rel);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char p[256];

	if (geteuid() != 0) {
		free(f);
		print_message("needs root\n");
		return -1;
	}
	snprintf(f->root, sizeof(f->root), "/tmp/swmirror-XXXXXX");
	assert_non_null(mkdtemp(f->root));
	chmod(f->root, 0755);
	at(p, sizeof(p), f, "a");
	assert_int_equal(mkdir(p, 0750), 0);
	assert_int_equal(chown(p, 1234, 2345), 0);
	at(p, sizeof(p), f, "a/b");
	assert_int_equal(mkdir(p, 0700), 0);
	at(f->path, sizeof(f->path), f, "a/b/s.sock");
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->path);
	f->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(f->lfd, 4), 0);
	assert_int_equal(lstat(f->path, &f->sock), 0);
	/* the flat guard, as guard.c makes it */
	at(p, sizeof(p), f, GUARD_DIR_NAME);
	assert_int_equal(mkdir(p, 0700), 0);
	f->dir.dirfd = open(p, O_RDONLY | O_DIRECTORY);
	assert_true(f->dir.dirfd >= 0);
	f->dir.mirror_fd = -1;
	snprintf(f->dir.mountpoint, sizeof(f->dir.mountpoint), "%s", f->root);
	assert_int_equal(linkat(AT_FDCWD, f->path, f->dir.dirfd, "g", 0), 0);
	f->ref.dir = &f->dir;
	snprintf(f->ref.name, sizeof(f->ref.name), "g");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	close(f->lfd);
	close(f->dir.dirfd);
	if (f->dir.mirror_fd >= 0)
		close(f->dir.mirror_fd);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->root);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static void mirror_path(const struct fixture *f, const char *rel, char *out, size_t len)
{
	snprintf(out, len, "%s/%s/%llx%s%s", f->root, GUARD_MIRROR_DIR_NAME,
		 (unsigned long long)f->sock.st_ino, rel[0] ? "/" : "", rel);
}

static void make_ok(struct fixture *f, char *target, size_t len)
{
	const char *why = "unset";
	int rc = guard_mirror_make(&f->ref, f->path, f->sock.st_dev, f->sock.st_ino, target, len,
				   &why);

	if (rc)
		fail_msg("guard_mirror_make: %s (%s)", strerror(-rc), why ? why : "-");
}

static void assert_like(const char *orig, const char *mirror)
{
	struct stat o, m;

	assert_int_equal(lstat(orig, &o), 0);
	assert_int_equal(lstat(mirror, &m), 0);
	assert_true(S_ISDIR(m.st_mode));
	assert_int_equal(m.st_uid, o.st_uid);
	assert_int_equal(m.st_gid, o.st_gid);
	assert_int_equal(m.st_mode & 07777, o.st_mode & 07777);
}

static void mirrors_owners_and_modes(void **state)
{
	struct fixture *f = *state;
	char target[108], want[320], orig[256], m[256];
	struct stat st;

	make_ok(f, target, sizeof(target));
	mirror_path(f, "a/b/s.sock", want, sizeof(want));
	assert_string_equal(target, want);
	assert_int_equal(lstat(target, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_ino, f->sock.st_ino);
	for (const char *rel = "a"; rel; rel = strcmp(rel, "a") ? NULL : "a/b") {
		at(orig, sizeof(orig), f, rel);
		mirror_path(f, rel, m, sizeof(m));
		assert_like(orig, m);
	}
	/* the two directories above: root's, searchable, never listable */
	mirror_path(f, "", m, sizeof(m));
	assert_int_equal(lstat(m, &st), 0);
	assert_int_equal(st.st_uid, 0);
	assert_int_equal(st.st_mode & 07777, 0711);
	at(m, sizeof(m), f, GUARD_MIRROR_DIR_NAME);
	assert_int_equal(lstat(m, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0711);
	/* nothing half-made is left beside it */
	at(m, sizeof(m), f, GUARD_MIRROR_DIR_NAME "/");
	snprintf(want, sizeof(want), "%s%llx.new", m, (unsigned long long)f->sock.st_ino);
	assert_int_equal(lstat(want, &st), -1);
}

static void follows_a_chmod_in_place(void **state)
{
	struct fixture *f = *state;
	char target[108], orig[256], m[256];
	struct stat before, after;

	make_ok(f, target, sizeof(target));
	mirror_path(f, "", m, sizeof(m));
	assert_int_equal(lstat(m, &before), 0);
	at(orig, sizeof(orig), f, "a/b");
	assert_int_equal(chmod(orig, 0711), 0);
	assert_int_equal(chown(orig, 99, 98), 0);
	make_ok(f, target, sizeof(target));
	mirror_path(f, "a/b", m, sizeof(m));
	assert_like(orig, m);
	/* brought up to date, not built anew: a redirect in use never sees it gone */
	mirror_path(f, "", m, sizeof(m));
	assert_int_equal(lstat(m, &after), 0);
	assert_int_equal(after.st_ino, before.st_ino);
}

static void rebuilds_a_wrong_leaf(void **state)
{
	struct fixture *f = *state;
	char target[108], m[256];
	struct stat before, after;
	int fd;

	make_ok(f, target, sizeof(target));
	mirror_path(f, "", m, sizeof(m));
	assert_int_equal(lstat(m, &before), 0);
	assert_int_equal(unlink(target), 0);
	fd = open(target, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	make_ok(f, target, sizeof(target));
	assert_int_equal(lstat(target, &after), 0);
	assert_int_equal(after.st_ino, f->sock.st_ino);
	/* swapped in whole */
	assert_int_equal(lstat(m, &after), 0);
	assert_int_not_equal(after.st_ino, before.st_ino);
}

static void expect_refused(struct fixture *f, const char *path, int err, const char *reason)
{
	char target[108];
	const char *why = NULL;

	assert_int_equal(guard_mirror_make(&f->ref, path, f->sock.st_dev, f->sock.st_ino, target,
					   sizeof(target), &why),
			 -err);
	assert_non_null(why);
	assert_string_equal(why, reason);
}

static void refuses_what_it_cannot_mirror(void **state)
{
	struct fixture *f = *state;
	char p[256], l[256];

	/* a path of 100 bytes fits in sun_path, its mirror's name does not */
	snprintf(p, sizeof(p), "%s/a/b/", f->root);
	memset(p + strlen(p), 'x', 100 - strlen(p));
	p[100] = 0;
	expect_refused(f, p, ENAMETOOLONG, "too_long");
	expect_refused(f, "/elsewhere/s.sock", EINVAL, "not_under_mount");
	snprintf(p, sizeof(p), "%s/a/../a/b/s.sock", f->root);
	expect_refused(f, p, EINVAL, "not_under_mount");
	/* a symlink on the way: the two lookups would not cross the same dirs */
	at(l, sizeof(l), f, "l");
	at(p, sizeof(p), f, "a");
	assert_int_equal(symlink(p, l), 0);
	at(p, sizeof(p), f, "l/b/s.sock");
	expect_refused(f, p, ENOTDIR, "symlink_in_path");
}

static void refuses_a_planted_mirror_dir(void **state)
{
	struct fixture *f = *state;
	char p[256], q[300];
	struct stat st;

	at(p, sizeof(p), f, GUARD_MIRROR_DIR_NAME);
	assert_int_equal(mkdir(p, 0711), 0);
	assert_int_equal(chown(p, 1234, 1234), 0);
	expect_refused(f, f->path, EPERM, "untrusted_dir");
	snprintf(q, sizeof(q), "%s/%llx", p, (unsigned long long)f->sock.st_ino);
	assert_int_equal(lstat(q, &st), -1);
	/* nor a symlink to somewhere else */
	assert_int_equal(rmdir(p), 0);
	at(q, sizeof(q), f, "a");
	assert_int_equal(symlink(q, p), 0);
	expect_refused(f, f->path, EPERM, "untrusted_dir");
}

/* keep(): only the listener of the fixture, or the one in ctx too */
static bool keep_listed(uint64_t dev, uint64_t ino, void *ctx)
{
	const struct stat *live = ctx;

	return dev == live[0].st_dev && (ino == live[0].st_ino || ino == live[1].st_ino);
}

static void prunes_only_closed_listeners_trees(void **state)
{
	struct fixture *f = *state;
	char p[256], target[108];
	struct stat st, live[2];
	unsigned long long other = (unsigned long long)f->sock.st_ino + 1000;

	/* the trees of another agent (a live listener), a closed listener and
	 * something unnamed, there before this run's first mirror */
	at(p, sizeof(p), f, GUARD_MIRROR_DIR_NAME);
	assert_int_equal(mkdir(p, 0711), 0);
	snprintf(p, sizeof(p), "%s/%s/%llx", f->root, GUARD_MIRROR_DIR_NAME, other);
	assert_int_equal(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/%s/%llx", f->root, GUARD_MIRROR_DIR_NAME, other + 1);
	assert_int_equal(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/%s/%llx/x", f->root, GUARD_MIRROR_DIR_NAME, other + 1);
	assert_int_equal(mkdir(p, 0700), 0);
	at(p, sizeof(p), f, GUARD_MIRROR_DIR_NAME "/dead");
	assert_int_equal(mkdir(p, 0700), 0);
	make_ok(f, target, sizeof(target));
	/* a start removes nothing: the other agent's redirect may use it */
	assert_int_equal(lstat(p, &st), 0);
	live[0] = f->sock;
	live[1] = f->sock;
	live[1].st_ino = other;
	assert_int_equal(guard_mirror_prune(&f->dir, keep_listed, live), 2);
	assert_int_equal(lstat(p, &st), -1);
	snprintf(p, sizeof(p), "%s/%s/%llx", f->root, GUARD_MIRROR_DIR_NAME, other + 1);
	assert_int_equal(lstat(p, &st), -1);
	snprintf(p, sizeof(p), "%s/%s/%llx", f->root, GUARD_MIRROR_DIR_NAME, other);
	assert_int_equal(lstat(p, &st), 0);
	assert_int_equal(lstat(target, &st), 0);
	/* and its own tree goes with its listener */
	live[0].st_ino = other;
	assert_int_equal(guard_mirror_prune(&f->dir, keep_listed, live), 1);
	assert_int_equal(lstat(target, &st), -1);
}

static void removes_without_following(void **state)
{
	struct fixture *f = *state;
	char target[108], m[256], victim[256], planted[300];
	struct stat st;
	int fd;

	make_ok(f, target, sizeof(target));
	/* the owner of a mirrored directory put a link to a file of root's in it */
	at(victim, sizeof(victim), f, "victim");
	fd = open(victim, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	mirror_path(f, "a", m, sizeof(m));
	snprintf(planted, sizeof(planted), "%s/planted", m);
	assert_int_equal(symlink(victim, planted), 0);
	guard_mirror_remove(&f->ref, f->sock.st_ino);
	mirror_path(f, "", m, sizeof(m));
	assert_int_equal(lstat(m, &st), -1);
	assert_int_equal(lstat(victim, &st), 0);
	/* the flat guard and the path stay */
	assert_int_equal(fstatat(f->dir.dirfd, "g", &st, AT_SYMLINK_NOFOLLOW), 0);
	assert_int_equal(lstat(f->path, &st), 0);
	guard_mirror_dir_remove(&f->dir);
	at(m, sizeof(m), f, GUARD_MIRROR_DIR_NAME);
	assert_int_equal(lstat(m, &st), -1);
}

static void copies_the_access_acl(void **state)
{
	struct fixture *f = *state;
	/* user::rwx user:4321:r-x group::--- mask::r-x other::--- (the kernel's
	 * posix_acl_xattr format: a version, then tag, perm, id per entry) */
	static const uint32_t acl[] = {
		2,
		0x01 | 7 << 16, UINT32_MAX,
		0x02 | 5 << 16, 4321,
		0x04 | 0 << 16, UINT32_MAX,
		0x10 | 5 << 16, UINT32_MAX,
		0x20 | 0 << 16, UINT32_MAX,
	};
	char orig[256], m[256], target[108], got[256];
	ssize_t n;

	at(orig, sizeof(orig), f, "a/b");
	if (setxattr(orig, "system.posix_acl_access", acl, sizeof(acl), 0) != 0) {
		print_message("no POSIX ACLs here (%s): nothing to copy\n", strerror(errno));
		skip();
	}
	make_ok(f, target, sizeof(target));
	mirror_path(f, "a/b", m, sizeof(m));
	n = getxattr(m, "system.posix_acl_access", got, sizeof(got));
	assert_int_equal(n, sizeof(acl));
	assert_memory_equal(got, acl, sizeof(acl));
	/* and taken away with the original's */
	assert_int_equal(removexattr(orig, "system.posix_acl_access"), 0);
	make_ok(f, target, sizeof(target));
	assert_int_equal(getxattr(m, "system.posix_acl_access", got, sizeof(got)), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(mirrors_owners_and_modes, setup, teardown),
		cmocka_unit_test_setup_teardown(follows_a_chmod_in_place, setup, teardown),
		cmocka_unit_test_setup_teardown(rebuilds_a_wrong_leaf, setup, teardown),
		cmocka_unit_test_setup_teardown(refuses_what_it_cannot_mirror, setup, teardown),
		cmocka_unit_test_setup_teardown(refuses_a_planted_mirror_dir, setup, teardown),
		cmocka_unit_test_setup_teardown(prunes_only_closed_listeners_trees, setup, teardown),
		cmocka_unit_test_setup_teardown(removes_without_following, setup, teardown),
		cmocka_unit_test_setup_teardown(copies_the_access_acl, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
