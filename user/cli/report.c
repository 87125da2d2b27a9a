/*
 * `sockwarden report`: reads an event journal and tells, per endpoint, what
 * happened: when a path was lost and by whom, how many connects failed, how and
 * how fast it healed. The model it builds is docs/report.md; --json prints it.
 * This file prints the model for a person and runs the command.
 */
#include "commands.h"
#include "report.h"
#include "report_internal.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shared/clock.h"
#include "shared/exitcodes.h"

/* Where an endpoint outside the agent's own namespace runs: " (container
 * 3f2a1b9c8d7e podman, mnt:[4026532179])". */
static void print_where(FILE *out, json_t *ep)
{
	json_t *c = json_object_get(ep, "container");
	const char *unit = str_of(ep, "unit");

	if (!json_is_true(json_object_get(ep, "foreign_namespace")) && !c)
		return;
	fprintf(out, " (");
	if (c)
		fprintf(out, "container %.12s %s, ", str_of(c, "id") ? str_of(c, "id") : "?",
			str_of(c, "runtime") ? str_of(c, "runtime") : "");
	else if (unit)
		fprintf(out, "unit %s, ", unit);
	fprintf(out, "mnt:[%lld])", (long long)json_integer_value(json_object_get(ep, "mntns")));
}

/* ----- the model for a person ----- */

static void print_timeline(FILE *out, const json_t *timeline, bool with_incident)
{
	size_t i;
	json_t *x;

	json_array_foreach(timeline, i, x) {
		json_t *inc = json_object_get(x, "incident");

		fprintf(out, "  %+9.3fs  %s  ", json_real_value(json_object_get(x, "offset_s")),
			str_of(x, "time"));
		if (with_incident) {
			if (json_is_integer(inc))
				fprintf(out, "#%-2lld ", (long long)json_integer_value(inc));
			else
				fprintf(out, "    ");
		}
		fprintf(out, "%s\n", str_of(x, "text"));
	}
}

static void print_agent(FILE *out, const json_t *agent)
{
	json_t *runs = json_object_get(agent, "runs"), *r;
	size_t i;

	if (!json_array_size(json_object_get(agent, "timeline")))
		return;
	fprintf(out, "agent\n");
	print_timeline(out, json_object_get(agent, "timeline"), false);
	json_array_foreach(runs, i, r) {
		struct text t = { .n = 0 };
		const char *end = str_of(r, "end");
		json_t *v;

		text_add(&t, "run %zu:", i + 1);
		if (json_is_integer(v = json_object_get(r, "pid")))
			text_add(&t, " pid %lld,", (long long)json_integer_value(v));
		if (str_of(r, "mode"))
			text_add(&t, " %s mode,", str_of(r, "mode"));
		text_add(&t, " started %s", str_of(r, "started") ? str_of(r, "started") :
			 "before the journal");
		if (strcmp(end, "clean") == 0)
			text_add(&t, ", stopped %s", str_of(r, "stopped"));
		else if (strcmp(end, "unclean") == 0)
			text_add(&t, ", ended without agent_stopping (killed, crashed or rebooted)");
		else
			text_add(&t, ", still running at the end of the journal");
		if (json_is_number(v = json_object_get(r, "duration_s")))
			text_add(&t, " after %.3f s", json_number_value(v));
		if (json_is_integer(v = json_object_get(r, "records")))
			text_add(&t, ", %lld kernel records", (long long)json_integer_value(v));
		text_add(&t, ", %lld events lost",
			 (long long)json_integer_value(json_object_get(r, "events_lost")));
		fprintf(out, "  %s\n", t.s);
	}
	fprintf(out, "\n");
}

