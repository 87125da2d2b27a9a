#include "endpoints.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "shared/clock.h"
#include "shared/paths.h"

static size_t bucket_of(const struct endpoint_table *t, const char *path)
{
	return (size_t)(name_hash(path, strlen(path)) % t->n_buckets);
}

int ep_table_init(struct endpoint_table *t, size_t n_buckets)
{
	t->n_buckets = n_buckets ? n_buckets : 4096;
	t->buckets = calloc(t->n_buckets, sizeof(*t->buckets)); // NOLINT(bugprone-sizeof-expression): an array of pointers
	t->count = 0;
	return t->buckets ? 0 : -ENOMEM;
}

void ep_table_free(struct endpoint_table *t)
{
	for (size_t b = 0; b < t->n_buckets; b++) {
		struct endpoint *e = t->buckets[b];

		while (e) {
			struct endpoint *next = e->next;

			free(e->path);
			free(e);
			e = next;
		}
	}
	free(t->buckets);
	memset(t, 0, sizeof(*t));
}

struct endpoint *ep_lookup(const struct endpoint_table *t, const char *path)
{
	for (struct endpoint *e = t->buckets[bucket_of(t, path)]; e; e = e->next)
		if (strcmp(e->path, path) == 0)
			return e;
	return NULL;
}

struct endpoint *ep_get_or_add(struct endpoint_table *t, const char *path,
			       bool *added)
{
	char norm[SW_PATH_MAX];
	struct endpoint *e;
	size_t b;

	if (added)
		*added = false;
	if (!path_normalize(path, norm, sizeof(norm)) || strcmp(norm, path) != 0)
		return NULL;
	e = ep_lookup(t, path);
	if (e)
		return e;
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->path = strdup(path);
	if (!e->path) {
		free(e);
		return NULL;
	}
	b = bucket_of(t, path);
	e->next = t->buckets[b];
	t->buckets[b] = e;
	t->count++;
	if (added)
		*added = true;
	return e;
}

void ep_remove(struct endpoint_table *t, struct endpoint *e)
{
	struct endpoint **pp = &t->buckets[bucket_of(t, e->path)];

	for (; *pp; pp = &(*pp)->next) {
		if (*pp == e) {
			*pp = e->next;
			t->count--;
			free(e->path);
			free(e);
			return;
		}
	}
}

struct endpoint *ep_find_sock_ino(const struct endpoint_table *t, uint64_t sock_ino)
{
	for (size_t b = 0; b < t->n_buckets; b++)
		for (struct endpoint *e = t->buckets[b]; e; e = e->next)
			if (e->has_listener && e->l.sock_ino == sock_ino)
				return e;
	return NULL;
}

void ep_foreach(const struct endpoint_table *t, ep_visit_fn fn, void *ctx)
{
	for (size_t b = 0; b < t->n_buckets; b++) {
		struct endpoint *e = t->buckets[b], *next;

		for (; e; e = next) {
			next = e->next; /* fn may remove e */
			fn(e, ctx);
		}
	}
}

size_t ep_foreach_under(const struct endpoint_table *t, const char *abs,
			ep_visit_fn fn, void *ctx)
{
	size_t n = 0;

	/* the socket path itself: one hash lookup */
	struct endpoint *e = ep_lookup(t, abs);

	if (e) {
		fn(e, ctx);
		n++;
	}
	/* a directory above socket paths (rename or removal of a tree) */
	for (size_t b = 0; b < t->n_buckets; b++)
		for (e = t->buckets[b]; e; e = e->next)
			if (strcmp(e->path, abs) != 0 && path_has_prefix(e->path, abs)) {
				fn(e, ctx);
				n++;
			}
	return n;
}

int ep_dir_index(const struct endpoint *e, uint64_t dev, uint64_t ino)
{
	for (size_t i = 0; i < e->n_dirs; i++)
		if (e->dirs[i].ino == ino && e->dirs[i].dev == dev)
			return (int)i;
	return -1;
}

bool ep_dir_path(const struct endpoint *e, size_t i, char *out, size_t outlen)
{
	const char *p = e->path;
	size_t len = 0;

	if (i == 0) {
		if (outlen < 2)
			return false;
		strcpy(out, "/");
		return true;
	}
	/* the end of the i-th component */
	for (size_t seen = 0; p[len]; len++) {
		if (p[len] == '/' && len > 0 && ++seen == i)
			break;
	}
	if (i > 0 && p[len] == 0)
		return false; /* that is the socket itself, not a directory */
	if (len >= outlen)
		return false;
	memcpy(out, p, len);
	out[len] = 0;
	return true;
}

void ep_record_fs(struct endpoint *e)
{
	char dir[SW_PATH_MAX];
	struct stat st;
	size_t i;

	for (i = 0; i < EP_MAX_DEPTH && ep_dir_path(e, i, dir, sizeof(dir)); i++) {
		if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
			break;
		e->dirs[i] = (struct ep_dir){ .dev = st.st_dev, .ino = st.st_ino,
			.uid = st.st_uid, .gid = st.st_gid, .mode = st.st_mode & 07777 };
	}
	/* keep what an earlier look recorded for directories that are gone now */
	if (i > e->n_dirs)
		e->n_dirs = i;
	if (lstat(e->path, &st) == 0 && S_ISSOCK(st.st_mode)) {
		e->file_uid = st.st_uid;
		e->file_gid = st.st_gid;
		e->file_mode = st.st_mode & 07777;
	}
}

void ep_set_listener(struct endpoint *e, const struct unix_listener *l,
		     const struct owner *owners, size_t n_owners)
{
	e->has_listener = true;
	e->l = *l;
	e->listener_set_ns = clock_mono_ns();
	if (n_owners > EP_MAX_OWNERS)
		n_owners = EP_MAX_OWNERS;
	/* a scan that could not attribute the socket keeps the last known owners */
	if (n_owners > 0) {
		memcpy(e->owners, owners, n_owners * sizeof(*owners));
		e->n_owners = n_owners;
		e->last_owner = owners[0];
		e->have_last_owner = true;
	}
}

void ep_clear_listener(struct endpoint *e)
{
	e->has_listener = false;
	e->n_owners = 0;
	e->lost = false;
	e->wedged = false;
	memset(&e->l, 0, sizeof(e->l));
}
