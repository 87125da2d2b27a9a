/*
 * The host as probe and doctor see it: every AF_UNIX socket sock_diag
 * reports and the processes that hold them, loaded once per command.
 */
#include "host_view.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "shared/discovery_source.h"

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

	return a < b ? -1 : a > b;
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

int host_view_load(struct host_view *h)
{
	struct discovery_source src;
	struct listener_list rest = {0};
	size_t listeners;
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
	/* and the sockets bound but not listening (probe tells them apart), of
	 * the own network namespace, with their holders */
	err = discovery_dump(&rest, ~(1u << TCP_LISTEN_STATE));
	for (size_t i = 0; !err && i < rest.n; i++)
		err = listener_list_append(&h->ll, &rest.v[i]);
	listener_list_free(&rest);
	if (!err && h->ll.n > listeners)
		err = owners_of_rest(h, listeners);
	if (err)
		return err;
	h->inos = calloc(h->ll.n ? h->ll.n : 1, sizeof(*h->inos));
	if (!h->inos)
		return -ENOMEM;
	for (size_t i = 0; i < h->ll.n; i++)
		h->inos[i] = h->ll.v[i].sock_ino;
	qsort(h->inos, h->ll.n, sizeof(*h->inos), cmp_u64);
	return 0;
}

void host_view_free(struct host_view *h)
{
	listener_list_free(&h->ll);
	owner_map_free(&h->om);
	free(h->inos);
}

json_t *owners_json(const struct host_view *h, uint64_t ino)
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

