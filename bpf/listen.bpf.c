// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * bind() and listen() of AF_UNIX paths, through their syscall tracepoints in
 * both attach modes: a successful bind of a path becomes an SW_REC_BIND
 * record and is remembered per (tgid, fd) in bound_fds, so a successful
 * listen() on that fd becomes an SW_REC_LISTEN record with its path.
 *
 * With watch_all, listen() also adds the new listener's name hash, inode and
 * path to watched_names, watched_inodes and watched_paths in the kernel
 * itself, so an unlink or a connect a moment after listen() is already seen.
 *
 * Owns bound_fds and inflight_bind.
 */
#include "common.bpf.h"

SEC("tracepoint/syscalls/sys_enter_bind")
int tp__enter_bind(struct trace_event_raw_sys_enter *ctx)
{
	struct inflight_path in = {};
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	if (!sockaddr__unix_path(&in.path, (const void *)ctx->args[1],
				 (long)ctx->args[2], true))
		return 0;
	in.fd = (int)ctx->args[0];
	if (bpf_map_update_elem(&inflight_bind, &tid, &in, BPF_ANY))
		counter__add(SW_CNT_INFLIGHT_FULL, 1);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_bind")
int tp__exit_bind(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct inflight_path *in = bpf_map_lookup_elem(&inflight_bind, &tid);
	struct bound_fd_key bk = {};
	struct sw_rec_bind *r;

	if (!in)
		return 0;
	if (ctx->ret == 0) {
		struct sw_path_key key = in->path;
		struct sw_redirect *rd;

		/* bound again, by anyone: its new listener wins the next connect */
		key.mntns = mntns__key(task__mntns());
		rd = bpf_map_lookup_elem(&redirects, &key);
		if (rd)
			rd->lost = 0;
		bk.tgid = id >> 32;
		bk.fd = in->fd;
		bpf_map_update_elem(&bound_fds, &bk, &in->path, BPF_ANY);
		r = record__reserve(sizeof(*r), SW_REC_BIND);
		if (r) {
			r->fd = in->fd;
			r->ret = ctx->ret;
			r->base.dev = 0;
			r->base.pad = 0;
			r->base.ino = 0;
			if (in->path.path[0] != '/')
				file_id__from_dirfd(&r->base, AT_FDCWD);
			__builtin_memcpy(r->path, in->path.path, sizeof(r->path));
			r->pad2 = 0;
			bpf_ringbuf_submit(r, 0);
		}
	}
	bpf_map_delete_elem(&inflight_bind, &tid);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_listen")
int tp__enter_listen(struct trace_event_raw_sys_enter *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct inflight_path in = {};

	in.fd = (int)ctx->args[0];
	/* Only fds bound to a path by this process are interesting. */
	struct bound_fd_key bk = { .tgid = bpf_get_current_pid_tgid() >> 32,
				   .fd = in.fd };
	if (!bpf_map_lookup_elem(&bound_fds, &bk))
		return 0;
	if (bpf_map_update_elem(&inflight_bind, &tid, &in, BPF_ANY))
		counter__add(SW_CNT_INFLIGHT_FULL, 1);
	return 0;
}

/* The socket file's identity behind a listening fd of the current task. */
static __always_inline void file_id__from_socket_fd(struct sw_file_id *id, int fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	struct socket *sock;
	struct unix_sock *u;

	if (fd < 0 || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	if (!f)
		return;
	sock = BPF_CORE_READ(f, private_data);
	if (!sock)
		return;
	u = (struct unix_sock *)BPF_CORE_READ(sock, sk);
	if (!u)
		return;
	file_id__from_dentry(id, BPF_CORE_READ(u, path.dentry));
}

static __always_inline void listener__watch(const struct sw_path_key *path, int fd)
{
	__u32 flags = SW_WATCH_SOCKET;
	struct sw_path_state ps = { .flags = 1 };
	struct sw_file_id id = {};
	__u64 h = name__hash(path->path, SW_SUN_PATH_LEN, -1); /* -1: len bounds i */

	if (h)
		bpf_map_update_elem(&watched_names, &h, &flags, BPF_NOEXIST);
	file_id__from_socket_fd(&id, fd);
	if (id.ino)
		bpf_map_update_elem(&watched_inodes, &id, &flags, BPF_NOEXIST);
	/* connects to it are counted from its first one, not from when the
	 * agent reads this record: the agent adds it the same way (NOEXIST).
	 * Only in the agent's own namespace: elsewhere the agent decides which
	 * endpoint the path is (the container's own, or one it shares). */
	if (mntns__key(task__mntns()) == 0) {
		struct sw_path_key k = *path;

		k.mntns = 0;
		bpf_map_update_elem(&watched_paths, &k, &ps, BPF_NOEXIST);
	}
}

SEC("tracepoint/syscalls/sys_exit_listen")
int tp__exit_listen(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct inflight_path *in = bpf_map_lookup_elem(&inflight_bind, &tid);
	struct bound_fd_key bk = {};
	struct sw_path_key *path;
	struct sw_rec_bind *r;

	if (!in)
		return 0;
	bk.tgid = id >> 32;
	bk.fd = in->fd;
	path = bpf_map_lookup_elem(&bound_fds, &bk);
	if (ctx->ret == 0 && path) {
		if (watch_all)
			listener__watch(path, bk.fd);
		r = record__reserve(sizeof(*r), SW_REC_LISTEN);
		if (r) {
			r->fd = bk.fd;
			r->ret = 0;
			r->base.dev = 0;
			r->base.pad = 0;
			r->base.ino = 0;
			__builtin_memcpy(r->path, path->path, sizeof(r->path));
			r->pad2 = 0;
			bpf_ringbuf_submit(r, 0);
		}
		bpf_map_delete_elem(&bound_fds, &bk);
	}
	bpf_map_delete_elem(&inflight_bind, &tid);
	return 0;
}
