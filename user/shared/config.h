/*
 * The configuration file (DESIGN §6, sockwarden.conf(5)): INI parsed with
 * inih. Section [agent] holds the global settings, `[path /abs/path]`
 * sections per-path ones. Command-line flags override the file: main.c loads
 * the file into the options first and parses the flags over them.
 */
#ifndef SW_CONFIG_H
#define SW_CONFIG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define FLAP_MAX_TRACKED 64

/* The flap guard's settings (agent/flapguard.h applies them). */
struct flap_cfg {
	unsigned max_heals;   /* default 5; 0: the flap guard is off */
	uint64_t window_ns;   /* default 60 s */
	uint64_t backoff_ns;  /* first back-off, default 30 s */
	uint64_t backoff_max_ns; /* cap, default 10 min */
};

static inline void flap_cfg_default(struct flap_cfg *c)
{
	c->max_heals = 5;
	c->window_ns = 60ULL * 1000000000ULL;
	c->backoff_ns = 30ULL * 1000000000ULL;
	c->backoff_max_ns = 600ULL * 1000000000ULL;
}

/* How the kernel side attaches (DESIGN §7): auto picks fentry where it loads. */
enum attach_mode { MODE_AUTO = 0, MODE_FENTRY, MODE_TRACEPOINT };
const char *attach_mode_name(enum attach_mode m);
/* "auto", "fentry" or "tracepoint"; -EINVAL otherwise. */
int attach_mode_parse(const char *s, enum attach_mode *m);

/* Where discovery's listeners come from (DESIGN §2): auto picks the BPF
 * iterator where its program loads and runs, else procfs (sock_diag in every
 * network namespace plus the /proc/<pid>/fd walk). */
enum discovery_mode { DISCOVERY_AUTO = 0, DISCOVERY_ITER, DISCOVERY_PROCFS };
const char *discovery_mode_name(enum discovery_mode m);
/* "auto", "iter" or "procfs"; -EINVAL otherwise. */
int discovery_mode_parse(const char *s, enum discovery_mode *m);

#define CONFIG_PATH_DEFAULT "/etc/sockwarden/sockwarden.conf"
#define CONFIG_EXEC_ARGS_MAX 32

enum path_action { ACTION_NONE = 0, ACTION_SIGNAL, ACTION_EXEC };

/* Settings of one path; a field counts only when its `has_` flag is set. */
struct path_cfg {
	char path[108];
	bool heal;              /* default yes */
	enum path_action action;
	int signal;             /* action = signal */
	char *exec_argv[CONFIG_EXEC_ARGS_MAX + 1]; /* action = exec, NULL-terminated */
	bool has_window, has_flap_max, has_flap_window;
	uint64_t window_ns;
	unsigned flap_max;
	uint64_t flap_window_ns;
};

struct path_cfgs {
	struct path_cfg *v;
	size_t n;
	/* the [agent] strings the file set in the options (events, state, ...),
	 * owned here: freed by path_cfgs_free */
	char **strings;
	size_t n_strings;
};

/* The control server's limits, the [agent] control_* keys; a field left 0
 * takes its default (CONTROL_* in control.h). */
struct control_limits {
	unsigned max_connections;
	unsigned max_registrations;
	unsigned max_registrations_per_connection;
	uint64_t idle_timeout_ns;
};

/* The settings of `sockwarden run`: the config file, then the flags over it. */
struct agent_options;

/* Builds a run's options from scratch: the defaults, the config file, then
 * the command-line flags over it, as at start-up (main.c); 0, or -1 with
 * `err` naming the file, line and key. A reload calls it again. */
typedef int (*agent_options_build_fn)(void *ctx, struct agent_options *out, char *err,
				      size_t errlen);

struct agent_options {
	char **watch;        /* --watch PATH (repeatable); none = host-wide */
	size_t n_watch;
	const char *events;  /* --events FILE, "-" = stdout */
	size_t events_queue; /* --events-queue BYTES; 0 = SINK_QUEUE_MAX_DEFAULT */
	enum attach_mode mode;
	enum discovery_mode discovery; /* --discovery */
	uint64_t window_ns;  /* --window */
	uint64_t reconcile_ns; /* --reconcile */
	bool any_path;
	bool verbose;
	bool no_guard;          /* --no-guard */
	bool no_redirect;       /* --no-redirect */
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
	/* how SIGHUP rebuilds these options (NULL: it cannot) */
	agent_options_build_fn rebuild;
	void *rebuild_ctx;
};

/*
 * Loads `file` into opt (global keys) and paths (per-path sections). Returns
 * 0, or -1 with `err` naming the file, line and key of the first problem.
 * `must_exist`: a missing file is an error (it was named with --config).
 */
int config_load(const char *file, bool must_exist, struct agent_options *opt,
		struct path_cfgs *paths, char *err, size_t errlen);
/* The same from an open stream (the fuzzer feeds it memory); `file` names it
 * in errors. The stream stays open. */
int config_load_stream(FILE *f, const char *file, struct agent_options *opt,
		       struct path_cfgs *paths, char *err, size_t errlen);
void path_cfgs_free(struct path_cfgs *p);
/* Appends a normalised path to opt->watch; -ENOMEM. */
int agent_options_add_watch(struct agent_options *opt, const char *path);
const struct path_cfg *path_cfg_find(const struct path_cfgs *p, const char *path);
/* The flap settings of a path: its section's keys over the globals. Inline:
 * the healer and the actions use it without linking the parser. */
static inline struct flap_cfg path_cfg_flap(const struct path_cfg *pc,
					    const struct flap_cfg *global)
{
	struct flap_cfg fc = *global;

	if (pc && pc->has_flap_max)
		fc.max_heals = pc->flap_max;
	if (pc && pc->has_flap_window)
		fc.window_ns = pc->flap_window_ns;
	return fc;
}

/* Frees what the options own (the watch list, the config's strings and
 * sections) and zeroes them; the struct itself is the caller's. */
void agent_options_release(struct agent_options *o);
/* A copy of s owned by p (freed by path_cfgs_free); NULL stays NULL. */
const char *path_cfgs_keep_string(struct path_cfgs *p, const char *s);

/*
 * A reload (SIGHUP, config_reload.c): builds new options with `running->
 * rebuild`; on any error returns -1 with `err` naming the file, line and key,
 * and *next is left alone (the running options stay as they are). On success
 * *next holds the new options (the caller frees them with
 * agent_options_release + free), in which every setting that needs a restart
 * has its running value again; `restart_key` is told each such key whose
 * value the file or flags changed.
 */
int config_reload(const struct agent_options *running, struct agent_options **next,
		  void (*restart_key)(const char *key, void *ctx), void *ctx, char *err,
		  size_t errlen);

/* Parsers shared with the command line; false on a bad value. */
bool config_parse_seconds(const char *s, uint64_t *ns);
bool config_parse_bool(const char *s, bool *out);
/* "HUP", "SIGHUP" or a number; 0 when it is none of them. */
int config_parse_signal(const char *s);
const char *config_signal_name(int sig);
#endif
