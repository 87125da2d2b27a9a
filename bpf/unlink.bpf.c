// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Unlink and rename of watched socket files and their directories, in both
 * attach modes; each matched call that succeeds becomes one SW_REC_UNLINK
 * record, which userspace confirms against the listener's inode.
 *
 *   tracepoint: sys_{enter,exit}_{unlink,unlinkat,rename,renameat,renameat2};
 *               the last component of each name is hashed and looked up in
 *               watched_names; the names and the directories they are
 *               relative to are recorded, since the actor may exit before
 *               userspace resolves them.
 *   fentry:     fentry/fexit on vfs_unlink and vfs_rename; the dentries'
 *               inodes are looked up in watched_inodes (an exact match), so
 *               an unlink through io_uring is seen too.
 *
 * Owns inflight_unlink (a match between entry and exit) and reads the two
 * filters, which the agent and listen.bpf.c fill.
 */
#include "common.bpf.h"

/* name__hash() of a name in user memory; 0 when it cannot be read. */
static __always_inline __u64 name__last_component_hash(const char *uname)
{
	__u32 zero = 0;
	char *buf = bpf_map_lookup_elem(&scratch, &zero);
	long n;

	if (!buf)
		return 0;
	n = bpf_probe_read_user_str(buf, SW_NAME_LEN, uname);
	if (n <= 1)
		return 0;
	return name__hash(buf, SW_NAME_LEN, SCRATCH_LEN - 1);
}

static __always_inline __u32 name__watched(const char *uname)
{
	__u64 h = name__last_component_hash(uname);
	__u32 *flags;

	if (!h)
		return 0;
	flags = bpf_map_lookup_elem(&watched_names, &h);
	return flags ? *flags : 0;
}

/* ----- tracepoint mode: names matched by hash ----- */

static __always_inline int unlink__enter(__u32 sys, int dfd0, const char *n0,
					 int dfd1, const char *n1)
{
	struct inflight_unlink in = {};
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	if (name__watched(n0))
		in.match |= SW_UNLINK_MATCH_OLD;
	if (n1 && name__watched(n1))
		in.match |= SW_UNLINK_MATCH_NEW;
	if (!in.match)
		return 0;
	counter__add(SW_CNT_UNLINK_MATCHES, 1);
	in.syscall = sys;
	in.name[0] = n0;
	in.name[1] = n1;
	file_id__from_dirfd(&in.base[0], dfd0);
	if (n1)
		file_id__from_dirfd(&in.base[1], dfd1);
	if (bpf_map_update_elem(&inflight_unlink, &tid, &in, BPF_ANY))
		counter__add(SW_CNT_INFLIGHT_FULL, 1);
	return 0;
}

/*
 * The path an unlink or rename removed is lost from this instant: a connect
 * right after it is redirected without waiting for the agent. Read from the
 * caller's own name, before any record is reserved, so a full ring buffer
 * costs the record (counted) but never the redirect. By absolute name only
 * (a relative one the agent resolves, and marks).
 */
static __always_inline void redirect__mark_lost(const char *user_name)
{
	struct sw_path_key key = {};
	struct sw_redirect *rd;

	if (!user_name)
		return;
	if (bpf_probe_read_user_str(key.path, SW_SUN_PATH_LEN, user_name) <= 1 ||
	    key.path[0] != '/')
		return;
	key.mntns = mntns__key(task__mntns());
	rd = bpf_map_lookup_elem(&redirects, &key);
	if (rd && rd->guard_len)
		rd->lost = 1;
}

