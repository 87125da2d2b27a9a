/*
 * Mount namespaces, reached from the agent's own (DESIGN §2 "Namespaces").
 * A namespace's root is a directory fd: a holder's /proc/PID/root, opened
 * O_PATH while a pidfd proves the holder is the process that was asked for,
 * then kept. Every name in the namespace is resolved beneath that fd with
 * openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS): an absolute symlink in a
 * container resolves in the container, never on the host.
 *
 * The agent's own namespace is the root with fd NS_ROOT_OWN: plain syscalls,
 * as the agent has always made them.
 */
#ifndef SW_NSROOT_H
#define SW_NSROOT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#define NS_ROOT_OWN (-1)

struct ns_root {
	uint32_t mntns;  /* 0: the agent's own */
	int fd;          /* O_PATH directory fd of its "/", or NS_ROOT_OWN */
	size_t refs;     /* endpoints (and their guard directories) using it */
	struct ns_root *next;
};

/* The roots the agent holds: its own, and one per other namespace in use. */
struct ns_roots {
	struct ns_root own;
	struct ns_root *list;
	size_t n;
	uint64_t unreachable; /* namespaces whose root could not be opened */
};

/* The agent's own mount namespace (nsfs inode); cached. */
uint32_t ns_self_mntns(void);
/* A process's mount / network namespace (nsfs inode), 0 when it is gone. */
uint32_t ns_mntns_of(pid_t pid);
uint32_t ns_netns_of(pid_t pid);
/* A namespace as endpoints are keyed by it: 0 for the agent's own. */
uint32_t ns_key(uint32_t mntns);
/*
 * Opens pid's root directory O_PATH, checked to be in mount namespace mntns:
 * the pidfd is taken first and polled after the open, so a pid reused in
 * between cannot hand out another process's root. An fd, or -ESRCH (gone),
 * -ESTALE (in another namespace now), -errno.
 */
int ns_root_open(pid_t pid, uint32_t mntns);

void ns_roots_init(struct ns_roots *r);
void ns_roots_free(struct ns_roots *r);
/* The root of namespace key (0: own) with a reference taken, opened through
 * holder pid when not held yet; NULL when it cannot be reached. */
struct ns_root *ns_roots_get(struct ns_roots *r, uint32_t key, pid_t pid);
/* Another reference; and giving one back (the last closes the fd). */
struct ns_root *ns_root_ref(struct ns_root *root);
void ns_root_put(struct ns_roots *r, struct ns_root *root);

/*
 * Names inside a namespace. path is absolute, as the namespace sees it. The
 * final component is never followed by the *l* calls; directories on the
 * way are resolved in the namespace. -errno on failure.
 */
int ns_stat(const struct ns_root *root, const char *path, struct stat *st);
int ns_lstat(const struct ns_root *root, const char *path, struct stat *st);
/* An O_PATH fd of path's parent directory, *leaf pointing at the last
 * component of path. */
int ns_open_parent(const struct ns_root *root, const char *path, const char **leaf);
/* An fd of path itself (flags as for openat, O_NOFOLLOW implied for a final
 * symlink with no_follow). */
int ns_open(const struct ns_root *root, const char *path, int flags, bool no_follow);
/* Whether path, in the namespace, is the file (dev, ino) (final component
 * not followed). */
bool ns_path_is(const struct ns_root *root, const char *path, uint64_t dev, uint64_t ino);
struct mount_table;
/*
 * The name the agent's own namespace has for the file (dev, ino) that path
 * names in another namespace, from the two mount tables (a host directory
 * bind-mounted into a container at another path): checked to be that file.
 * False when the agent's namespace cannot reach it by any name.
 */
bool ns_own_name(const struct mount_table *ns_mounts, const struct mount_table *own_mounts,
		 const char *path, uint64_t dev, uint64_t ino, char *out, size_t outlen);
/* A path that went through a procfs magic link ("/proc/self/fd/13/x"): no
 * one else can reach it by that name, so it is never an endpoint. */
bool ns_path_via_proc(const char *path);
#endif
