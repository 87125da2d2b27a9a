#include "guard.h"
#include "guard_mirror.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shared/paths.h"

void guards_init(struct guards *g)
{
	memset(g, 0, sizeof(*g));
}

static void guard_dir_free(struct guards *g, struct guard_dir *d)
{
	if (d->dirfd >= 0)
		close(d->dirfd);
	if (d->mirror_fd >= 0)
		close(d->mirror_fd);
	if (g->roots)
		ns_root_put(g->roots, d->root);
	free(d);
}

void guards_free(struct guards *g)
{
	struct ns_roots *roots = g->roots;

	for (size_t i = 0; i < g->n; i++)
		guard_dir_free(g, g->v[i]);
	free(g->v);
	memset(g, 0, sizeof(*g));
	g->roots = roots;
}

void guard_name(uint64_t dev, uint64_t ino, char *out, size_t outlen)
{
	snprintf(out, outlen, "%" PRIx64 "-%" PRIu64, dev, ino);
}

bool guard_name_parse(const char *name, uint64_t *dev, uint64_t *ino)
{
	char *end;

	errno = 0;
	*dev = strtoull(name, &end, 16);
	if (errno || end == name || *end != '-')
		return false;
	name = end + 1;
	*ino = strtoull(name, &end, 10);
	return !errno && end != name && *end == 0;
}

/* "\040" and friends in /proc/self/mountinfo paths */
static void unescape_octal(char *s)
{
	char *o = s;

	while (*s) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '7' && s[2] >= '0' &&
		    s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 4;
		} else {
			*o++ = *s++;
		}
	}
	*o = 0;
}

/* The mount id of the mount holding path (not following a final symlink). */
static int mount_id_of(const char *path, uint64_t *mnt_id)
{
	struct statx stx;

	if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &stx) != 0)
		return -errno;
	if (!(stx.stx_mask & STATX_MNT_ID))
		return -ENOTSUP;
	*mnt_id = stx.stx_mnt_id;
	return 0;
}

/* The mount point of a mount, from /proc/self/mountinfo. */
static int mountpoint_of(uint64_t mnt_id, char *mountpoint, size_t len)
{
	char line[8192];
	FILE *f;
	int rc = -ENOENT;

	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long id;
		char mp[4096];

		if (sscanf(line, "%llu %*u %*s %*s %4095s", &id, mp) != 2)
			continue;
		if (id != mnt_id)
			continue;
		unescape_octal(mp);
		if (strlen(mp) >= len) {
			rc = -ENAMETOOLONG;
			break;
		}
		strcpy(mountpoint, mp);
		rc = 0;
		break;
	}
	fclose(f);
	return rc;
}

int mount_of(const char *path, uint64_t *mnt_id, char *mountpoint, size_t len)
{
	uint64_t id = 0;
	int rc = mount_id_of(path, &id);

	if (rc == 0)
		rc = mountpoint_of(id, mountpoint, len);
	if (rc == 0)
		*mnt_id = id;
	return rc;
}

/*
 * Opens (creating if needed) the guard directory of a mount. It must be a real
 * directory, owned by root, mode 0700: anything else may be someone's trap.
 */
