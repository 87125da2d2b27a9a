# The alerting side that ships (DESIGN §6): Prometheus alert rules with
# promtool unit tests, their runbook, and the Grafana dashboard checked against
# Grafana's published schema. Included by the top-level Makefile.
#
#   make alerting-test  promtool check rules + test rules (dist/prometheus/),
#                       every runbook_url anchor a heading of docs/runbook.md,
#                       every sockwarden_* name one metrics.c renders, the
#                       dashboard type-checked as @grafana/schema's Dashboard
#                       (npm ci + tsc --noEmit) and every query of it parsed
#                       by promtool; each check also run on a broken copy,
#                       which must fail. About 5 s once the tools are cached;
#                       the first run downloads promtool (20 MB) and the
#                       pinned npm packages (25 MB).
#   make $(OUTPUT)/tools/promtool
#                       promtool from Debian's prometheus package, extracted
#                       with dpkg-deb: installing the package would start a
#                       Prometheus server on this host.
#
# Nothing is skipped: a tool that cannot be had fails the target.

DEPS += python3-yaml nodejs

PROMTOOL := $(OUTPUT)/tools/promtool
ALERTING_DIR := $(OUTPUT)/alerting
ALERTING_RULES := dist/prometheus/sockwarden.rules.yml
ALERTING_TESTS := $(wildcard dist/prometheus/tests/*.yml)
DASHBOARD := dist/grafana/sockwarden.json
ALERTING_CHECK := python3 tests/alerting/check.py

$(PROMTOOL):
	$(call msg,FETCH,prometheus.deb for promtool)
	$(Q)rm -rf $(OUTPUT)/tools/prometheus-deb && mkdir -p $(OUTPUT)/tools/prometheus-deb
	$(Q)cd $(OUTPUT)/tools/prometheus-deb && \
		{ apt-get download -qq prometheus 2>/dev/null || \
		  { apt-get update -qq >/dev/null && apt-get download -qq prometheus; }; }
	$(Q)dpkg-deb -x $(OUTPUT)/tools/prometheus-deb/prometheus_*.deb \
		$(OUTPUT)/tools/prometheus-deb/root
	$(Q)install -m 0755 $(OUTPUT)/tools/prometheus-deb/root/usr/bin/promtool $@.tmp
	$(Q)$@.tmp --version >/dev/null && mv $@.tmp $@
	$(Q)rm -rf $(OUTPUT)/tools/prometheus-deb

# @grafana/schema and typescript at the versions tests/alerting/package-lock.json
# pins; node_modules lives in $(OUTPUT), never in the tree. Debian's nodejs has
# no npm (NodeSource's has its own): the npm package only when npm is missing.
$(ALERTING_DIR)/npm.stamp: tests/alerting/package.json tests/alerting/package-lock.json
	$(call msg,NPM,$(ALERTING_DIR))
	$(Q)command -v npm >/dev/null || { export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq >/dev/null && \
		apt-get install -y -qq --no-install-recommends npm >/dev/null; }
	$(Q)mkdir -p $(ALERTING_DIR)
	$(Q)cp tests/alerting/package.json tests/alerting/package-lock.json \
		tests/alerting/tsconfig.json $(ALERTING_DIR)/
	$(Q)cd $(ALERTING_DIR) && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	$(Q)touch $@

# alerting-tsc,JSON: type-checks JSON as @grafana/schema's Dashboard
alerting-tsc = $(ALERTING_CHECK) typescript $(1) $(ALERTING_DIR)/dashboard.ts && \
	cp tests/alerting/tsconfig.json $(ALERTING_DIR)/ && \
	cd $(ALERTING_DIR) && node_modules/.bin/tsc -p tsconfig.json

# the integration suite runs promtool check metrics on the live agent's output
integration-test check-asan: $(PROMTOOL)

alerting-test: $(PROMTOOL) $(ALERTING_DIR)/npm.stamp
	$(call msg,PROMTOOL,check rules $(ALERTING_RULES))
	$(Q)$(PROMTOOL) check rules $(ALERTING_RULES)
	$(call msg,PROMTOOL,test rules $(ALERTING_TESTS))
	$(Q)test -n "$(ALERTING_TESTS)"
	$(Q)$(PROMTOOL) test rules $(ALERTING_TESTS)
	$(call msg,CHECK,runbook anchors and metric names)
	$(Q)$(ALERTING_CHECK) runbook $(ALERTING_RULES) docs/runbook.md
	$(Q)$(ALERTING_CHECK) names user/sinks/metrics.c $(ALERTING_RULES) $(DASHBOARD)
	$(call msg,TSC,$(DASHBOARD) as @grafana/schema Dashboard)
	$(Q)$(call alerting-tsc,$(DASHBOARD))
	$(call msg,PROMTOOL,the dashboard's queries)
	$(Q)$(ALERTING_CHECK) queries $(DASHBOARD) $(ALERTING_DIR)/dashboard-queries.yml
	$(Q)$(PROMTOOL) check rules $(ALERTING_DIR)/dashboard-queries.yml
	$(call msg,CHECK,the checks reject broken copies)
	$(Q)python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); \
		d["schemaVersion"] = str(d["schemaVersion"]); \
		d["panels"][1]["targets"][0]["expr"] += " by"; \
		json.dump(d, open(sys.argv[2], "w"))' $(DASHBOARD) $(ALERTING_DIR)/broken.json
	$(Q)if ( $(call alerting-tsc,$(ALERTING_DIR)/broken.json) ) >$(ALERTING_DIR)/broken.out 2>&1 || \
		! grep -q "error TS2322: Type 'string' is not assignable to type 'number'" \
			$(ALERTING_DIR)/broken.out; then \
		cat $(ALERTING_DIR)/broken.out; \
		echo "alerting-test: tsc accepted a dashboard whose schemaVersion is a string"; \
		exit 1; fi
	$(Q)$(ALERTING_CHECK) queries $(ALERTING_DIR)/broken.json $(ALERTING_DIR)/broken-queries.yml
	$(Q)if $(PROMTOOL) check rules $(ALERTING_DIR)/broken-queries.yml >/dev/null 2>&1; then \
		echo "alerting-test: promtool accepted a query ending in 'by'"; exit 1; fi
	$(Q)sed 's/#sockwardendown$$/#no-such-section/' $(ALERTING_RULES) > $(ALERTING_DIR)/broken.rules.yml
	$(Q)if $(ALERTING_CHECK) runbook $(ALERTING_DIR)/broken.rules.yml docs/runbook.md \
		2>/dev/null; then echo "alerting-test: a runbook_url to no section passed"; exit 1; fi
	$(Q)rm -f $(ALERTING_DIR)/broken*
	$(call msg,OK,alerting-test)

.PHONY: alerting-test
