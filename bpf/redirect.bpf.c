// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The redirect (DESIGN §2 "Redirect", kernels 6.7+): a cgroup/connect_unix
 * program at the root of the cgroup v2 hierarchy runs in every connect() of
 * an AF_UNIX path socket before the kernel looks the path up. A connect to a
 * path marked lost in `redirects` is rewritten to the path of its guard
 * link, which names the very same socket file, so the client reaches the
 * listener that lost its name. The guard path's directories mirror the
 * original's owners and modes: the client's own lookup of it meets the same
 * permission checks.
 *
 * Marking: the unlink/rename exit programs set `lost` in the syscall that
 * removed the path (unlink.bpf.c), a bind() of the path clears it at once
 * (listen.bpf.c), and the agent sets and clears it as it decides.
 *
 * An object of its own (the Makefile says why): it defines its own copies of
 * agent_mntns, counters and redirects (bpf/maps.h, SW_MAPS_REDIRECT), and
 * the agent points the two maps at the main object's before the load
 * (user/agent/redirect.c). It reads redirects and counts in it and in
 * counters.
 */
#define SW_MAPS_REDIRECT
#include "common.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* the agent opens this object only on a kernel whose BTF has them
 * (redirect_probe); weak, so that a kernel that lacks them fails at the
 * probe, never in the middle of a load */
extern void *bpf_cast_to_kern_ctx(void *obj) __ksym __weak;
extern int bpf_sock_addr_set_sun_path(struct bpf_sock_addr_kern *sa_kern,
				      const __u8 *sun_path, __u32 sun_path__sz) __ksym __weak;

/* Debian 12's libbpf (1.1) predates connect_unix: the section is one it
 * knows for this program type, and the agent sets the attach type
 * (BPF_CGROUP_UNIX_CONNECT) before the load (user/agent/redirect.c). */
SEC("cgroup/connect4")
int cg__connect_unix(struct bpf_sock_addr *ctx)
{
	struct bpf_sock_addr_kern *sa = bpf_cast_to_kern_ctx(ctx);
	struct sw_path_key key = {};
	struct sw_redirect *r;
	__u32 len;

	if (!sockaddr__unix_path(&key, BPF_CORE_READ(sa, uaddr), BPF_CORE_READ(sa, uaddrlen),
				 false))
		return 1; /* abstract, unnamed: nothing to redirect */
	key.mntns = mntns__key(task__mntns());
	r = bpf_map_lookup_elem(&redirects, &key);
	if (!r || !r->lost)
		return 1;
	len = r->guard_len;
	if (len == 0 || len >= SW_SUN_PATH_LEN)
		return 1;
	if (bpf_sock_addr_set_sun_path(sa, (const __u8 *)r->guard, len)) {
		counter__add(SW_CNT_REDIRECT_FAILED, 1);
		return 1;
	}
	__sync_fetch_and_add(&r->redirected, 1);
	counter__add(SW_CNT_REDIRECTED, 1);
	return 1;
}
