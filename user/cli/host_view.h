/*
 * The host as probe and doctor see it: its AF_UNIX sockets and their owners,
 * in every namespace, and the mount namespaces a path is looked at in
 * (DESIGN §2 "Namespaces": a path means something only in a mount namespace).
 */
#ifndef SW_HOST_VIEW_H
#define SW_HOST_VIEW_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shared/discovery.h"

struct file_id {
	uint64_t dev, ino;
};

struct host_view {
	struct listener_list ll;
	struct owner_map om;   /* every owner's mntns_ino filled in where /proc tells */
	uint64_t *inos;        /* the sockets' inodes, sorted */
	struct file_id *files; /* the files the sockets are bound to, sorted */
	size_t n_files;
};

/* A mount namespace and one process in it (to reach its root through). */
struct ns_holder {
	uint32_t mntns; /* nsfs inode; 0 unknown */
	pid_t pid;
};

/*
 * Loads the listening sockets of every namespace and their holders, and the
 * sockets bound but not listening: of the own network namespace, or with
 * every_netns of each one a process of the host is in. 0, or -errno of the
 * sock_diag dump or the /proc walk.
 */
int host_view_load(struct host_view *h, bool every_netns);
void host_view_free(struct host_view *h);
/*
 * [{pid, comm, uid}] of the processes holding socket inode ino; a process
 * of another mount namespace than mntns (0: no such check) also carries
 * "mntns".
 */
json_t *owners_json(const struct host_view *h, uint64_t ino, uint32_t mntns);
/* One process holding socket inode ino, or 0. */
pid_t first_owner(const struct host_view *h, uint64_t ino);
/* The distinct mount namespaces of the holders of socket ino, in the order
 * of its owners, each with its first holder: how many (at most max). */
size_t holder_namespaces(const struct host_view *h, uint64_t ino, struct ns_holder *out,
			 size_t max);
/* Whether some socket of the view (any state, any namespace) is bound to the
 * file (dev, ino). */
bool host_view_binds(const struct host_view *h, uint64_t dev, uint64_t ino);
/*
 * Every mount namespace a process of the host is in, each with the first
 * process /proc lists in it; the caller's own first. *out is malloc'ed.
 * 0, or -errno when /proc cannot be read.
 */
int host_mount_namespaces(struct ns_holder **out, size_t *n);
/*
 * Sets "mntns", "netns" (when not 0) and, where the cgroup of process pid
 * (pid > 0) names one, "container" {"id","runtime"}, "pod" {"uid"} and
 * "unit" on j (DESIGN §5).
 */
void ns_json_set(json_t *j, uint32_t mntns, uint32_t netns, pid_t pid);
/* The text a line about a finding in another mount namespace than the
 * CLI's ends with: "  namespace mnt:[N]  container ID12" (empty in its own). */
void ns_text(const json_t *j, char *out, size_t len);
#endif
