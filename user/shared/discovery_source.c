/* Discovery's source: the iterator or procfs (discovery_source.h). */
#include "discovery_source.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* discovery_get()'s way to a socket of another network namespace: the
 * iterator scoped to one holder (no namespace to enter, no CAP_SYS_ADMIN). */
static int iter_pid_listeners(pid_t pid, struct listener_list *out, void *ctx)
{
	struct discovery_source *s = ctx;
	struct owner_map om = {0};
	int err = iter_source_read_pid(&s->iter, pid, out, &om);

	owner_map_free(&om);
	return err;
}

int discovery_source_open(struct discovery_source *s, enum discovery_mode want)
{
	char why[200] = "";
	int err;

	memset(s, 0, sizeof(*s));
	if (want == DISCOVERY_PROCFS) {
		s->chosen = DISCOVERY_PROCFS;
		snprintf(s->reason, sizeof(s->reason), "--discovery procfs");
		return 0;
	}
#ifdef SW_FAULT_POINTS
	/* the fault build (tests/integration/test_discovery.py): a kernel that
	 * refuses the iterator, on one that has it */
	if (getenv("SW_FAULT_NO_ITER")) {
		snprintf(why, sizeof(why), "iter/task_file did not load: refused by "
			 "SW_FAULT_NO_ITER");
		err = -EOPNOTSUPP;
	} else
#endif
	err = iter_source_open(&s->iter, why, sizeof(why));
	if (err == 0) {
		s->have_iter = true;
		s->chosen = DISCOVERY_ITER;
		discovery_set_foreign(iter_pid_listeners, s);
		snprintf(s->reason, sizeof(s->reason), "%s",
			 want == DISCOVERY_ITER ? "--discovery iter"
						: "the iter/task_file program loads and runs");
		return 0;
	}
	if (want == DISCOVERY_ITER) {
		s->chosen = DISCOVERY_ITER;
		snprintf(s->reason, sizeof(s->reason), "--discovery iter: %s", why);
		return err;
	}
	s->chosen = DISCOVERY_PROCFS;
	snprintf(s->reason, sizeof(s->reason), "the iterator cannot be used: %s", why);
	return 0;
}

void discovery_source_close(struct discovery_source *s)
{
	if (s->have_iter) {
		discovery_set_foreign(NULL, NULL);
		iter_source_close(&s->iter);
	}
	s->have_iter = false;
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

	return a < b ? -1 : a > b;
}

static int list_procfs(struct listener_list *ll, struct owner_map *om,
		       struct discovery_stats *stats)
{
	size_t n_netns;
	uint64_t *inos;
	int err = discovery_dump_all(ll, 1u << TCP_LISTEN_STATE, &n_netns);

	if (err)
		return err;
	inos = calloc(ll->n ? ll->n : 1, sizeof(*inos));
	if (!inos)
		return -ENOMEM;
	for (size_t i = 0; i < ll->n; i++)
		inos[i] = ll->v[i].sock_ino;
	qsort(inos, ll->n, sizeof(*inos), cmp_u64);
	err = discovery_owners(inos, ll->n, om, stats);
	free(inos);
	return err;
}

int discovery_source_list(struct discovery_source *s, struct listener_list *ll,
			  struct owner_map *om, struct discovery_stats *stats)
{
	struct discovery_stats scratch;
	int err;

	if (!stats)
		stats = &scratch;
	memset(stats, 0, sizeof(*stats));
	if (!s->have_iter)
		return list_procfs(ll, om, stats);
	err = discovery_iter_read(iter_source_link_fd(&s->iter), ll, om, stats);
	if (!err)
		discovery_note_foreign(ll, om);
	return err;
}
