#include "endpoints.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "shared/clock.h"
#include "shared/paths.h"

/* The interned owner lists: one copy per distinct list of owners. */
struct ep_owner_set {
	struct ep_link link; /* first: the table's set of owner lists */
	size_t refs, n;
	struct owner o[];
};

/* The hash of (mntns, name[0..len)): a namespace's paths hash apart from
 * the same paths elsewhere. */
static uint64_t ns_name_hash(uint32_t mntns, const char *name, size_t len)
{
	uint64_t h = name_hash(name, len);

	return mntns ? (h ^ mntns) * 0x100000001b3ULL : h;
}

static uint64_t path_hash(uint32_t mntns, const char *path)
{
	return ns_name_hash(mntns, path, strlen(path));
}


int ep_table_init(struct endpoint_table *t, size_t n_buckets)
{
	memset(t, 0, sizeof(*t));
	t->n_buckets = n_buckets ? n_buckets : 4096;
	t->buckets = calloc(t->n_buckets, sizeof(*t->buckets)); // NOLINT(bugprone-sizeof-expression): an array of pointers
	if (!t->buckets || ep_intern_init(&t->dirs) || ep_intern_init(&t->dir_recs) ||
	    ep_intern_init(&t->owner_sets) || ep_intern_init(&t->counted_names) ||
	    ep_intern_init(&t->counted_inodes)) {
		free(t->buckets);
		free(t->dirs.buckets);
		free(t->dir_recs.buckets);
		free(t->owner_sets.buckets);
		free(t->counted_names.buckets);
		free(t->counted_inodes.buckets);
		memset(t, 0, sizeof(*t));
		return -ENOMEM;
	}
	return 0;
}


/* ----- interned directories ----- */

static void dir_put(struct endpoint_table *t, struct ep_dir_node *d)
{
	while (d && --d->refs == 0) {
		struct ep_dir_node *parent = d->parent;

		ep_intern_del(&t->dirs, &d->link);
		free(d);
		d = parent; /* the child's reference on it goes too */
	}
}

/* The node of the directory path[0..len) at `depth`, with a reference taken;
 * its ancestors are made as needed. NULL when out of memory. */
static struct ep_dir_node *dir_get(struct endpoint_table *t, uint32_t mntns, const char *path,
				   size_t len, unsigned depth)
{
	uint64_t h = ns_name_hash(mntns, path, len);
	struct ep_dir_node *d, *parent = NULL;

	for (struct ep_link *l = ep_intern_chain(&t->dirs, h); l; l = l->next) {
		d = (struct ep_dir_node *)l;
		if (l->hash == h && d->mntns == mntns && d->len == len &&
		    memcmp(d->path, path, len) == 0) {
			d->refs++;
			return d;
		}
	}
	if (depth > 0) {
		/* the parent: up to the slash before this directory's name */
		size_t plen = len;

		while (plen > 0 && path[plen - 1] != '/')
			plen--;
		if (plen > 1)
			plen--; /* "/run/app" -> "/run"; "/run" -> "/" */
		parent = dir_get(t, mntns, path, plen, depth - 1);
		if (!parent)
			return NULL;
	}
	d = calloc(1, sizeof(*d) + len + 1);
	if (!d) {
		dir_put(t, parent);
		return NULL;
	}
	d->path = (char *)(d + 1);
	memcpy(d->path, path, len);
	d->path[len] = 0;
	d->len = len;
	d->mntns = mntns;
	d->depth = depth;
	d->parent = parent;
	d->refs = 1;
	d->link.hash = h;
	ep_intern_add(&t->dirs, &d->link);
	return d;
}

/* The deepest directory an endpoint records of an absolute, normalised path:
 * the last of the ep_dir_path() prefixes, at most EP_MAX_DEPTH of them. */
static struct ep_dir_node *dir_chain_get(struct endpoint_table *t, uint32_t mntns,
					  const char *path)
{
	size_t len = 1, depth = 0;

	/* level i ends at the i-th slash after the leading one */
	for (size_t k = 1; path[k] && depth + 1 < EP_MAX_DEPTH; k++) {
		if (path[k] == '/') {
			len = k;
			depth++;
		}
	}
	return dir_get(t, mntns, path, len, (unsigned)depth);
}

const struct ep_dir_node *ep_dir_node_at(const struct endpoint *e, size_t i)
{
	const struct ep_dir_node *d = e->dir;

	if (!d || i > d->depth)
		return NULL;
	while (d->depth > i)
		d = d->parent;
	return d;
}

const struct ep_dir *ep_dir_at(const struct endpoint *e, size_t i)
{
	return i < e->n_dirs ? &e->dirs->d[i] : NULL;
}

