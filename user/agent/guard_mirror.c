#include "guard_mirror.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "shared/log.h"

#define MIRROR_DEPTH_MAX 54 /* components in 108 bytes */
#define ACL_ACCESS "system.posix_acl_access"

/* What one directory of the original path is, for its mirror. */
struct dir_look {
	char name[256];
	uid_t uid;
	gid_t gid;
	mode_t mode;
	char acl[512];
	ssize_t acl_len; /* -1: none */
};

/* Removes name beneath parent and everything in it, never following a link:
 * a mirrored directory may be writable by its owner, who may have put
 * anything in it. Depth-bounded; what is left stays, and is reported. */
static int tree_remove(int parent, const char *name, int depth)
{
	int fd, rc = 0;
	DIR *dir;
	struct dirent *de;

	fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		if (errno != ENOTDIR && errno != ELOOP)
			return -errno;
		return unlinkat(parent, name, 0) == 0 || errno == ENOENT ? 0 : -errno;
	}
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(dir))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (depth < MIRROR_DEPTH_MAX && (de->d_type == DT_DIR || de->d_type == DT_UNKNOWN))
		{
			int sub = tree_remove(dirfd(dir), de->d_name, depth + 1);

			if (sub)
				rc = sub;
		}
		else if (unlinkat(dirfd(dir), de->d_name, 0) != 0)
			rc = -errno;
	}
	closedir(dir);
	if (unlinkat(parent, name, AT_REMOVEDIR) != 0 && errno != ENOENT)
		rc = -errno;
	return rc;
}

/*
 * The mount's mirror directory, root's, mode 0711, opened once per run. The
 * trees in it may be another agent's, in use by its redirect (two agents on
 * one host, one per network namespace, share a mount's directory): a tree
 * goes with its listener (guard_mirror_remove, guard_mirror_prune), never
 * because some agent started.
 */