static __always_inline int unlink__exit(long ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct inflight_unlink *in = bpf_map_lookup_elem(&inflight_unlink, &tid);
	struct sw_rec_unlink *r;

	if (!in)
		return 0;
	/* A failed unlink changes nothing on disk: nothing to confirm. */
	if (ret != 0)
		goto out;
	redirect__mark_lost(in->name[0]);
	r = record__reserve(sizeof(*r), SW_REC_UNLINK);
	if (!r)
		goto out;
	r->ret = ret;
	r->syscall = in->syscall;
	r->match = in->match;
	r->pad = 0;
	r->base[0] = in->base[0];
	r->base[1] = in->base[1];
	r->target[0] = in->target[0];
	r->target[1] = in->target[1];
	r->name[0][0] = 0;
	r->name[1][0] = 0;
	if (in->name[0])
		bpf_probe_read_user_str(r->name[0], SW_NAME_LEN, in->name[0]);
	if (in->name[1])
		bpf_probe_read_user_str(r->name[1], SW_NAME_LEN, in->name[1]);
	bpf_ringbuf_submit(r, 0);
out:
	bpf_map_delete_elem(&inflight_unlink, &tid);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_unlink")
int tp__enter_unlink(struct trace_event_raw_sys_enter *ctx)
{
	return unlink__enter(SW_SYS_UNLINK, AT_FDCWD, (const char *)ctx->args[0],
			     0, NULL);
}

SEC("tracepoint/syscalls/sys_enter_unlinkat")
int tp__enter_unlinkat(struct trace_event_raw_sys_enter *ctx)
{
	return unlink__enter(SW_SYS_UNLINKAT, (int)ctx->args[0],
			     (const char *)ctx->args[1], 0, NULL);
}

SEC("tracepoint/syscalls/sys_enter_rename")
int tp__enter_rename(struct trace_event_raw_sys_enter *ctx)
{
	return unlink__enter(SW_SYS_RENAME, AT_FDCWD, (const char *)ctx->args[0],
			     AT_FDCWD, (const char *)ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_renameat")
int tp__enter_renameat(struct trace_event_raw_sys_enter *ctx)
{
	return unlink__enter(SW_SYS_RENAMEAT, (int)ctx->args[0],
			     (const char *)ctx->args[1], (int)ctx->args[2],
			     (const char *)ctx->args[3]);
}

SEC("tracepoint/syscalls/sys_enter_renameat2")
int tp__enter_renameat2(struct trace_event_raw_sys_enter *ctx)
{
	return unlink__enter(SW_SYS_RENAMEAT2, (int)ctx->args[0],
			     (const char *)ctx->args[1], (int)ctx->args[2],
			     (const char *)ctx->args[3]);
}

SEC("tracepoint/syscalls/sys_exit_unlink")
int tp__exit_unlink(struct trace_event_raw_sys_exit *ctx) { return unlink__exit(ctx->ret); }
SEC("tracepoint/syscalls/sys_exit_unlinkat")
int tp__exit_unlinkat(struct trace_event_raw_sys_exit *ctx) { return unlink__exit(ctx->ret); }
SEC("tracepoint/syscalls/sys_exit_rename")
int tp__exit_rename(struct trace_event_raw_sys_exit *ctx) { return unlink__exit(ctx->ret); }
SEC("tracepoint/syscalls/sys_exit_renameat")
int tp__exit_renameat(struct trace_event_raw_sys_exit *ctx) { return unlink__exit(ctx->ret); }
SEC("tracepoint/syscalls/sys_exit_renameat2")
int tp__exit_renameat2(struct trace_event_raw_sys_exit *ctx) { return unlink__exit(ctx->ret); }

/* ----- fentry mode: inodes matched exactly ----- */

static __always_inline __u32 inode__watched(struct sw_file_id *id)
{
	__u32 *flags;

	if (!id->ino)
		return 0;
	flags = bpf_map_lookup_elem(&watched_inodes, id);
	return flags ? *flags : 0;
}

static __always_inline void vfs__enter(__u32 sys, struct dentry *d0,
				       struct dentry *d1)
{
	struct inflight_unlink in = {};
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	file_id__from_dentry(&in.target[0], d0);
	if (inode__watched(&in.target[0]))
		in.match |= SW_UNLINK_MATCH_OLD;
	if (d1) {
		file_id__from_dentry(&in.target[1], d1);
		if (inode__watched(&in.target[1]))
			in.match |= SW_UNLINK_MATCH_NEW;
	}
	if (!in.match)
		return;
	counter__add(SW_CNT_UNLINK_MATCHES, 1);
	in.syscall = sys;
	if (bpf_map_update_elem(&inflight_unlink, &tid, &in, BPF_ANY))
		counter__add(SW_CNT_INFLIGHT_FULL, 1);
}

/* The first argument is a struct mnt_idmap * (6.3+) or user_namespace *: unused. */
SEC("fentry/vfs_unlink")
int BPF_PROG(fentry__vfs_unlink, void *idmap, struct inode *dir,
	     struct dentry *dentry)
{
	vfs__enter(SW_SYS_VFS_UNLINK, dentry, NULL);
	return 0;
}

SEC("fexit/vfs_unlink")
int BPF_PROG(fexit__vfs_unlink, void *idmap, struct inode *dir,
	     struct dentry *dentry, struct inode **delegated, int ret)
{
	return unlink__exit(ret);
}

SEC("fentry/vfs_rename")
int BPF_PROG(fentry__vfs_rename, struct renamedata *rd)
{
	vfs__enter(SW_SYS_VFS_RENAME, BPF_CORE_READ(rd, old_dentry),
		   BPF_CORE_READ(rd, new_dentry));
	return 0;
}

SEC("fexit/vfs_rename")
int BPF_PROG(fexit__vfs_rename, struct renamedata *rd, int ret)
{
	return unlink__exit(ret);
}
