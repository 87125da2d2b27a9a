"""docs/events.schema.json for the tests: one validator, loaded once.

The integration harness checks every event an agent writes with check();
tests/schema/check.py (make schema-test) checks the schema itself. Both need
python3-jsonschema (Debian's package, DEPS in docs/schema.mk). The suite may
run under another interpreter than Debian's (a pyenv python3 first on PATH):
Debian's dist-packages then serve as a fallback, appended after that
interpreter's own paths, so they never shadow what it has itself.
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMA_PATH = os.path.join(ROOT, "docs", "events.schema.json")
DEBIAN_DIST_PACKAGES = "/usr/lib/python3/dist-packages"

_validator = None
_jsonschema = None
validated = 0
# how many of each event type were checked
seen = {}


def load_jsonschema():
    """The jsonschema module, or None when neither this interpreter nor
    Debian's python3-jsonschema provides it."""
    global _jsonschema
    if _jsonschema is not None:
        return _jsonschema
    try:
        import jsonschema
    except ImportError:
        if not os.path.isdir(DEBIAN_DIST_PACKAGES) or DEBIAN_DIST_PACKAGES in sys.path:
            return None
        sys.path.append(DEBIAN_DIST_PACKAGES)
        try:
            import jsonschema
        except ImportError:
            sys.path.remove(DEBIAN_DIST_PACKAGES)
            return None
    _jsonschema = jsonschema
    return jsonschema


def load_schema():
    with open(SCHEMA_PATH) as f:
        return json.load(f)


def validator():
    """The schema's validator (draft 2020-12); raises if jsonschema is missing."""
    global _validator
    if _validator is None:
        js = load_jsonschema()
        if js is None:
            raise RuntimeError("python3-jsonschema is not installed (make deps)")
        _validator = js.Draft202012Validator(load_schema())
    return _validator


def describe(err):
    """One line for a validation error: where in the event, and what."""
    where = "/".join(str(p) for p in err.absolute_path) or "(the event)"
    return "%s: %s" % (where, err.message)


_by_event = {}


def validator_for(ev):
    """The validator for ev: for an event of a type the schema names, the
    schema with only that type's branch of its allOf (the same verdict: every
    other branch's `if` is false for it), which spares 19 `if` evaluations
    per event; make vmtest's emulated VM reads thousands of events in a
    storm test. Anything else gets the whole schema."""
    name = ev.get("event") if isinstance(ev, dict) else None
    if not isinstance(name, str):
        return validator()
    if name not in _by_event:
        full = load_schema()
        branch = [b for b in full.get("allOf", [])
                  if b.get("if", {}).get("properties", {}).get("event", {}).get("const") == name]
        if len(branch) != 1:
            _by_event[name] = validator()
        else:
            one = dict(full, allOf=branch)
            _by_event[name] = load_jsonschema().Draft202012Validator(one)
    return _by_event[name]


def errors(ev):
    """Every way ev breaks the schema, most relevant first; [] when it validates."""
    validator()  # fails loudly without jsonschema
    v = validator_for(ev)
    errs = list(v.iter_errors(ev))
    if not errs:
        return []
    # a oneOf/anyOf wraps its branches' complaints: show those leaves
    leaves = []
    stack = sorted(errs, key=_jsonschema.exceptions.relevance, reverse=True)
    while stack:
        e = stack.pop()
        if e.context:
            stack.extend(sorted(e.context, key=_jsonschema.exceptions.relevance, reverse=True))
        else:
            leaves.append(describe(e))
    return list(dict.fromkeys(leaves))


def check(ev, where=""):
    """Raises AssertionError naming the event and the schema's complaint."""
    global validated
    errs = errors(ev)
    validated += 1
    name = ev.get("event") if isinstance(ev, dict) else None
    seen[name] = seen.get(name, 0) + 1
    if errs:
        raise AssertionError(
            "event %s%s does not match docs/events.schema.json: %s\n  event: %s" % (
                ev.get("event") if isinstance(ev, dict) else "?",
                " (" + where + ")" if where else "", "; ".join(errs),
                json.dumps(ev, sort_keys=True)))
