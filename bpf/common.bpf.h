/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * sockwarden's kernel side: what every concern's programs share.
 *
 * One file per concern, compiled apart and linked into one object
 * (build/sockwarden.bpf.o, skeleton sockwarden_bpf):
 *   bpf/maps.bpf.c     the maps and read-only globals (declared in bpf/maps.h)
 *   bpf/unlink.bpf.c   unlink/rename of watched names and inodes
 *   bpf/connect.bpf.c  connect failures, counted and turned into streaks
 *   bpf/listen.bpf.c   bind/listen of AF_UNIX paths
 *
 * Two attach modes share the maps and the record formats:
 *   tracepoint: syscalls:sys_{enter,exit}_{unlink,unlinkat,rename,renameat,
 *               renameat2,connect}; names are matched by a hash of their last
 *               component and confirmed by userspace.
 *   fentry:     fentry/fexit on vfs_unlink, vfs_rename, unix_stream_connect,
 *               unix_dgram_connect; inodes are matched exactly.
 * bind() and listen() are followed through their syscall tracepoints in both
 * modes. Userspace picks the mode's programs with bpf_program__set_autoload().
 *
 * A record that cannot be reserved is counted in `counters`; the counts it
 * would have carried stay in the maps.
 *
 * The helpers here are the ones more than one concern uses; a helper of one
 * concern lives in that concern's file.
 */
#ifndef SW_COMMON_BPF_H
#define SW_COMMON_BPF_H

#include "maps.h"
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#define AF_UNIX 1
#define AT_FDCWD -100

#define FNV_BASIS 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static __always_inline void counter__add(__u32 idx, __u64 n)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &idx);

	if (c)
		*c += n; /* per-CPU: no atomics needed */
}

static __always_inline void proc__fill(struct sw_proc *p)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 ug = bpf_get_current_uid_gid();

	p->pid = (__u32)id;
	p->tgid = id >> 32;
	p->uid = (__u32)ug;
	p->gid = ug >> 32;
	bpf_get_current_comm(p->comm, sizeof(p->comm));
}

/* The current task's mount namespace: its nsfs inode. */
static __always_inline __u32 task__mntns(void)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();

	return BPF_CORE_READ(t, nsproxy, mnt_ns, ns.inum);
}

/* A mount namespace as the kernel's keys name it: 0 for the agent's own. */
static __always_inline __u32 mntns__key(__u32 mntns)
{
	return mntns == agent_mntns ? 0 : mntns;
}

#if SW_MAIN_OBJECT /* the redirect's object has no ring buffer */
static __always_inline void *record__reserve(__u64 size, __u32 type)
{
	struct sw_rec_hdr *h = bpf_ringbuf_reserve(&events, size, 0);

	if (!h) {
		counter__add(SW_CNT_RINGBUF_FULL, 1);
		return NULL;
	}
	h->type = type;
	h->mntns = task__mntns();
	h->ts_ns = bpf_ktime_get_ns();
	proc__fill(&h->proc);
	return h;
}
#endif

static __always_inline void file_id__from_dentry(struct sw_file_id *id,
						 struct dentry *d)
{
	struct inode *inode = BPF_CORE_READ(d, d_inode);

	if (!inode)
		return;
	id->ino = BPF_CORE_READ(inode, i_ino);
	id->dev = BPF_CORE_READ(inode, i_sb, s_dev);
}

/*
 * The directory a *at() name is relative to: the dirfd's file, or the cwd for
 * AT_FDCWD. Recorded at syscall entry so userspace can resolve a relative name
 * even after the actor (often a short-lived `rm`) has exited.
 */
static __always_inline void file_id__from_dirfd(struct sw_file_id *id, int dirfd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct dentry *d;

	if (dirfd == AT_FDCWD) {
		d = BPF_CORE_READ(task, fs, pwd.dentry);
	} else {
		struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
		struct file **fds = BPF_CORE_READ(fdt, fd);
		struct file *f = NULL;

		if (dirfd < 0 || (unsigned int)dirfd >= BPF_CORE_READ(fdt, max_fds))
			return;
		bpf_probe_read_kernel(&f, sizeof(f), &fds[dirfd]);
		if (!f)
			return;
		d = BPF_CORE_READ(f, f_path.dentry);
	}
	if (d)
		file_id__from_dentry(id, d);
}

/*
 * FNV-1a of the last non-empty component of a path in kernel memory
 * ("a/b/" -> "b"), read up to its NUL or len bytes; byte i is read at
 * i & mask, so a caller whose buffer the verifier cannot bound by len keeps
 * the index in bounds. unlink.bpf.c hashes the names handed to unlink and
 * rename with it, listen.bpf.c the paths it adds to watched_names: one
 * function, so the two (and the agent) agree.
 */
static __always_inline __u64 name__hash(const char *s, int len, int mask)
{
	__u64 h = FNV_BASIS, last = 0;
	bool in_component = false;

	for (int i = 0; i < len; i++) {
		char c = s[i & mask];

		if (c == 0)
			break;
		if (c == '/') {
			if (in_component)
				last = h;
			h = FNV_BASIS;
			in_component = false;
			continue;
		}
		h = (h ^ (__u8)c) * FNV_PRIME;
		in_component = true;
	}
	return in_component ? h : last;
}

/* Reads a sockaddr_un path into key, which the caller has zeroed; false for
 * other families and abstract names. */
static __always_inline bool sockaddr__unix_path(struct sw_path_key *key,
						const void *addr, long len,
						bool user)
{
	__u16 family = 0;
	long n = len - 2;

	if (!addr || n <= 0)
		return false;
	if (user ? bpf_probe_read_user(&family, sizeof(family), addr)
		 : bpf_probe_read_kernel(&family, sizeof(family), addr))
		return false;
	if (family != AF_UNIX)
		return false;
	if (n > SW_SUN_PATH_LEN)
		n = SW_SUN_PATH_LEN;
	/* the bound again after a barrier, where the verifier sees it */
	barrier_var(n);
	if (n <= 0 || n > SW_SUN_PATH_LEN)
		return false;
	if (user ? bpf_probe_read_user(key->path, n, addr + 2)
		 : bpf_probe_read_kernel(key->path, n, addr + 2))
		return false;
	/* sun_path need not be NUL terminated: the tail past n stays as the
	 * caller zeroed it, so the key is stable without a loop over it */
	return key->path[0] != 0; /* abstract: no path to lose */
}

#endif
