/*
 * Discovery by BPF iterator: discover__task_file (bpf/iter.bpf.c) loaded on
 * its own from the one skeleton, and one pass over it (discovery_iter.h).
 *
 * The skeleton holds every program and map of the kernel side; this loads
 * the iterator alone (every other program's autoload and every map's
 * autocreate off, the iterator uses none; only .rodata, two bytes, is
 * created, as libbpf 1.1 binds it to every program it loads and warns if it
 * is missing), so it neither needs nor disturbs what the agent loads, and a
 * kernel that refuses it fails nothing but this.
 * bpf_object__load() rather than the skeleton's load: libbpf 1.1's
 * bpf_object__load_skeleton() re-mmaps every mmapable map, created or not,
 * and fails on the ones left uncreated.
 */
#include "discovery_iter.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sockwarden.h"
#include "sockwarden.skel.h"

#define REC_SIZE sizeof(struct sw_iter_listener)
/* the kernel fills at most 8 pages per read() (bpf_seq_read); records
 * gather up to a chunk before they are parsed, so a pass of many listeners
 * merges into the owner map a few times, not once per read */
#define READ_SIZE ((size_t)64 * 1024)
#define PARSE_CHUNK ((size_t)1024 * 1024)
/* room for the verifier's log of a refused program: its end says why */
#define VERIFIER_LOG ((size_t)64 * 1024)

/* Reads the iterator to its end, parsing as it goes; *records counts them. */
static int iter_pass(int link_fd, struct listener_list *ll, struct owner_map *om,
		     uint64_t *records)
{
	size_t have = 0, used = 0, cap = PARSE_CHUNK + READ_SIZE;
	unsigned char *buf;
	bool eof = false;
	int fd, err = 0;

	*records = 0;
	fd = bpf_iter_create(link_fd);
	if (fd < 0)
		return -errno;
	buf = malloc(cap);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	while (!eof) {
		ssize_t n = read(fd, buf + have, cap - have);

		if (n < 0) {
			/* EAGAIN: 1M objects visited without output; the
			 * position has moved on, so reading again continues */
			if (errno == EAGAIN || errno == EINTR)
				continue;
			err = -errno;
			break;
		}
		eof = n == 0;
		have += (size_t)n;
		if (!eof && have < PARSE_CHUNK)
			continue;
		err = iter_records_parse(buf, have, ll, om, &used);
		*records += used / REC_SIZE;
		if (err)
			break;
		/* a record split between two reads waits for its rest */
		memmove(buf, buf + used, have - used);
		have -= used;
		if (eof && have)
			err = -EBADMSG; /* a record cut short: not a whole pass */
	}
	free(buf);
	close(fd);
	return err;
}

static int cmp_pid(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;

	return (x > y) - (x < y);
}

struct holder {
	pid_t pid;
	bool alive;
	struct owner o;
};

static int cmp_holder(const void *a, const void *b)
{
	return cmp_pid(&((const struct holder *)a)->pid, &((const struct holder *)b)->pid);
}

/*
 * owner_read() once per distinct holder, merged into each of its entries:
 * /proc's comm, uid, gid, exe and script for a process still there; the
 * record's comm and uid for one gone since. The namespaces and the cgroup
 * stay the kernel's. Returns the number of distinct holders, or -ENOMEM.
 */
static long owners_fill(struct owner_map *om)
{
	struct holder *h;
	size_t n = 0;

	if (!om->n)
		return 0;
	h = calloc(om->n, sizeof(*h));
	if (!h)
		return -ENOMEM;
	for (size_t i = 0; i < om->n; i++)
		h[i].pid = om->v[i].o.pid;
	qsort(h, om->n, sizeof(*h), cmp_holder);
	for (size_t i = 0; i < om->n; i++)
		if (n == 0 || h[i].pid != h[n - 1].pid)
			h[n++].pid = h[i].pid;
	for (size_t i = 0; i < n; i++)
		h[i].alive = owner_read(h[i].pid, &h[i].o);
	for (size_t i = 0; i < om->n; i++) {
		struct owner *o = &om->v[i].o;
		const struct holder *found = bsearch(&(struct holder){ .pid = o->pid }, h, n,
						     sizeof(*h), cmp_holder);
		uint32_t mntns = o->mntns_ino;
		uint64_t cgroup = o->cgroup_id;

		if (!found || !found->alive)
			continue; /* gone: the record's comm and uid stand */
		*o = found->o;
		o->mntns_ino = mntns;
		o->cgroup_id = cgroup;
	}
	free(h);
	return (long)n;
}

int discovery_iter_read(int link_fd, struct listener_list *ll, struct owner_map *om,
			struct discovery_stats *st)
{
	size_t listeners0 = ll->n;
	uint64_t records = 0;
	long holders;
	int err;

	/* the parser keeps om in owner_map_find()'s (socket inode, pid) order */
	err = iter_pass(link_fd, ll, om, &records);
	if (err)
		return err;
	holders = owners_fill(om);
	if (holders < 0)
		return (int)holders;
	if (st) {
		st->listeners = ll->n - listeners0;
		st->processes = (uint64_t)holders;
		st->fds = records;
	}
	return 0;
}