static void print_incident_details(FILE *out, const json_t *x)
{
	struct text t = { .n = 0 };
	json_t *v, *c;
	size_t i;

	if (json_is_object(v = json_object_get(x, "actor"))) {
		text_add(&t, "removed by ");
		text_proc(&t, v);
		if (str_of(x, "via"))
			text_add(&t, " via %s", str_of(x, "via"));
	} else if (str_of(x, "via")) {
		text_add(&t, "lost (found via %s)", str_of(x, "via"));
	} else {
		text_add(&t, "opened by %s", str_of(x, "opened_by"));
	}
	if (json_is_object(v = json_object_get(x, "owner"))) {
		text_add(&t, "; server ");
		text_proc(&t, v);
	}
	json_array_foreach(json_object_get(x, "clients"), i, c) {
		json_t *f = json_object_get(c, "failures");

		text_add(&t, i ? ", " : "; top clients: ");
		text_proc(&t, c);
		if (json_is_integer(f))
			text_add(&t, " %lld", (long long)json_integer_value(f));
	}
	fprintf(out, "      %s\n", t.s);
	json_array_foreach(json_object_get(x, "problems"), i, v)
		fprintf(out, "      %s at %s: %s\n", str_of(v, "event"), str_of(v, "time"),
			str_of(v, "text"));
	json_array_foreach(json_object_get(x, "notes"), i, v)
		fprintf(out, "      note: %s\n", json_string_value(v));
}

void report_print(FILE *out, const json_t *model)
{
	json_t *eps = json_object_get(model, "endpoints"), *ep, *hosts, *v;
	json_int_t skipped = json_integer_value(json_object_get(model, "skipped_lines"));
	json_int_t n_inc = json_integer_value(json_object_get(model, "incidents_total"));
	json_int_t n_open = json_integer_value(json_object_get(model, "incidents_open"));
	size_t i, k;
	bool multi_host;

	if (json_integer_value(json_object_get(model, "events")) == 0) {
		fprintf(out, "no events\n");
		return;
	}
	hosts = json_object_get(model, "hosts");
	multi_host = json_array_size(hosts) > 1;
	fprintf(out, "%s: %lld events from %s to %s", str_of(model, "source"),
		(long long)json_integer_value(json_object_get(model, "events")),
		str_of(model, "first_time"), str_of(model, "last_time"));
	json_array_foreach(hosts, i, v)
		fprintf(out, "%s%s", i ? ", " : multi_host ? ", hosts " : ", host ",
			json_string_value(v));
	if (skipped)
		fprintf(out, " (%lld line%s skipped)", (long long)skipped, skipped == 1 ? "" : "s");
	fprintf(out, "\n%zu endpoint%s, %lld incident%s, %lld still open\n\n",
		json_array_size(eps), json_array_size(eps) == 1 ? "" : "s", (long long)n_inc,
		n_inc == 1 ? "" : "s", (long long)n_open);
	print_agent(out, json_object_get(model, "agent"));
	json_array_foreach(eps, i, ep) {
		json_t *incs = json_object_get(ep, "incidents"), *x;
		json_int_t total = json_integer_value(json_object_get(ep, "incidents_total"));

		if (multi_host)
			fprintf(out, "%s: ", str_of(ep, "host"));
		fprintf(out, "%s", str_of(ep, "path"));
		print_where(out, ep);
		fprintf(out, ": %lld incident%s", (long long)total, total == 1 ? "" : "s");
		json_array_foreach(incs, k, x)
			fprintf(out, "%s%s", k ? ", " : " (", str_of(x, "status"));
		fprintf(out, "%s, %lld events from %s\n", total ? ")" : "",
			(long long)json_integer_value(json_object_get(ep, "events")),
			str_of(ep, "first_time"));
		print_timeline(out, json_object_get(ep, "timeline"), true);
		json_array_foreach(incs, k, x) {
			fprintf(out, "  incident #%lld %s: %s\n",
				(long long)json_integer_value(json_object_get(x, "id")),
				str_of(x, "status"), str_of(x, "summary"));
			print_incident_details(out, x);
		}
		fprintf(out, "\n");
	}
}

/* ----- the command ----- */

