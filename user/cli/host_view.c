/*
 * The host as probe and doctor see it: every AF_UNIX socket sock_diag
 * reports and the processes that hold them, loaded once per command.
 */
#include "host_view.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

	return a < b ? -1 : a > b;
}

int host_view_load(struct host_view *h)
{
	int err;

	memset(h, 0, sizeof(*h));
	err = discovery_dump(&h->ll, ~0U);
	if (err)
		return err;
	h->inos = calloc(h->ll.n ? h->ll.n : 1, sizeof(*h->inos));
	if (!h->inos)
		return -ENOMEM;
	for (size_t i = 0; i < h->ll.n; i++)
		h->inos[i] = h->ll.v[i].sock_ino;
	qsort(h->inos, h->ll.n, sizeof(*h->inos), cmp_u64);
	return discovery_owners(h->inos, h->ll.n, &h->om, NULL);
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

