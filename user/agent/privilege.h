/*
 * Least privilege: once start-up is done (BPF loaded and attached, sockets
 * bound), the agent keeps only the capabilities its run needs, in every set:
 * effective, permitted, bounding; inheritable and ambient are emptied. The
 * process stays uid 0 (README "Operating" says why). Capabilities are per
 * thread: the drop happens before the agent starts any thread.
 */
#ifndef SW_PRIVILEGE_H
#define SW_PRIVILEGE_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PRIV_BIT(cap) (1ULL << (cap))

/* What the run needs beyond the fixed set (privilege_run_set). */
struct privilege_needs {
	bool signal_action; /* a path has action = signal: CAP_KILL */
	/* discovery is procfs: sock_diag of other network namespaces means
	 * entering them, CAP_SYS_ADMIN (the iterator sees them without) */
	bool enter_netns;
	/* Does a BPF map operation on a held fd, with CAP_BPF and CAP_SYS_ADMIN
	 * out of the effective set: 0 if it works, -EPERM if this kernel wants
	 * CAP_BPF for it (before Linux 6.5 with unprivileged BPF disabled). */
	int (*bpf_map_probe)(void *ctx);
	void *ctx;
};

struct privilege {
	uint64_t wanted;  /* what the run needs */
	uint64_t kept;    /* effective = permitted after the drop (wanted & had) */
	uint64_t bounding;
	uint64_t missing; /* wanted but not held at start */
	bool bounding_dropped; /* false without CAP_SETPCAP at start */
	bool bpf_needed;  /* the map probe said so */
};

/* The capabilities every run keeps; see README "Operating". */
uint64_t privilege_run_set(void);
/* Drops to what the run needs. -errno with err filled when a set cannot be
 * changed (the agent then refuses to run on). */
int privilege_drop(struct privilege *p, const struct privilege_needs *n, char *err,
		   size_t errlen);
/* "CAP_CHOWN CAP_SETUID ..." (empty for none). */
void privilege_format(uint64_t caps, char *buf, size_t len);
/* ["CAP_CHOWN", ...] */
json_t *privilege_json(uint64_t caps);
const char *privilege_cap_name(int cap);
#endif