static int guard_dir_open(struct guard_dir *d)
{
	static const struct ns_root own = { .fd = NS_ROOT_OWN };
	int mfd, fd;
	struct stat st;

	mfd = ns_open(d->root ? d->root : &own, d->mountpoint, O_DIRECTORY | O_PATH, true);
	if (mfd < 0) {
		snprintf(d->error, sizeof(d->error), "mount_unreachable");
		return mfd;
	}
	if (mkdirat(mfd, GUARD_DIR_NAME, 0700) != 0 && errno != EEXIST) {
		int err = errno;

		snprintf(d->error, sizeof(d->error), "%s",
			 err == EROFS ? "read_only" : "cannot_create_guard_dir");
		close(mfd);
		return -err;
	}
	fd = openat(mfd, GUARD_DIR_NAME, O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	close(mfd);
	if (fd < 0) {
		snprintf(d->error, sizeof(d->error), "untrusted_dir");
		return -errno;
	}
	if (fstat(fd, &st) != 0 || st.st_uid != 0 || (st.st_mode & 07777) != 0700) {
		snprintf(d->error, sizeof(d->error), "untrusted_dir");
		close(fd);
		return -EPERM;
	}
	d->dirfd = fd;
	d->error[0] = 0;
	return 0;
}

/* The known guard directory of a mount, made again if it was swept; NULL
 * for a mount the agent has not seen yet. */
static struct guard_dir *guard_dir_known(struct guards *g, uint64_t mnt_id)
{
	struct guard_dir *d;

	for (size_t i = 0; i < g->n; i++) {
		d = g->v[i];
		if (d->mnt_id != mnt_id)
			continue;
		/* a directory swept by a cleanup job is made again */
		if (d->dirfd >= 0) {
			struct stat st;

			if (fstat(d->dirfd, &st) == 0 && st.st_nlink > 0)
				return d;
			close(d->dirfd);
			d->dirfd = -1;
		}
		guard_dir_open(d);
		return d;
	}
	return NULL;
}

static struct guard_dir *guard_dir_get(struct guards *g, struct ns_root *root,
				       uint64_t mnt_id, const char *mountpoint)
{
	struct guard_dir *d = guard_dir_known(g, mnt_id);

	if (d)
		return d;
	if (g->n == g->cap) {
		size_t cap = g->cap ? g->cap * 2 : 8;
		void *nv = realloc(g->v, cap * sizeof(*g->v)); // NOLINT(bugprone-sizeof-expression): an array of pointers

		if (!nv)
			return NULL;
		g->v = nv;
		g->cap = cap;
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	g->v[g->n++] = d;
	d->root = root && root->fd != NS_ROOT_OWN ? ns_root_ref(root) : NULL;
	d->mnt_id = mnt_id;
	snprintf(d->mountpoint, sizeof(d->mountpoint), "%s", mountpoint);
	d->dirfd = -1;
	d->mirror_fd = -1;
	guard_dir_open(d);
	return d;
}

void guards_register(struct guards *g, uint64_t mnt_id, const char *mountpoint)
{
	guard_dir_get(g, NULL, mnt_id, mountpoint);
}

bool guard_find(struct guards *g, uint64_t dev, uint64_t ino, struct guard_ref *ref)
{
	for (size_t i = 0; i < g->n; i++) {
		ref->dir = g->v[i];
		guard_name(dev, ino, ref->name, sizeof(ref->name));
		if (guard_present(ref, dev, ino))
			return true;
	}
	memset(ref, 0, sizeof(*ref));
	return false;
}

bool guard_present(const struct guard_ref *ref, uint64_t dev, uint64_t ino)
{
	struct stat st;

	if (!ref->dir || ref->dir->dirfd < 0)
		return false;
	if (fstatat(ref->dir->dirfd, ref->name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return false;
	return S_ISSOCK(st.st_mode) && st.st_dev == dev && st.st_ino == ino;
}

/*
 * The mount point, as root's namespace names it, of the mount mnt_id that
 * holds path's parent: the deepest ancestor of path that is a mount's root
 * (STATX_ATTR_MOUNT_ROOT), each looked at beneath root, none followed.
 */
static int mountpoint_in_root(const struct ns_root *root, const char *path, uint64_t mnt_id,
			      char *out, size_t len)
{
	char dir[4096];

	if (!path_dirname(path, dir, sizeof(dir)))
		return -ENAMETOOLONG;
	for (;;) {
		struct statx stx;
		int fd = ns_open(root, dir, O_PATH | O_DIRECTORY, true), rc;

		if (fd < 0)
			return fd;
		rc = statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID, &stx);
		close(fd);
		if (rc != 0)
			return -errno;
		if (!(stx.stx_mask & STATX_MNT_ID) ||
		    !(stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT))
			return -ENOTSUP;
		if (stx.stx_mnt_id != mnt_id)
			return -EXDEV; /* the socket file is a mount of its own */
		if ((stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) || strcmp(dir, "/") == 0) {
			if (strlen(dir) >= len)
				return -ENAMETOOLONG;
			strcpy(out, dir);
			return 0;
		}
		if (!path_dirname(dir, dir, sizeof(dir)))
			return -ENAMETOOLONG;
	}
}

/* guard_make in another mount namespace: every name beneath its root. */
static int guard_make_in(struct guards *g, struct ns_root *root, const char *path,
			 uint64_t dev, uint64_t ino, struct guard_ref *ref, const char **why)
{
	const char *leaf;
	char mp[4096];
	struct statx stx;
	struct stat st;
	int pfd, rc = 0;

	pfd = ns_open_parent(root, path, &leaf);
	if (pfd < 0) {
		*why = "path_gone";
		return pfd;
	}
	if (statx(pfd, leaf, AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &stx) != 0 ||
	    !(stx.stx_mask & STATX_MNT_ID)) {
		rc = errno ? -errno : -ENOTSUP;
		*why = "path_gone";
		goto out;
	}
	ref->dir = guard_dir_known(g, stx.stx_mnt_id);
	if (!ref->dir) {
		rc = mountpoint_in_root(root, path, stx.stx_mnt_id, mp, sizeof(mp));
		if (rc) {
			*why = rc == -EXDEV ? "cross_mount" : "path_gone";
			goto out;
		}
		ref->dir = guard_dir_get(g, root, stx.stx_mnt_id, mp);
	}
	if (!ref->dir) {
		*why = "out_of_memory";
		rc = -ENOMEM;
		goto out;
	}
	if (ref->dir->dirfd < 0) {
		*why = ref->dir->error;
		rc = -EPERM;
		goto out;
	}
	guard_name(dev, ino, ref->name, sizeof(ref->name));
	if (linkat(pfd, leaf, ref->dir->dirfd, ref->name, 0) != 0) {
		int err = errno;

		if (guard_present(ref, dev, ino))
			goto out;
		if (err == EEXIST) {
			unlinkat(ref->dir->dirfd, ref->name, 0);
			if (linkat(pfd, leaf, ref->dir->dirfd, ref->name, 0) == 0)
				goto verify;
			err = errno;
		}
		*why = err == EROFS ? "read_only" : err == EXDEV ? "cross_mount" :
		       err == ENOENT ? "path_gone" : err == EPERM ? "link_not_permitted" :
		       "link_failed";
		rc = -err;
		goto out;
	}
verify:
	if (fstatat(ref->dir->dirfd, ref->name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
	    st.st_ino != ino || st.st_dev != dev) {
		unlinkat(ref->dir->dirfd, ref->name, 0);
		*why = "replaced";
		rc = -ESTALE;
	}
out:
	close(pfd);
	return rc;
}

int guard_make(struct guards *g, struct ns_root *root, const char *path, uint64_t dev,
	       uint64_t ino, struct guard_ref *ref, const char **why)
{
	char mp[4096];
	uint64_t mnt_id = 0;
	struct stat st;
	int rc;

	memset(ref, 0, sizeof(*ref));
	if (root && root->fd != NS_ROOT_OWN)
		return guard_make_in(g, root, path, dev, ino, ref, why);
	rc = mount_id_of(path, &mnt_id);
	if (rc) {
		*why = "path_gone";
		return rc;
	}
	/* the mount table is read for a mount not seen before only: a mount's
	 * id names it while it is mounted, and the agent knows its guard dir */
	ref->dir = guard_dir_known(g, mnt_id);
	if (!ref->dir) {
		rc = mountpoint_of(mnt_id, mp, sizeof(mp));
		if (rc) {
			*why = "path_gone";
			return rc;
		}
		ref->dir = guard_dir_get(g, NULL, mnt_id, mp);
	}
	if (!ref->dir) {
		*why = "out_of_memory";
		return -ENOMEM;
	}
	if (ref->dir->dirfd < 0) {
		*why = ref->dir->error;
		return -EPERM;
	}
	guard_name(dev, ino, ref->name, sizeof(ref->name));
	/* linked first, looked at after: a guard is mostly new (a listener the
	 * agent has just met), and a link that exists fails the same */
	if (linkat(AT_FDCWD, path, ref->dir->dirfd, ref->name, 0) != 0) {
		int err = errno;

		/* the guard, from an earlier look or run, whatever became of the
		 * path since */
		if (guard_present(ref, dev, ino))
			return 0;
		if (err == EEXIST) {
			/* a leftover with our name but another inode: replace it */
			unlinkat(ref->dir->dirfd, ref->name, 0);
			if (linkat(AT_FDCWD, path, ref->dir->dirfd, ref->name, 0) == 0)
				goto verify;
			err = errno;
		}
		*why = err == EROFS ? "read_only" : err == EXDEV ? "cross_mount" :
		       err == ENOENT ? "path_gone" : err == EPERM ? "link_not_permitted" :
		       "link_failed";
		return -err;
	}
verify:
	/* the path may have been replaced between the look and the link */
	if (fstatat(ref->dir->dirfd, ref->name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
	    st.st_ino != ino || st.st_dev != dev) {
		unlinkat(ref->dir->dirfd, ref->name, 0);
		*why = "replaced";
		return -ESTALE;
	}
	return 0;
}

int guard_remove(const struct guard_ref *ref)
{
	if (!ref->dir || ref->dir->dirfd < 0 || !ref->name[0])
		return 0;
	if (unlinkat(ref->dir->dirfd, ref->name, 0) != 0 && errno != ENOENT)
		return -errno;
	return 0;
}

size_t guards_prune(struct guards *g, guard_keep_fn keep, void *ctx)
{
	size_t removed = 0;

	for (size_t i = 0; i < g->n; i++) {
		struct guard_dir *d = g->v[i];
		size_t kept = 0;
		int fd;
		DIR *dir;
		struct dirent *de;

		if (d->dirfd < 0)
			continue;
		fd = dup(d->dirfd);
		if (fd < 0)
			continue;
		dir = fdopendir(fd);
		if (!dir) {
			close(fd);
			continue;
		}
		while ((de = readdir(dir))) {
			uint64_t dev, ino;

			if (de->d_name[0] == '.')
				continue;
			if (guard_name_parse(de->d_name, &dev, &ino) && keep(dev, ino, ctx)) {
				kept++;
				continue;
			}
			if (unlinkat(d->dirfd, de->d_name, 0) == 0)
				removed++;
			else
				kept++;
		}
		closedir(dir);
		/* the shared offset of the dup'ed fd: rewind for the next listing */
		lseek(d->dirfd, 0, SEEK_SET);
		guard_mirror_prune(d, keep, ctx);
		if (d->root && !kept) {
			/* another namespace's directory, empty: remove it and let
			 * the mount go; a listener met later makes it again */
			int mfd = ns_open(d->root, d->mountpoint, O_DIRECTORY | O_PATH, true);

			if (mfd >= 0) {
				unlinkat(mfd, GUARD_DIR_NAME, AT_REMOVEDIR);
				close(mfd);
			}
			guard_mirror_dir_remove(d);
			guard_dir_free(g, d);
			g->v[i--] = g->v[--g->n];
		}
	}
	return removed;
}