/* ----- interned records of directories ----- */

static bool dir_same(const struct ep_dir *a, const struct ep_dir *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->uid == b->uid && a->gid == b->gid &&
	       a->mode == b->mode;
}

static uint64_t dirs_hash(const struct ep_dir *d, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ n;

	for (size_t i = 0; i < n; i++) {
		const uint64_t w[4] = { d[i].dev, d[i].ino,
					((uint64_t)d[i].uid << 32) | d[i].gid, d[i].mode };

		for (size_t k = 0; k < 4; k++) {
			h = (h ^ w[k]) * 0x100000001b3ULL;
			h ^= h >> 29;
		}
	}
	return h;
}

void ep_dir_rec_hold(struct ep_dir_rec *r)
{
	if (r)
		r->refs++;
}

void ep_dir_rec_put(struct endpoint_table *t, struct ep_dir_rec *r)
{
	if (!r || --r->refs)
		return;
	if (t)
		ep_intern_del(&t->dir_recs, &r->link);
	free(r);
}

/* The shared record of these n directories, with a reference taken; NULL
 * when out of memory. */
static struct ep_dir_rec *dir_rec_get(struct endpoint_table *t, const struct ep_dir *d,
				      size_t n)
{
	uint64_t h = dirs_hash(d, n);
	struct ep_dir_rec *r;

	for (struct ep_link *l = ep_intern_chain(&t->dir_recs, h); l; l = l->next) {
		size_t i = 0;

		r = (struct ep_dir_rec *)l;
		if (l->hash != h || r->n != n)
			continue;
		while (i < n && dir_same(&r->d[i], &d[i]))
			i++;
		if (i == n) {
			r->refs++;
			return r;
		}
	}
	r = calloc(1, sizeof(*r) + n * sizeof(*d));
	if (!r)
		return NULL;
	r->refs = 1;
	r->n = n;
	memcpy(r->d, d, n * sizeof(*d));
	r->link.hash = h;
	ep_intern_add(&t->dir_recs, &r->link);
	return r;
}

/* ----- interned owner lists ----- */

static uint64_t owners_hash(const struct owner *o, size_t n)
{
	const unsigned char *p = (const unsigned char *)o;
	size_t len = n * sizeof(*o), i = 0;
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; i + 8 <= len; i += 8) {
		uint64_t w;

		memcpy(&w, p + i, sizeof(w));
		h = (h ^ w) * 0x100000001b3ULL;
		h ^= h >> 29;
	}
	for (; i < len; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	return h;
}

static void owner_set_put(struct endpoint_table *t, const struct owner *o)
{
	struct ep_owner_set *s;

	if (!o)
		return;
	s = (struct ep_owner_set *)((uintptr_t)o - offsetof(struct ep_owner_set, o));
	if (--s->refs)
		return;
	if (t)
		ep_intern_del(&t->owner_sets, &s->link);
	free(s);
}

/* Another reference to a shared copy. */
static const struct owner *owner_set_ref(const struct owner *o)
{
	struct ep_owner_set *s;

	s = (struct ep_owner_set *)((uintptr_t)o - offsetof(struct ep_owner_set, o));
	s->refs++;
	return o;
}

/* The shared copy of these owners, with a reference taken; NULL when out of
 * memory. An endpoint of no table gets a copy of its own. */
static const struct owner *owner_set_get(struct endpoint_table *t, const struct owner *o,
					 size_t n)
{
	uint64_t h = owners_hash(o, n);
	struct ep_owner_set *s;

	for (struct ep_link *l = t ? ep_intern_chain(&t->owner_sets, h) : NULL; l; l = l->next) {
		s = (struct ep_owner_set *)l;
		if (l->hash == h && s->n == n && memcmp(s->o, o, n * sizeof(*o)) == 0) {
			s->refs++;
			return s->o;
		}
	}
	s = malloc(sizeof(*s) + n * sizeof(*o));
	if (!s)
		return NULL;
	s->link = (struct ep_link){ .hash = h };
	s->refs = 1;
	s->n = n;
	memcpy(s->o, o, n * sizeof(*o));
	if (t)
		ep_intern_add(&t->owner_sets, &s->link);
	return s->o;
}

/* ----- the table ----- */

void ep_release(struct endpoint *e)
{
	struct endpoint_table *t = e->table;

	owner_set_put(t, e->owners);
	owner_set_put(t, e->last_owner);
	e->owners = e->last_owner = NULL;
	e->n_owners = 0;
	ep_dir_rec_put(t, e->dirs);
	e->dirs = NULL;
	e->n_dirs = 0;
	flap_state_release(&e->flap);
	flap_state_release(&e->action_flap);
}

