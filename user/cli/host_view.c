/*
 * The host as probe and doctor see it: every AF_UNIX socket sock_diag
 * reports and the processes that hold them, loaded once per command, and
 * the mount namespaces paths are resolved in.
 */
#include "host_view.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shared/attribution.h"
#include "shared/discovery_source.h"
#include "shared/nsroot.h"

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

	return a < b ? -1 : a > b;
}

static int cmp_file_id(const void *x, const void *y)
{
	const struct file_id *a = x, *b = y;

	if (a->dev != b->dev)
		return a->dev < b->dev ? -1 : 1;
	return a->ino < b->ino ? -1 : a->ino > b->ino;
}

/* Appends the owners of the sockets of ll from index `from` on, merged into
 * h->om in its (socket inode, pid) order. */
static int owners_of_rest(struct host_view *h, size_t from)
{
	struct owner_map more = {0};
	size_t n = h->ll.n - from;
	uint64_t *inos = calloc(n ? n : 1, sizeof(*inos));
	int err;

	if (!inos)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		inos[i] = h->ll.v[from + i].sock_ino;
	qsort(inos, n, sizeof(*inos), cmp_u64);
	err = discovery_owners(inos, n, &more, NULL);
	free(inos);
	if (!err && more.n)
		err = owner_map_merge(&h->om, &more);
	owner_map_free(&more);
	return err;
}

int host_view_load(struct host_view *h, bool every_netns)
{
	struct discovery_source src;
	struct listener_list rest = {0};
	size_t listeners, n_netns;
	uint32_t not_listening = ~(1u << TCP_LISTEN_STATE);
	int err;

	memset(h, 0, sizeof(*h));
	/* the listeners and their holders, in every namespace, from the same
	 * source the agent's scans use */
	err = discovery_source_open(&src, DISCOVERY_AUTO);
	if (!err)
		err = discovery_source_list(&src, &h->ll, &h->om, NULL);
	discovery_source_close(&src);
	if (err)
		return err;
	listeners = h->ll.n;
	/* and the sockets bound but not listening (probe tells them apart; a
	 * datagram socket's file is not stale), with their holders */
	err = every_netns ? discovery_dump_all(&rest, not_listening, &n_netns)
			  : discovery_dump(&rest, not_listening);
	for (size_t i = 0; !err && i < rest.n; i++)
		err = listener_list_append(&h->ll, &rest.v[i]);
	listener_list_free(&rest);
	if (!err && h->ll.n > listeners)
		err = owners_of_rest(h, listeners);
	if (err)
		return err;
	/* the /proc walk does not say the holder's mount namespace; the
	 * iterator does */
	for (size_t i = 0; i < h->om.n; i++)
		if (!h->om.v[i].o.mntns_ino)
			h->om.v[i].o.mntns_ino = ns_mntns_of(h->om.v[i].o.pid);
	h->inos = calloc(h->ll.n ? h->ll.n : 1, sizeof(*h->inos));
	h->files = calloc(h->ll.n ? h->ll.n : 1, sizeof(*h->files));
	if (!h->inos || !h->files)
		return -ENOMEM;
	for (size_t i = 0; i < h->ll.n; i++) {
		h->inos[i] = h->ll.v[i].sock_ino;
		if (h->ll.v[i].vfs_ino)
			h->files[h->n_files++] = (struct file_id){ h->ll.v[i].vfs_dev,
								   h->ll.v[i].vfs_ino };
	}
	qsort(h->inos, h->ll.n, sizeof(*h->inos), cmp_u64);
	qsort(h->files, h->n_files, sizeof(*h->files), cmp_file_id);
	return 0;
}

void host_view_free(struct host_view *h)
{
	listener_list_free(&h->ll);
	owner_map_free(&h->om);
	free(h->inos);
	free(h->files);
	memset(h, 0, sizeof(*h));
}

json_t *owners_json(const struct host_view *h, uint64_t ino, uint32_t mntns)
{
	json_t *arr = json_array();

	for (size_t i = 0; i < h->om.n; i++) {
		const struct owner *o = &h->om.v[i].o;
		json_t *j;

		if (h->om.v[i].sock_ino != ino)
			continue;
		j = json_object();
		json_object_set_new(j, "pid", json_integer(o->pid));
		json_object_set_new(j, "comm", json_string(o->comm));
		json_object_set_new(j, "uid", json_integer(o->uid));
		if (mntns && o->mntns_ino && o->mntns_ino != mntns)
			json_object_set_new(j, "mntns", json_integer(o->mntns_ino));
		json_array_append_new(arr, j);
	}
	return arr;
}

