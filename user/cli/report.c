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
static void print_where(FILE *out, const json_t *ep)
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

/*
 * ----- the model for a person -----
 *
 * A piece at a time, so that report_print() (the whole model) and
 * report_write() (pieces made one after another) print the same.
 */

void print_timeline_entry(FILE *out, const json_t *x, bool with_incident)
{
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

/* The agent's runs, after its timeline, and the blank line ending its section. */
void print_runs(FILE *out, const json_t *agent)
{
	json_t *runs = json_object_get(agent, "runs"), *r;
	size_t i;

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

void print_incident(FILE *out, const json_t *x)
{
	fprintf(out, "  incident #%lld %s: %s\n",
		(long long)json_integer_value(json_object_get(x, "id")), str_of(x, "status"),
		str_of(x, "summary"));
	print_incident_details(out, x);
}

/* The journal's header: where from, how much, how many endpoints. */
void print_head(FILE *out, const json_t *model)
{
	json_int_t skipped = json_integer_value(json_object_get(model, "skipped_lines"));
	json_int_t n_ep = json_integer_value(json_object_get(model, "endpoints_total"));
	json_int_t n_inc = json_integer_value(json_object_get(model, "incidents_total"));
	json_int_t n_open = json_integer_value(json_object_get(model, "incidents_open"));
	json_t *hosts = json_object_get(model, "hosts"), *v;
	bool multi_host = json_array_size(hosts) > 1;
	size_t i;

	fprintf(out, "%s: %lld events from %s to %s", str_of(model, "source"),
		(long long)json_integer_value(json_object_get(model, "events")),
		str_of(model, "first_time"), str_of(model, "last_time"));
	json_array_foreach(hosts, i, v)
		fprintf(out, "%s%s", i ? ", " : multi_host ? ", hosts " : ", host ",
			json_string_value(v));
	if (skipped)
		fprintf(out, " (%lld line%s skipped)", (long long)skipped, skipped == 1 ? "" : "s");
	fprintf(out, "\n%lld endpoint%s, %lld incident%s, %lld still open\n\n", (long long)n_ep,
		n_ep == 1 ? "" : "s", (long long)n_inc, n_inc == 1 ? "" : "s", (long long)n_open);
}

/* "/srv/app.sock: 2 incidents (healed, open), 9 events from ..."; statuses:
 * the status of each incident, in order. */
void print_endpoint_header(FILE *out, const json_t *ep, const json_t *statuses, bool multi_host)
{
	json_int_t total = json_integer_value(json_object_get(ep, "incidents_total"));
	json_t *v;
	size_t k;

	if (multi_host)
		fprintf(out, "%s: ", str_of(ep, "host"));
	fprintf(out, "%s", str_of(ep, "path"));
	print_where(out, ep);
	fprintf(out, ": %lld incident%s", (long long)total, total == 1 ? "" : "s");
	json_array_foreach(statuses, k, v)
		fprintf(out, "%s%s", k ? ", " : " (", json_string_value(v));
	fprintf(out, "%s, %lld events from %s\n", total ? ")" : "",
		(long long)json_integer_value(json_object_get(ep, "events")),
		str_of(ep, "first_time"));
}

void report_print(FILE *out, const json_t *model)
{
	json_t *eps = json_object_get(model, "endpoints"), *ep, *agent, *x;
	bool multi_host = json_array_size(json_object_get(model, "hosts")) > 1;
	size_t i, k;

	if (json_integer_value(json_object_get(model, "events")) == 0) {
		fprintf(out, "no events\n");
		return;
	}
	print_head(out, model);
	agent = json_object_get(model, "agent");
	if (json_array_size(json_object_get(agent, "timeline"))) {
		fprintf(out, "agent\n");
		json_array_foreach(json_object_get(agent, "timeline"), i, x)
			print_timeline_entry(out, x, false);
		print_runs(out, agent);
	}
	json_array_foreach(eps, i, ep) {
		json_t *incs = json_object_get(ep, "incidents"), *statuses = json_array();

		json_array_foreach(incs, k, x)
			json_array_append(statuses, json_object_get(x, "status"));
		print_endpoint_header(out, ep, statuses, multi_host);
		json_decref(statuses);
		json_array_foreach(json_object_get(ep, "timeline"), k, x)
			print_timeline_entry(out, x, true);
		json_array_foreach(incs, k, x)
			print_incident(out, x);
		fprintf(out, "\n");
	}
}

/* A timeline for a person, each entry made from its line, printed and freed. */
static bool write_timeline(FILE *out, struct builder *b, size_t begin, size_t end,
			   const struct timepoint *origin, bool with_incident)
{
	for (size_t i = begin; i < end; i++) {
		json_t *x = timeline_entry_at(b, i, origin);

		if (!x)
			return false;
		print_timeline_entry(out, x, with_incident);
		json_decref(x);
	}
	return true;
}

/* What report_print() prints of report_build()'s model, made a piece at a
 * time: the journal's head, then each endpoint's head, timeline, incidents. */
static int write_text(FILE *out, struct builder *b, const char *source)
{
	json_t *head = model_head(b, source);
	bool multi_host = json_array_size(b->hosts) > 1, ok = head != NULL;

	if (ok && b->j->n == 0)
		fprintf(out, "no events\n");
	else if (ok)
		print_head(out, head);
	if (ok && b->j->n && b->tl_agent_end) {
		fprintf(out, "agent\n");
		ok = write_timeline(out, b, 0, b->tl_agent_end, &b->first.at, false);
		if (ok)
			print_runs(out, json_object_get(head, "agent"));
	}
	json_decref(head);
	for (size_t i = 0; ok && i < b->n_ep; i++) {
		const struct endpoint_acc *ep = &b->ep[i];
		json_t *x = endpoint_head(b, ep), *statuses = json_array();

		for (size_t k = 0; k < ep->n_inc; k++)
			json_array_append_new(statuses, json_string(incident_status(ep, k)));
		ok = x && statuses;
		if (ok)
			print_endpoint_header(out, x, statuses, multi_host);
		json_decref(statuses);
		json_decref(x);
		ok = ok && write_timeline(out, b, ep->tl_begin, ep->tl_end, &ep->first.at, true);
		for (size_t k = 0; ok && k < ep->n_inc; k++) {
			json_t *inc = incident_at(b, ep, k);

			ok = inc != NULL;
			if (ok)
				print_incident(out, inc);
			json_decref(inc);
		}
		if (ok)
			fprintf(out, "\n");
	}
	if (b->io_errno)
		return errno = b->io_errno, -1;
	if (!ok || b->oom)
		return errno = ENOMEM, -1;
	return 0;
}

int report_write(FILE *out, struct report_journal *j, const char *source, bool json)
{
	struct builder b;
	int rc;

	if (!builder_init(&b, j))
		return errno = ENOMEM, -1;
	if (!builder_fold(&b)) {
		rc = b.io_errno ? b.io_errno : ENOMEM;
		builder_free(&b);
		return errno = rc, -1;
	}
	rc = json ? model_write_json(out, &b, source) : write_text(out, &b, source);
	if (rc) {
		int err = errno;

		builder_free(&b);
		return errno = err, -1;
	}
	builder_free(&b);
	return 0;
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

/* The skipped lines, the first SKIPPED_SHOWN_MAX named, then their count. */
static void tell_skipped(const struct report_journal *j)
{
	for (size_t i = 0; i < j->n_listed && i < SKIPPED_SHOWN_MAX; i++)
		fprintf(stderr, "line %zu: %s, skipped\n", j->listed[i].line, j->listed[i].why);
	if (j->skipped > SKIPPED_SHOWN_MAX)
		fprintf(stderr, "sockwarden report: skipped %zu of %zu lines (not events; "
			"the first %d are named above)\n", j->skipped, j->lines,
			SKIPPED_SHOWN_MAX);
	else if (j->skipped)
		fprintf(stderr, "sockwarden report: skipped %zu of %zu line%s (not events)\n",
			j->skipped, j->lines, j->lines == 1 ? "" : "s");
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
	if (!report_journal_read(j, f)) {
		if (report_journal_errno(j))
			fprintf(stderr, "sockwarden report: cannot spool %s to a temporary file: %s\n",
				strcmp(file, "-") ? file : "stdin", strerror(report_journal_errno(j)));
		else
			fprintf(stderr, "sockwarden report: cannot read %s: %s\n",
				strcmp(file, "-") ? file : "stdin", strerror(errno ? errno : EIO));
		rc = SW_EXIT_ENV;
		goto out;
	}
	tell_skipped(j);
	if (report_write(stdout, j, file, json) != 0) {
		if (errno == ESTALE)
			fprintf(stderr, "sockwarden report: %s changed while it was read: a line "
				"read before cannot be read again\n", file);
		else if (errno == ENOMEM)
			fprintf(stderr, "sockwarden report: out of memory\n");
		else /* a line read again, or a temporary file written */
			fprintf(stderr, "sockwarden report: cannot read %s again or write a "
				"temporary file: %s\n", strcmp(file, "-") ? file : "stdin",
				strerror(errno));
		rc = SW_EXIT_ENV;
		goto out;
	}
	if (fflush(stdout) != 0) {
		fprintf(stderr, "sockwarden report: cannot write the report: %s\n",
			strerror(errno));
		rc = SW_EXIT_ENV;
	}
out:
	report_journal_free(j);
	if (f && f != stdin)
		fclose(f);
	return rc;
}
