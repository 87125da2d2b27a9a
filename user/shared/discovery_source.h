/*
 * Discovery's one code path: the agent's scans and the CLI's probe and
 * doctor list the host's listeners and their holders through a source, the
 * BPF iterator (discovery_iter.h: one pass in the kernel over every task's
 * files, every namespace) or procfs (sock_diag in every network namespace
 * plus the /proc/<pid>/fd walk). Both give the same lists; which one a run
 * uses, and why, is chosen once when the source opens.
 */
#ifndef SW_DISCOVERY_SOURCE_H
#define SW_DISCOVERY_SOURCE_H
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "discovery.h"
#include "discovery_iter.h"

struct discovery_source {
	enum discovery_mode chosen; /* DISCOVERY_ITER or DISCOVERY_PROCFS */
	char reason[256];           /* why that one */
	bool have_iter;
	struct iter_source iter;
};

/*
 * Opens the source `want` asks for: iter, procfs, or with auto the iterator
 * where its program loads and runs a pass, else procfs. 0; or -errno when a
 * forced iter cannot be had, with why in s->reason.
 */
int discovery_source_open(struct discovery_source *s, enum discovery_mode want);
void discovery_source_close(struct discovery_source *s);
static inline const char *discovery_source_name(const struct discovery_source *s)
{
	return discovery_mode_name(s->chosen);
}

/*
 * One pass: every listening AF_UNIX socket on the host, in every namespace,
 * into ll, and every process holding each into om (sorted by socket inode,
 * then pid; owner_map_find reads it). stats may be NULL. 0, or -errno: then
 * the lists are incomplete and must not be taken for the host.
 */
int discovery_source_list(struct discovery_source *s, struct listener_list *ll,
			  struct owner_map *om, struct discovery_stats *stats);
#endif