static const char report_usage[] =
	"Usage: sockwarden report [FILE] [--json]\n"
	"A postmortem timeline per endpoint from an event journal (the JSON Lines\n"
	"of `sockwarden run --events FILE`). FILE omitted or - reads stdin.\n"
	"\n"
	"  --json      the report as one JSON object (docs/report.md)\n"
	"  -h, --help  show this help and exit\n"
	"\n"
	"Lines that are not events are skipped and named on stderr.\n"
	"Exit status: 0 success, 2 usage error, 3 FILE cannot be read.\n";

static int report_usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "sockwarden report: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nTry 'sockwarden report --help' for more information.\n");
	return SW_EXIT_USAGE;
}

/* Reads f into j, naming each skipped line on stderr; false on a read error. */
static bool read_journal(FILE *f, struct report_journal *j)
{
	char *line = NULL;
	size_t cap = 0, lineno = 0, shown = 0;
	ssize_t len;

	errno = 0;
	while ((len = getline(&line, &cap, f)) >= 0) {
		const char *why;

		lineno++;
		if (len > 0 && line[len - 1] == '\n')
			len--;
		why = report_journal_add_line(j, line, (size_t)len, lineno);
		if (why && shown++ < SKIPPED_SHOWN_MAX)
			fprintf(stderr, "line %zu: %s, skipped\n", lineno, why);
	}
	free(line);
	return !ferror(f);
}

int report_command(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *file = "-";
	struct report_journal *j = NULL;
	json_t *model = NULL;
	FILE *f = NULL;
	bool json = false;
	int c, rc = SW_EXIT_OK;

	optind = 1;
	opterr = 0; /* our own messages, which name the command */
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'h':
			fputs(report_usage, stdout);
			return SW_EXIT_OK;
		default:
			return report_usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		file = argv[optind++];
	if (optind < argc)
		return report_usage_error("unexpected argument '%s': report reads one FILE",
					  argv[optind]);

	if (strcmp(file, "-") == 0) {
		f = stdin;
		if (isatty(STDIN_FILENO))
			fprintf(stderr, "sockwarden report: reading events from stdin "
				"(end with Ctrl-D)\n");
	} else if (!(f = fopen(file, "re"))) {
		fprintf(stderr, "sockwarden report: cannot open %s: %s\n", file, strerror(errno));
		return SW_EXIT_ENV;
	}
	j = report_journal_new();
	if (!j) {
		rc = SW_EXIT_ENV;
		goto out;
	}
	if (!read_journal(f, j)) {
		fprintf(stderr, "sockwarden report: cannot read %s: %s\n",
			strcmp(file, "-") ? file : "stdin", strerror(errno ? errno : EIO));
		rc = SW_EXIT_ENV;
		goto out;
	}
	if (j->skipped > SKIPPED_SHOWN_MAX)
		fprintf(stderr, "sockwarden report: skipped %zu of %zu lines (not events; "
			"the first %d are named above)\n", j->skipped, j->lines,
			SKIPPED_SHOWN_MAX);
	else if (j->skipped)
		fprintf(stderr, "sockwarden report: skipped %zu of %zu line%s (not events)\n",
			j->skipped, j->lines, j->lines == 1 ? "" : "s");
	model = report_build(j, file);
	if (!model) {
		fprintf(stderr, "sockwarden report: out of memory\n");
		rc = SW_EXIT_ENV;
		goto out;
	}
	if (json) {
		json_dumpf(model, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER |
			   JSON_REAL_PRECISION(15));
		fputc('\n', stdout);
	} else {
		report_print(stdout, model);
	}
	if (fflush(stdout) != 0) {
		fprintf(stderr, "sockwarden report: cannot write the report: %s\n",
			strerror(errno));
		rc = SW_EXIT_ENV;
	}
out:
	json_decref(model);
	report_journal_free(j);
	if (f && f != stdin)
		fclose(f);
	return rc;
}
