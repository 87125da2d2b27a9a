#include "config.h"

#include <errno.h>
#include <ini.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clock.h"
#include "paths.h"

/* inih's section buffer (MAX_SECTION in ini.c): names are cut to one less */
#define INIH_SECTION_MAX 50

struct load_ctx {
	const char *file;
	struct agent_options *opt;
	struct path_cfgs *paths;
	char *err;
	size_t errlen;
	int line;
	bool failed;
	/* inih cuts section names at 50 bytes; a socket path may have 107: the
	 * reader keeps the whole name of the current section */
	char section[SW_PATH_MAX + 16];
};

bool config_parse_seconds(const char *s, uint64_t *ns)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || v <= 0 || v > 86400)
		return false;
	*ns = (uint64_t)(v * (double)NSEC_PER_SEC);
	return true;
}

bool config_parse_bool(const char *s, bool *out)
{
	static const char *yes[] = { "yes", "true", "on", "1" };
	static const char *no[] = { "no", "false", "off", "0" };

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return true;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return true;
		}
	}
	return false;
}

static const struct {
	const char *name;
	int sig;
} signals[] = {
	{ "HUP", SIGHUP }, { "INT", SIGINT }, { "QUIT", SIGQUIT }, { "TERM", SIGTERM },
	{ "USR1", SIGUSR1 }, { "USR2", SIGUSR2 }, { "KILL", SIGKILL }, { "CONT", SIGCONT },
	{ "STOP", SIGSTOP }, { "ALRM", SIGALRM }, { "WINCH", SIGWINCH },
};

int config_parse_signal(const char *s)
{
	char *end;
	long n;

	if (strncasecmp(s, "SIG", 3) == 0)
		s += 3;
	for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
		if (strcasecmp(s, signals[i].name) == 0)
			return signals[i].sig;
	n = strtol(s, &end, 10);
	if (*s && !*end && n > 0 && n < SIGRTMAX)
		return (int)n;
	return 0;
}

const char *config_signal_name(int sig)
{
	for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
		if (signals[i].sig == sig)
			return signals[i].name;
	return "signal";
}

static int fail(struct load_ctx *c, const char *section, const char *key, const char *fmt,
		const char *value)
{
	char what[256];

	snprintf(what, sizeof(what), fmt, value);
	if (c->line)
		snprintf(c->err, c->errlen, "%s:%d: [%s] %s: %s", c->file, c->line, section,
			 key, what);
	else
		snprintf(c->err, c->errlen, "%s: [%s] %s: %s", c->file, section, key, what);
	c->failed = true;
	return 0;
}

/* A string key's value: the copy is kept in c->paths, freed with it, as the
 * option may hold a literal default or a flag's argv string instead, and a
 * key that repeats replaces a copy still owned there. */
static int set_string(struct load_ctx *c, const char *section, const char *key,
		      const char *value, const char **field)
{
	struct path_cfgs *p = c->paths;
	char **v = realloc(p->strings, (p->n_strings + 1) * sizeof(*v));

	if (!v)
		return fail(c, section, key, "%s", "out of memory");
	p->strings = v;
	v[p->n_strings] = strdup(value);
	if (!v[p->n_strings])
		return fail(c, section, key, "%s", "out of memory");
	*field = v[p->n_strings++];
	return 1;
}

