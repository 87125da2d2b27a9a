/* The host's AF_UNIX sockets and their owners, for probe and doctor. */
#ifndef SW_HOST_VIEW_H
#define SW_HOST_VIEW_H
#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

#include "shared/discovery.h"

struct host_view {
	struct listener_list ll;
	struct owner_map om;
	uint64_t *inos; /* the sockets' inodes, sorted */
};

/* 0, or -errno of the sock_diag dump or the /proc walk. */
int host_view_load(struct host_view *h);
void host_view_free(struct host_view *h);
/* [{pid, comm, uid}] of the processes holding socket inode ino */
json_t *owners_json(const struct host_view *h, uint64_t ino);
/* One process holding socket inode ino, or 0. */
pid_t first_owner(const struct host_view *h, uint64_t ino);
#endif
