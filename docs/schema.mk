# The event schema (docs/events.schema.json, docs/events.md "Schema"):
#
#   make schema-test   the schema is a valid draft 2020-12 schema, names exactly
#                      user/shared/events.c's events, each documented in
#                      docs/events.md; the examples there validate, and
#                      mutations of them (a wrong type, a missing field, an
#                      unknown event) are refused. Under a second.
#
# The integration suite checks every event the agents it starts write against
# the same schema (tests/integration/harness.py), with python3-jsonschema;
# under CI=true a missing python3-jsonschema fails both.

DEPS += python3-jsonschema

.PHONY: schema-test
# make test runs it too: it needs no build (only deps) and takes under a second
test: schema-test

schema-test: deps
	$(Q)python3 tests/schema/check.py