/* The last non-empty line of the verifier's log: where it stopped, and why. */
static const char *log_last_line(char *log)
{
	char *end = log + strnlen(log, VERIFIER_LOG - 1), *start;

	while (end > log && (end[-1] == '\n' || end[-1] == ' '))
		*--end = 0;
	start = end;
	while (start > log && start[-1] != '\n')
		start--;
	return start;
}

static const char *load_error(int err)
{
	switch (err) {
	case -EPERM:
	case -EACCES:
		return "not permitted (needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN)";
	case -ESRCH:
	case -ENOENT:
		return "the kernel lacks a type or function it needs (iter/task_file is 5.8+)";
	default:
		return strerror(-err);
	}
}

int iter_source_open(struct iter_source *s, char *why, size_t whylen)
{
	struct listener_list ll = { 0 };
	struct owner_map om = { 0 };
	struct bpf_program *prog, *iter;
	struct bpf_map *map;
	uint64_t records;
	char *log;
	int err;

	memset(s, 0, sizeof(*s));
	if (access("/sys/kernel/btf/vmlinux", R_OK) != 0) {
		snprintf(why, whylen, "the kernel has no BTF (/sys/kernel/btf/vmlinux)");
		return -ENOTSUP;
	}
	s->skel = sockwarden_bpf__open();
	if (!s->skel) {
		err = -errno;
		snprintf(why, whylen, "opening the BPF object failed: %s", strerror(-err));
		return err;
	}
	iter = s->skel->progs.discover__task_file;
	bpf_object__for_each_program(prog, s->skel->obj)
		bpf_program__set_autoload(prog, prog == iter);
	/* every map off but the object's read-only globals: libbpf binds
	 * those to each program it loads and warns when it cannot */
	bpf_object__for_each_map(map, s->skel->obj)
		bpf_map__set_autocreate(map, map == s->skel->maps.rodata);
	log = calloc(1, VERIFIER_LOG);
	if (log)
		bpf_program__set_log_buf(iter, log, VERIFIER_LOG);
	err = bpf_object__load(s->skel->obj);
	if (err) {
		const char *line = log ? log_last_line(log) : "";

		if (line[0])
			snprintf(why, whylen, "iter/task_file did not load: %s (%s)",
				 load_error(err), line);
		else
			snprintf(why, whylen, "iter/task_file did not load: %s", load_error(err));
		free(log);
		goto fail;
	}
	free(log); /* libbpf reads it during the load only */
	s->link = bpf_program__attach_iter(iter, NULL);
	if (!s->link) {
		err = -errno;
		snprintf(why, whylen, "iter/task_file loaded but did not attach: %s",
			 strerror(-err));
		goto fail;
	}
	err = iter_pass(bpf_link__fd(s->link), &ll, &om, &records);
	listener_list_free(&ll);
	owner_map_free(&om);
	if (err) {
		snprintf(why, whylen, "iter/task_file attached but a pass failed: %s",
			 err == -EBADMSG ? "records it cannot have written" : strerror(-err));
		goto fail;
	}
	return 0;
fail:
	iter_source_close(s);
	return err;
}

int iter_source_read_pid(struct iter_source *s, pid_t pid, struct listener_list *ll,
			 struct owner_map *om)
{
	union bpf_iter_link_info info;
	struct bpf_link *link;
	uint64_t records;
	int err;

	if (!s->skel)
		return -EBADF;
	/* Linux 6.1+: the kernel walks this process's files alone */
	memset(&info, 0, sizeof(info));
	info.task.pid = (__u32)pid;
	{
		LIBBPF_OPTS(bpf_iter_attach_opts, opts, .link_info = &info,
			    .link_info_len = sizeof(info));

		link = bpf_program__attach_iter(s->skel->progs.discover__task_file, &opts);
	}
	if (!link) {
		struct listener_list all = { 0 };
		struct owner_map all_om = { 0 };

		/* a kernel without task parameters (5.8 - 6.0): a whole pass,
		 * of which this process's part is kept */
		err = iter_pass(bpf_link__fd(s->link), &all, &all_om, &records);
		for (size_t i = 0; !err && i < all_om.n; i++) {
			const struct owner_entry *oe = &all_om.v[i];

			if (oe->o.pid != pid)
				continue;
			for (size_t j = 0; !err && j < all.n; j++)
				if (all.v[j].sock_ino == oe->sock_ino)
					err = listener_list_append(ll, &all.v[j]);
			if (!err)
				err = owner_map_merge(om, &(struct owner_map){
					.v = (struct owner_entry *)oe, .n = 1, .cap = 1 });
		}
		listener_list_free(&all);
		owner_map_free(&all_om);
		return err;
	}
	err = iter_pass(bpf_link__fd(link), ll, om, &records);
	bpf_link__destroy(link);
	if (!err && !ll->n && !process_alive(pid))
		err = -ESRCH;
	return err;
}

int iter_source_link_fd(const struct iter_source *s)
{
	return s->link ? bpf_link__fd(s->link) : -1;
}

void iter_source_close(struct iter_source *s)
{
	bpf_link__destroy(s->link);
	sockwarden_bpf__destroy(s->skel);
	s->link = NULL;
	s->skel = NULL;
}
