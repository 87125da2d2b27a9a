/*
 * sock_diag in every network namespace. A NETLINK_SOCK_DIAG socket answers
 * for the namespace it was created in, so the agent keeps one per foreign
 * namespace: created once by a short-lived thread that setns()es into the
 * namespace (the caller's own thread never changes namespace), then reused.
 * A socket pins its namespace, so a namespace no scan sees any more is let
 * go (diag_netns_prune). The own namespace is asked through a fresh socket
 * per query, as before, so the loop and the scanner's thread never share
 * one; a foreign namespace's socket is shared under its own lock.
 */
#ifndef SW_DIAG_NETNS_H
#define SW_DIAG_NETNS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct netns_ref {
	uint32_t ino; /* the namespace's nsfs inode */
	pid_t pid;    /* a process in it, to enter it by */
};

/* The agent's own network namespace (its nsfs inode), cached. */
uint32_t diag_netns_own(void);
/* The network namespace of process pid, or 0 when it is gone. */
uint32_t diag_netns_of_pid(pid_t pid);
/* Every network namespace a process of the host is in, each with one of its
 * processes: *out is malloc'ed, the own namespace included. -errno. */
int diag_netns_list(struct netns_ref **out, size_t *n);

/*
 * Runs fn with a sock_diag socket of namespace ino: a fresh one for the own
 * namespace, else the one kept for ino (opened through pid's namespace when
 * there is none yet; pid 0: only a kept one is used). Returns fn's result,
 * or -errno when no socket can be had (-ENOENT: ino is not known).
 */
int diag_netns_with(uint32_t ino, pid_t pid, int (*fn)(int fd, void *ctx), void *ctx);
/* The foreign namespaces a socket is kept for; *out is malloc'ed. */
int diag_netns_known(uint32_t **out, size_t *n);
/* Lets go of every kept socket whose namespace is not in alive (n entries). */
void diag_netns_prune(const uint32_t *alive, size_t n);
/* Closes every kept socket (at exit). */
void diag_netns_close_all(void);
#endif
