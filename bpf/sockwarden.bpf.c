// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * sockwarden's kernel side.
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
 * Connect failures are aggregated here: every failure is counted in
 * connect_stats, and only the first failure of a streak (and the first success
 * after it) produces a ring-buffer record. A record that cannot be reserved is
 * counted in `counters`; the counts it would have carried stay in the maps.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "sockwarden.h"

#define AF_UNIX 1
#define AT_FDCWD -100
#define ENOENT 2
#define EAGAIN 11
#define ECONNREFUSED 111

#define FNV_BASIS 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

/* Report failures on every AF_UNIX path, not only watched ones (--any-path). */
const volatile bool any_path = false;
/*
 * Host-wide mode: a new listener's name and inode join the unlink filters in
 * the kernel at listen() time, so an unlink racing the agent's own bookkeeping
 * is still seen. With --watch the agent pre-loads the names it watches.
 */
const volatile bool watch_all = false;

/*
 * ----- Maps: every map the programs use, in one place. -----
 *
 * events          ring buffer of sw_rec_* records to the agent.
 * counters        per-CPU sw_counter values (drops counted where they happen).
 * watched_names   FNV-1a hash of a last path component -> SW_WATCH_* flags;
 *                 tracepoint mode's unlink/rename filter.
 * watched_inodes  sw_file_id -> SW_WATCH_* flags; fentry mode's exact filter.
 * watched_paths   sun_path -> sw_path_state; which paths connect() is
 *                 followed on, and which of their streaks are open.
 * connect_stats   (sun_path, errno) -> sw_connect_stat; the exact counts.
 * connect_clients (sun_path, errno, streak gen, tgid) -> sw_client_stat.
 * inflight_*      per-thread syscall arguments between enter and exit.
 * bound_fds       (tgid, fd) -> path of an AF_UNIX bind, so listen() on that
 *                 fd can be reported with its path.
 * scratch         per-CPU buffer for reading a name from user memory.
 */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SW_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u32);
} watched_names SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32768);
	__type(key, struct sw_file_id);
	__type(value, __u32);
} watched_inodes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct sw_path_key);
	__type(value, struct sw_path_state);
} watched_paths SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct sw_connect_stat_key);
	__type(value, struct sw_connect_stat);
} connect_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct sw_client_key);
	__type(value, struct sw_client_stat);
} connect_clients SEC(".maps");

struct inflight_unlink {
	__u32 syscall;
	__u32 match;
	const char *name[2];
	struct sw_file_id base[2];
	struct sw_file_id target[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct inflight_unlink);
} inflight_unlink SEC(".maps");

struct inflight_path {
	__s32 fd;
	__u32 pad;
	struct sw_path_key path;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct inflight_path);
} inflight_connect SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct inflight_path);
} inflight_bind SEC(".maps");

struct bound_fd_key {
	__u32 tgid;
	__s32 fd;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct bound_fd_key);
	__type(value, struct sw_path_key);
} bound_fds SEC(".maps");

/*
 * Per-CPU working space: the connect path is too large for the 512-byte BPF
 * stack. Syscall tracepoint and fentry programs do not nest on one CPU, so one
 * slot per CPU suffices.
 */
struct connect_scratch {
	struct sw_connect_stat_key key;
	struct sw_connect_stat stat;
	struct sw_client_key client_key;
	struct sw_client_stat client;
	struct sw_path_key path;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct connect_scratch);
} connect_scratch SEC(".maps");

#define SCRATCH_LEN 512 /* twice SW_NAME_LEN so masked indexes stay in bounds */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, char[SCRATCH_LEN]);
} scratch SEC(".maps");

/* ----- helpers ----- */

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

static __always_inline void *record__reserve(__u64 size, __u32 type)
{
	struct sw_rec_hdr *h = bpf_ringbuf_reserve(&events, size, 0);

	if (!h) {
		counter__add(SW_CNT_RINGBUF_FULL, 1);
		return NULL;
	}
	h->type = type;
	h->pad = 0;
	h->ts_ns = bpf_ktime_get_ns();
	proc__fill(&h->proc);
	return h;
}

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
 * FNV-1a of the last non-empty component of a user path ("a/b/" -> "b").
 * Returns 0 when the name cannot be read.
 */
