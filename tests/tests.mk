# Tests: cmocka unit tests (no kernel) and integration tests (real agent, real
# BPF, real sockets). Included by the top-level Makefile.

# A unit test per component, in the room of the component it tests
# (tests/unit/<room>/test_<component>.c → build/tests/<room>/test_<component>);
# UNIT_DEPS_<test> names the objects it links, by room.
UNIT_TESTS := $(patsubst tests/unit/%.c,$(OUTPUT)/tests/%,$(wildcard tests/unit/*/test_*.c))
UNIT_DEPS_test_paths := shared/paths
UNIT_DEPS_test_attribution := shared/attribution
UNIT_DEPS_test_nsroot := shared/nsroot shared/mountinfo shared/paths
UNIT_DEPS_test_mountinfo := shared/mountinfo shared/paths
UNIT_DEPS_test_config := shared/config shared/config_reload shared/paths shared/clock
UNIT_LIBS_test_config := -linih
UNIT_DEPS_test_events := shared/events shared/paths shared/clock
# the iterator's record parser (iter_records.c), without discovery_iter.c's libbpf
UNIT_DEPS_test_discovery_iter := shared/iter_records shared/discovery shared/diag_netns \
	shared/paths shared/clock
UNIT_LIBS_test_discovery_iter := -lpthread
UNIT_DEPS_test_endpoints := agent/endpoints agent/endpoint_ns agent/endpoint_intern agent/flapguard shared/nsroot shared/mountinfo shared/attribution shared/paths shared/discovery shared/diag_netns shared/clock
UNIT_LIBS_test_endpoints := -lpthread
UNIT_DEPS_test_guard_mirror := agent/guard_mirror shared/nsroot shared/mountinfo shared/paths \
	shared/log shared/clock
UNIT_DEPS_test_coalescer := agent/coalescer
UNIT_DEPS_test_flapguard := agent/flapguard
UNIT_DEPS_test_control_codec := agent/control_codec shared/paths
UNIT_DEPS_test_control_limits := agent/control_limits
UNIT_DEPS_test_actions := agent/actions shared/config shared/discovery shared/diag_netns shared/events \
	agent/flapguard shared/paths shared/clock shared/log agent/loop
UNIT_LIBS_test_actions := -linih -lpthread
UNIT_DEPS_test_scanner := agent/scanner shared/nsroot shared/mountinfo shared/discovery_source shared/discovery_iter \
	shared/iter_records shared/discovery shared/diag_netns shared/config shared/paths shared/clock \
	shared/log
UNIT_LIBS_test_scanner := -lpthread -lbpf -lelf -lz -linih
UNIT_DEPS_test_jsonl := sinks/jsonl shared/clock
UNIT_DEPS_test_state_file := sinks/state_file shared/discovery shared/diag_netns shared/paths shared/clock
UNIT_LIBS_test_state_file := -lpthread
UNIT_DEPS_test_report := cli/report cli/report_journal cli/report_text cli/report_build \
	cli/report_json shared/clock

$(OUTPUT)/tests/%: tests/unit/%.c $(AGENT_OBJS)
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) $< $(foreach d,$(UNIT_DEPS_$(notdir $*)),$(OUTPUT)/user/$(d).o) \
		-o $@ -lcmocka -ljansson $(UNIT_LIBS_$(notdir $*))

# libsockwarden's tests see what its users see: its own folder and public
# header, never the agent's include path.
$(OUTPUT)/tests/lib/%: tests/unit/lib/%.c $(LIB_OBJS)
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(LIB_CFLAGS) -Iuser/lib $< $(LIB_OBJS) -o $@ -lcmocka

# Runs every test binary, then fails if any failed; then report-memory-test
# (not under a sanitizer, whose shadow memory is no measure of ours).
unit-test: $(UNIT_TESTS)
	$(Q)failed=; for t in $(UNIT_TESTS); do echo "== $$t"; $$t || failed="$$failed $$t"; done; \
	if [ -n "$$failed" ]; then echo "unit tests failed:$$failed"; exit 1; fi
	$(if $(SANITIZE),,$(Q)$(MAKE) --no-print-directory report-memory-test)

# `sockwarden report` streams: a generated 200,000-event journal, as text from
# the file and as --json from a pipe, each under 64 MiB of peak RSS (~25 s).
report-memory-test: $(OUTPUT)/sockwarden
	$(Q)python3 tests/report/memory_check.py $(OUTPUT)/sockwarden

.PHONY: report-memory-test

# the programs the integration tests run besides the agent
TEST_PROGS := $(OUTPUT)/plain_server $(OUTPUT)/uring_ops $(OUTPUT)/idle_procs \
	$(OUTPUT)/many_servers $(OUTPUT)/bench-loop

# The host run is a busy host's: IDLE_PROCS idle processes (40 fds each,
# tests/servers/idle_procs.c) live for the whole run, so every reconcile scan
# walks as many /proc/PID/fd entries as on a loaded machine and a test that
# only passes on an idle one fails here. IDLE_PROCS=0: an idle host. The ASan
# run (check-asan) and the VM (vmtest) stay quiet: they run run.py without it.
IDLE_PROCS ?= 3000

integration-test: all $(TEST_PROGS)
	$(Q)SW_IDLE_PROCS=$(IDLE_PROCS) python3 tests/integration/run.py

$(OUTPUT)/plain_server: tests/servers/plain_server.c | $(OUTPUT)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $< -o $@

$(OUTPUT)/uring_ops: tests/servers/uring_ops.c | $(OUTPUT)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $< -o $@ -luring

$(OUTPUT)/idle_procs: tests/servers/idle_procs.c tests/servers/family.h | $(OUTPUT)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $< -o $@

# many libsockwarden servers in one tree of processes, linked like the
# example (statically, the public header only)
$(OUTPUT)/many_servers: tests/servers/many_servers.c tests/servers/family.h \
		$(OUTPUT)/libsockwarden.a $(LIB_INCLUDE)/sockwarden.h | $(OUTPUT)
	$(call msg,CC,$@)
	$(Q)$(CC) $(LIB_CFLAGS) $< $(OUTPUT)/libsockwarden.a -o $@
