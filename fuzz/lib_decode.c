/* libFuzzer: libsockwarden's strict decoder of agent messages
 * (user/lib/codec.c) on any bytes. What it accepts must be within bounds. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sw_codec_msg m;

	if (sw_codec_decode((const char *)data, size, &m) == 0) {
		assert(strlen(m.path) <= SW_SOCKET_PATH_MAX);
		assert(strlen(m.reason) <= SW_MSG_MAX);
	}
	return 0;
}
