/*
 * Guard links (DESIGN §2 "Guard links"): a second hard link to every watched
 * listener's socket file, in `.sockwarden-guard/` at the root of the mount
 * that holds the path (a hard link cannot cross mounts), named by device and
 * inode. While it exists, the socket's inode outlives an unlink of its path,
 * and link(guard, path) puts the very same listener back.
 */
#ifndef SW_GUARD_H
#define SW_GUARD_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/nsroot.h"

#define GUARD_DIR_NAME ".sockwarden-guard"

/* One per mount: allocated on its own, so a guard_ref's pointer stays good
 * however many mounts follow. */
struct guard_dir {
	uint64_t mnt_id;   /* unique among all namespaces' mounts */
	struct ns_root *root; /* whose names mountpoint is in (a reference) */
	char mountpoint[4096]; /* as that namespace sees it */
	int dirfd;       /* -1 when it cannot be used */
	int mirror_fd;   /* its redirect mirrors' directory (guard_mirror.h), or -1 */
	char error[128]; /* why not, for guard_lost */
};

struct guards {
	struct guard_dir **v;
	size_t n, cap;
	struct ns_roots *roots; /* where guard directories' roots come from */
};

/* A guard for one listener, or why there is none. */
struct guard_ref {
	struct guard_dir *dir;
	char name[64];
};

void guards_init(struct guards *g);
void guards_free(struct guards *g);
/* The guard name of a socket file: "<dev>-<ino>" in hex and decimal. */
void guard_name(uint64_t dev, uint64_t ino, char *out, size_t outlen);
/* Parses a guard name; false for anything else found in a guard directory. */
bool guard_name_parse(const char *name, uint64_t *dev, uint64_t *ino);
/*
 * Makes (or finds) the guard of the socket file at `path`, which must be the
 * listener's file (dev, ino). Returns 0, or -errno with `why` set to a short
 * machine-readable reason (read_only, cross_mount, untrusted_dir, replaced, …).
 */
int guard_make(struct guards *g, struct ns_root *root, const char *path, uint64_t dev,
	       uint64_t ino, struct guard_ref *ref, const char **why);
/* Registers the guard directory of a mount if it exists (a previous run's). */
void guards_register(struct guards *g, uint64_t mnt_id, const char *mountpoint);
/* Looks for an existing guard of (dev, ino) in every known guard directory. */
bool guard_find(struct guards *g, uint64_t dev, uint64_t ino, struct guard_ref *ref);
/* Whether the guard still refers to (dev, ino). */
bool guard_present(const struct guard_ref *ref, uint64_t dev, uint64_t ino);
int guard_remove(const struct guard_ref *ref);
/* Removes every guard in every known guard directory whose (dev, ino) is not
 * accepted by keep(). Returns how many it removed. The directory of another
 * namespace's mount is let go once no guard is left in it: its fd would keep
 * a dead container's mount alive. */
typedef bool (*guard_keep_fn)(uint64_t dev, uint64_t ino, void *ctx);
size_t guards_prune(struct guards *g, guard_keep_fn keep, void *ctx);
/* The mount id and mount point of the mount holding `path` (not following a
 * final symlink). */
int mount_of(const char *path, uint64_t *mnt_id, char *mountpoint, size_t len);
#endif
