/*
 * Unit tests for user/shared/nsroot.c: mount namespaces and names resolved
 * beneath a namespace's root.
 *
 * A container's socket path is only meaningful inside the container: an
 * absolute symlink there ("/run -> /var/run") must resolve against the
 * container's "/", never the host's, or the agent stats, guards or reports a
 * host file that merely shares the name. These tests use real syscalls and
 * need no namespaces: openat2(RESOLVE_IN_ROOT) treats any directory fd as
 * "/", so a mkdtemp directory plays the container's root.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "shared/nsroot.h"

/*
 * The fake root D:
 *   D/srv/            a directory
 *   D/srv/app.sock    a bound AF_UNIX socket
 *   D/srv/other       a regular file: another inode
 *   D/srv/link     -> /srv/app.sock       (absolute, meant inside D)
 *   D/srv/up       -> ../../../etc/passwd (relative, tries to climb out)
 *   D/esc          -> /etc                (absolute, would be the host's)
 *   D/ml           -> /proc/self/root     (a magic link's name, on the host)
 */
struct fake_root {
	char dir[64];
	struct ns_root root;
	int sock;
	struct stat sock_st, srv_st, dir_st;
};

static void in_dir(const struct fake_root *f, const char *rel, char *out, size_t len)
{
	int n = snprintf(out, len, "%s/%s", f->dir, rel);

	assert_true(n > 0 && (size_t)n < len);
}

