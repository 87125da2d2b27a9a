/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The records and map layouts shared by the BPF programs (the .bpf.c files
 * in bpf/) and the agent (user/). Both sides compile this header; the
 * _Static_asserts at the end pin the layout so a change on one side cannot
 * silently desynchronise the other.
 */
#ifndef SOCKWARDEN_SHARED_H
#define SOCKWARDEN_SHARED_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define SW_COMM_LEN 16
/* sizeof(((struct sockaddr_un *)0)->sun_path) */
#define SW_SUN_PATH_LEN 108
/*
 * Unlink/rename names are copied up to this many bytes. A socket path is at
 * most 107 bytes when bound, but the name handed to unlink() may be longer
 * (a relative path through "..", a path through a symlinked directory).
 */
#define SW_NAME_LEN 256

enum sw_record_type {
	SW_REC_UNLINK = 1,      /* a watched name (or ancestor) was removed/renamed */
	SW_REC_BIND = 2,        /* successful bind() of an AF_UNIX path */
	SW_REC_LISTEN = 3,      /* successful listen() on a socket bound to a path */
	SW_REC_CONNECT_FAIL = 4,/* first failed connect of a streak */
	SW_REC_CONNECT_OK = 5,  /* first successful connect after a streak */
};

enum sw_syscall {
	SW_SYS_UNLINK = 1,
	SW_SYS_UNLINKAT = 2,
	SW_SYS_RENAME = 3,
	SW_SYS_RENAMEAT = 4,
	SW_SYS_RENAMEAT2 = 5,
	SW_SYS_VFS_UNLINK = 6, /* fentry mode */
	SW_SYS_VFS_RENAME = 7, /* fentry mode */
};

/* Which errno a connect failure is counted under (index into per-path state). */
enum sw_connect_err {
	SW_ERR_ENOENT = 0,
	SW_ERR_ECONNREFUSED = 1,
	SW_ERR_EAGAIN = 2,
	SW_ERR_MAX = 3,
};

/* Flags stored as values of the watched_names / watched_inodes maps. */
#define SW_WATCH_SOCKET 0x1   /* the name/inode of a watched socket file */
#define SW_WATCH_ANCESTOR 0x2 /* the name/inode of a directory above one */

/* Flags of an unlink record: which of its two names matched. */
#define SW_UNLINK_MATCH_OLD 0x1
#define SW_UNLINK_MATCH_NEW 0x2

/* Counters kept by the BPF side (index into the counters per-CPU array). */
enum sw_counter {
	SW_CNT_RINGBUF_FULL = 0,     /* a record could not be reserved */
	SW_CNT_STAT_MAP_FULL = 1,    /* a connect streak entry could not be created */
	SW_CNT_CLIENT_MAP_FULL = 2,  /* a per-client entry could not be created */
	SW_CNT_INFLIGHT_FULL = 3,    /* a syscall could not be tracked enter→exit */
	SW_CNT_CONNECT_FAILURES = 4, /* failed connects counted (all watched paths) */
	SW_CNT_UNLINK_MATCHES = 5,   /* unlink/rename syscalls that matched a name */
	/* failed connects by errno: SW_CNT_FAILURES_BY_ERR + enum sw_connect_err */
	SW_CNT_FAILURES_BY_ERR = 6,
	SW_CNT_MAX = 12,
};
_Static_assert(SW_CNT_FAILURES_BY_ERR + SW_ERR_MAX <= SW_CNT_MAX,
	       "per-errno counters fit in the counters map");

struct sw_proc {
	__u32 pid;  /* thread id */
	__u32 tgid; /* process id */
	__u32 uid;
	__u32 gid;
	char comm[SW_COMM_LEN];
};

/* A file identity as the kernel sees it: dev is the kernel's s_dev encoding. */
struct sw_file_id {
	__u32 dev;
	__u32 pad;
	__u64 ino;
};

struct sw_rec_hdr {
	__u32 type; /* enum sw_record_type */
	__u32 pad;
	__u64 ts_ns; /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	struct sw_proc proc;
};

struct sw_rec_unlink {
	struct sw_rec_hdr hdr;
	__s32 ret;
	__u32 syscall; /* enum sw_syscall */
	__u32 match;   /* SW_UNLINK_MATCH_* */
	__u32 pad;
	/* Directory the names are relative to (dirfd or cwd); zero if absolute. */
	struct sw_file_id base[2];
	/* fentry mode: the inodes of the dentries involved (exact match). */
	struct sw_file_id target[2];
	/* [0]: the unlinked name or rename source, [1]: rename destination. */
	char name[2][SW_NAME_LEN];
};

