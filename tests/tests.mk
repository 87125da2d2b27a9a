# Tests: cmocka unit tests (no kernel) and integration tests (real agent, real
# BPF, real sockets). Included by the top-level Makefile.

UNIT_TESTS := $(patsubst tests/unit/%.c,$(OUTPUT)/tests/%,$(wildcard tests/unit/test_*.c))
UNIT_DEPS_test_paths := paths
UNIT_DEPS_test_endpoints := endpoints paths discovery clock
UNIT_DEPS_test_coalescer := coalescer
UNIT_DEPS_test_events := events paths clock
UNIT_DEPS_test_flapguard := flapguard
UNIT_DEPS_test_report := report clock
# control_decode lives in control.c, which links the control server's whole
# world (no libbpf, though).
UNIT_DEPS_test_control_codec := control healer guard flapguard endpoints discovery \
	events paths clock log loop

# config.c parses --mode with the loader's parser: libbpf comes along.
UNIT_DEPS_test_config := config bpf_attach endpoints discovery paths clock log
UNIT_LIBS_test_config := -linih -lbpf -lelf -lz
UNIT_DEPS_test_actions := actions config bpf_attach endpoints discovery events flapguard paths clock \
	log loop
UNIT_LIBS_test_actions := -linih -lbpf -lelf -lz
UNIT_DEPS_test_state := state events flapguard endpoints discovery paths clock
UNIT_DEPS_test_sinks := sinks clock
UNIT_DEPS_test_scanner := scanner discovery paths clock log
UNIT_LIBS_test_scanner := -lpthread

$(OUTPUT)/tests/%: tests/unit/%.c $(AGENT_OBJS) | $(OUTPUT)/tests
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $< $(foreach d,$(UNIT_DEPS_$*),$(OUTPUT)/user/$(d).o) \
		-o $@ -lcmocka -ljansson $(UNIT_LIBS_$*)

# Runs every test binary, then fails if any failed.
unit-test: $(UNIT_TESTS)
	$(Q)failed=; for t in $(UNIT_TESTS); do echo "== $$t"; $$t || failed="$$failed $$t"; done; \
	if [ -n "$$failed" ]; then echo "unit tests failed:$$failed"; exit 1; fi

# the programs the integration tests run besides the agent
TEST_PROGS := $(OUTPUT)/plain_server $(OUTPUT)/uring_ops $(OUTPUT)/idle_procs \
	$(OUTPUT)/many_servers

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
		$(OUTPUT)/libsockwarden.a user/include/sockwarden.h | $(OUTPUT)
	$(call msg,CC,$@)
	$(Q)$(CC) $(LIB_CFLAGS) $< $(OUTPUT)/libsockwarden.a -o $@
