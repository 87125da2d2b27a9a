/*
 * Discovery by BPF iterator: the listening AF_UNIX sockets of every network
 * namespace and the processes holding them, in one pass of iter/task_file
 * (bpf/iter.bpf.c) from the host PID namespace, instead of a sock_diag dump
 * (one network namespace) and a walk of every /proc/<pid>/fd.
 *
 * Two halves:
 *   iter_records_parse   (iter_records.c) the pure parser of the records the
 *                        program writes (struct sw_iter_listener): no kernel,
 *                        no libbpf, unit-tested.
 *   iter_source_*, discovery_iter_read   (discovery_iter.c) the program
 *                        loaded on its own and one pass over it.
 *
 * The result has the shape discovery_dump() + discovery_owners() give
 * (discovery.h): a listener_list, and an owner_map sorted by (sock_ino, pid)
 * for owner_map_find().
 */
#ifndef SW_DISCOVERY_ITER_H
#define SW_DISCOVERY_ITER_H
#include <stddef.h>
#include <sys/types.h>

#include "discovery.h"

/*
 * Appends the complete records of buf[0..len) to ll and om: one listener per
 * distinct socket inode (the same socket held by several fds or processes is
 * one listener; its fields from the first of its records), one owner entry
 * per distinct (socket inode, process), om kept sorted by socket inode, then
 * pid (owner_map_find()'s order; ll's order is none in particular). ll and
 * om are empty or hold what earlier calls of the same pass appended: a
 * socket one of them saw is not listed again. An owner carries what the
 * record has (pid, uid, comm, mntns_ino, cgroup_id); gid, exe and script are
 * discovery_iter_read's to fill.
 *
 * *consumed is how many bytes were parsed: a trailing partial record is left
 * for the caller to complete with the next read. Returns 0; -EBADMSG for a
 * record that cannot come from bpf/iter.bpf.c (wrong magic, name_len > 108,
 * impossible fields), *consumed then pointing at it; -ENOMEM. The lists keep
 * what was appended before an error; a caller discards them.
 */
int iter_records_parse(const void *buf, size_t len, struct listener_list *ll,
		       struct owner_map *om, size_t *consumed);

/*
 * One complete pass of the iterator whose bpf_link is link_fd: listeners
 * into ll, holders into om (sorted by socket inode, then pid; owner_read()
 * details for each holder still alive, the record's comm and uid for one
 * gone since), and, if st is not NULL, what it covered (listeners: distinct
 * sockets, processes: distinct holders, fds: records). A caller passes ll
 * and om empty.
 *
 * 0, or -errno / -EBADMSG: then the pass did not complete (a read error, a
 * record cut short at the end, a malformed record) and nothing in ll or om
 * may be taken as the host's listeners. Safe from any thread: each call
 * makes an iterator fd of its own from the link.
 */
int discovery_iter_read(int link_fd, struct listener_list *ll, struct owner_map *om,
			struct discovery_stats *st);

/* The iterator, loaded and attached alone: no map, no other program. */
struct sockwarden_bpf;
struct bpf_link;
struct iter_source {
	struct sockwarden_bpf *skel;
	struct bpf_link *link;
};

/*
 * Opens the BPF object, loads discover__task_file alone, attaches it and runs
 * one pass to prove it works. 0, or -errno with a one-line reason in why
 * (e.g. "the kernel has no BTF", "iter/task_file did not load: ...");
 * nothing is left open on failure. s need not be initialised.
 */
int iter_source_open(struct iter_source *s, char *why, size_t whylen);
/* The listening AF_UNIX sockets process pid holds, in whatever namespace,
 * by a pass of the iterator over that process alone (a whole pass, filtered,
 * on kernels before 6.1); -ESRCH when the process is gone. */
int iter_source_read_pid(struct iter_source *s, pid_t pid, struct listener_list *ll,
			 struct owner_map *om);
/* The link's fd for discovery_iter_read(); -1 when s is not open. */
int iter_source_link_fd(const struct iter_source *s);
/* Detaches and unloads; s is then closed (a second call does nothing). */
void iter_source_close(struct iter_source *s);
#endif