pid_t first_owner(const struct host_view *h, uint64_t ino)
{
	for (size_t i = 0; i < h->om.n; i++)
		if (h->om.v[i].sock_ino == ino)
			return h->om.v[i].o.pid;
	return 0;
}

size_t holder_namespaces(const struct host_view *h, uint64_t ino, struct ns_holder *out,
			 size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < h->om.n && n < max; i++) {
		const struct owner *o = &h->om.v[i].o;
		bool seen = false;

		if (h->om.v[i].sock_ino != ino)
			continue;
		for (size_t k = 0; k < n && !seen; k++)
			seen = out[k].mntns == o->mntns_ino;
		if (!seen)
			out[n++] = (struct ns_holder){ o->mntns_ino, o->pid };
	}
	return n;
}

bool host_view_binds(const struct host_view *h, uint64_t dev, uint64_t ino)
{
	struct file_id key = { dev, ino };

	return h->n_files &&
	       bsearch(&key, h->files, h->n_files, sizeof(key), cmp_file_id) != NULL;
}

int host_mount_namespaces(struct ns_holder **out, size_t *n)
{
	DIR *d = opendir("/proc");
	struct ns_holder *v = NULL;
	size_t cap = 0, len = 0;
	uint32_t self = ns_self_mntns();
	struct dirent *de;

	*out = NULL;
	*n = 0;
	if (!d)
		return -errno;
	v = calloc(cap = 16, sizeof(*v));
	if (!v) {
		closedir(d);
		return -ENOMEM;
	}
	v[len++] = (struct ns_holder){ self, getpid() };
	while ((de = readdir(d))) {
		char *end;
		long pid;
		uint32_t mntns;
		bool seen = false;

		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		pid = strtol(de->d_name, &end, 10);
		if (*end || pid <= 0)
			continue;
		mntns = ns_mntns_of((pid_t)pid);
		if (!mntns) /* gone, a zombie, or not ours to see */
			continue;
		for (size_t k = 0; k < len && !seen; k++)
			seen = v[k].mntns == mntns;
		if (seen)
			continue;
		if (len == cap) {
			struct ns_holder *nv = realloc(v, 2 * cap * sizeof(*v));

			if (!nv) {
				free(v);
				closedir(d);
				return -ENOMEM;
			}
			v = nv;
			cap *= 2;
		}
		v[len++] = (struct ns_holder){ mntns, (pid_t)pid };
	}
	closedir(d);
	*out = v;
	*n = len;
	return 0;
}

void ns_json_set(json_t *j, uint32_t mntns, uint32_t netns, pid_t pid)
{
	struct attribution a;

	if (mntns)
		json_object_set_new(j, "mntns", json_integer(mntns));
	if (netns)
		json_object_set_new(j, "netns", json_integer(netns));
	if (pid <= 0 || !attribution_of_pid(pid, &a))
		return;
	if (a.container_id[0]) {
		json_t *c = json_object();

		json_object_set_new(c, "id", json_string(a.container_id));
		if (a.runtime[0])
			json_object_set_new(c, "runtime", json_string(a.runtime));
		json_object_set_new(j, "container", c);
	}
	if (a.pod_uid[0])
		json_object_set_new(j, "pod", json_pack("{s:s}", "uid", a.pod_uid));
	if (a.unit[0])
		json_object_set_new(j, "unit", json_string(a.unit));
}

void ns_text(const json_t *j, char *out, size_t len)
{
	json_int_t mntns = json_integer_value(json_object_get(j, "mntns"));
	const char *id = json_string_value(
		json_object_get(json_object_get(j, "container"), "id"));
	const char *unit = json_string_value(json_object_get(j, "unit"));
	int n;

	out[0] = 0;
	if (!mntns || (uint32_t)mntns == ns_self_mntns())
		return;
	n = snprintf(out, len, "  namespace mnt:[%lld]", (long long)mntns);
	if (n < 0 || (size_t)n >= len)
		return;
	if (id)
		snprintf(out + n, len - (size_t)n, "  container %.12s", id);
	else if (unit)
		snprintf(out + n, len - (size_t)n, "  unit %s", unit);
}
