// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * connect() to AF_UNIX paths, in both attach modes: tracepoint mode follows
 * sys_{enter,exit}_connect, fentry mode fexit on unix_stream_connect and
 * unix_dgram_connect (which sees io_uring connects too).
 *
 * Failures are aggregated here: every failure of a followed path (a watched
 * one, or any with any_path) is counted in connect_stats per (path, errno)
 * and per client in connect_clients; only the first failure of a streak (and
 * the first success after it) produces a ring-buffer record, so counts never
 * depend on a record arriving. watched_paths holds which streaks are open.
 *
 * Owns connect_stats, connect_clients, inflight_connect and connect_scratch.
 */
#include "common.bpf.h"

#define ENOENT 2
#define EAGAIN 11
#define ECONNREFUSED 111

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

/*
 * Whether connects to key's path are counted, and under which key: the
 * client's own namespace's endpoint first (a container's socket), then the
 * path as the agent's namespace names it (a socket every namespace shares,
 * or bind-mounted at the same path), then the host name of a file
 * bind-mounted elsewhere. A client of the agent's own namespace pays one
 * lookup, as before namespaces.
 */
static __always_inline bool path__followed(struct sw_path_key *key)
{
	__u32 own = mntns__key(task__mntns());

	key->mntns = own;
	if (bpf_map_lookup_elem(&watched_paths, key))
		return true;
	if (own) {
		struct sw_path_key *to;

		key->mntns = 0;
		if (bpf_map_lookup_elem(&watched_paths, key))
			return true;
		key->mntns = own;
		to = bpf_map_lookup_elem(&path_aliases, key);
		if (to) {
			__builtin_memcpy(key, to, sizeof(*key));
			return true;
		}
	}
	return any_path;
}

/* ----- tracepoint mode ----- */

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
	if (ctx->ret == -ECONNREFUSED) {
		/* redirected to a guard whose listener has died: the next connect
		 * fails as it would without the agent, not at a dead socket */
		struct sw_redirect *rd = bpf_map_lookup_elem(&redirects, &in->path);

		if (rd && rd->lost)
			rd->lost = 0;
	}
	if (s) {
		__builtin_memcpy(&s->path, &in->path, sizeof(s->path));
		connect__done(s, ctx->ret);
	}
	bpf_map_delete_elem(&inflight_connect, &tid);
	return 0;
}

/* ----- fentry mode ----- */

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
