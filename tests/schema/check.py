#!/usr/bin/env python3
"""make schema-test: docs/events.schema.json is a valid draft 2020-12 schema,
names exactly the events the agent's table has (user/shared/events.c), each
one documented in docs/events.md; every example event in docs/events.md
validates; and mutations of those examples that break the contract (a wrong
type, a missing required field, an unknown event, an undocumented field, a
word outside its list) fail. Exits 1 on the first kind of problem, with all
its instances listed."""
import copy
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import events_schema  # noqa: E402

ROOT = events_schema.ROOT
IN_CI = os.environ.get("CI") == "true"


def fail(msg):
    print("schema-test: FAIL: " + msg)
    sys.exit(1)


def event_table():
    """(name, MESSAGE_ID) of every event in user/shared/events.c's table."""
    with open(os.path.join(ROOT, "user", "shared", "events.c")) as f:
        src = f.read()
    table = src[src.index("event_types[] = {"):]
    table = table[:table.index("};")]
    return re.findall(r'\{\s*"([a-z_]+)",\s*"([0-9a-f]{32})"\s*\}', table)


def doc_examples(text):
    """Every JSON object in docs/events.md's ```json blocks (one per line)."""
    out = []
    for block in re.findall(r"```json\n(.*?)```", text, re.S):
        for line in block.splitlines():
            if line.strip():
                out.append(json.loads(line))
    return out


def mutations(ev):
    """(what, mutated event) pairs, each of which must fail the schema."""
    def mut(what, fn):
        m = copy.deepcopy(ev)
        fn(m)
        return what, m
    out = [
        mut("mono_ns as a string", lambda m: m.update(mono_ns=str(m["mono_ns"]))),
        mut("no time", lambda m: m.pop("time")),
        mut("no schema", lambda m: m.pop("schema")),
        mut("schema 2", lambda m: m.update(schema=2)),
        mut("an unknown event", lambda m: m.update(event="socket_teleported")),
        mut("an undocumented field", lambda m: m.update(surprise=1)),
        mut("severity critical", lambda m: m.update(severity="critical")),
        mut("time without nanoseconds", lambda m: m.update(time=m["time"][:19] + "Z")),
    ]
    sev = {"info": "error", "warning": "info", "error": "info"}[ev["severity"]]
    if ev["event"] != "action":
        out.append(mut("severity %s" % sev, lambda m: m.update(severity=sev)))
    if "path" in ev:
        out.append(mut("no path", lambda m: m.pop("path")))
    if "mntns" in ev:
        out.append(mut("mntns as a string", lambda m: m.update(mntns=str(m["mntns"]))))
    for key in ("owner", "actor", "client", "last_owner", "target"):
        if key in ev:
            out.append(mut(key + " without pid", lambda m, k=key: m[k].pop("pid")))
            out.append(mut(key + " with an extra field",
                           lambda m, k=key: m[k].update(exe="/bin/x")))
    for key in ("how", "via", "reason", "errno", "heal", "outcome", "mode", "discovery"):
        if isinstance(ev.get(key), str):
            out.append(mut("%s not one of its words" % key,
                           lambda m, k=key: m.update({k: "sideways"})))
    if "container" in ev:
        out.append(mut("container runtime lxc",
                       lambda m: m["container"].update(runtime="lxc")))
    # the event's own required fields, one at a time
    d = events_schema.load_schema()["$defs"][ev["event"]]
    for key in d.get("required", []):
        out.append(mut("no " + key, lambda m, k=key: m.pop(k)))
    return out


def main():
    js = events_schema.load_jsonschema()
    if js is None:
        msg = "python3-jsonschema is not installed (make deps)"
        if IN_CI:
            fail(msg)
        print("schema-test: SKIP: " + msg)
        return 0
    schema = events_schema.load_schema()
    try:
        js.Draft202012Validator.check_schema(schema)
    except js.exceptions.SchemaError as e:
        fail("docs/events.schema.json is not a valid draft 2020-12 schema: %s" % e.message)

    table = [name for name, _ in event_table()]
    names = schema["properties"]["event"]["enum"]
    common = schema["$defs"]["common"]["properties"]["event"]["enum"]
    defined = [n for n in schema["$defs"] if "event" in
               schema["$defs"][n].get("properties", {}) and
               "const" in schema["$defs"][n]["properties"]["event"]]
    branches = [b["if"]["properties"]["event"]["const"] for b in schema["allOf"]]
    for what, got in (("the top-level event enum", names), ("$defs/common's event enum", common),
                      ("the event definitions in $defs", defined), ("the allOf branches", branches)):
        if sorted(got) != sorted(table):
            fail("%s %s user/shared/events.c's table: missing %s, extra %s" % (
                what, "differs from", sorted(set(table) - set(got)), sorted(set(got) - set(table))))

    with open(os.path.join(ROOT, "docs", "events.md")) as f:
        doc = f.read()
    undocumented = [n for n in table
                    if not re.search(r"^\| `%s` \| (info|warning|error)" % n, doc, re.M)]
    if undocumented:
        fail("docs/events.md has no table row for %s" % ", ".join(undocumented))
    missing_ids = [mid for _, mid in event_table() if mid not in doc]
    if missing_ids:
        fail("docs/events.md does not list the MESSAGE_IDs %s" % ", ".join(missing_ids))

    examples = doc_examples(doc)
    if not examples:
        fail("docs/events.md has no ```json example events")
    bad = []
    for ev in examples:
        bad += ["%s: %s" % (ev.get("event"), e) for e in events_schema.errors(ev)]
    if bad:
        fail("docs/events.md examples break the schema:\n  " + "\n  ".join(bad))

    accepted = []
    n = 0
    for ev in examples:
        for what, m in mutations(ev):
            n += 1
            if not events_schema.errors(m):
                accepted.append("%s with %s" % (ev["event"], what))
    if accepted:
        fail("the schema accepts what it must refuse:\n  " + "\n  ".join(accepted))

    print("schema-test: ok: draft 2020-12 schema valid; %d event types match "
          "user/shared/events.c and docs/events.md; %d examples from docs/events.md "
          "validate (%d event types); %d mutations of them are refused" % (
              len(table), len(examples), len({e["event"] for e in examples}), n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