static __always_inline __u64 name__last_component_hash(const char *uname)
{
	__u32 zero = 0;
	char *buf = bpf_map_lookup_elem(&scratch, &zero);
	__u64 h = FNV_BASIS, last = 0;
	bool in_component = false;
	long n;

	if (!buf)
		return 0;
	n = bpf_probe_read_user_str(buf, SW_NAME_LEN, uname);
	if (n <= 1)
		return 0;
	for (int i = 0; i < SW_NAME_LEN; i++) {
		char c = buf[i & (SCRATCH_LEN - 1)];

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

static __always_inline __u32 name__watched(const char *uname)
{
	__u64 h = name__last_component_hash(uname);
	__u32 *flags;

	if (!h)
		return 0;
	flags = bpf_map_lookup_elem(&watched_names, &h);
	return flags ? *flags : 0;
}

/* ----- unlink / rename: tracepoint mode ----- */

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

/* ----- unlink / rename: fentry mode (exact inode match) ----- */

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

/* ----- connect: counting in the kernel ----- */

static __always_inline int errno__index(long ret)
{
	switch (ret) {
	case -ENOENT: return SW_ERR_ENOENT;
	case -ECONNREFUSED: return SW_ERR_ECONNREFUSED;
	case -EAGAIN: return SW_ERR_EAGAIN;
	default: return -1;
	}
}

static __always_inline void client__count(struct connect_scratch *s,
					  __u32 gen, struct sw_proc *p)
{
	struct sw_client_key *ck = &s->client_key;
	struct sw_client_stat *cs, *init = &s->client;

	__builtin_memcpy(&ck->path, &s->key.path, sizeof(ck->path));
	ck->err = s->key.err;
	ck->gen = gen;
	ck->tgid = p->tgid;
	cs = bpf_map_lookup_elem(&connect_clients, ck);
	if (cs) {
		__sync_fetch_and_add(&cs->failures, 1);
		return;
	}
	init->failures = 1;
	init->uid = p->uid;
	init->pad = 0;
	__builtin_memcpy(init->comm, p->comm, sizeof(init->comm));
	if (bpf_map_update_elem(&connect_clients, ck, init, BPF_NOEXIST)) {
		cs = bpf_map_lookup_elem(&connect_clients, ck);
		if (cs)
			__sync_fetch_and_add(&cs->failures, 1);
		else
			counter__add(SW_CNT_CLIENT_MAP_FULL, 1);
	}
}

static __always_inline void connect__emit(struct sw_connect_stat_key *k,
					  __u32 type, __u32 gen, __u64 count)
{
	struct sw_rec_connect *r = record__reserve(sizeof(*r), type);

	if (!r)
		return;
	__builtin_memcpy(&r->key, k, sizeof(r->key));
	r->gen = gen;
	r->count = count;
	bpf_ringbuf_submit(r, 0);
}

static __always_inline void connect__failed(struct connect_scratch *s, int err)
{
	struct sw_path_key *path = &s->path;
	struct sw_connect_stat_key *k = &s->key;
	struct sw_connect_stat *st, *init = &s->stat;
	struct sw_path_state *ps, ps_init = {};
	struct sw_proc p = {};
	__u64 now = bpf_ktime_get_ns(), n;
	bool opened = false;

	proc__fill(&p);
	__builtin_memcpy(&k->path, path, sizeof(k->path));
	k->err = err;
	counter__add(SW_CNT_CONNECT_FAILURES, 1);
	counter__add(SW_CNT_FAILURES_BY_ERR + err, 1);

	st = bpf_map_lookup_elem(&connect_stats, k);
	if (!st) {
		__builtin_memset(init, 0, sizeof(*init));
		init->failures = 1;
		init->streak_start_failures = 1;
		init->streak_start_ns = now;
		init->last_ns = now;
		init->gen = 1;
		init->open = 1;
		init->last_client = p;
		if (bpf_map_update_elem(&connect_stats, k, init, BPF_NOEXIST) == 0) {
			n = 1;
			opened = true;
			goto opened;
		}
		st = bpf_map_lookup_elem(&connect_stats, k);
		if (!st) {
			counter__add(SW_CNT_STAT_MAP_FULL, 1);
			return;
		}
	}
	n = __sync_fetch_and_add(&st->failures, 1) + 1;
	st->last_ns = now;
	st->last_client = p;
	if (st->open == 0 && __sync_val_compare_and_swap(&st->open, 0, 1) == 0) {
		st->gen += 1;
		st->streak_start_failures = n;
		st->streak_start_ns = now;
		opened = true;
	}
opened:
	if (opened) {
		__u32 gen = st ? st->gen : 1;

		ps = bpf_map_lookup_elem(&watched_paths, path);
		if (!ps) {
			/* --any-path: remember open streaks of unwatched paths too */
			ps_init.open_mask = 1u << err;
			bpf_map_update_elem(&watched_paths, path, &ps_init, BPF_NOEXIST);
		}
		ps = bpf_map_lookup_elem(&watched_paths, path);
		if (ps)
			__sync_fetch_and_or(&ps->open_mask, 1u << err);
		connect__emit(k, SW_REC_CONNECT_FAIL, gen, n);
		client__count(s, gen, &p);
		return;
	}
	client__count(s, st->gen, &p);
}

static __always_inline void connect__succeeded(struct connect_scratch *s)
{
	struct sw_path_state *ps = bpf_map_lookup_elem(&watched_paths, &s->path);
	struct sw_connect_stat_key *k = &s->key;
	__u32 mask;

	if (!ps || !ps->open_mask)
		return;
	mask = __sync_fetch_and_and(&ps->open_mask, 0);
	__builtin_memcpy(&k->path, &s->path, sizeof(k->path));
	for (int e = 0; e < SW_ERR_MAX; e++) {
		struct sw_connect_stat *st;

		if (!(mask & (1u << e)))
			continue;
		k->err = e;
		st = bpf_map_lookup_elem(&connect_stats, k);
		if (!st || __sync_val_compare_and_swap(&st->open, 1, 0) != 1)
			continue;
		st->closed_failures = st->failures;
		st->closed_ns = bpf_ktime_get_ns();
		connect__emit(k, SW_REC_CONNECT_OK, st->gen, st->closed_failures);
	}
}

/* The connect's outcome for the path in s->path. */
static __always_inline void connect__done(struct connect_scratch *s, long ret)
{
	int e;

	if (ret == 0) {
		connect__succeeded(s);
		return;
	}
	e = errno__index(ret);
	if (e >= 0)
		connect__failed(s, e);
}

static __always_inline struct connect_scratch *connect_scratch__get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&connect_scratch, &zero);
}