static int mirror_dir_fd(struct guard_dir *d, const char **why)
{
	static const struct ns_root own = { .fd = NS_ROOT_OWN };
	int mfd, fd;
	struct stat st;

	if (d->mirror_fd >= 0 && fstat(d->mirror_fd, &st) == 0 && st.st_nlink > 0)
		return d->mirror_fd;
	if (d->mirror_fd >= 0)
		close(d->mirror_fd);
	d->mirror_fd = -1;
	mfd = ns_open(d->root ? d->root : &own, d->mountpoint, O_DIRECTORY | O_PATH, true);
	if (mfd < 0) {
		*why = "mount_unreachable";
		return mfd;
	}
	if (mkdirat(mfd, GUARD_MIRROR_DIR_NAME, 0711) != 0 && errno != EEXIST) {
		int err = errno;

		close(mfd);
		*why = err == EROFS ? "read_only" : "cannot_create_mirror_dir";
		return -err;
	}
	fd = openat(mfd, GUARD_MIRROR_DIR_NAME, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	close(mfd);
	/* anyone's directory, or a symlink, where ours should be: a trap */
	if (fd < 0 || fstat(fd, &st) != 0 || st.st_uid != 0 || (st.st_mode & 07777) != 0711) {
		if (fd >= 0)
			close(fd);
		*why = "untrusted_dir";
		return -EPERM;
	}
	d->mirror_fd = fd;
	return fd;
}

/* Splits path's part below mountpoint into directories and a leaf; false
 * for a path not below it or with a component that is "." or "..". */
static bool split_below(const char *mountpoint, const char *path, struct dir_look *dirs,
			size_t *ndirs, char *leaf, size_t leaflen, char *rel, size_t rellen)
{
	size_t mlen = strcmp(mountpoint, "/") != 0 ? strlen(mountpoint) : 0;
	const char *p = path + mlen;
	size_t n = 0, used = 0;

	if (strncmp(path, mountpoint, mlen) != 0 || *p != '/')
		return false;
	*ndirs = 0;
	rel[0] = 0;
	while (*p) {
		const char *end;
		size_t clen;

		while (*p == '/')
			p++;
		if (!*p)
			break;
		end = strchr(p, '/');
		clen = end ? (size_t)(end - p) : strlen(p);
		if (clen >= sizeof(dirs[0].name) || (clen == 1 && p[0] == '.') ||
		    (clen == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		if (used + clen + 2 > rellen)
			return false;
		used += (size_t)snprintf(rel + used, rellen - used, "/%.*s", (int)clen, p);
		if (!end || !end[strspn(end, "/")]) {
			if (clen >= leaflen)
				return false;
			memcpy(leaf, p, clen);
			leaf[clen] = 0;
			*ndirs = n;
			return true;
		}
		if (n == MIRROR_DEPTH_MAX)
			return false;
		memcpy(dirs[n].name, p, clen);
		dirs[n++].name[clen] = 0;
		p = end;
	}
	return false;
}

static ssize_t acl_of(int fd, char *buf, size_t len)
{
	char proc[64];
	ssize_t n;

	/* an O_PATH fd takes no f*xattr call; its /proc/self/fd name does */
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	n = getxattr(proc, ACL_ACCESS, buf, len);
	return n > 0 ? n : -1;
}

/* Looks at each directory of the original below the mount root, none
 * followed: a symlink on the way would make the two lookups differ. */
static int look_originals(int mfd, struct dir_look *dirs, size_t n, const char **why)
{
	int cur = dup(mfd), rc = 0;

	for (size_t i = 0; i < n && cur >= 0; i++) {
		struct stat st;
		int fd = openat(cur, dirs[i].name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

		close(cur);
		cur = fd;
		if (fd < 0) {
			rc = -errno;
			*why = errno == ENOTDIR || errno == ELOOP ? "symlink_in_path" : "path_gone";
			return rc;
		}
		if (fstat(fd, &st) != 0) {
			rc = -errno;
			*why = "path_gone";
			break;
		}
		dirs[i].uid = st.st_uid;
		dirs[i].gid = st.st_gid;
		dirs[i].mode = st.st_mode & 07777;
		dirs[i].acl_len = acl_of(fd, dirs[i].acl, sizeof(dirs[i].acl));
	}
	if (cur >= 0)
		close(cur);
	return rc;
}

/* Gives a mirror directory its original's owner, group, mode and ACL. */
static int mirror_apply(int fd, const struct dir_look *o)
{
	struct stat st;
	char acl[512];
	ssize_t n;

	if (fstat(fd, &st) != 0)
		return -errno;
	if ((st.st_uid != o->uid || st.st_gid != o->gid) && fchown(fd, o->uid, o->gid) != 0)
		return -errno;
	/* chown may clear setgid: the mode is set after it */
	if ((st.st_mode & 07777) != o->mode || st.st_uid != o->uid || st.st_gid != o->gid)
		if (fchmod(fd, o->mode) != 0)
			return -errno;
	n = fgetxattr(fd, ACL_ACCESS, acl, sizeof(acl));
	if (o->acl_len < 0) {
		if (n > 0 && fremovexattr(fd, ACL_ACCESS) != 0)
			return -errno;
	} else if (n != o->acl_len || memcmp(acl, o->acl, (size_t)n) != 0) {
		if (fsetxattr(fd, ACL_ACCESS, o->acl, (size_t)o->acl_len, 0) != 0)
			return -errno;
	}
	return 0;
}

/* Walks an existing mirror, re-copying each directory's owner and mode;
 * 1 if its leaf is the listener's file, 0 if it must be built anew. */
static int mirror_sync(int tfd, const struct dir_look *dirs, size_t n, const char *leaf,
		       uint64_t dev, uint64_t ino)
{
	int cur = dup(tfd), ok = 0;
	struct stat st;

	for (size_t i = 0; i < n && cur >= 0; i++) {
		int fd = openat(cur, dirs[i].name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

		close(cur);
		cur = fd;
		if (fd < 0 || fstat(fd, &st) != 0 || st.st_nlink == 0 || mirror_apply(fd, &dirs[i]))
			goto out;
	}
	if (cur >= 0 && fstatat(cur, leaf, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISSOCK(st.st_mode) &&
	    st.st_dev == dev && st.st_ino == ino)
		ok = 1;
out:
	if (cur >= 0)
		close(cur);
	return ok;
}

/* Builds the whole mirror under tmp, a root-only directory of the mirror
 * directory, and opens it up only once its leaf is the listener's. */
static int mirror_build(int rfd, const char *tmp, const struct guard_ref *g,
			const struct dir_look *dirs, size_t n, const char *leaf, uint64_t dev,
			uint64_t ino, const char **why)
{
	int fds[MIRROR_DEPTH_MAX + 1], rc = 0;
	size_t made = 0;
	struct stat st;

	tree_remove(rfd, tmp, 0);
	if (mkdirat(rfd, tmp, 0700) != 0) {
		*why = errno == EROFS ? "read_only" : "cannot_create_mirror_dir";
		return -errno;
	}
	fds[0] = openat(rfd, tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fds[0] < 0) {
		*why = "cannot_create_mirror_dir";
		return -errno;
	}
	made = 1;
	for (size_t i = 0; i < n; i++) {
		if (mkdirat(fds[i], dirs[i].name, 0700) != 0 ||
		    (fds[i + 1] = openat(fds[i], dirs[i].name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
			rc = -errno;
			*why = "cannot_create_mirror_dir";
			goto out;
		}
		made++;
	}
	if (linkat(g->dir->dirfd, g->name, fds[n], leaf, 0) != 0) {
		rc = -errno;
		*why = errno == EPERM ? "link_not_permitted" : "link_failed";
		goto out;
	}
	if (fstatat(fds[n], leaf, &st, AT_SYMLINK_NOFOLLOW) != 0 || st.st_dev != dev ||
	    st.st_ino != ino) {
		rc = -ESTALE;
		*why = "replaced";
		goto out;
	}
	/* the leaf is in: now each directory may become what it mirrors */
	for (size_t i = 0; i < n; i++) {
		rc = mirror_apply(fds[i + 1], &dirs[i]);
		if (rc) {
			*why = "cannot_copy_owner";
			goto out;
		}
	}
	if (fchmod(fds[0], 0711) != 0) {
		rc = -errno;
		*why = "cannot_create_mirror_dir";
	}
out:
	for (size_t i = 0; i < made; i++)
		close(fds[i]);
	if (rc)
		tree_remove(rfd, tmp, 0);
	return rc;
}

int guard_mirror_make(const struct guard_ref *g, const char *path, uint64_t dev, uint64_t ino,
		      char *target, size_t len, const char **why)
{
	static const struct ns_root own = { .fd = NS_ROOT_OWN };
	struct dir_look dirs[MIRROR_DEPTH_MAX];
	char leaf[256], rel[256], id[32], tmp[40];
	size_t n;
	int rfd, mfd, tfd, rc;
	const char *mp;

	*why = NULL;
	if (!g->dir || g->dir->dirfd < 0 || !g->name[0]) {
		*why = "no_guard";
		return -ENOENT;
	}
	mp = g->dir->mountpoint;
	if (!split_below(mp, path, dirs, &n, leaf, sizeof(leaf), rel, sizeof(rel))) {
		*why = "not_under_mount";
		return -EINVAL;
	}
	snprintf(id, sizeof(id), "%llx", (unsigned long long)ino);
	rc = snprintf(target, len, "%s/%s/%s%s", strcmp(mp, "/") != 0 ? mp : "", GUARD_MIRROR_DIR_NAME,
		      id, rel);
	if (rc < 0 || (size_t)rc >= len) {
		*why = "too_long";
		return -ENAMETOOLONG;
	}
	rfd = mirror_dir_fd(g->dir, why);
	if (rfd < 0)
		return rfd;
	mfd = ns_open(g->dir->root ? g->dir->root : &own, mp, O_DIRECTORY | O_PATH, true);
	if (mfd < 0) {
		*why = "mount_unreachable";
		return mfd;
	}
	rc = look_originals(mfd, dirs, n, why);
	close(mfd);
	if (rc)
		return rc;
	tfd = openat(rfd, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (tfd >= 0) {
		int ok = mirror_sync(tfd, dirs, n, leaf, dev, ino);

		close(tfd);
		if (ok)
			return 0;
	}
	/* built beside it and swapped in: a mirror in use is never absent */
	snprintf(tmp, sizeof(tmp), "%s.new", id);
	rc = mirror_build(rfd, tmp, g, dirs, n, leaf, dev, ino, why);
	if (rc)
		return rc;
	if (tfd >= 0 && renameat2(rfd, tmp, rfd, id, RENAME_EXCHANGE) == 0) {
		tree_remove(rfd, tmp, 0);
		return 0;
	}
	if (renameat(rfd, tmp, rfd, id) != 0) {
		rc = -errno;
		*why = "cannot_create_mirror_dir";
		tree_remove(rfd, tmp, 0);
	}
	return rc;
}

void guard_mirror_remove(const struct guard_ref *g, uint64_t ino)
{
	char id[32];
	int rc;

	if (!g->dir || g->dir->mirror_fd < 0)
		return;
	snprintf(id, sizeof(id), "%llx", (unsigned long long)ino);
	rc = tree_remove(g->dir->mirror_fd, id, 0);
	if (rc)
		log_warn("mirror %s/%s/%s not fully removed: %s", g->dir->mountpoint,
			 GUARD_MIRROR_DIR_NAME, id, strerror(-rc));
}

/* The socket inode a tree is named after: "<ino>" or "<ino>.new" (one being
 * built), in hex; false for any other name. */
static bool tree_name_parse(const char *name, uint64_t *ino)
{
	char *end;
	unsigned long long v;

	if (!isxdigit((unsigned char)name[0]))
		return false;
	errno = 0;
	v = strtoull(name, &end, 16);
	if (errno || (*end && strcmp(end, ".new") != 0))
		return false;
	*ino = v;
	return true;
}

size_t guard_mirror_prune(struct guard_dir *d, guard_keep_fn keep, void *ctx)
{
	struct stat st;
	struct dirent *de;
	size_t removed = 0;
	DIR *dir;
	int fd;

	if (d->mirror_fd < 0 || fstat(d->mirror_fd, &st) != 0)
		return 0;
	fd = dup(d->mirror_fd);
	dir = fd >= 0 ? fdopendir(fd) : NULL;
	if (!dir) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	while ((de = readdir(dir))) {
		uint64_t ino;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		/* the mirror directory is on the mount it mirrors: its st_dev is
		 * the listeners' */
		if (tree_name_parse(de->d_name, &ino) && keep(st.st_dev, ino, ctx))
			continue;
		if (tree_remove(d->mirror_fd, de->d_name, 0) == 0)
			removed++;
	}
	closedir(dir);
	/* the shared offset of the dup'ed fd: rewind for the next listing */
	lseek(d->mirror_fd, 0, SEEK_SET);
	return removed;
}

void guard_mirror_dir_remove(struct guard_dir *d)
{
	static const struct ns_root own = { .fd = NS_ROOT_OWN };
	int mfd;

	if (d->mirror_fd < 0)
		return;
	close(d->mirror_fd);
	d->mirror_fd = -1;
	mfd = ns_open(d->root ? d->root : &own, d->mountpoint, O_DIRECTORY | O_PATH, true);
	if (mfd >= 0) {
		tree_remove(mfd, GUARD_MIRROR_DIR_NAME, 0);
		close(mfd);
	}
}
