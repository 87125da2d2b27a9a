/* One endpoint as the status document shows it (agent/endpoint_json.c). */
#ifndef SW_ENDPOINT_JSON_H
#define SW_ENDPOINT_JSON_H
#include <jansson.h>
#include <stdint.h>

#include "endpoints.h"

/* Where an endpoint is (DESIGN §5): mntns and netns, and the container,
 * pod or unit its holder's cgroup names; into any event or object. */
void endpoint_json_where(json_t *j, const struct endpoint *e);
/* A process object's namespace where it differs from the endpoint's. */
void endpoint_json_proc_ns(json_t *proc, const struct endpoint *e, uint32_t proc_mntns);
json_t *state_endpoint_json(const struct endpoint *e, int64_t real_minus_mono_ns,
			    uint64_t now_ns);
#endif
