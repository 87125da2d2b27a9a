// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Discovery in the kernel: iter/task_file visits every open file of every
 * process, in every namespace, in one pass; for each fd on a listening
 * AF_UNIX socket this writes one struct sw_iter_listener (bpf/sockwarden.h)
 * into the iterator's seq_file. Userspace reads it with
 * user/shared/discovery_iter.c (records parsed by user/shared/iter_records.c).
 *
 * Owns discover__task_file and nothing else: it uses no map and no global,
 * so it loads alone (iter_source_open loads it with every other program and
 * map switched off), and the agent's main load switches it off, so a kernel
 * without iterators costs the agent nothing but the fallback.
 *
 * The kernel's task_file iterator already skips a thread whose files table is
 * its group leader's (kernel/bpf/task_iter.c, task_seq_get_next(...,
 * skip_if_dup_files=true), the same in 6.1 and 6.18): a process is seen
 * once, not once per thread. A thread with a files table of its own
 * (unshare(CLONE_FILES)) is seen too; its records carry the same tgid and
 * userspace folds them.
 *
 * CO-RE throughout: the fields read here moved between 6.1 and 6.18
 * (kernfs_node, sock's sk_type, file's f_path, ns_common) but none was
 * renamed; the object relocates against Debian 12's 6.1 BTF as well.
 *
 * Nothing here can lose a record: a bpf_seq_write() that does not fit the
 * seq_file's buffer makes the kernel drop this file's output and show the
 * same file again at the next read().
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "sockwarden.h"

#define AF_UNIX 1
#define TCP_LISTEN 10
#define SOCKFS_MAGIC 0x534F434B
/* sizeof(sa_family_t): unix_address.len counts it before sun_path */
#define SUN_FAMILY_LEN 2

/* kernfs_node.id is a u64 since 5.5; before, a union kernfs_node_id. Every
 * kernel with iter/task_file (5.8+) has the u64, but the read stays guarded
 * so a kernel without it gives 0 (unknown) rather than failing the load. */
static __always_inline __u64 task__cgroup_id(struct task_struct *task)
{
	struct kernfs_node *kn = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn);

	if (!kn || !bpf_core_field_exists(kn->id))
		return 0;
	return BPF_CORE_READ(kn, id);
}

/* The socket behind a file, or NULL: the file must be an open sockfs file.
 * The superblock's magic tells a socket from an O_PATH fd of a socket file
 * (S_IFSOCK too, on the filesystem it lives on); socket->file pointing back
 * tells it from an O_PATH fd opened through /proc/<pid>/fd/<n> of a socket
 * (a sockfs inode, but no socket of its own: private_data is NULL). */
static __always_inline struct sock *file__sock(struct file *file)
{
	/* every fd of the host passes here: plain loads through the BTF
	 * pointers the iterator hands over (the verifier makes them faulting
	 * loads), not a probe-read helper call per step */
	struct inode *inode = file->f_inode;
	struct super_block *sb;
	struct socket *sock;

	if (!inode)
		return NULL;
	sb = inode->i_sb;
	if (!sb || sb->s_magic != SOCKFS_MAGIC)
		return NULL;
	sock = BPF_CORE_READ(file, private_data);
	if (!sock || BPF_CORE_READ(sock, file) != file)
		return NULL;
	return BPF_CORE_READ(sock, sk);
}

/* sun_path and its length from unix_sk(sk)->addr; the bound file's identity
 * from unix_sk(sk)->path. */
static __always_inline void unix__fill(struct sw_iter_listener *r, struct sock *sk)
{
	struct unix_sock *u = (struct unix_sock *)sk;
	struct unix_address *addr = BPF_CORE_READ(u, addr);
	struct dentry *dentry = BPF_CORE_READ(u, path.dentry);
	struct inode *inode;
	int len;

	if (addr) {
		len = BPF_CORE_READ(addr, len) - SUN_FAMILY_LEN;
		/* a 108-byte path: the kernel keeps its NUL past sun_path
		 * (len 109); sock_diag's readers keep 108 bytes as well */
		if (len > SW_SUN_PATH_LEN)
			len = SW_SUN_PATH_LEN;
		if (len > 0) {
			bpf_core_read(r->name, len & 0x7f, &addr->name[0].sun_path);
			r->name_len = len;
		}
	}
	if (!dentry)
		return; /* abstract or unbound */
	inode = BPF_CORE_READ(dentry, d_inode);
	if (!inode)
		return;
	r->vfs_ino = BPF_CORE_READ(inode, i_ino);
	r->vfs_dev = BPF_CORE_READ(inode, i_sb, s_dev);
	r->vfs_nlink = BPF_CORE_READ(inode, __i_nlink);
}

SEC("iter/task_file")
int discover__task_file(struct bpf_iter__task_file *ctx)
{
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	struct sw_iter_listener r;
	struct nsproxy *nsp;
	struct sock *sk;

	if (!task || !file)
		return 0; /* the end of the pass: nothing to add */
	sk = file__sock(file);
	if (!sk || BPF_CORE_READ(sk, __sk_common.skc_family) != AF_UNIX ||
	    BPF_CORE_READ(sk, __sk_common.skc_state) != TCP_LISTEN)
		return 0;

	__builtin_memset(&r, 0, sizeof(r));
	r.magic = SW_ITER_MAGIC;
	r.tgid = BPF_CORE_READ(task, tgid);
	r.fd = ctx->fd;
	r.sock_ino = BPF_CORE_READ(file, f_inode, i_ino);
	/* the objective credentials: what /proc/<pid>/status shows */
	r.uid = BPF_CORE_READ(task, real_cred, uid.val);
	BPF_CORE_READ_STR_INTO(&r.comm, task, comm);
	r.type = BPF_CORE_READ(sk, sk_type);
	r.backlog = BPF_CORE_READ(sk, sk_receive_queue.qlen);
	r.max_backlog = BPF_CORE_READ(sk, sk_max_ack_backlog);
	r.netns_ino = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	nsp = BPF_CORE_READ(task, nsproxy);
	if (nsp) /* NULL once the task is exiting */
		r.mntns_ino = BPF_CORE_READ(nsp, mnt_ns, ns.inum);
	r.cgroup_id = task__cgroup_id(task);
	unix__fill(&r, sk);

	bpf_seq_write(ctx->meta->seq, &r, sizeof(r));
	return 0;
}
