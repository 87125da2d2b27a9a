/*
 * The redirect (DESIGN §2 "Redirect"): probing the kernel for it, attaching
 * its program at the root of the cgroup v2 hierarchy through a bpf_link (so
 * that it goes with the agent), and the agent's side of the `redirects` map.
 */
#ifndef SW_REDIRECT_H
#define SW_REDIRECT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sockwarden_bpf;
struct redirect_bpf;
struct bpf_link;

struct redirect {
	bool on;             /* attached: lost paths' connects go to their guards */
	char reason[400];    /* why it is on or off, for agent_started and status */
	char cgroup[256];    /* where it is attached */
	struct bpf_link *link;
	struct redirect_bpf *skel; /* its own object (the Makefile says why) */
	int map_fd;
};

/* Whether this kernel, and the effective capability set cap_eff, have what
 * the redirect needs (CAP_NET_ADMIN or CAP_SYS_ADMIN, the attach type, the
 * kfunc, a cgroup v2 hierarchy); why not in r->reason. Before the load. */
bool redirect_probe(struct redirect *r, uint64_t cap_eff);
/* After the main object's load: loads the redirect's own object over the
 * main object's maps and attaches it through a bpf_link, if wanted (the
 * probe said yes). On failure r->on is false and r->reason says why: the
 * agent runs on without it. */
void redirect_start(struct redirect *r, struct sockwarden_bpf *main, bool wanted);
/* Detaches and unloads; nothing is redirected after it returns. */
void redirect_stop(struct redirect *r);
/* (mntns, path) is redirected to guard from now on while lost; 0 or -errno
 * (-ENAMETOOLONG: guard does not fit in sun_path). */
int redirect_arm(struct redirect *r, uint32_t mntns, const char *path, const char *guard);
/* Marks (mntns, path) lost or not; an entry never armed is left alone. */
void redirect_mark(struct redirect *r, uint32_t mntns, const char *path, bool lost);
/* Forgets (mntns, path); returns the connects it redirected in all. */
uint64_t redirect_disarm(struct redirect *r, uint32_t mntns, const char *path);
/* Connects redirected for (mntns, path) so far, and whether it is lost. */
uint64_t redirect_count(struct redirect *r, uint32_t mntns, const char *path, bool *lost);
#endif
