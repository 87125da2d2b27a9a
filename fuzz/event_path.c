/* libFuzzer: the event encoder on arbitrary path bytes (user/shared/events.c). The
 * event must always serialise to valid JSON, and a path that is not UTF-8
 * must come with its exact bytes in path_hex. */
#include <assert.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shared/events.h"
#include "shared/paths.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct event_env env;
	json_t *ev = json_object(), *back;
	char *s;

	event_set_path(ev, "path", data, size);
	s = json_dumps(ev, JSON_COMPACT);
	assert(s);
	back = json_loads(s, 0, NULL);
	assert(back);
	if (!utf8_valid(data, size) && size && data[0]) {
		const char *hex = json_string_value(json_object_get(back, "path_hex"));

		assert(hex && strlen(hex) == 2 * size);
	}
	(void)env;
	json_decref(back);
	json_decref(ev);
	free(s);
	return 0;
}
