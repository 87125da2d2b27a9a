/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Every map and read-only global of the kernel side, declared in one place.
 *
 * The concerns (bpf/unlink.bpf.c, bpf/connect.bpf.c, bpf/listen.bpf.c) are
 * compiled apart and linked into one object by `bpftool gen object`, so they
 * share these maps through the BPF static linker: bpf/maps.bpf.c defines each
 * one once (it sets SW_MAPS_DEFINE), every other object sees an extern
 * declaration, and the linker checks each extern against the definition (map
 * type, key, value, max_entries).
 *
 * Not __weak definitions in every object (what Falco's modern_bpf does): the
 * linker of libbpf 1.1 (bpftool v7.1.0, Debian 12) keeps the bytes of every
 * weak copy, so .rodata and the skeleton's rodata map would grow by two bytes
 * per object, while with externs the linked object holds each map and global
 * once, as the single-file build did.
 *
 * bpf/maps.bpf.o must come first on the link line: libbpf 1.1 records a wrong
 * .maps offset in BTF for a map an object declares extern before the object
 * that defines it, and the linked object then fails to open ("map relo failed
 * to find map"), which fails the skeleton's generation.
 */
#ifndef SW_MAPS_H
#define SW_MAPS_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "sockwarden.h"

#if defined(SW_MAPS_DEFINE) || defined(SW_MAPS_REDIRECT)
#define SW_STORAGE
#define SW_INIT(v) = (v)
#else
#define SW_STORAGE extern
#define SW_INIT(v)
#endif

/*
 * The redirect's program is an object of its own (build/redirect.bpf.o; the
 * Makefile says why): bpf/redirect.bpf.c sets SW_MAPS_REDIRECT and gets its
 * own definitions of only what it uses (agent_mntns, counters, redirects).
 * The agent points the two maps at the main object's with bpf_map__reuse_fd
 * before that object's load, so both objects read and write the same maps.
 */
#ifdef SW_MAPS_REDIRECT
#define SW_MAIN_OBJECT 0
#else
#define SW_MAIN_OBJECT 1
#endif

/*
 * ----- Read-only globals: set by the agent before load (skel->rodata). -----
 *
 * any_path   report failures on every AF_UNIX path, not only watched ones
 *            (--any-path); read by connect.bpf.c.
 * watch_all  host-wide mode: a new listener's name and inode join the unlink
 *            filters in the kernel at listen() time, so an unlink racing the
 *            agent's own bookkeeping is still seen. With --watch the agent
 *            pre-loads the names it watches. Read by listen.bpf.c.
 */
#if SW_MAIN_OBJECT
SW_STORAGE const volatile bool any_path SW_INIT(false);
SW_STORAGE const volatile bool watch_all SW_INIT(false);
#endif
/*
 * agent_mntns  the agent's own mount namespace (nsfs inode): the kernel's
 *              per-path keys name it 0, as the agent's endpoint table does.
 */
SW_STORAGE const volatile __u32 agent_mntns SW_INIT(0);

/*
 * ----- Maps: every map the programs use, in one place. -----
 *
 * events           ring buffer of sw_rec_* records to the agent; every concern
 *                  writes to it.
 * counters         per-CPU sw_counter values (drops counted where they happen).
 * watched_names    FNV-1a hash of a last path component -> SW_WATCH_* flags;
 *                  tracepoint mode's unlink/rename filter. Filled by the agent
 *                  and, with watch_all, by listen().
 * watched_inodes   sw_file_id -> SW_WATCH_* flags; fentry mode's exact filter.
 *                  Filled like watched_names.
 * watched_paths    (mntns, sun_path) -> sw_path_state; which paths
 *                  connect() is followed on, and which of their streaks are
 *                  open. mntns 0 is the agent's own namespace.
 * redirects        (mntns, sun_path) -> sw_redirect: where a connect to a lost
 *                  path goes (redirect.bpf.c); filled by the agent, `lost`
 *                  set by the unlink exit programs and cleared by bind().
 * path_aliases     (mntns, sun_path) -> (0, sun_path): a file the agent sees
 *                  under another name (a host directory bind-mounted into a
 *                  container elsewhere); a connect from that namespace by
 *                  that name counts on the host name's endpoint. Filled by
 *                  the agent.
 * connect_stats    (sun_path, errno) -> sw_connect_stat; the exact counts.
 * connect_clients  (sun_path, errno, streak gen, tgid) -> sw_client_stat.
 * inflight_unlink  thread id -> a matched unlink/rename, between its entry
 *                  (the name filter or the inode filter) and its exit.
 * inflight_connect thread id -> a followed connect()'s fd and path, between
 *                  sys_enter_connect and sys_exit_connect.
 * inflight_bind    thread id -> the fd (and path) of a bind() or listen(),
 *                  between its enter and exit tracepoints.
 * bound_fds        (tgid, fd) -> path of an AF_UNIX bind, so listen() on that
 *                  fd can be reported with its path.
 * connect_scratch  per-CPU working space of the connect path.
 * scratch          per-CPU buffer for reading a name from user memory.
 *
 * The definitions below are in the order of the skeleton's maps struct, which
 * is also the order libbpf creates the maps in at load: inflight_connect,
 * inflight_bind and bound_fds first.
 */
#if SW_MAIN_OBJECT
struct inflight_path {
	__s32 fd;
	__u32 pad;
	struct sw_path_key path;
};

SW_STORAGE struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct inflight_path);
} inflight_connect SEC(".maps");

SW_STORAGE struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct inflight_path);
} inflight_bind SEC(".maps");

struct bound_fd_key {
	__u32 tgid;
	__s32 fd;
};

SW_STORAGE struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct bound_fd_key);
	__type(value, struct sw_path_key);
} bound_fds SEC(".maps");

SW_STORAGE struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

#endif

SW_STORAGE struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SW_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

#if SW_MAIN_OBJECT
SW_STORAGE struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u32);
} watched_names SEC(".maps");

SW_STORAGE struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32768);
	__type(key, struct sw_file_id);
	__type(value, __u32);
} watched_inodes SEC(".maps");

SW_STORAGE struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct sw_path_key);
	__type(value, struct sw_path_state);
} watched_paths SEC(".maps");

#endif

/* redirects: see the map list above */
SW_STORAGE struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct sw_path_key);
	__type(value, struct sw_redirect);
} redirects SEC(".maps");

#if SW_MAIN_OBJECT

/* path_aliases: see the map list above */
SW_STORAGE struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct sw_path_key);
	__type(value, struct sw_path_key);
} path_aliases SEC(".maps");

SW_STORAGE struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct sw_connect_stat_key);
	__type(value, struct sw_connect_stat);
} connect_stats SEC(".maps");

SW_STORAGE struct {
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

SW_STORAGE struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct inflight_unlink);
} inflight_unlink SEC(".maps");

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

SW_STORAGE struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct connect_scratch);
} connect_scratch SEC(".maps");

#define SCRATCH_LEN 512 /* twice SW_NAME_LEN so masked indexes stay in bounds */
SW_STORAGE struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, char[SCRATCH_LEN]);
} scratch SEC(".maps");

#endif /* SW_MAIN_OBJECT */

#endif
