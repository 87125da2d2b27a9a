/* The agent (`sockwarden run`): the event loop that ties the components. */
#ifndef SW_AGENT_H
#define SW_AGENT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bpf_attach.h"
#include "config.h"
#include "flapguard.h"

struct agent_options {
	char **watch;        /* --watch PATH (repeatable); none = host-wide */
	size_t n_watch;
	const char *events;  /* --events FILE, "-" = stdout */
	size_t events_queue; /* --events-queue BYTES; 0 = SINK_QUEUE_MAX_DEFAULT */
	enum attach_mode mode;
	uint64_t window_ns;  /* --window */
	uint64_t reconcile_ns; /* --reconcile */
	bool any_path;
	bool verbose;
	bool no_guard;          /* --no-guard */
	uint64_t heal_delay_ns; /* --heal-delay */
	struct flap_cfg flap;
	const char *control_path; /* --control */
	uint64_t rebind_timeout_ns; /* --rebind-timeout */
	struct control_limits control_limits; /* [agent] control_* keys */
	bool journal;             /* --journal */
	const char *state_file;   /* --state */
	const char *metrics_addr; /* --metrics HOST:PORT */
	const char *metrics_file; /* --metrics-file: a textfile-collector file */
	const char *config_file;  /* the file the settings came from, if any */
	struct path_cfgs paths;   /* per-path sections of the config */
};

int agent_run(const struct agent_options *opt);
#endif
