/*
 * The parser of discovery's iterator records (struct sw_iter_listener,
 * bpf/sockwarden.h): bytes in, listeners and owners out. Pure: no kernel, no
 * libbpf, so the unit test runs it on hand-made buffers; discovery_iter.c
 * feeds it what read() returns.
 *
 * A call sorts small keys of its records, not the records or the owner
 * entries (over 500 bytes each): the new owners are merged into the sorted
 * owner map from its end, so a call costs O(k log k) for k records plus the
 * entries it moves, and nothing when the new sockets sort after the old
 * ones (the common case: inodes grow with time, fds in a process too).
 */
#include "discovery_iter.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "sockwarden.h"

/* What bpf/iter.bpf.c can write; anything else is a stream we misread. */
static bool record_valid(const struct sw_iter_listener *r)
{
	bool bound_path = r->name_len > 0 && r->name[0] != 0;

	if (r->magic != SW_ITER_MAGIC || r->name_len > SW_SUN_PATH_LEN)
		return false;
	if (r->sock_ino == 0 || r->tgid == 0 || r->tgid > (uint32_t)INT32_MAX)
		return false;
	/* only stream and seqpacket sockets can listen */
	if (r->type != SOCK_STREAM && r->type != SOCK_SEQPACKET)
		return false;
	/* a bound file belongs to a path name only */
	if (!bound_path && (r->vfs_ino || r->vfs_dev || r->vfs_nlink))
		return false;
	if (!memchr(r->comm, 0, sizeof(r->comm)))
		return false;
	for (size_t i = r->name_len; i < sizeof(r->name); i++)
		if (r->name[i])
			return false;
	return true;
}

/* A record of this call by (socket inode, pid), owner_map_find()'s order. */
struct rec_key {
	uint64_t sock_ino;
	pid_t pid;
	uint32_t idx; /* the record's place in the call's buffer */
};

static int key_order(uint64_t ia, pid_t pa, uint64_t ib, pid_t pb)
{
	if (ia != ib)
		return ia < ib ? -1 : 1;
	return (pa > pb) - (pa < pb);
}