static void ep_free(struct endpoint_table *t, struct endpoint *e)
{
	if (t->on_remove)
		t->on_remove(e, t->on_remove_ctx);
	ep_release(e);
	dir_put(t, e->dir);
	if (t->roots && e->mntns)
		ns_root_put(t->roots, e->root);
	free(e->alias);
	free(e);
}

void ep_table_free(struct endpoint_table *t)
{
	for (size_t b = 0; b < t->n_buckets; b++) {
		struct endpoint *e = t->buckets[b];

		while (e) {
			struct endpoint *next = e->next;

			ep_free(t, e);
			e = next;
		}
	}
	free(t->buckets);
	free(t->dirs.buckets);
	free(t->owner_sets.buckets);
	ep_intern_free_all(&t->dir_recs); /* none are left: every holder has gone */
	ep_intern_free_all(&t->counted_names);
	ep_intern_free_all(&t->counted_inodes);
	memset(t, 0, sizeof(*t));
}

static struct endpoint *lookup_hashed(const struct endpoint_table *t, uint32_t mntns,
				      const char *path, uint64_t h)
{
	for (struct endpoint *e = t->buckets[h % t->n_buckets]; e; e = e->next)
		if (e->hash == h && e->mntns == mntns && strcmp(e->path, path) == 0)
			return e;
	return NULL;
}

struct endpoint *ep_lookup(const struct endpoint_table *t, uint32_t mntns, const char *path)
{
	return lookup_hashed(t, mntns, path, path_hash(mntns, path));
}

struct endpoint *ep_get_or_add(struct endpoint_table *t, uint32_t mntns, const char *path,
			       bool *added)
{
	char norm[SW_PATH_MAX], key[SW_PATH_MAX + 24];
	uint64_t h = path_hash(mntns, path);
	struct endpoint *e;
	size_t b, len, klen;

	if (added)
		*added = false;
	/* a path the table holds is normalised already (every scan asks for
	 * every listener's) */
	e = lookup_hashed(t, mntns, path, h);
	if (e)
		return e;
	if (!path_normalize(path, norm, sizeof(norm)) || strcmp(norm, path) != 0)
		return NULL;
	if (!ep_key_format(mntns, path, key, sizeof(key)))
		return NULL;
	/* the path and key live in the entry's own allocation */
	len = strlen(path);
	klen = mntns ? strlen(key) + 1 : 0;
	e = calloc(1, sizeof(*e) + len + 1 + klen);
	if (!e)
		return NULL;
	e->path = (char *)(e + 1);
	memcpy(e->path, path, len + 1);
	e->key = e->path;
	if (mntns) {
		memcpy(e->path + len + 1, key, klen);
		e->key = e->path + len + 1;
	}
	e->mntns = mntns;
	e->root = mntns ? NULL : (t->roots ? &t->roots->own : NULL);
	e->hash = h;
	e->table = t;
	e->dir = dir_chain_get(t, mntns, path);
	if (!e->dir) {
		free(e);
		return NULL;
	}
	b = (size_t)(h % t->n_buckets);
	e->next = t->buckets[b];
	t->buckets[b] = e;
	t->count++;
	if (added)
		*added = true;
	return e;
}