static bool parse_uint(const char *s, unsigned long lo, unsigned long hi, unsigned long *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || *s == '-' || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

static int agent_key(struct load_ctx *c, const char *section, const char *key, const char *value)
{
	struct agent_options *o = c->opt;
	unsigned long n;
	bool b;

	if (strcmp(key, "watch") == 0) {
		char norm[SW_PATH_MAX];

		if (!path_normalize(value, norm, sizeof(norm)))
			return fail(c, section, key, "'%s' is not an absolute path", value);
		if (!path_fits_sun_path(norm))
			return fail(c, section, key, "'%s' is longer than a socket path can be "
				    "(107 bytes)", value);
		if (agent_options_add_watch(o, norm) != 0)
			return fail(c, section, key, "%s", "out of memory");
	} else if (strcmp(key, "events") == 0) {
		return set_string(c, section, key, value, &o->events);
	} else if (strcmp(key, "journal") == 0) {
		if (!config_parse_bool(value, &o->journal))
			return fail(c, section, key, "'%s': expected yes or no", value);
	} else if (strcmp(key, "state") == 0) {
		return set_string(c, section, key, value, &o->state_file);
	} else if (strcmp(key, "metrics") == 0) {
		return set_string(c, section, key, value, &o->metrics_addr);
	} else if (strcmp(key, "metrics_file") == 0) {
		return set_string(c, section, key, value, &o->metrics_file);
	} else if (strcmp(key, "mode") == 0) {
		if (attach_mode_parse(value, &o->mode))
			return fail(c, section, key, "'%s': expected auto, fentry or tracepoint",
				    value);
	} else if (strcmp(key, "discovery") == 0) {
		if (discovery_mode_parse(value, &o->discovery))
			return fail(c, section, key, "'%s': expected auto, iter or procfs", value);
	} else if (strcmp(key, "window") == 0) {
		if (!config_parse_seconds(value, &o->window_ns))
			return fail(c, section, key, "'%s': expected seconds > 0", value);
	} else if (strcmp(key, "reconcile") == 0) {
		if (!config_parse_seconds(value, &o->reconcile_ns))
			return fail(c, section, key, "'%s': expected seconds > 0", value);
	} else if (strcmp(key, "any_path") == 0) {
		if (!config_parse_bool(value, &o->any_path))
			return fail(c, section, key, "'%s': expected yes or no", value);
	} else if (strcmp(key, "guard") == 0) {
		if (!config_parse_bool(value, &b))
			return fail(c, section, key, "'%s': expected yes or no", value);
		o->no_guard = !b;
	} else if (strcmp(key, "redirect") == 0) {
		if (!config_parse_bool(value, &b))
			return fail(c, section, key, "'%s': expected yes or no", value);
		o->no_redirect = !b;
	} else if (strcmp(key, "heal_delay_ms") == 0) {
		if (!parse_uint(value, 0, 60000, &n))
			return fail(c, section, key, "'%s': expected milliseconds 0..60000", value);
		o->heal_delay_ns = n * NSEC_PER_MSEC;
	} else if (strcmp(key, "flap_max") == 0) {
		if (!parse_uint(value, 0, FLAP_MAX_TRACKED - 1, &n))
			return fail(c, section, key, "'%s': expected 0..63 heals (0: off)", value);
		o->flap.max_heals = (unsigned)n;
	} else if (strcmp(key, "flap_window") == 0) {
		if (!config_parse_seconds(value, &o->flap.window_ns))
			return fail(c, section, key, "'%s': expected seconds > 0", value);
	} else if (strcmp(key, "control") == 0) {
		char norm[SW_PATH_MAX];

		if (!path_normalize(value, norm, sizeof(norm)) || !path_fits_sun_path(norm))
			return fail(c, section, key, "'%s': not a usable socket path", value);
		return set_string(c, section, key, norm, &o->control_path);
	} else if (strcmp(key, "rebind_timeout") == 0) {
		if (!config_parse_seconds(value, &o->rebind_timeout_ns))
			return fail(c, section, key, "'%s': expected seconds > 0", value);
	} else if (strcmp(key, "control_max_connections") == 0) {
		if (!parse_uint(value, 1, 65536, &n))
			return fail(c, section, key, "'%s': expected 1..65536 connections", value);
		o->control_limits.max_connections = (unsigned)n;
	} else if (strcmp(key, "control_max_registrations") == 0) {
		if (!parse_uint(value, 1, 1000000, &n))
			return fail(c, section, key, "'%s': expected 1..1000000 registrations",
				    value);
		o->control_limits.max_registrations = (unsigned)n;
	} else if (strcmp(key, "control_max_registrations_per_connection") == 0) {
		if (!parse_uint(value, 1, 65536, &n))
			return fail(c, section, key, "'%s': expected 1..65536 registrations",
				    value);
		o->control_limits.max_registrations_per_connection = (unsigned)n;
	} else if (strcmp(key, "control_idle_timeout") == 0) {
		if (!config_parse_seconds(value, &o->control_limits.idle_timeout_ns))
			return fail(c, section, key, "'%s': expected seconds > 0", value);
	} else {
		return fail(c, section, key, "%s", "unknown key (see sockwarden.conf(5))");
	}
	return 1;
}

/* Splits an exec line on blanks into arguments; no shell, no quoting. On
 * failure argv is left empty (all NULL): a later `exec =` of the same
 * section, or path_cfgs_free, frees what it holds. */
static bool split_exec(const char *value, char **argv, size_t max)
{
	char *copy = strdup(value), *save = NULL, *tok;
	size_t n = 0;
	bool ok = copy != NULL;

	for (tok = ok ? strtok_r(copy, " \t", &save) : NULL; tok;
	     tok = strtok_r(NULL, " \t", &save)) {
		if (n == max || !(argv[n] = strdup(tok))) {
			ok = false;
			break;
		}
		n++;
	}
	free(copy);
	if (ok && n > 0 && argv[0][0] == '/')
		return true;
	for (size_t i = 0; i < n; i++) {
		free(argv[i]);
		argv[i] = NULL;
	}
	return false;
}

static struct path_cfg *path_section(struct load_ctx *c, const char *path)
{
	struct path_cfgs *p = c->paths;
	struct path_cfg *v;

	for (size_t i = 0; i < p->n; i++)
		if (strcmp(p->v[i].path, path) == 0)
			return &p->v[i];
	v = realloc(p->v, (p->n + 1) * sizeof(*v));
	if (!v)
		return NULL;
	p->v = v;
	memset(&v[p->n], 0, sizeof(v[p->n]));
	if (strlen(path) >= sizeof(v[p->n].path))
		return NULL;
	memcpy(v[p->n].path, path, strlen(path) + 1);
	v[p->n].heal = true;
	return &v[p->n++];
}

static int path_key(struct load_ctx *c, const char *section, const char *key,
		    const char *value)
{
	const char *raw;

	/* the reader's whole name, when inih's is a cut of it: only then, as the
	 * reader also takes a multi-line value's "  [x]" continuation for a
	 * header, which inih does not */
	if (strlen(section) == INIH_SECTION_MAX - 1 &&
	    strncmp(c->section, section, strlen(section)) == 0)
		section = c->section;
	raw = section + 5; /* after "path " */
	char norm[SW_PATH_MAX];
	struct path_cfg *pc;
	unsigned long n;

	while (*raw == ' ')
		raw++;
	if (!path_normalize(raw, norm, sizeof(norm)) || strcmp(norm, raw) != 0)
		return fail(c, section, key, "'%s' is not an absolute, normalised path", raw);
	if (!path_fits_sun_path(norm))
		return fail(c, section, key, "'%s' is longer than a socket path can be (107 bytes)",
			    raw);
	pc = path_section(c, norm);
	if (!pc)
		return fail(c, section, key, "%s", "out of memory");
	if (strcmp(key, "heal") == 0) {
		if (!config_parse_bool(value, &pc->heal))
			return fail(c, section, key, "'%s': expected yes or no", value);
	} else if (strcmp(key, "action") == 0) {
		if (strcmp(value, "none") == 0)
			pc->action = ACTION_NONE;
		else if (strcmp(value, "signal") == 0)
			pc->action = ACTION_SIGNAL;
		else if (strcmp(value, "exec") == 0)
			pc->action = ACTION_EXEC;
		else
			return fail(c, section, key, "'%s': expected none, signal or exec", value);
	} else if (strcmp(key, "signal") == 0) {
		pc->signal = config_parse_signal(value);
		if (!pc->signal)
			return fail(c, section, key, "'%s': not a signal name or number", value);
	} else if (strcmp(key, "exec") == 0) {
		for (size_t i = 0; pc->exec_argv[i]; i++)
			free(pc->exec_argv[i]);
		memset(pc->exec_argv, 0, sizeof(pc->exec_argv));
		if (!split_exec(value, pc->exec_argv, CONFIG_EXEC_ARGS_MAX))
			return fail(c, section, key, "'%s': expected an absolute program path and "
				    "at most 32 arguments", value);
	} else if (strcmp(key, "window") == 0) {
		if (!config_parse_seconds(value, &pc->window_ns))
			return fail(c, section, key, "'%s': expected seconds > 0", value);
		pc->has_window = true;
	} else if (strcmp(key, "flap_max") == 0) {
		if (!parse_uint(value, 0, FLAP_MAX_TRACKED - 1, &n))
			return fail(c, section, key, "'%s': expected 0..63 heals (0: off)", value);
		pc->flap_max = (unsigned)n;
		pc->has_flap_max = true;
	} else if (strcmp(key, "flap_window") == 0) {
		if (!config_parse_seconds(value, &pc->flap_window_ns))
			return fail(c, section, key, "'%s': expected seconds > 0", value);
		pc->has_flap_window = true;
	} else {
		return fail(c, section, key, "%s", "unknown key (see sockwarden.conf(5))");
	}
	return 1;
}

static int on_line(void *user, const char *section, const char *key, const char *value)
{
	struct load_ctx *c = user;

	/* inih goes on after a handler error (Debian builds it with
	 * ini_stop_on_first_error off): the first error stands, and nothing
	 * after it is applied */
	if (c->failed)
		return 0;
	if (!key)
		return 1; /* a section header alone */
	if (strcmp(section, "agent") == 0)
		return agent_key(c, section, key, value);
	if (strncmp(section, "path ", 5) == 0)
		return path_key(c, section, key, value);
	return fail(c, section, key, "%s",
		    "unknown section: expected [agent] or [path /absolute/path]");
}

/* Settings that only make sense together: checked once the file is read. */
static bool paths_check(struct load_ctx *c)
{
	for (size_t i = 0; i < c->paths->n; i++) {
		const struct path_cfg *p = &c->paths->v[i];
		char section[160];

		snprintf(section, sizeof(section), "path %s", p->path);
		c->line = 0;
		if (p->action == ACTION_SIGNAL && !p->signal) {
			fail(c, section, "action", "%s", "signal needs a `signal =` key");
			return false;
		}
		if (p->action == ACTION_EXEC && !p->exec_argv[0]) {
			fail(c, section, "action", "%s", "exec needs an `exec =` key");
			return false;
		}
	}
	return true;
}

struct line_reader {
	FILE *f;
	struct load_ctx *c;
};

/* inih reads a line, then calls the handler for it: counting lines here
 * gives the handler the line number of the key it sees. */
static char *read_line(char *str, int num, void *stream)
{
	struct line_reader *r = stream;
	char *s = fgets(str, num, r->f);

	if (s) {
		const char *p = s + strspn(s, " \t");
		/* the first ']', where inih ends the name too */
		const char *end = strchr(p, ']');

		r->c->line++;
		if (*p == '[' && end) {
			size_t n = (size_t)(end - p - 1);

			if (n >= sizeof(r->c->section))
				n = sizeof(r->c->section) - 1;
			memcpy(r->c->section, p + 1, n);
			r->c->section[n] = 0;
		}
	}
	return s;
}

int config_load(const char *file, bool must_exist, struct agent_options *opt,
		struct path_cfgs *paths, char *err, size_t errlen)
{
	FILE *f = fopen(file, "re");
	int rc;

	if (!f) {
		if (errno == ENOENT && !must_exist)
			return 0;
		snprintf(err, errlen, "%s: %s", file, strerror(errno));
		return -1;
	}
	rc = config_load_stream(f, file, opt, paths, err, errlen);
	fclose(f);
	return rc;
}

int config_load_stream(FILE *f, const char *file, struct agent_options *opt,
		       struct path_cfgs *paths, char *err, size_t errlen)
{
	struct load_ctx c = { .file = file, .opt = opt, .paths = paths, .err = err,
			      .errlen = errlen };
	int rc = ini_parse_stream(read_line, &(struct line_reader){ f, &c }, on_line, &c);

	if (c.failed)
		return -1;
	if (rc > 0) {
		snprintf(err, errlen, "%s:%d: not a key = value line or a [section]", file, rc);
		return -1;
	}
	if (rc < 0) {
		snprintf(err, errlen, "%s: cannot be read", file);
		return -1;
	}
	return paths_check(&c) ? 0 : -1;
}

void path_cfgs_free(struct path_cfgs *p)
{
	for (size_t i = 0; i < p->n; i++)
		for (size_t k = 0; p->v[i].exec_argv[k]; k++)
			free(p->v[i].exec_argv[k]);
	free(p->v);
	p->v = NULL;
	p->n = 0;
	for (size_t i = 0; i < p->n_strings; i++)
		free(p->strings[i]);
	free(p->strings);
	p->strings = NULL;
	p->n_strings = 0;
}

int agent_options_add_watch(struct agent_options *opt, const char *path)
{
	char **v = realloc(opt->watch, (opt->n_watch + 1) * sizeof(*v));

	if (!v)
		return -ENOMEM;
	opt->watch = v;
	v[opt->n_watch] = strdup(path);
	if (!v[opt->n_watch])
		return -ENOMEM;
	opt->n_watch++;
	return 0;
}

const struct path_cfg *path_cfg_find(const struct path_cfgs *p, const char *path)
{
	for (size_t i = 0; i < p->n; i++)
		if (strcmp(p->v[i].path, path) == 0)
			return &p->v[i];
	return NULL;
}

const char *attach_mode_name(enum attach_mode m)
{
	switch (m) {
	case MODE_FENTRY: return "fentry";
	case MODE_TRACEPOINT: return "tracepoint";
	default: return "auto";
	}
}

int attach_mode_parse(const char *s, enum attach_mode *m)
{
	if (strcmp(s, "auto") == 0)
		*m = MODE_AUTO;
	else if (strcmp(s, "fentry") == 0)
		*m = MODE_FENTRY;
	else if (strcmp(s, "tracepoint") == 0)
		*m = MODE_TRACEPOINT;
	else
		return -EINVAL;
	return 0;
}

const char *discovery_mode_name(enum discovery_mode m)
{
	switch (m) {
	case DISCOVERY_ITER: return "iter";
	case DISCOVERY_PROCFS: return "procfs";
	default: return "auto";
	}
}

int discovery_mode_parse(const char *s, enum discovery_mode *m)
{
	if (strcmp(s, "auto") == 0)
		*m = DISCOVERY_AUTO;
	else if (strcmp(s, "iter") == 0)
		*m = DISCOVERY_ITER;
	else if (strcmp(s, "procfs") == 0)
		*m = DISCOVERY_PROCFS;
	else
		return -EINVAL;
	return 0;
}
