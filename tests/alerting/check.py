#!/usr/bin/env python3
"""Checks the shipped alerting files beyond what promtool and tsc see
(make alerting-test runs every subcommand):

  runbook RULES RUNBOOK      every alert has a severity, a summary, a description
                             and a runbook_url whose anchor is a heading of RUNBOOK;
                             every alert section of RUNBOOK belongs to an alert
  names METRICS_C FILE...    every sockwarden_* name the rules and the dashboard use
                             is a family metrics.c renders (or one of its series)
  queries DASHBOARD OUT      writes every panel's and variable's query, template
                             variables replaced by valid values, as a rules file
                             for `promtool check rules`
  typescript DASHBOARD OUT   writes a .ts file that assigns the dashboard, as an
                             object literal, to @grafana/schema's Dashboard type
                             (tsc --noEmit then type-checks it, excess fields included)
"""
import json
import re
import sys

import yaml

RUNBOOK_BASE = "https://github.com/sockwarden/sockwarden/blob/main/docs/runbook.md#"
SEVERITIES = ("critical", "warning")
# Grafana's global variables, replaced by valid durations
GLOBALS = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h",
           "__range_s": "3600", "__interval_ms": "60000"}


def fail(errors):
    for e in errors:
        print("check.py: " + e, file=sys.stderr)
    sys.exit(1 if errors else 0)


def alerts(rules_file):
    with open(rules_file) as f:
        doc = yaml.safe_load(f)
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def github_anchor(heading):
    """The anchor GitHub gives a Markdown heading."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def runbook(rules_file, runbook_file):
    errors = []
    with open(runbook_file) as f:
        headings = [m.group(1) for m in re.finditer(r"^#{1,6} +(.+?) *$", f.read(), re.M)]
    anchors = {github_anchor(h) for h in headings}
    named = set()
    rules = alerts(rules_file)
    if not rules:
        errors.append("%s: no alerts" % rules_file)
    for r in rules:
        name = r["alert"]
        named.add(github_anchor(name))
        labels, notes = r.get("labels", {}), r.get("annotations", {})
        if labels.get("severity") not in SEVERITIES:
            errors.append("%s: severity %r, expected one of %s" % (name, labels.get("severity"),
                                                                   ", ".join(SEVERITIES)))
        for key in ("summary", "description", "runbook_url"):
            if not notes.get(key, "").strip():
                errors.append("%s: no %s annotation" % (name, key))
        url = notes.get("runbook_url", "")
        if not url.startswith(RUNBOOK_BASE):
            errors.append("%s: runbook_url %r is not under %s" % (name, url, RUNBOOK_BASE))
            continue
        anchor = url[len(RUNBOOK_BASE):]
        if anchor not in anchors:
            errors.append("%s: runbook_url anchor #%s is no heading of %s" % (name, anchor,
                                                                             runbook_file))
        elif anchor != github_anchor(name):
            errors.append("%s: runbook_url anchor #%s is not the alert's own section" % (name,
                                                                                        anchor))
    for h in headings:
        if h.startswith("Sockwarden") and github_anchor(h) not in named:
            errors.append("%s: section %r is about no alert in %s" % (runbook_file, h,
                                                                      rules_file))
    fail(errors)


def dashboard_queries(dashboard_file):
    """(where, expr) for every Prometheus query of the dashboard."""
    with open(dashboard_file) as f:
        dash = json.load(f)
    out = []

    def visit(panels):
        for p in panels:
            for t in p.get("targets", []):
                out.append(("panel %d %r target %s" % (p["id"], p.get("title"), t["refId"]),
                            t["expr"]))
            visit(p.get("panels", []))
    visit(dash.get("panels", []))
    for v in dash.get("templating", {}).get("list", []):
        if v["type"] != "query":
            continue
        q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        m = re.fullmatch(r"label_values\((.*), *\w+\)", q)
        # label_values(SELECTOR, label) is Grafana's; its selector is PromQL
        out.append(("variable %s" % v["name"], m.group(1) if m else q))
    return out


def substitute(expr):
    def value(m):
        name = m.group(1) or m.group(2)
        return GLOBALS.get(name, "x")
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, expr)


def queries(dashboard_file, out_file):
    rules = []
    for i, (where, expr) in enumerate(dashboard_queries(dashboard_file)):
        # the name says where the query came from when promtool complains
        name = "dashboard:q%d:%s" % (i, re.sub(r"[^a-zA-Z0-9_]", "_", where))
        rules.append({"record": name, "expr": substitute(expr)})
    if not rules:
        fail(["%s: no queries" % dashboard_file])
    with open(out_file, "w") as f:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f, sort_keys=False)


def names(metrics_c, files):
    with open(metrics_c) as f:
        families = set(re.findall(r'family\(&b, "(\w+)"', f.read()))
    if not families:
        fail(["%s: no metric families found" % metrics_c])
    errors = []
    for path in files:
        with open(path) as f:
            text = f.read()
        for used in sorted(set(re.findall(r"\bsockwarden_(\w+)", text))):
            if used not in families:
                errors.append("%s: sockwarden_%s is no metric %s renders" % (path, used,
                                                                             metrics_c))
    fail(errors)


# The schema's string enums (ThresholdsMode.Absolute = 'absolute', ...) are
# nominal in TypeScript: no literal, not even 'absolute', is assignable to one.
# A dashboard's JSON carries their values, so AsJson<T> turns each string enum
# (and string literal union) into the union of its values, `${E}`, and keeps
# everything else as it is: field names, optionality, the other types.
AS_JSON = """type AsJson<T> =
  T extends string ? (string extends T ? string : `${T}`) :
  T extends ReadonlyArray<infer U> ? Array<AsJson<U>> :
  T extends object ? { [K in keyof T]: AsJson<T[K]> } :
  T;

"""

# The fields of Grafana's Prometheus query model the dashboard uses (the
# Prometheus data source's query type is not in @grafana/schema).
PROM_QUERY = """interface PrometheusQuery {
  expr: string;
  legendFormat?: string;
  range?: boolean;
  instant?: boolean;
  format?: 'time_series' | 'table' | 'heatmap';
  editorMode?: 'code' | 'builder';
  interval?: string;
}

"""


def all_panels(panels):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


def typescript(dashboard_file, out_file):
    with open(dashboard_file) as f:
        dash = json.load(f)
    with open(out_file, "w") as f:
        f.write("// generated by tests/alerting/check.py from %s\n" % dashboard_file)
        f.write("import type { Dashboard, DataQuery } from '@grafana/schema';\n\n")
        f.write(AS_JSON)
        f.write("export const dashboard: AsJson<Dashboard> = %s;\n\n" % json.dumps(dash, indent=2))
        # the schema types a panel's targets as records (each data source has
        # its own query model): every target is checked again as Grafana's
        # DataQuery (refId, datasource, ...) plus Prometheus's query fields
        f.write(PROM_QUERY)
        f.write("export const targets: Array<AsJson<DataQuery> & PrometheusQuery> = %s;\n"
                % json.dumps([t for p in all_panels(dash["panels"]) for t in p.get("targets", [])],
                             indent=2))


def main(argv):
    cmds = {"runbook": (runbook, 2), "queries": (queries, 2), "typescript": (typescript, 2)}
    if len(argv) >= 3 and argv[1] == "names":
        return names(argv[2], argv[3:])
    if len(argv) < 2 or argv[1] not in cmds or len(argv) != cmds[argv[1]][1] + 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmds[argv[1]][0](*argv[2:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
