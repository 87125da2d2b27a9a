/* libFuzzer: the agent's control-message decoder (user/agent/control_codec.c) on any
 * bytes. A decoded request must be well formed: an op, an absolute path that
 * fits sun_path (but for status), a heal mode in range. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "agent/control.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ctl_request req;
	const char *word = control_decode((const char *)data, size, &req);

	if (!word) {
		assert(req.op[0]);
		/* status is the one op without a path */
		if (strcmp(req.op, "status") != 0)
			assert(req.path[0] == '/' && strlen(req.path) < sizeof(req.path));
		assert(req.heal <= HEAL_NOTIFY);
	}
	return 0;
}