void ep_remove(struct endpoint_table *t, struct endpoint *e)
{
	struct endpoint **pp = &t->buckets[e->hash % t->n_buckets];

	for (; *pp; pp = &(*pp)->next) {
		if (*pp == e) {
			*pp = e->next;
			t->count--;
			ep_free(t, e);
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

size_t ep_foreach_under(const struct endpoint_table *t, uint32_t mntns, const char *abs,
			ep_visit_fn fn, void *ctx)
{
	size_t n = 0;
	struct endpoint *e;

	/* the socket path itself: one hash lookup per namespace it may be in */
	for (int pass = 0; pass < (mntns ? 2 : 1); pass++) {
		e = ep_lookup(t, pass ? 0 : mntns, abs);
		if (e) {
			fn(e, ctx);
			n++;
		}
	}
	/* a directory above socket paths (rename or removal of a tree), and the
	 * name a namespace has for a file the agent knows by another */
	for (size_t b = 0; b < t->n_buckets; b++)
		for (e = t->buckets[b]; e; e = e->next)
			if (((e->mntns == mntns || e->mntns == 0) && strcmp(e->path, abs) != 0 &&
			     path_has_prefix(e->path, abs)) ||
			    (mntns && e->alias && e->alias_mntns == mntns &&
			     path_has_prefix(e->alias, abs))) {
				fn(e, ctx);
				n++;
			}
	return n;
}

int ep_dir_index(const struct endpoint *e, uint64_t dev, uint64_t ino)
{
	for (size_t i = 0; i < e->n_dirs; i++)
		if (e->dirs->d[i].ino == ino && e->dirs->d[i].dev == dev)
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

void ep_fs_batch_begin(struct endpoint_table *t)
{
	t->look_gen += (t->look_gen & 1) ? 2 : 1; /* odd: open */
}

void ep_fs_batch_end(struct endpoint_table *t)
{
	if (t->look_gen & 1)
		t->look_gen++;
}

void ep_record_dirs(struct endpoint *e)
{
	struct ep_dir_node *chain[EP_MAX_DEPTH];
	struct ep_dir rec[EP_MAX_DEPTH];
	struct endpoint_table *t = e->table;
	uint64_t gen = t && (t->look_gen & 1) ? t->look_gen : 0;
	struct ep_dir_rec *r;
	struct stat st;
	size_t n = 0, i, n_rec;

	if (!t)
		return; /* an entry of no table records nothing */
	for (struct ep_dir_node *d = e->dir; d && n < EP_MAX_DEPTH; d = d->parent)
		chain[n++] = d;
	/* from "/" down; the first directory that is not one ends the walk */
	for (i = 0; i < n; i++) {
		struct ep_dir_node *d = chain[n - 1 - i];

		if (!gen || d->look_gen != gen) {
			d->look_gen = gen;
			/* never through a link: what is recorded is what the
			 * heal's walk, which follows none, will meet (and what a
			 * missing directory is re-made as) */
			d->look_ok = ns_lstat(ep_root(e), d->path, &st) == 0 &&
				     S_ISDIR(st.st_mode);
			if (d->look_ok)
				d->look = (struct ep_dir){ .dev = st.st_dev, .ino = st.st_ino,
					.uid = st.st_uid, .gid = st.st_gid,
					.mode = st.st_mode & 07777 };
		}
		if (!d->look_ok)
			break;
		rec[i] = d->look;
	}
	/* keep what an earlier look recorded for directories that are gone now */
	n_rec = i > e->n_dirs ? i : e->n_dirs;
	for (; i < n_rec; i++)
		rec[i] = e->dirs->d[i];
	for (i = 0; i < n_rec && i < e->n_dirs && dir_same(&rec[i], &e->dirs->d[i]); i++)
		;
	if (i == n_rec && n_rec == e->n_dirs)
		return; /* the same again: every scan of a steady host */
	r = dir_rec_get(t, rec, n_rec);
	if (!r)
		return; /* out of memory: the record from before stays */
	ep_dir_rec_put(t, e->dirs);
	e->dirs = r;
	e->n_dirs = n_rec;
}

void ep_record_file(struct endpoint *e, const struct stat *st)
{
	if (!S_ISSOCK(st->st_mode))
		return;
	e->file_uid = st->st_uid;
	e->file_gid = st->st_gid;
	e->file_mode = st->st_mode & 07777;
}

void ep_record_fs(struct endpoint *e)
{
	struct stat st;

	ep_record_dirs(e);
	if (ep_lstat(e, &st) == 0)
		ep_record_file(e, &st);
}

void ep_set_listener(struct endpoint *e, const struct unix_listener *l,
		     const struct owner *owners, size_t n_owners)
{
	struct endpoint_table *t = e->table;

	e->has_listener = true;
	e->l = *l;
	e->listener_set_ns = t && t->clock ? t->clock() : clock_mono_ns();
	if (n_owners > EP_MAX_OWNERS)
		n_owners = EP_MAX_OWNERS;
	/* a scan that could not attribute the socket keeps the last known owners */
	if (n_owners > 0) {
		/* the same owners as last time (every scan of a steady host) */
		if (e->n_owners != n_owners ||
		    memcmp(e->owners, owners, n_owners * sizeof(*owners)) != 0) {
			const struct owner *o = owner_set_get(t, owners, n_owners);

			/* out of memory: the owners known before stay */
			if (o) {
				owner_set_put(t, e->owners);
				e->owners = o;
				e->n_owners = n_owners;
			}
		}
		/* the first of them is the owner reported once the listener is
		 * gone: a reference to the same shared copy */
		if (e->owners && e->last_owner != e->owners) {
			owner_set_put(t, e->last_owner);
			e->last_owner = owner_set_ref(e->owners);
		}
	}
}

void ep_clear_listener(struct endpoint *e)
{
	e->has_listener = false;
	owner_set_put(e->table, e->owners);
	e->owners = NULL;
	e->n_owners = 0;
	e->lost = false;
	e->wedged = false;
	memset(&e->l, 0, sizeof(e->l));
}

