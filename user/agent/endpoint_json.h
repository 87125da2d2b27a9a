/* One endpoint as the status document shows it (agent/endpoint_json.c). */
#ifndef SW_ENDPOINT_JSON_H
#define SW_ENDPOINT_JSON_H
#include <jansson.h>
#include <stdint.h>

#include "endpoints.h"

json_t *state_endpoint_json(const struct endpoint *e, int64_t real_minus_mono_ns,
			    uint64_t now_ns);
#endif
