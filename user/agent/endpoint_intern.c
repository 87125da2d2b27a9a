/*
 * The interned sets of the endpoint table (directories, records of them,
 * owner lists, the keys counted in the kernel's filters): chained hash
 * tables that double as they fill.
 */
#include "endpoints.h"

#include <errno.h>
#include <stdlib.h>

#define INTERN_BUCKETS_MIN 64

int ep_intern_init(struct ep_intern *s)
{
	s->n_buckets = INTERN_BUCKETS_MIN;
	s->count = 0;
	s->buckets = calloc(s->n_buckets, sizeof(*s->buckets)); // NOLINT(bugprone-sizeof-expression): an array of pointers
	return s->buckets ? 0 : -ENOMEM;
}

struct ep_link *ep_intern_chain(const struct ep_intern *s, uint64_t hash)
{
	return s->buckets[hash % s->n_buckets];
}

void ep_intern_add(struct ep_intern *s, struct ep_link *l)
{
	struct ep_link **nv;
	size_t nb = s->n_buckets * 2;

	l->next = s->buckets[l->hash % s->n_buckets];
	s->buckets[l->hash % s->n_buckets] = l;
	if (++s->count <= s->n_buckets)
		return;
	nv = calloc(nb, sizeof(*nv)); // NOLINT(bugprone-sizeof-expression): an array of pointers
	if (!nv)
		return; /* longer chains, still correct */
	for (size_t b = 0; b < s->n_buckets; b++) {
		struct ep_link *x = s->buckets[b], *next;

		for (; x; x = next) {
			next = x->next;
			x->next = nv[x->hash % nb];
			nv[x->hash % nb] = x;
		}
	}
	free(s->buckets);
	s->buckets = nv;
	s->n_buckets = nb;
}

void ep_intern_del(struct ep_intern *s, struct ep_link *l)
{
	struct ep_link **pp = &s->buckets[l->hash % s->n_buckets];

	for (; *pp; pp = &(*pp)->next) {
		if (*pp == l) {
			*pp = l->next;
			s->count--;
			return;
		}
	}
}

/* Frees a set whose entries are allocations of their own, link first. */
void ep_intern_free_all(struct ep_intern *s)
{
	for (size_t b = 0; b < s->n_buckets; b++) {
		struct ep_link *l = s->buckets[b], *next;

		for (; l; l = next) {
			next = l->next;
			free(l);
		}
	}
	free(s->buckets);
}
