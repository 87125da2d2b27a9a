/*
 * Mount tables (/proc/PID/mountinfo) and what they tell of one file seen
 * from two mount namespaces: a host directory bind-mounted into a container
 * at another path is the same file under two names (DESIGN §2 "Namespaces").
 */
#ifndef SW_MOUNTINFO_H
#define SW_MOUNTINFO_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct mount_entry {
	uint64_t mnt_id;
	unsigned major, minor;
	char *root;       /* the mount's root within its filesystem */
	char *mountpoint; /* where it is mounted, in the table's namespace */
};

struct mount_table {
	struct mount_entry *v;
	size_t n, cap;
};

/* Parses a mountinfo text (as /proc/PID/mountinfo gives it); -errno. */
int mount_table_parse(struct mount_table *t, const char *text);
/* Reads /proc/PID/mountinfo (pid 0: the caller's own). */
int mount_table_read(struct mount_table *t, pid_t pid);
void mount_table_free(struct mount_table *t);
/* The mount an absolute path lies on: the deepest mount point above it that
 * no later mount hides (one on the same point or above). NULL when none. */
const struct mount_entry *mount_table_covering(const struct mount_table *t, const char *path);
/*
 * The names, in table `to`, of the file that path names in table `from`:
 * the same filesystem and the same place in it, reached through any of
 * `to`'s mounts of that filesystem. Calls found(name) for each, the latest
 * mount first, until it returns true; true then.
 */
bool mount_table_translate(const struct mount_table *from, const struct mount_table *to,
			   const char *path, bool (*found)(const char *name, void *ctx),
			   void *ctx);
#endif