struct sw_rec_bind {
	struct sw_rec_hdr hdr;
	__s32 fd;
	__s32 ret;
	struct sw_file_id base; /* cwd, for a relative path */
	char path[SW_SUN_PATH_LEN];
	__u32 pad2;
};

/* Key of the per-path connect state: the sun_path bytes, zero padded. */
struct sw_path_key {
	char path[SW_SUN_PATH_LEN];
};

/*
 * Per (path, errno) connect state. `failures` only ever grows; a streak is the
 * interval between `open` becoming 1 and going back to 0. Userspace derives a
 * streak's exact size as closed_failures - streak_start_failures + 1, so
 * nothing depends on a ring-buffer record arriving.
 */
struct sw_connect_stat {
	__u64 failures;
	__u64 streak_start_failures;
	__u64 streak_start_ns;
	__u64 last_ns;
	__u64 closed_failures;
	__u64 closed_ns;
	__u32 gen;  /* streak generation, incremented each time a streak opens */
	__u32 open; /* 1 while a streak lasts */
	struct sw_proc last_client;
};

struct sw_connect_stat_key {
	struct sw_path_key path;
	__u32 err; /* enum sw_connect_err */
};

/* Per-client attribution of one streak. */
struct sw_client_key {
	struct sw_path_key path;
	__u32 err;
	__u32 gen;
	__u32 tgid;
};

struct sw_client_stat {
	__u64 failures;
	__u32 uid;
	__u32 pad;
	char comm[SW_COMM_LEN];
};

/* Value of watched_paths: which streaks are open on this path (bit per err). */
struct sw_path_state {
	__u32 flags;
	__u32 open_mask;
};

struct sw_rec_connect {
	struct sw_rec_hdr hdr;
	struct sw_connect_stat_key key;
	__u32 gen;
	__u64 count; /* failures at streak start (FAIL) or at close (OK) */
};

#define SW_EXPECT_SIZE(type, size) \
	_Static_assert(sizeof(type) == (size), #type " layout changed")
#define SW_EXPECT_OFFSET(type, member, off) \
	_Static_assert(__builtin_offsetof(type, member) == (off), \
		       #type "." #member " moved")

SW_EXPECT_SIZE(struct sw_proc, 32);
SW_EXPECT_SIZE(struct sw_file_id, 16);
SW_EXPECT_SIZE(struct sw_rec_hdr, 48);
SW_EXPECT_OFFSET(struct sw_rec_unlink, base, 64);
SW_EXPECT_OFFSET(struct sw_rec_unlink, name, 128);
SW_EXPECT_SIZE(struct sw_rec_unlink, 128 + 2 * SW_NAME_LEN);
SW_EXPECT_OFFSET(struct sw_rec_bind, path, 72);
SW_EXPECT_SIZE(struct sw_rec_bind, 184);
SW_EXPECT_SIZE(struct sw_connect_stat_key, 112);
SW_EXPECT_SIZE(struct sw_client_key, 120);
SW_EXPECT_SIZE(struct sw_connect_stat, 88);
SW_EXPECT_OFFSET(struct sw_rec_connect, key, 48);
SW_EXPECT_SIZE(struct sw_rec_connect, 176);
/* the rest of what the agent reads from records and maps */
SW_EXPECT_OFFSET(struct sw_rec_unlink, target, 96);
SW_EXPECT_OFFSET(struct sw_rec_bind, base, 56);
SW_EXPECT_OFFSET(struct sw_rec_connect, gen, 160);
SW_EXPECT_OFFSET(struct sw_rec_connect, count, 168);
SW_EXPECT_SIZE(struct sw_path_key, SW_SUN_PATH_LEN);
SW_EXPECT_SIZE(struct sw_path_state, 8);
SW_EXPECT_OFFSET(struct sw_connect_stat, gen, 48);
SW_EXPECT_OFFSET(struct sw_connect_stat, last_client, 56);
SW_EXPECT_OFFSET(struct sw_client_key, tgid, 116);
SW_EXPECT_SIZE(struct sw_client_stat, 32);

#endif
