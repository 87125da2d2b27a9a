/*
 * The state file (a sink): the agent's status document, kept where
 * `sockwarden status` finds it when no agent answers. Uses the shared room
 * only; the document itself is built by the agent (agent/status.c).
 */
#include "state_file.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "shared/discovery.h"
#include "shared/paths.h"

/* ----- the writer ----- */

static int mkdir_parent(const char *file)
{
	char dir[SW_PATH_MAX];

	if (!path_dirname(file, dir, sizeof(dir)))
		return -EINVAL;
	if (mkdir(dir, 0755) != 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int state_writer_open(struct state_writer *w, const char *file, int *previous_pid)
{
	json_t *old;
	int rc;

	memset(w, 0, sizeof(*w));
	*previous_pid = 0;
	if (file[0] != '/')
		return -EINVAL;
	rc = mkdir_parent(file);
	if (rc)
		return rc;
	old = json_load_file(file, 0, NULL);
	if (old) {
		int pid = (int)json_integer_value(json_object_get(old, "pid"));

		/* only one agent runs (it holds @sockwarden): a writer that is
		 * gone crashed, and its file is this agent's now */
		if (pid && pid != getpid() && !process_alive(pid))
			*previous_pid = pid;
		json_decref(old);
	}
	w->file = strdup(file);
	return w->file ? 0 : -ENOMEM;
}

void state_writer_close(struct state_writer *w)
{
	free(w->file);
	w->file = NULL;
}

void state_mark_dirty(struct state_writer *w, uint64_t now_ns)
{
	if (!w->file || w->dirty)
		return;
	w->dirty = true;
	w->dirty_since_ns = now_ns;
}

uint64_t state_next_deadline(const struct state_writer *w)
{
	uint64_t d;

	if (!w->file || !w->dirty)
		return UINT64_MAX;
	/* debounced: a burst of changes is one write, at most one per period */
	d = w->last_write_ns + STATE_DEBOUNCE_NS;
	return d > w->dirty_since_ns ? d : w->dirty_since_ns;
}

int state_write(struct state_writer *w, json_t *doc, uint64_t now_ns, bool force)
{
	char tmp[SW_PATH_MAX + 32];
	int rc = 0;

	if (!w->file || (!force && (!w->dirty || now_ns < state_next_deadline(w))))
		return 0;
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", w->file, (int)getpid());
	if (json_dump_file(doc, tmp, JSON_INDENT(1) | JSON_REAL_PRECISION(9)) != 0 ||
	    rename(tmp, w->file) != 0) {
		rc = errno ? -errno : -EIO;
		unlink(tmp);
		w->write_errors++;
	} else {
		w->writes++;
	}
	w->dirty = false;
	w->last_write_ns = now_ns;
	return rc;
}