/* Reads a sockaddr_un path; false for other families and abstract names. */
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
	if (user ? bpf_probe_read_user(key->path, n & 0x7f, addr + 2)
		 : bpf_probe_read_kernel(key->path, n & 0x7f, addr + 2))
		return false;
	if (key->path[0] == 0)
		return false; /* abstract: no path to lose */
	/* sun_path need not be NUL terminated; zero the tail for a stable key. */
	for (int i = 0; i < SW_SUN_PATH_LEN; i++)
		if (i >= n)
			key->path[i] = 0;
	return true;
}

static __always_inline bool path__followed(struct sw_path_key *key)
{
	return any_path || bpf_map_lookup_elem(&watched_paths, key);
}

SEC("tracepoint/syscalls/sys_enter_connect")
int tp__enter_connect(struct trace_event_raw_sys_enter *ctx)
{
	struct inflight_path in = {};
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	if (!sockaddr__unix_path(&in.path, (const void *)ctx->args[1],
				 (long)ctx->args[2], true))
		return 0;
	if (!path__followed(&in.path))
		return 0;
	in.fd = (int)ctx->args[0];
	if (bpf_map_update_elem(&inflight_connect, &tid, &in, BPF_ANY))
		counter__add(SW_CNT_INFLIGHT_FULL, 1);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int tp__exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct inflight_path *in = bpf_map_lookup_elem(&inflight_connect, &tid);
	struct connect_scratch *s = connect_scratch__get();

	if (!in)
		return 0;
	if (s) {
		__builtin_memcpy(&s->path, &in->path, sizeof(s->path));
		connect__done(s, ctx->ret);
	}
	bpf_map_delete_elem(&inflight_connect, &tid);
	return 0;
}

static __always_inline int unix_connect__exit(struct sockaddr *addr, int len,
					      int ret)
{
	struct connect_scratch *s = connect_scratch__get();

	if (!s)
		return 0;
	__builtin_memset(&s->path, 0, sizeof(s->path));
	if (!sockaddr__unix_path(&s->path, addr, len, false))
		return 0;
	if (!path__followed(&s->path))
		return 0;
	connect__done(s, ret);
	return 0;
}

SEC("fexit/unix_stream_connect")
int BPF_PROG(fexit__unix_stream_connect, struct socket *sock,
	     struct sockaddr *uaddr, int addr_len, int flags, int ret)
{
	return unix_connect__exit(uaddr, addr_len, ret);
}

SEC("fexit/unix_dgram_connect")
int BPF_PROG(fexit__unix_dgram_connect, struct socket *sock,
	     struct sockaddr *addr, int alen, int flags, int ret)
{
	return unix_connect__exit(addr, alen, ret);
}

/* ----- bind / listen (both modes) ----- */

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

/* FNV-1a of the last component of a path held in kernel (map) memory. */
static __always_inline __u64 path__last_component_hash(const struct sw_path_key *k)
{
	__u64 h = FNV_BASIS, last = 0;
	bool in_component = false;

	for (int i = 0; i < SW_SUN_PATH_LEN; i++) {
		char c = k->path[i];

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
	__u64 h = path__last_component_hash(path);

	if (h)
		bpf_map_update_elem(&watched_names, &h, &flags, BPF_NOEXIST);
	file_id__from_socket_fd(&id, fd);
	if (id.ino)
		bpf_map_update_elem(&watched_inodes, &id, &flags, BPF_NOEXIST);
	/* connects to it are counted from its first one, not from when the
	 * agent reads this record: the agent adds it the same way (NOEXIST) */
	bpf_map_update_elem(&watched_paths, path, &ps, BPF_NOEXIST);
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

char LICENSE[] SEC("license") = "Dual BSD/GPL";