static int cmp_rec_key(const void *a, const void *b)
{
	const struct rec_key *x = a, *y = b;
	int c = key_order(x->sock_ino, x->pid, y->sock_ino, y->pid);

	return c ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

/* Whether pid (or, pid < 0, anyone) holds sock_ino in om. */
static bool owner_known(const struct owner_map *om, uint64_t sock_ino, pid_t pid)
{
	size_t n;
	const struct owner_entry *run = owner_map_find(om, sock_ino, &n);

	while (n) { /* the run is sorted by pid */
		size_t mid = n / 2;

		if (pid < 0 || run[mid].o.pid == pid)
			return true;
		if (run[mid].o.pid < pid) {
			run += mid + 1;
			n -= mid + 1;
		} else {
			n = mid;
		}
	}
	return false;
}

static void record_at(const unsigned char *buf, uint32_t idx, struct sw_iter_listener *r)
{
	/* buf need not be aligned */
	memcpy(r, buf + (size_t)idx * sizeof(*r), sizeof(*r));
}

static int listener_append(struct listener_list *ll, const struct sw_iter_listener *r)
{
	struct unix_listener l;

	memset(&l, 0, sizeof(l));
	l.sock_ino = r->sock_ino;
	l.vfs_dev = kdev_to_dev(r->vfs_dev);
	l.vfs_ino = r->vfs_ino;
	l.vfs_nlink = r->vfs_nlink;
	l.backlog = r->backlog;
	l.max_backlog = r->max_backlog;
	l.type = (uint8_t)r->type;
	l.state = TCP_LISTEN_STATE;
	l.name_len = r->name_len;
	memcpy(l.name, r->name, r->name_len);
	l.netns_ino = r->netns_ino;
	return listener_list_append(ll, &l);
}

static void owner_fill(struct owner_entry *e, const struct sw_iter_listener *r)
{
	memset(e, 0, sizeof(*e));
	e->sock_ino = r->sock_ino;
	e->o.pid = (pid_t)r->tgid;
	e->o.uid = r->uid;
	memcpy(e->o.comm, r->comm, sizeof(e->o.comm)); /* NUL terminated: checked */
	e->o.mntns_ino = r->mntns_ino;
	e->o.cgroup_id = r->cgroup_id;
}

/*
 * Adds the owners named by keys[0..n) (sorted, none in om yet) to om, in
 * order: om grows once, then a merge from the end moves each old entry
 * that sorts after a new one exactly once.
 */
static int owners_merge(struct owner_map *om, const unsigned char *buf,
			const struct rec_key *keys, size_t n)
{
	size_t i = om->n, j = n, k = om->n + n;

	if (k > om->cap) {
		struct owner_entry *nv = reallocarray(om->v, k, sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		om->v = nv;
		om->cap = k;
	}
	while (j > 0) {
		const struct rec_key *key = &keys[j - 1];

		if (i > 0 && key_order(om->v[i - 1].sock_ino, om->v[i - 1].o.pid,
				       key->sock_ino, key->pid) > 0) {
			om->v[--k] = om->v[--i];
		} else {
			struct sw_iter_listener r;

			record_at(buf, key->idx, &r);
			owner_fill(&om->v[--k], &r);
			j--;
		}
	}
	om->n += n;
	return 0;
}

/*
 * A listener is new when nobody holds its socket yet: ll and om grow
 * together, so the sorted owner map is the index of both.
 */
int iter_records_parse(const void *buf, size_t len, struct listener_list *ll,
		       struct owner_map *om, size_t *consumed)
{
	size_t max = len / sizeof(struct sw_iter_listener), n = 0, fresh = 0;
	struct rec_key *keys;
	bool bad = false;
	int err = 0;

	_Static_assert(sizeof(((struct owner *)0)->comm) == SW_COMM_LEN, "comm sizes agree");
	_Static_assert(sizeof(((struct unix_listener *)0)->name) == SW_SUN_PATH_LEN,
		       "sun_path sizes agree");

	*consumed = 0;
	if (!max)
		return 0;
	if (max > UINT32_MAX)
		max = UINT32_MAX;
	keys = calloc(max, sizeof(*keys));
	if (!keys)
		return -ENOMEM;
	/* the whole records, up to the first that is not one */
	for (; n < max; n++) {
		struct sw_iter_listener r;

		record_at(buf, (uint32_t)n, &r);
		if (!record_valid(&r)) {
			bad = true; /* the ones before it still count */
			break;
		}
		keys[n] = (struct rec_key){ r.sock_ino, (pid_t)r.tgid, (uint32_t)n };
	}
	qsort(keys, n, sizeof(*keys), cmp_rec_key);
	/* each socket once: a listener from its first record, if om has none;
	 * each (socket, holder) once: an owner, if om has none */
	for (size_t i = 0; i < n && !err;) {
		size_t end = i + 1, first = i;
		bool listed = owner_known(om, keys[i].sock_ino, -1);

		while (end < n && keys[end].sock_ino == keys[i].sock_ino) {
			if (keys[end].idx < keys[first].idx)
				first = end;
			end++;
		}
		if (!listed) {
			struct sw_iter_listener r;

			record_at(buf, keys[first].idx, &r);
			err = listener_append(ll, &r);
		}
		for (size_t k = i; k < end; k++)
			if ((k == i || keys[k].pid != keys[k - 1].pid) &&
			    (!listed || !owner_known(om, keys[k].sock_ino, keys[k].pid)))
				keys[fresh++] = keys[k];
		i = end;
	}
	if (!err)
		err = owners_merge(om, buf, keys, fresh);
	free(keys);
	*consumed = n * sizeof(struct sw_iter_listener);
	return err ? err : bad ? -EBADMSG : 0;
}
