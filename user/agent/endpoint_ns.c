/*
 * Where an endpoint is (DESIGN §2 "Namespaces"): its key, the root its names
 * resolve beneath, its listener as the kernel has it, its holder's
 * namespaces and names for it, and the other name a namespace may have for
 * its file. The table itself is endpoints.c.
 */
#include "endpoints.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* What a foreign endpoint's names resolve through before a root is known:
 * nothing (an fd no call accepts). */
static const struct ns_root no_root = { .fd = -2 };
static const struct ns_root own_root = { .fd = NS_ROOT_OWN };

bool ep_key_format(uint32_t mntns, const char *path, char *out, size_t outlen)
{
	int n = mntns ? snprintf(out, outlen, "mnt:[%" PRIu32 "]%s", mntns, path)
		      : snprintf(out, outlen, "%s", path);

	return n >= 0 && (size_t)n < outlen;
}

bool ep_key_parse(const char *key, uint32_t *mntns, const char **path)
{
	unsigned long long v;
	char *end;

	if (key[0] == '/') {
		*mntns = 0;
		*path = key;
		return true;
	}
	if (strncmp(key, "mnt:[", 5) != 0)
		return false;
	errno = 0;
	v = strtoull(key + 5, &end, 10);
	if (errno || end == key + 5 || v == 0 || v > UINT32_MAX || end[0] != ']' ||
	    end[1] != '/')
		return false;
	*mntns = (uint32_t)v;
	*path = end + 1;
	return true;
}

struct endpoint *ep_lookup_key(const struct endpoint_table *t, const char *key)
{
	const char *path;
	uint32_t mntns;

	return ep_key_parse(key, &mntns, &path) ? ep_lookup(t, mntns, path) : NULL;
}

bool ep_attach_root(struct endpoint *e, pid_t holder)
{
	struct endpoint_table *t = e->table;

	if (e->root || !e->mntns)
		return true; /* the agent's own namespace needs none */
	if (!t || !t->roots)
		return false;
	e->root = ns_roots_get(t->roots, e->mntns, holder);
	return e->root != NULL;
}

const struct ns_root *ep_root(const struct endpoint *e)
{
	if (e->root)
		return e->root;
	return e->mntns ? &no_root : &own_root;
}

bool ep_path_is_listener(const struct endpoint *e, const struct unix_listener *l)
{
	struct stat st;

	if (ep_lstat(e, &st) != 0 || !S_ISSOCK(st.st_mode))
		return false;
	return st.st_ino == l->vfs_ino && st.st_dev == l->vfs_dev;
}

int ep_lstat(const struct endpoint *e, struct stat *st)
{
	return ns_lstat(ep_root(e), e->path, st);
}

/* What the table knows of where a listener runs: its network namespace, its
 * holder's mount namespace, and the holder's cgroup's names for it. */
void ep_note_holder(struct endpoint *e, const struct unix_listener *l, pid_t holder,
		    uint32_t holder_mntns)
{
	if (l->netns_ino)
		e->netns = l->netns_ino;
	if (holder_mntns)
		e->owner_mntns = holder_mntns;
	if (holder > 0 && holder != e->attr_pid) {
		memset(&e->attr, 0, sizeof(e->attr));
		attribution_of_pid(holder, &e->attr);
		e->attr_pid = holder;
	}
	if (e->mntns)
		ep_attach_root(e, holder);
}

int ep_listener_now(const struct endpoint *e, struct unix_listener *out)
{
	int rc = discovery_get(e->l.sock_ino, out);

	/* a network namespace no scan has named yet: asked through an owner */
	for (size_t i = 0; rc != 0 && i < e->n_owners; i++)
		rc = discovery_get_via(e->owners[i].pid, e->l.sock_ino, out);
	return rc;
}

bool ep_set_alias(struct endpoint *e, uint32_t mntns, const char *alias)
{
	char *copy;

	if (!alias) {
		free(e->alias);
		e->alias = NULL;
		e->alias_mntns = 0;
		return true;
	}
	if (e->alias && e->alias_mntns == mntns && strcmp(e->alias, alias) == 0)
		return true;
	copy = strdup(alias);
	if (!copy)
		return false;
	free(e->alias);
	e->alias = copy;
	e->alias_mntns = mntns;
	return true;
}

struct endpoint *ep_lookup_seen(const struct endpoint_table *t, uint32_t mntns, const char *path)
{
	struct endpoint *e = ep_lookup(t, mntns, path);

	if (e || !mntns)
		return e;
	e = ep_lookup(t, 0, path);
	if (e)
		return e;
	for (size_t b = 0; b < t->n_buckets; b++)
		for (e = t->buckets[b]; e; e = e->next)
			if (e->alias && e->alias_mntns == mntns && strcmp(e->alias, path) == 0)
				return e;
	return NULL;
}
