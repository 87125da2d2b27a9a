/* libFuzzer: the config parser layer (user/shared/config.c: the line reader, the
 * inih handler and the value checks) on any bytes. A load either fails with
 * an error that names the file, or yields settings the agent can use: every
 * watch and section path absolute, normalised and short enough for sun_path,
 * an exec action with an absolute program. Everything the load allocated is
 * freed here, so LeakSanitizer sees any allocation the parser loses. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/config.h"
#include "shared/paths.h"

#define NAME "fuzz.conf"

static void path_ok(const char *p)
{
	char norm[SW_PATH_MAX];

	assert(p && p[0] == '/');
	assert(path_normalize(p, norm, sizeof(norm)) && strcmp(norm, p) == 0);
	assert(path_fits_sun_path(p));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct agent_options o = { .events = "-" };
	struct path_cfgs p = { 0 };
	char err[512] = "";
	FILE *f;
	int rc;

	/* fmemopen refuses an empty buffer; an empty file is the same as none */
	if (size == 0)
		return 0;
	f = fmemopen((void *)data, size, "r");
	assert(f);
	rc = config_load_stream(f, NAME, &o, &p, err, sizeof(err));
	fclose(f);
	if (rc != 0) {
		assert(rc == -1);
		assert(strncmp(err, NAME, strlen(NAME)) == 0);
	} else {
		for (size_t i = 0; i < o.n_watch; i++)
			path_ok(o.watch[i]);
		for (size_t i = 0; i < p.n; i++) {
			const struct path_cfg *pc = &p.v[i];

			path_ok(pc->path);
			if (pc->action == ACTION_EXEC)
				assert(pc->exec_argv[0] && pc->exec_argv[0][0] == '/');
			if (pc->action == ACTION_SIGNAL)
				assert(pc->signal > 0);
			if (pc->has_flap_max)
				assert(pc->flap_max >= 1 && pc->flap_max < FLAP_MAX_TRACKED);
		}
	}
	for (size_t i = 0; i < o.n_watch; i++)
		free(o.watch[i]);
	free(o.watch);
	path_cfgs_free(&p);
	return 0;
}