static int fake_root_setup(void **state)
{
	struct fake_root *f = calloc(1, sizeof(*f));
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char p[256];
	int fd;

	assert_non_null(f);
	strcpy(f->dir, "/tmp/sw-nsroot-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	in_dir(f, "srv", p, sizeof(p));
	assert_int_equal(mkdir(p, 0755), 0);
	assert_int_equal(stat(p, &f->srv_st), 0);

	in_dir(f, "srv/app.sock", sa.sun_path, sizeof(sa.sun_path));
	f->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(f->sock >= 0);
	assert_int_equal(bind(f->sock, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(stat(sa.sun_path, &f->sock_st), 0);

	in_dir(f, "srv/other", p, sizeof(p));
	fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	close(fd);
	in_dir(f, "srv/link", p, sizeof(p));
	assert_int_equal(symlink("/srv/app.sock", p), 0);
	in_dir(f, "srv/up", p, sizeof(p));
	assert_int_equal(symlink("../../../etc/passwd", p), 0);
	in_dir(f, "esc", p, sizeof(p));
	assert_int_equal(symlink("/etc", p), 0);
	in_dir(f, "ml", p, sizeof(p));
	assert_int_equal(symlink("/proc/self/root", p), 0);

	/* a foreign root as ns_roots_get would hold it: an O_PATH dir fd with a
	 * namespace that is not the agent's (any nonzero mntns will do) */
	f->root.mntns = 1;
	f->root.fd = open(f->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	assert_true(f->root.fd >= 0);
	assert_int_equal(fstat(f->root.fd, &f->dir_st), 0);
	*state = f;
	return 0;
}

static int fake_root_teardown(void **state)
{
	static const char *const files[] = { "srv/app.sock", "srv/other", "srv/link", "srv/up",
					     "esc", "ml", "etc/passwd" };
	struct fake_root *f = *state;
	char p[256];

	close(f->root.fd);
	close(f->sock);
	/* tests may have added etc/passwd; a missing name is fine */
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		in_dir(f, files[i], p, sizeof(p));
		unlink(p);
	}
	in_dir(f, "etc", p, sizeof(p));
	rmdir(p);
	in_dir(f, "srv", p, sizeof(p));
	assert_int_equal(rmdir(p), 0);
	assert_int_equal(rmdir(f->dir), 0);
	free(f);
	return 0;
}

static void assert_same_file(const struct stat *a, const struct stat *b)
{
	assert_true(a->st_dev == b->st_dev);
	assert_true(a->st_ino == b->st_ino);
}

/* ----- namespaces of processes ----- */

static void test_self_mntns_is_the_nsfs_inode_and_keys_as_zero(void **state)
{
	struct stat st;
	uint32_t self = ns_self_mntns();

	(void)state;
	assert_int_equal(stat("/proc/self/ns/mnt", &st), 0);
	/* the namespace ids are kept in 32 bits: nsfs inode numbers must fit */
	assert_true((uint64_t)st.st_ino <= UINT32_MAX);
	assert_int_equal(self, (uint32_t)st.st_ino);
	assert_int_not_equal(self, 0);
	/* endpoints in the agent's own namespace are keyed 0, others by inode */
	assert_int_equal(ns_key(self), 0);
	assert_int_equal(ns_key(self + 1), self + 1);
	assert_int_equal(ns_key(0), 0);
}

static void test_mntns_of_self_and_of_a_gone_pid(void **state)
{
	struct stat st;
	pid_t pid;

	(void)state;
	assert_int_equal(ns_mntns_of(getpid()), ns_self_mntns());
	assert_int_equal(stat("/proc/self/ns/net", &st), 0);
	assert_int_equal(ns_netns_of(getpid()), (uint32_t)st.st_ino);

	/* a reaped child: its pid names no process (until reused, which a pid
	 * counter does not do within a test) */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(0);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	assert_int_equal(ns_mntns_of(pid), 0);
	assert_int_equal(ns_netns_of(pid), 0);
	/* above any pid_max */
	assert_int_equal(ns_mntns_of(0x7fffffff), 0);
}

/* ----- ns_root_open ----- */

static void test_root_open_of_self_is_slash(void **state)
{
	struct stat slash, st;
	int fd;

	(void)state;
	assert_int_equal(stat("/", &slash), 0);
	fd = ns_root_open(getpid(), ns_self_mntns());
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_same_file(&st, &slash);
	/* O_PATH: a handle to resolve beneath, not to read */
	assert_true((fcntl(fd, F_GETFL) & O_PATH) == O_PATH);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	close(fd);

	/* mntns 0: no namespace check asked for */
	fd = ns_root_open(getpid(), 0);
	assert_true(fd >= 0);
	close(fd);
}

static void test_root_open_in_another_namespace_is_stale(void **state)
{
	(void)state;
	/* the holder is alive but no longer in the namespace it was found in:
	 * its root is not that namespace's */
	assert_int_equal(ns_root_open(getpid(), ns_self_mntns() + 1), -ESTALE);
}

static void test_root_open_of_dead_pid_is_esrch(void **state)
{
	pid_t pid;

	(void)state;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(0);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	assert_int_equal(ns_root_open(pid, ns_self_mntns()), -ESRCH);
	assert_int_equal(ns_root_open(pid, 0), -ESRCH);
}

static void test_root_open_of_zombie_is_esrch(void **state)
{
	siginfo_t si;
	pid_t pid;

	(void)state;
	/* exited but not reaped: pidfd_open still works, /proc/PID/root does
	 * not (the task has dropped its fs), and the pidfd polls readable */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(0);
	assert_int_equal(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0);
	assert_int_equal(ns_root_open(pid, 0), -ESRCH);
	assert_int_equal(ns_root_open(pid, ns_self_mntns()), -ESRCH);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
}

/* ----- names beneath a foreign root ----- */

static void test_lstat_finds_socket_inside_root(void **state)
{
	struct fake_root *f = *state;
	struct stat st;

	assert_int_equal(ns_lstat(&f->root, "/srv/app.sock", &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_same_file(&st, &f->sock_st);
	assert_int_equal(ns_stat(&f->root, "/srv/app.sock", &st), 0);
	assert_same_file(&st, &f->sock_st);
	/* "/" is the root itself */
	assert_int_equal(ns_lstat(&f->root, "/", &st), 0);
	assert_same_file(&st, &f->dir_st);
	assert_int_equal(ns_stat(&f->root, "/", &st), 0);
	assert_same_file(&st, &f->dir_st);
	assert_int_equal(ns_lstat(&f->root, "/srv/missing.sock", &st), -ENOENT);
	assert_int_equal(ns_lstat(&f->root, "/nodir/x.sock", &st), -ENOENT);
}

static void test_absolute_symlink_resolves_inside_root(void **state)
{
	struct fake_root *f = *state;
	struct stat st, fake_passwd;
	char p[256];
	int fd;

	/* D/esc -> /etc is D/etc, which does not exist: never the host's
	 * /etc/passwd (which does) */
	assert_int_equal(stat("/etc/passwd", &st), 0);
	assert_int_equal(ns_stat(&f->root, "/esc/passwd", &st), -ENOENT);
	assert_int_equal(ns_lstat(&f->root, "/esc/passwd", &st), -ENOENT);

	/* and once D has an /etc/passwd, that is what it finds */
	in_dir(f, "etc", p, sizeof(p));
	assert_int_equal(mkdir(p, 0755), 0);
	in_dir(f, "etc/passwd", p, sizeof(p));
	fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &fake_passwd), 0);
	close(fd);
	assert_int_equal(ns_stat(&f->root, "/esc/passwd", &st), 0);
	assert_same_file(&st, &fake_passwd);
	assert_int_equal(ns_lstat(&f->root, "/esc/passwd", &st), 0);
	assert_same_file(&st, &fake_passwd);
}

static void test_absolute_symlink_to_socket_followed_by_stat_only(void **state)
{
	struct fake_root *f = *state;
	struct stat st;
	int fd;

	/* D/srv/link -> /srv/app.sock means D/srv/app.sock */
	assert_int_equal(ns_stat(&f->root, "/srv/link", &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_same_file(&st, &f->sock_st);
	/* the l-call does not follow the final component */
	assert_int_equal(ns_lstat(&f->root, "/srv/link", &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	assert_false(st.st_ino == f->sock_st.st_ino);

	/* ns_open likewise, by no_follow */
	fd = ns_open(&f->root, "/srv/link", O_PATH, false);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_same_file(&st, &f->sock_st);
	close(fd);
	fd = ns_open(&f->root, "/srv/link", O_PATH, true);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	close(fd);
	/* no_follow holds even for a link to a directory: /esc is not opened
	 * as D/etc (missing) but as the link, which is no directory */
	assert_int_equal(ns_open(&f->root, "/esc", O_PATH | O_DIRECTORY, true), -ENOTDIR);
}

static void test_dotdot_cannot_climb_out(void **state)
{
	struct fake_root *f = *state;
	struct stat st;

	/* ".." at the root stays at the root, as in a chroot */
	assert_int_equal(ns_stat(&f->root, "/../../etc/passwd", &st), -ENOENT);
	assert_int_equal(ns_lstat(&f->root, "/../../etc/passwd", &st), -ENOENT);
	assert_int_equal(ns_stat(&f->root, "/../../srv/app.sock", &st), 0);
	assert_same_file(&st, &f->sock_st);
	assert_int_equal(ns_lstat(&f->root, "/srv/../../../srv/app.sock", &st), 0);
	assert_same_file(&st, &f->sock_st);
	/* a relative symlink climbing out stops at the root too */
	assert_int_equal(ns_stat(&f->root, "/srv/up", &st), -ENOENT);
	assert_int_equal(ns_stat(&f->root, "/..", &st), 0);
	assert_same_file(&st, &f->dir_st);
}

/*
 * ns_lstat() resolves the parent beneath the root and looks at the leaf from
 * it, unrestricted: a final "." or ".." would step above the root ("/.." and
 * "/srv/../.." the directory holding D). Such a leaf is refused, so nothing
 * outside the root is ever looked at, nor is any *at() call given
 * ns_open_parent()'s leaf.
 */
static void test_lstat_final_dotdot_stays_in_root(void **state)
{
	struct fake_root *f = *state;
	struct stat st;
	const char *leaf;

	assert_int_equal(ns_lstat(&f->root, "/..", &st), -EINVAL);
	assert_int_equal(ns_lstat(&f->root, "/srv/../..", &st), -EINVAL);
	assert_int_equal(ns_lstat(&f->root, "/srv/.", &st), -EINVAL);
	assert_int_equal(ns_open_parent(&f->root, "/srv/..", &leaf), -EINVAL);
	assert_false(ns_path_is(&f->root, "/..", f->dir_st.st_dev, f->dir_st.st_ino));
}

static void test_path_is_compares_dev_and_ino(void **state)
{
	struct fake_root *f = *state;
	struct stat other;
	char p[256];

	in_dir(f, "srv/other", p, sizeof(p));
	assert_int_equal(stat(p, &other), 0);
	assert_true(ns_path_is(&f->root, "/srv/app.sock", f->sock_st.st_dev, f->sock_st.st_ino));
	assert_false(ns_path_is(&f->root, "/srv/app.sock", other.st_dev, other.st_ino));
	/* the same inode number on another device is another file */
	assert_false(ns_path_is(&f->root, "/srv/app.sock", f->sock_st.st_dev + 1, f->sock_st.st_ino));
	/* the final component is not followed: the link is not the socket */
	assert_false(ns_path_is(&f->root, "/srv/link", f->sock_st.st_dev, f->sock_st.st_ino));
	assert_false(ns_path_is(&f->root, "/srv/gone.sock", f->sock_st.st_dev, f->sock_st.st_ino));
}

static void test_open_parent_gives_dir_and_leaf(void **state)
{
	struct fake_root *f = *state;
	const char *path = "/srv/app.sock", *leaf = NULL;
	struct stat st;
	int fd;

	fd = ns_open_parent(&f->root, path, &leaf);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_same_file(&st, &f->srv_st);
	/* leaf points into path, for an *at() call on the fd */
	assert_ptr_equal(leaf, path + strlen("/srv/"));
	assert_string_equal(leaf, "app.sock");
	assert_int_equal(fstatat(fd, leaf, &st, AT_SYMLINK_NOFOLLOW), 0);
	assert_same_file(&st, &f->sock_st);
	close(fd);

	/* a leaf right under "/": the parent is the root itself */
	fd = ns_open_parent(&f->root, "/srv", &leaf);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_same_file(&st, &f->dir_st);
	assert_string_equal(leaf, "srv");
	close(fd);
}

static void test_open_parent_rejects_relative_and_root(void **state)
{
	struct fake_root *f = *state;
	const char *leaf;
	struct ns_root own = { .fd = NS_ROOT_OWN };
	struct stat st;

	/* names in a namespace are absolute; "/" has no parent and no leaf */
	assert_int_equal(ns_open_parent(&f->root, "relative", &leaf), -EINVAL);
	assert_int_equal(ns_open_parent(&f->root, "srv/app.sock", &leaf), -EINVAL);
	assert_int_equal(ns_open_parent(&f->root, "/", &leaf), -EINVAL);
	/* a trailing slash leaves an empty leaf */
	assert_int_equal(ns_open_parent(&f->root, "/srv/", &leaf), -EINVAL);
	assert_int_equal(ns_open_parent(&own, "relative", &leaf), -EINVAL);
	assert_int_equal(ns_open_parent(&own, "/", &leaf), -EINVAL);
	/* and the foreign l-call, built on it, refuses a relative name */
	assert_int_equal(ns_lstat(&f->root, "srv/app.sock", &st), -EINVAL);
}

/* ----- magic links ----- */

static void test_magic_link_name_resolves_in_root(void **state)
{
	struct fake_root *f = *state;
	struct stat st;

	/* D/ml -> "/proc/self/root" is an ordinary symlink to a name in D:
	 * D/proc/self/root, which does not exist. The host's magic link is not
	 * reached by its name. */
	assert_int_equal(ns_stat(&f->root, "/ml", &st), -ENOENT);
	assert_int_equal(ns_stat(&f->root, "/ml/etc/passwd", &st), -ENOENT);
	assert_int_equal(ns_lstat(&f->root, "/ml", &st), 0);
	assert_true(S_ISLNK(st.st_mode));
}

static void test_real_magic_links_are_refused(void **state)
{
	struct ns_root slash = { .mntns = 1 };
	struct stat st;
	char p[64];

	(void)state;
	/* The host's "/" held as if it were a foreign root: then /proc is the
	 * real procfs and /proc/self/root, /proc/self/fd/N are real magic links.
	 * Following one would jump to wherever it points, outside any root, so
	 * RESOLVE_NO_MAGICLINKS makes it ELOOP. */
	slash.fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	assert_true(slash.fd >= 0);
	assert_int_equal(ns_stat(&slash, "/proc/self/root", &st), -ELOOP);
	assert_int_equal(ns_stat(&slash, "/proc/self/root/etc/passwd", &st), -ELOOP);
	assert_int_equal(ns_lstat(&slash, "/proc/self/root/etc/passwd", &st), -ELOOP);
	snprintf(p, sizeof(p), "/proc/self/fd/%d", slash.fd);
	assert_int_equal(ns_stat(&slash, p, &st), -ELOOP);
	/* /proc/self itself is an ordinary symlink (to "PID"): allowed */
	assert_int_equal(ns_stat(&slash, "/proc/self/status", &st), 0);
	/* and the final component of an l-call is never followed at all */
	assert_int_equal(ns_lstat(&slash, "/proc/self/root", &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	close(slash.fd);
}

static void test_path_via_proc(void **state)
{
	(void)state;
	assert_true(ns_path_via_proc("/proc/self/fd/13/attach"));
	assert_true(ns_path_via_proc("/proc/1234/root/run/a.sock"));
	assert_true(ns_path_via_proc("/proc"));
	/* on a component boundary only */
	assert_false(ns_path_via_proc("/procfs/x"));
	assert_false(ns_path_via_proc("/proc.sock"));
	assert_false(ns_path_via_proc("/run/a.sock"));
	assert_false(ns_path_via_proc("/run/proc/a.sock"));
}

/* ----- the agent's own root ----- */

static void test_own_root_uses_plain_syscalls(void **state)
{
	struct ns_root own = { .fd = NS_ROOT_OWN };
	struct stat slash, st;
	const char *leaf;
	int fd;

	(void)state;
	assert_int_equal(stat("/", &slash), 0);
	assert_int_equal(ns_lstat(&own, "/", &st), 0);
	assert_same_file(&st, &slash);
	assert_int_equal(ns_stat(&own, "/", &st), 0);
	assert_same_file(&st, &slash);
	assert_true(ns_path_is(&own, "/", slash.st_dev, slash.st_ino));
	/* the agent's own names may go through magic links, as plain stat does */
	assert_int_equal(ns_stat(&own, "/proc/self/root", &st), 0);
	assert_same_file(&st, &slash);
	assert_int_equal(ns_lstat(&own, "/proc/self/root", &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	fd = ns_open_parent(&own, "/etc/passwd", &leaf);
	assert_true(fd >= 0);
	assert_string_equal(leaf, "passwd");
	assert_int_equal(fstatat(fd, leaf, &st, 0), 0);
	close(fd);
	assert_int_equal(ns_lstat(&own, "/nonexistent-sw-test/x", &st), -ENOENT);
}

/* ----- ns_roots ----- */

static void test_roots_own_is_key_zero(void **state)
{
	struct ns_roots r;

	(void)state;
	ns_roots_init(&r);
	assert_int_equal(r.own.fd, NS_ROOT_OWN);
	assert_int_equal(r.own.mntns, 0);
	assert_null(r.list);
	assert_int_equal(r.n, 0);
	/* key 0 never opens anything: no holder needed */
	assert_ptr_equal(ns_roots_get(&r, 0, 0), &r.own);
	assert_ptr_equal(ns_roots_get(&r, 0, getpid()), &r.own);
	assert_int_equal(r.n, 0);
	/* the own root is never let go */
	ns_root_put(&r, &r.own);
	ns_root_put(&r, &r.own);
	assert_int_equal(r.own.refs, 1);
	assert_int_equal(r.own.fd, NS_ROOT_OWN);
	ns_root_put(&r, NULL);
	ns_roots_free(&r);
}

static void test_roots_unreachable_namespace(void **state)
{
	struct ns_roots r;
	uint32_t bogus = ns_self_mntns() + 1;
	pid_t pid;

	(void)state;
	ns_roots_init(&r);
	/* the holder is not in that namespace: nothing opened, counted */
	assert_null(ns_roots_get(&r, bogus, getpid()));
	assert_int_equal(r.unreachable, 1);
	assert_int_equal(r.n, 0);
	assert_null(r.list);
	/* no holder at all: not even tried, so not counted */
	assert_null(ns_roots_get(&r, bogus, 0));
	assert_int_equal(r.unreachable, 1);
	/* a holder that is gone */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(0);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	assert_null(ns_roots_get(&r, bogus, pid));
	assert_int_equal(r.unreachable, 2);
	assert_int_equal(r.n, 0);
	ns_roots_free(&r);
}

static bool fd_is_open(int fd)
{
	return fcntl(fd, F_GETFD) != -1;
}

static void test_roots_refcount_shares_and_closes(void **state)
{
	struct ns_roots r;
	struct ns_root *a, *b;
	struct stat slash, st;
	uint32_t key = ns_self_mntns();
	int fd;

	(void)state;
	ns_roots_init(&r);
	/* Without namespaces there is no foreign one to open; the raw inode of
	 * the agent's own (which ns_key would have made 0) is a key that is not
	 * 0, so it is opened through /proc/PID/root like a foreign root. */
	a = ns_roots_get(&r, key, getpid());
	assert_non_null(a);
	assert_ptr_not_equal(a, &r.own);
	assert_int_equal(a->mntns, key);
	assert_int_equal(a->refs, 1);
	assert_int_equal(r.n, 1);
	assert_ptr_equal(r.list, a);
	assert_true(a->fd >= 0);
	assert_int_equal(stat("/", &slash), 0);
	assert_int_equal(fstat(a->fd, &st), 0);
	assert_same_file(&st, &slash);
	fd = a->fd;

	/* held: found again, not opened again (no holder needed now) */
	b = ns_roots_get(&r, key, 0);
	assert_ptr_equal(a, b);
	assert_int_equal(a->refs, 2);
	assert_int_equal(r.n, 1);
	assert_ptr_equal(ns_root_ref(a), a);
	assert_int_equal(a->refs, 3);
	assert_null(ns_root_ref(NULL));

	ns_root_put(&r, a);
	ns_root_put(&r, b);
	assert_int_equal(r.n, 1);
	assert_int_equal(a->refs, 1);
	assert_true(fd_is_open(fd));
	/* the last reference closes the fd and drops the entry */
	ns_root_put(&r, a);
	assert_int_equal(r.n, 0);
	assert_null(r.list);
	assert_false(fd_is_open(fd));
	assert_int_equal(r.unreachable, 0);
	ns_roots_free(&r);
}

static void test_roots_free_closes_held_roots(void **state)
{
	struct ns_roots r;
	struct ns_root *a;
	int fd;

	(void)state;
	ns_roots_init(&r);
	a = ns_roots_get(&r, ns_self_mntns(), getpid());
	assert_non_null(a);
	ns_root_ref(a);
	fd = a->fd;
	assert_true(fd_is_open(fd));
	/* references still out do not keep it: freeing is the end */
	ns_roots_free(&r);
	assert_false(fd_is_open(fd));
	assert_null(r.list);
	assert_int_equal(r.n, 0);
	assert_int_equal(r.own.fd, NS_ROOT_OWN);
	assert_ptr_equal(ns_roots_get(&r, 0, 0), &r.own);
	ns_roots_free(&r);
}

#define FAKE_ROOT_TEST(t) cmocka_unit_test_setup_teardown(t, fake_root_setup, fake_root_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_self_mntns_is_the_nsfs_inode_and_keys_as_zero),
		cmocka_unit_test(test_mntns_of_self_and_of_a_gone_pid),
		cmocka_unit_test(test_root_open_of_self_is_slash),
		cmocka_unit_test(test_root_open_in_another_namespace_is_stale),
		cmocka_unit_test(test_root_open_of_dead_pid_is_esrch),
		cmocka_unit_test(test_root_open_of_zombie_is_esrch),
		FAKE_ROOT_TEST(test_lstat_finds_socket_inside_root),
		FAKE_ROOT_TEST(test_absolute_symlink_resolves_inside_root),
		FAKE_ROOT_TEST(test_absolute_symlink_to_socket_followed_by_stat_only),
		FAKE_ROOT_TEST(test_dotdot_cannot_climb_out),
		FAKE_ROOT_TEST(test_lstat_final_dotdot_stays_in_root),
		FAKE_ROOT_TEST(test_path_is_compares_dev_and_ino),
		FAKE_ROOT_TEST(test_open_parent_gives_dir_and_leaf),
		FAKE_ROOT_TEST(test_open_parent_rejects_relative_and_root),
		FAKE_ROOT_TEST(test_magic_link_name_resolves_in_root),
		cmocka_unit_test(test_real_magic_links_are_refused),
		cmocka_unit_test(test_path_via_proc),
		cmocka_unit_test(test_own_root_uses_plain_syscalls),
		cmocka_unit_test(test_roots_own_is_key_zero),
		cmocka_unit_test(test_roots_unreachable_namespace),
		cmocka_unit_test(test_roots_refcount_shares_and_closes),
		cmocka_unit_test(test_roots_free_closes_held_roots),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
