#include "nsroot.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mountinfo.h"
#include "paths.h"

static uint32_t ns_ino_at(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (uint32_t)st.st_ino : 0;
}

uint32_t ns_self_mntns(void)
{
	static uint32_t self;

	if (!self)
		self = ns_ino_at("/proc/self/ns/mnt");
	return self;
}

uint32_t ns_mntns_of(pid_t pid)
{
	char p[64];

	snprintf(p, sizeof(p), "/proc/%d/ns/mnt", (int)pid);
	return ns_ino_at(p);
}

uint32_t ns_netns_of(pid_t pid)
{
	char p[64];

	snprintf(p, sizeof(p), "/proc/%d/ns/net", (int)pid);
	return ns_ino_at(p);
}

uint32_t ns_key(uint32_t mntns)
{
	return mntns == ns_self_mntns() ? 0 : mntns;
}

static bool pidfd_alive(int pidfd)
{
	struct pollfd p = { .fd = pidfd, .events = POLLIN };

	/* a pidfd polls readable once its process has exited */
	return poll(&p, 1, 0) == 0;
}

int ns_root_open(pid_t pid, uint32_t mntns)
{
	char p[64];
	int pidfd, fd, err = 0;

	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0)
		return errno == EINVAL ? -ESRCH : -errno;
	snprintf(p, sizeof(p), "/proc/%d/root", (int)pid);
	fd = open(p, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		err = errno == ENOENT ? ESRCH : errno;
	else if (mntns && ns_mntns_of(pid) != mntns)
		err = ns_mntns_of(pid) ? ESTALE : ESRCH;
	/* alive after the look: /proc/PID named this process throughout */
	if (!err && !pidfd_alive(pidfd))
		err = ESRCH;
	close(pidfd);
	if (err) {
		if (fd >= 0)
			close(fd);
		return -err;
	}
	return fd;
}

void ns_roots_init(struct ns_roots *r)
{
	memset(r, 0, sizeof(*r));
	r->own.fd = NS_ROOT_OWN;
	r->own.refs = 1; /* never let go */
}

void ns_roots_free(struct ns_roots *r)
{
	struct ns_root *x = r->list, *next;

	for (; x; x = next) {
		next = x->next;
		if (x->fd >= 0)
			close(x->fd);
		free(x);
	}
	ns_roots_init(r);
}

struct ns_root *ns_roots_get(struct ns_roots *r, uint32_t key, pid_t pid)
{
	struct ns_root *x;
	int fd;

	if (key == 0)
		return &r->own;
	for (x = r->list; x; x = x->next)
		if (x->mntns == key)
			return ns_root_ref(x);
	if (pid <= 0)
		return NULL;
	fd = ns_root_open(pid, key);
	if (fd < 0) {
		r->unreachable++;
		return NULL;
	}
	x = calloc(1, sizeof(*x));
	if (!x) {
		close(fd);
		return NULL;
	}
	x->mntns = key;
	x->fd = fd;
	x->refs = 1;
	x->next = r->list;
	r->list = x;
	r->n++;
	return x;
}

struct ns_root *ns_root_ref(struct ns_root *root)
{
	if (root)
		root->refs++;
	return root;
}

void ns_root_put(struct ns_roots *r, struct ns_root *root)
{
	struct ns_root **pp;

	if (!root || root == &r->own || --root->refs)
		return;
	for (pp = &r->list; *pp; pp = &(*pp)->next) {
		if (*pp == root) {
			*pp = root->next;
			r->n--;
			break;
		}
	}
	if (root->fd >= 0)
		close(root->fd);
	free(root);
}

/* openat2 beneath a namespace's root: "/" is its root, ".." stops there,
 * absolute symlinks resolve against it, magic links are refused. */
static int open_in_root(int rootfd, const char *path, int flags, uint64_t resolve)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | resolve,
	};
	int fd;

	/* relative to the root fd: "." for "/" itself */
	while (*path == '/')
		path++;
	fd = (int)syscall(SYS_openat2, rootfd, *path ? path : ".", &how, sizeof(how));
	return fd < 0 ? -errno : fd;
}

int ns_open(const struct ns_root *root, const char *path, int flags, bool no_follow)
{
	int fd;

	if (root->fd == NS_ROOT_OWN) {
		fd = open(path, flags | O_CLOEXEC | (no_follow ? O_NOFOLLOW : 0));
		return fd < 0 ? -errno : fd;
	}
	return open_in_root(root->fd, path, flags | (no_follow ? O_NOFOLLOW : 0), 0);
}

int ns_open_parent(const struct ns_root *root, const char *path, const char **leaf)
{
	char dir[SW_PATH_MAX];

	if (path[0] != '/' || !path_dirname(path, dir, sizeof(dir)))
		return -EINVAL;
	*leaf = path_basename(path);
	/* a final "." or ".." would step from the parent, unchecked: beneath
	 * the root only normalised names are looked at */
	if (!**leaf || strcmp(*leaf, ".") == 0 || strcmp(*leaf, "..") == 0)
		return -EINVAL;
	return ns_open(root, dir, O_PATH | O_DIRECTORY, false);
}

int ns_lstat(const struct ns_root *root, const char *path, struct stat *st)
{
	const char *leaf;
	int dfd, rc = 0;

	if (root->fd == NS_ROOT_OWN)
		return lstat(path, st) == 0 ? 0 : -errno;
	if (strcmp(path, "/") == 0)
		return fstat(root->fd, st) == 0 ? 0 : -errno;
	dfd = ns_open_parent(root, path, &leaf);
	if (dfd < 0)
		return dfd;
	if (fstatat(dfd, leaf, st, AT_SYMLINK_NOFOLLOW) != 0)
		rc = -errno;
	close(dfd);
	return rc;
}

int ns_stat(const struct ns_root *root, const char *path, struct stat *st)
{
	int fd, rc = 0;

	if (root->fd == NS_ROOT_OWN)
		return stat(path, st) == 0 ? 0 : -errno;
	fd = open_in_root(root->fd, path, O_PATH, 0);
	if (fd < 0)
		return fd;
	if (fstat(fd, st) != 0)
		rc = -errno;
	close(fd);
	return rc;
}

bool ns_path_is(const struct ns_root *root, const char *path, uint64_t dev, uint64_t ino)
{
	struct stat st;

	return ns_lstat(root, path, &st) == 0 && (uint64_t)st.st_ino == ino &&
	       (uint64_t)st.st_dev == dev;
}

bool ns_path_via_proc(const char *path)
{
	/* a socket cannot be bound on procfs itself: a name under /proc went
	 * through a magic link (/proc/self/fd/N/..., /proc/PID/root/...) */
	return path_has_prefix(path, "/proc");
}

struct own_name_ctx {
	uint64_t dev, ino;
	char *out;
	size_t outlen;
};

static bool own_name_is_it(const char *name, void *ctx)
{
	struct own_name_ctx *c = ctx;
	struct stat st;

	if (lstat(name, &st) != 0 || !S_ISSOCK(st.st_mode) || (uint64_t)st.st_ino != c->ino ||
	    (uint64_t)st.st_dev != c->dev || strlen(name) >= c->outlen)
		return false;
	strcpy(c->out, name);
	return true;
}

bool ns_own_name(const struct mount_table *ns_mounts, const struct mount_table *own_mounts,
		 const char *path, uint64_t dev, uint64_t ino, char *out, size_t outlen)
{
	struct own_name_ctx c = { dev, ino, out, outlen };

	return mount_table_translate(ns_mounts, own_mounts, path, own_name_is_it, &c);
}
