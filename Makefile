# sockwarden — build, test, run, install.
#
#   make            build build/sockwarden, build/libsockwarden.{a,so}, build/sockwarden.pc,
#                   build/echo_server (the libsockwarden example)
#   make deps       install missing Debian 12 packages (idempotent, quiet when all is there)
#   make test       deps + build + every test (unit, BPF integration, end to end, and the
#                   integration suite in both attach modes on Debian's kernel under qemu)
#   make run        deps + build + run the agent host-wide, JSON Lines on stdout
#   make bench      benchmarks (not part of CI)
#   make install    PREFIX=/usr/local DESTDIR=
#   V=1             show the full commands

.DELETE_ON_ERROR:
.SUFFIXES:

ifeq ($(V),1)
Q =
msg =
else
Q = @
msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

OUTPUT ?= build
PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
DESTDIR ?=
VERSION := 0.1.0

ARCH := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
VMLINUX_ARCH := $(shell uname -m | sed -e 's/aarch64/arm64/')
CLANG ?= clang
BPFTOOL ?= bpftool
CC ?= cc

# Debian 12 packages the build and the tests need.
DEPS := clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev pkg-config \
	libjansson-dev libsystemd-dev libinih-dev libcmocka-dev scdoc \
	libmicrohttpd-dev socat python3 procps iproute2 libclang-rt-14-dev \
	cppcheck liburing-dev qemu-system-x86 busybox-static podman runc

BPF_CFLAGS := -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_$(ARCH) -Wall -Werror \
	-I$(OUTPUT) -Ivmlinux/$(VMLINUX_ARCH) -Ibpf
CFLAGS ?= -O2 -g
CFLAGS += -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter \
	-D_GNU_SOURCE -DSOCKWARDEN_VERSION='"$(VERSION)"' \
	-I$(OUTPUT) -Ibpf -Iuser
LDLIBS_AGENT := -lpthread -lbpf -lelf -lz -ljansson -lsystemd -linih -lmicrohttpd

# The rooms of user/ (README "Layout"): one binary, build/sockwarden, from
# the daemon, its sinks, the CLI commands and what they share; the library is
# built apart. Sources name other rooms' headers by room ("shared/paths.h").
ROOMS := agent sinks cli shared
AGENT_SRCS := $(foreach r,$(ROOMS),$(wildcard user/$(r)/*.c))
AGENT_HDRS := $(foreach r,$(ROOMS),$(wildcard user/$(r)/*.h))
AGENT_OBJS := $(patsubst user/%.c,$(OUTPUT)/user/%.o,$(AGENT_SRCS))
LIB_SRCS := $(wildcard user/lib/*.c)
LIB_OBJS := $(patsubst user/lib/%.c,$(OUTPUT)/lib/%.o,$(LIB_SRCS))
LIB_INCLUDE := user/lib/include
LIB_HDRS := $(LIB_INCLUDE)/sockwarden.h $(wildcard user/lib/*.h)
# bpf/sockwarden.h would shadow the public header: the library and its
# users see its include folder only.
LIB_CFLAGS = $(filter-out -I%,$(CFLAGS)) -I$(LIB_INCLUDE)
SKEL := $(OUTPUT)/sockwarden.skel.h
# the redirect's program is an object of its own (see below)
REDIRECT_SKEL := $(OUTPUT)/redirect.skel.h
SKELS := $(SKEL) $(REDIRECT_SKEL)

.PHONY: all deps test unit-test integration-test run bench bench-smoke install clean

all: $(OUTPUT)/sockwarden $(OUTPUT)/libsockwarden.a $(OUTPUT)/libsockwarden.so \
	$(OUTPUT)/sockwarden.pc $(OUTPUT)/echo_server

deps:
	@missing=$$(for p in $(DEPS); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "  DEPS     installing:" $$missing; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq >/dev/null && \
		apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(OUTPUT) $(OUTPUT)/user $(OUTPUT)/lib $(OUTPUT)/tests:
	$(Q)mkdir -p $@

# The kernel side: each bpf/*.bpf.c is compiled apart and the objects are
# linked into one, which the skeleton is generated from. Link order:
# maps.bpf.o first (it defines what the others declare extern; bpf/maps.h says
# why libbpf 1.1 needs it first), then the concerns in the order the skeleton
# has always listed their programs; a new bpf/*.bpf.c joins at the end.
#
# bpf/redirect.bpf.c is not linked in: it calls kfuncs that kernels before
# 6.7 lack, and libbpf resolves an object's kfunc externs whatever programs
# it loads, looking through the kernel modules' BTF for one vmlinux lacks.
# That walk (BPF_BTF_GET_NEXT_ID) needs CAP_SYS_ADMIN, which the packaged
# unit does not grant: a single object would not load under the unit on
# Linux 6.1 (make vmhost showed it). Its own object and skeleton are opened
# only on a kernel that has the kfuncs; it shares the two maps it uses
# (bpf/maps.h, SW_MAPS_REDIRECT) with the main object.
BPF_LINK_ORDER := bpf/maps.bpf.c bpf/unlink.bpf.c bpf/connect.bpf.c bpf/listen.bpf.c
BPF_APART := bpf/redirect.bpf.c
BPF_SRCS := $(BPF_LINK_ORDER) \
	$(filter-out $(BPF_LINK_ORDER) $(BPF_APART),$(wildcard bpf/*.bpf.c))
BPF_OBJS := $(patsubst bpf/%.c,$(OUTPUT)/bpf/%.o,$(BPF_SRCS))
BPF_HDRS := $(wildcard bpf/*.h)

$(OUTPUT)/bpf:
	$(Q)mkdir -p $@

$(OUTPUT)/bpf/%.bpf.o: bpf/%.bpf.c $(BPF_HDRS) vmlinux/$(VMLINUX_ARCH)/vmlinux.h | $(OUTPUT)/bpf
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(OUTPUT)/sockwarden.bpf.o: $(BPF_OBJS)
	$(call msg,BPF-LINK,$@)
	$(Q)$(BPFTOOL) gen object $@ $^

$(SKEL): $(OUTPUT)/sockwarden.bpf.o
	$(call msg,GEN-SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name sockwarden_bpf > $@

# one object through the same static linker: its BTF is what libbpf 1.1 expects
$(OUTPUT)/redirect.bpf.o: $(OUTPUT)/bpf/redirect.bpf.o
	$(call msg,BPF-LINK,$@)
	$(Q)$(BPFTOOL) gen object $@ $^

$(REDIRECT_SKEL): $(OUTPUT)/redirect.bpf.o
	$(call msg,GEN-SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name redirect_bpf > $@

$(OUTPUT)/user/%.o: user/%.c $(AGENT_HDRS) bpf/sockwarden.h $(SKELS)
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

# libsockwarden: libc only, everything hidden but the SW_API symbols.
$(OUTPUT)/lib/%.o: user/lib/%.c $(LIB_HDRS) | $(OUTPUT)/lib
	$(call msg,CC,$@)
	$(Q)$(CC) $(LIB_CFLAGS) -Iuser/lib -fPIC -fvisibility=hidden -c $< -o $@

$(OUTPUT)/sockwarden: $(AGENT_OBJS)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS_AGENT)

$(OUTPUT)/libsockwarden.a: $(LIB_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

# -z defs: the library needs nothing but libc. A sanitized one (make
# check-asan) leaves the sanitizer runtime's symbols to the executable, which
# clang links the runtime into.
$(OUTPUT)/libsockwarden.so: $(LIB_OBJS)
	$(call msg,LINK,$@)
	$(Q)$(CC) -shared $(SANITIZE) -Wl,-soname,libsockwarden.so.0 \
		$(if $(SANITIZE),,-Wl,-z,defs) $^ -o $@

$(OUTPUT)/sockwarden.pc: user/lib/sockwarden.pc.in Makefile | $(OUTPUT)
	$(call msg,GEN,$@)
	$(Q)sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
		-e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g' $< > $@

# The libsockwarden example (docs/libsockwarden.md), linked statically.
$(OUTPUT)/echo_server: examples/echo_server.c $(OUTPUT)/libsockwarden.a $(LIB_INCLUDE)/sockwarden.h | $(OUTPUT)
	$(call msg,CC,$@)
	$(Q)$(CC) $(LIB_CFLAGS) $< $(OUTPUT)/libsockwarden.a -o $@

$(OUTPUT)/bench-loop: bench/loop.c | $(OUTPUT)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $< -o $@

# the baselines sockwarden is measured against (bench/run.py)
$(OUTPUT)/watchdog_server: bench/watchdog_server.c | $(OUTPUT)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $< -o $@

$(OUTPUT)/inotify_watch: bench/inotify_watch.c | $(OUTPUT)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $< -o $@

include tests/tests.mk
include dist/alerting.mk
include docs/schema.mk
include tests/vmhost/vmhost.mk
include debian/deb.mk

# The full benchmark run (minutes); README's Performance table comes from it.
bench: deps all $(OUTPUT)/bench-loop $(OUTPUT)/watchdog_server $(OUTPUT)/inotify_watch $(OUTPUT)/plain_server \
		$(OUTPUT)/idle_procs
	$(Q)python3 bench/run.py

# Tiny sizes, so the benchmark programs cannot rot; part of `make test`.
bench-smoke: all $(OUTPUT)/bench-loop $(OUTPUT)/watchdog_server $(OUTPUT)/inotify_watch \
		$(OUTPUT)/plain_server $(OUTPUT)/idle_procs
	$(Q)python3 bench/run.py --smoke --out $(OUTPUT)/bench-smoke.json >/dev/null
	@echo "bench smoke: ok"

run: deps all
	./$(OUTPUT)/sockwarden run

test: deps all
	$(Q)$(MAKE) --no-print-directory unit-test
	$(Q)$(MAKE) --no-print-directory integration-test
	$(Q)$(MAKE) --no-print-directory check-asan
	$(Q)$(MAKE) --no-print-directory bench-smoke
	$(Q)$(MAKE) --no-print-directory soak-smoke
	$(Q)$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=5
	$(Q)$(MAKE) --no-print-directory lint
	$(Q)$(MAKE) --no-print-directory alerting-test
	$(Q)$(MAKE) --no-print-directory deb-test
	$(Q)$(MAKE) --no-print-directory vmtest
	$(Q)$(MAKE) --no-print-directory vmhost

clean:
	$(call msg,CLEAN,$(OUTPUT))
	$(Q)rm -rf $(OUTPUT)

# ---- man pages and `make install` -------------------------------------------
#
#   make install PREFIX=/usr DESTDIR=/tmp/root
#
# installs, under $(DESTDIR):
#   $(SBINDIR)/sockwarden                         the agent (a root daemon: sbin)
#   $(LIBDIR)/libsockwarden.so.$(VERSION), .so.0 -> it, .so -> .so.0, .a
#   $(INCLUDEDIR)/sockwarden.h
#   $(PKGCONFIGDIR)/sockwarden.pc                 names $(PREFIX), not build/
#   $(MANDIR)/man8/sockwarden.8, man5/sockwarden.conf.5, man3/libsockwarden.3
#   $(SYSTEMDUNITDIR)/sockwarden.service          default $(PREFIX)/lib/systemd/system:
#                                                 systemd searches both /usr/lib/systemd/system
#                                                 and /usr/local/lib/systemd/system
#   $(SYSCONFDIR)/sockwarden/sockwarden.conf      only if absent: an edited config is kept
#   $(TMPFILESDIR)/sockwarden.conf                keeps cleaners off the guard directories;
#                                                 default $(PREFIX)/lib/tmpfiles.d, searched
#                                                 for /usr and /usr/local alike
#
# dist/sockwarden.service names the default paths (/usr/local/sbin,
# /etc/sockwarden); the installed copy names $(SBINDIR) and $(SYSCONFDIR).
# Nothing here needs the test dependencies.
SBINDIR ?= $(PREFIX)/sbin
MANDIR ?= $(PREFIX)/share/man
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
SYSCONFDIR ?= /etc
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
INSTALL ?= install

MANPAGES := $(OUTPUT)/man/sockwarden.8 $(OUTPUT)/man/sockwarden.conf.5 \
	$(OUTPUT)/man/libsockwarden.3

all: $(MANPAGES)

$(OUTPUT)/man:
	$(Q)mkdir -p $@

$(OUTPUT)/man/%: docs/man/%.scd | $(OUTPUT)/man
	$(call msg,SCDOC,$@)
	$(Q)scdoc < $< > $@

# Substituted at install time, so the installed files name the prefix of this
# `make install`, whatever `make` was run with.
INSTALL_SED = -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
	-e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g'
UNIT_SED = -e 's|/usr/local/sbin/sockwarden|$(SBINDIR)/sockwarden|g' \
	-e 's|/etc/sockwarden/|$(SYSCONFDIR)/sockwarden/|g'

install: $(OUTPUT)/sockwarden $(OUTPUT)/libsockwarden.a $(OUTPUT)/libsockwarden.so $(MANPAGES)
	$(call msg,INSTALL,$(DESTDIR)$(PREFIX))
	$(Q)mkdir -p $(OUTPUT)/install
	$(Q)sed $(INSTALL_SED) user/lib/sockwarden.pc.in > $(OUTPUT)/install/sockwarden.pc
	$(Q)sed $(UNIT_SED) dist/sockwarden.service > $(OUTPUT)/install/sockwarden.service
	$(Q)$(INSTALL) -D -m 0755 $(OUTPUT)/sockwarden $(DESTDIR)$(SBINDIR)/sockwarden
	$(Q)$(INSTALL) -D -m 0755 $(OUTPUT)/libsockwarden.so \
		$(DESTDIR)$(LIBDIR)/libsockwarden.so.$(VERSION)
	$(Q)ln -sfn libsockwarden.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libsockwarden.so.0
	$(Q)ln -sfn libsockwarden.so.0 $(DESTDIR)$(LIBDIR)/libsockwarden.so
	$(Q)$(INSTALL) -D -m 0644 $(OUTPUT)/libsockwarden.a $(DESTDIR)$(LIBDIR)/libsockwarden.a
	$(Q)$(INSTALL) -D -m 0644 $(LIB_INCLUDE)/sockwarden.h $(DESTDIR)$(INCLUDEDIR)/sockwarden.h
	$(Q)$(INSTALL) -D -m 0644 $(OUTPUT)/install/sockwarden.pc \
		$(DESTDIR)$(PKGCONFIGDIR)/sockwarden.pc
	$(Q)$(INSTALL) -D -m 0644 $(OUTPUT)/man/sockwarden.8 $(DESTDIR)$(MANDIR)/man8/sockwarden.8
	$(Q)$(INSTALL) -D -m 0644 $(OUTPUT)/man/sockwarden.conf.5 \
		$(DESTDIR)$(MANDIR)/man5/sockwarden.conf.5
	$(Q)$(INSTALL) -D -m 0644 $(OUTPUT)/man/libsockwarden.3 \
		$(DESTDIR)$(MANDIR)/man3/libsockwarden.3
	$(Q)$(INSTALL) -D -m 0644 $(OUTPUT)/install/sockwarden.service \
		$(DESTDIR)$(SYSTEMDUNITDIR)/sockwarden.service
	$(Q)$(INSTALL) -D -m 0644 dist/tmpfiles.d/sockwarden.conf \
		$(DESTDIR)$(TMPFILESDIR)/sockwarden.conf
	$(Q)if [ -e $(DESTDIR)$(SYSCONFDIR)/sockwarden/sockwarden.conf ]; then \
		echo "  KEEP     $(DESTDIR)$(SYSCONFDIR)/sockwarden/sockwarden.conf (exists)"; \
	else \
		$(INSTALL) -D -m 0644 dist/sockwarden.conf \
			$(DESTDIR)$(SYSCONFDIR)/sockwarden/sockwarden.conf; \
	fi
	$(Q)if [ -z "$(DESTDIR)" ] && command -v ldconfig >/dev/null; then ldconfig; fi

# Removes what `make install` put there, except the config (yours now).
.PHONY: uninstall
uninstall:
	$(call msg,UNINST,$(DESTDIR)$(PREFIX))
	$(Q)rm -f $(DESTDIR)$(SBINDIR)/sockwarden \
		$(DESTDIR)$(LIBDIR)/libsockwarden.so.$(VERSION) \
		$(DESTDIR)$(LIBDIR)/libsockwarden.so.0 $(DESTDIR)$(LIBDIR)/libsockwarden.so \
		$(DESTDIR)$(LIBDIR)/libsockwarden.a $(DESTDIR)$(INCLUDEDIR)/sockwarden.h \
		$(DESTDIR)$(PKGCONFIGDIR)/sockwarden.pc $(DESTDIR)$(MANDIR)/man8/sockwarden.8 \
		$(DESTDIR)$(MANDIR)/man5/sockwarden.conf.5 $(DESTDIR)$(MANDIR)/man3/libsockwarden.3 \
		$(DESTDIR)$(SYSTEMDUNITDIR)/sockwarden.service \
		$(DESTDIR)$(TMPFILESDIR)/sockwarden.conf

# ----- fuzzing (libFuzzer, clang; ASan and UBSan) -----
# make fuzz [FUZZ_SECONDS=60]: each target for a bounded time from the
# committed corpus in fuzz/corpus/<target>; new inputs stay in build/fuzz/.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := control_decode lib_decode event_path config_parse
FUZZ_CFLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-D_GNU_SOURCE -DSOCKWARDEN_VERSION='"$(VERSION)"'
FUZZ_SRCS_control_decode := user/agent/control_codec.c user/shared/paths.c
FUZZ_INC_control_decode := -Iuser -Ibpf -I$(OUTPUT)
FUZZ_LIBS_control_decode := -ljansson
FUZZ_SRCS_lib_decode := user/lib/codec.c
FUZZ_INC_lib_decode := -I$(LIB_INCLUDE) -Iuser/lib
FUZZ_SRCS_event_path := user/shared/events.c user/shared/paths.c user/shared/clock.c
FUZZ_INC_event_path := -Iuser -Ibpf
FUZZ_LIBS_event_path := -ljansson
FUZZ_SRCS_config_parse := user/shared/config.c user/shared/paths.c user/shared/clock.c
FUZZ_INC_config_parse := -Iuser
FUZZ_LIBS_config_parse := -linih

$(OUTPUT)/fuzz/%: fuzz/%.c $(SKELS) $(wildcard user/*/*.[ch] user/lib/*.[ch]) | $(OUTPUT)
	$(call msg,FUZZ,$@)
	$(Q)mkdir -p $(OUTPUT)/fuzz
	$(Q)clang $(FUZZ_CFLAGS) $(FUZZ_INC_$*) $< $(FUZZ_SRCS_$*) -o $@ $(FUZZ_LIBS_$*)

fuzz: $(foreach t,$(FUZZ_TARGETS),$(OUTPUT)/fuzz/$(t))
	$(Q)set -e; for t in $(FUZZ_TARGETS); do \
		mkdir -p $(OUTPUT)/fuzz/corpus-$$t; \
		echo "== fuzz $$t ($(FUZZ_SECONDS) s)"; \
		rc=0; $(OUTPUT)/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -max_len=8192 \
			-print_final_stats=1 -artifact_prefix=$(OUTPUT)/fuzz/$$t- \
			$(OUTPUT)/fuzz/corpus-$$t fuzz/corpus/$$t > $(OUTPUT)/fuzz/$$t.log 2>&1 || rc=$$?; \
		grep -E "stat::number_of_executed_units|ERROR|SUMMARY|Assertion" $(OUTPUT)/fuzz/$$t.log; \
		if [ $$rc -ne 0 ]; then echo "fuzz $$t failed: see $(OUTPUT)/fuzz/$$t.log"; exit 1; fi; \
	done

.PHONY: fuzz

# ----- lint -----
# lint-arrows: the rooms of user/ depend one way (README "Layout"). A file
# names another room's header by room ("shared/paths.h"); each room may name
# only the rooms after its colon, and libsockwarden none of them.
ROOM_USES := shared:shared sinks:sinks,shared agent:agent,sinks,shared \
	cli:cli,agent,sinks,shared lib:

lint-arrows:
	$(Q)bad=0; for ru in $(ROOM_USES); do \
		room=$${ru%%:*}; uses=$${ru#*:}; \
		for f in user/$$room/*.[ch] user/$$room/*/*.h; do \
			[ -e "$$f" ] || continue; \
			for used in $$(sed -n 's|^#include "\([a-z]*\)/.*|\1|p' "$$f"); do \
				case ",$$uses," in *",$$used,"*) ;; \
				*) echo "lint: $$f includes $$used/ (the $$room room uses: $${uses:-nothing})"; \
				   bad=1;; esac; \
			done; \
		done; \
	done; [ $$bad = 0 ]
	@echo "lint: arrows between rooms run one way"

# cppcheck over every C file; jansson's and libbpf's iterator macros are not
# configured for it (unknownMacro), everything else must be clean. The
# generated skeleton stays out (build/ is not on its include path): it is a
# megabyte of embedded BPF object that costs minutes and is not our code.
#
# Then clang-tidy (checks and why in .clang-tidy) over user/ and user/lib/ with
# the build's own flags, two files at a time; it needs the generated skeleton
# header, which it sees as a system header (-isystem). bpftool writes that
# header: a finding the analyzer places inside it (its OOM paths, reached
# from our calls) is not ours and is left out; any other fails lint.
# run by sh -c '...' under xargs: no single quotes in here
TIDY = clang-tidy --quiet "$$@" -- -std=gnu11 -D_GNU_SOURCE -DSOCKWARDEN_VERSION=\"$(VERSION)\"

lint: $(SKELS) lint-arrows
	$(Q)cppcheck --enable=warning,portability,performance --inline-suppr \
		--error-exitcode=1 -q -D_GNU_SOURCE -Iuser -Ibpf -I$(LIB_INCLUDE) \
		--suppress=missingIncludeSystem --suppress=missingInclude --suppress=unknownMacro \
		$(AGENT_SRCS) user/lib/*.c examples/*.c bench/*.c fuzz/*.c
	@echo "lint: cppcheck clean"
	$(Q)mkdir -p $(OUTPUT)/lint; rc=0; \
	{ printf '%s\n' $(AGENT_SRCS) | xargs -P2 -n2 sh -c '$(TIDY) -isystem $(OUTPUT) -Ibpf -Iuser' _ && \
	  printf '%s\n' user/lib/*.c | xargs -P2 -n1 sh -c '$(TIDY) -I$(LIB_INCLUDE) \
		-Iuser/lib' _; } > $(OUTPUT)/lint/clang-tidy.log 2>&1 || rc=$$?; \
	if grep -E '(error|warning): ' $(OUTPUT)/lint/clang-tidy.log | \
		grep -qv -e '^$(OUTPUT)/[a-z]*\.skel\.h:' -e '^$(abspath $(OUTPUT))/[a-z]*\.skel\.h:'; then \
		grep -v 'warnings\? generated' $(OUTPUT)/lint/clang-tidy.log; \
		echo "lint: clang-tidy failed (exit $$rc)"; exit 1; \
	fi
	@echo "lint: clang-tidy clean"

.PHONY: lint lint-arrows

# ----- faults and soak (issue 9) -----
# build/fault/sockwarden: the agent with fault points compiled in
# (-DSW_FAULT_POINTS; SW_FAULT_STOP=NAME stops it there with SIGSTOP), for
# tests/integration/test_faults.py only. Its own build folder: nothing the
# production binary is built from changes.
FAULT_OUT := $(OUTPUT)/fault

fault-build: $(FAULT_OUT)/sockwarden

$(FAULT_OUT)/sockwarden: $(AGENT_SRCS) $(AGENT_HDRS) $(BPF_SRCS) $(BPF_APART) $(BPF_HDRS)
	$(Q)CFLAGS='-O2 -g -DSW_FAULT_POINTS' $(MAKE) --no-print-directory OUTPUT=$(FAULT_OUT) \
		$(FAULT_OUT)/sockwarden

integration-test: $(FAULT_OUT)/sockwarden

# make soak [SOAK_CYCLES=10000] [SOAK_SECONDS=1800]: unlink→heal cycles against
# the real agent and a real server while clients connect all the time; checks
# every connect after a heal succeeds, fds and RSS stay flat, no count is lost.
# Four runs: the redirect off and on, each on the host and inside a sandbox of
# its own (mount and network namespaces, a private tmpfs: --container).
SOAK_CYCLES ?= 10000
SOAK_SECONDS ?= 1800

$(OUTPUT)/soak_load: tests/soak/soak_load.c | $(OUTPUT)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $< -o $@

soak: all $(OUTPUT)/soak_load $(OUTPUT)/plain_server
	$(Q)python3 tests/soak/soak.py --cycles $(SOAK_CYCLES) --seconds $(SOAK_SECONDS) --redirect off
	$(Q)python3 tests/soak/soak.py --cycles $(SOAK_CYCLES) --seconds $(SOAK_SECONDS) --redirect on
	$(Q)python3 tests/soak/soak.py --cycles $(SOAK_CYCLES) --seconds $(SOAK_SECONDS) --redirect off --container
	$(Q)python3 tests/soak/soak.py --cycles $(SOAK_CYCLES) --seconds $(SOAK_SECONDS) --redirect on --container

# The short version, part of `make test`.
soak-smoke: all $(OUTPUT)/soak_load $(OUTPUT)/plain_server
	$(Q)python3 tests/soak/soak.py --cycles 300 --seconds 120
	$(Q)python3 tests/soak/soak.py --cycles 300 --seconds 120 --container

.PHONY: fault-build soak soak-smoke

# ----- sanitizers (issue 9) -----
# make check-asan: the agent, libsockwarden, the test servers, the fault build
# and every unit test built with ASan + UBSan (LeakSanitizer on) into
# $(ASAN_OUT), then the unit tests and the whole integration suite run against
# it (SW_BUILD). Every sanitized process, the agents the tests start included,
# writes its reports to $(ASAN_LOGS) rather than to a stderr a test may never
# read: any file there fails the target. CFLAGS stays the build's own (a
# command-line CFLAGS would override the fault build's -DSW_FAULT_POINTS):
# SANITIZE is appended to it and reaches the sub-makes through MAKEFLAGS.
# SW_TEST_SLOW=1: a sanitized process takes ~50 ms to start, and the tests
# that start one per trial run fewer trials (each asserts the same).
# clang, not gcc: gcc's UBSan ignores log_path and reports only on stderr.
# test_install's `make install` installs the normal build, which `all` keeps
# current: the installed library must link without a sanitizer runtime.
ASAN_OUT := $(OUTPUT)/asan
ASAN_LOGS := $(abspath $(ASAN_OUT))/sanitizer-logs
ASAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
SANITIZE ?=
CFLAGS += $(SANITIZE)
ASAN_ENV := ASAN_OPTIONS=log_path=$(ASAN_LOGS)/asan:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1 \
	UBSAN_OPTIONS=log_path=$(ASAN_LOGS)/ubsan:print_stacktrace=1:halt_on_error=1 \
	LSAN_OPTIONS=suppressions=$(abspath tests/lsan.supp):print_suppressions=0

# what check-asan builds, named from inside the sanitized sub-make
sanitized-build: all $(TEST_PROGS) $(UNIT_TESTS) fault-build

check-asan: all
	$(Q)$(MAKE) --no-print-directory OUTPUT=$(ASAN_OUT) CC=clang SANITIZE='$(ASAN_FLAGS)' \
		sanitized-build
	$(Q)rm -rf $(ASAN_LOGS) && mkdir -p -m 1777 $(ASAN_LOGS)
	$(Q)failed=; \
	$(ASAN_ENV) $(MAKE) --no-print-directory OUTPUT=$(ASAN_OUT) CC=clang \
		SANITIZE='$(ASAN_FLAGS)' unit-test || failed="$$failed unit-test"; \
	$(ASAN_ENV) SW_BUILD=$(abspath $(ASAN_OUT)) SW_TEST_SLOW=1 python3 tests/integration/run.py \
		|| failed="$$failed integration-test"; \
	if [ -n "$$(ls -A $(ASAN_LOGS))" ]; then \
		for f in $(ASAN_LOGS)/*; do echo "== $$f"; cat "$$f"; done; \
		failed="$$failed sanitizer-reports"; \
	fi; \
	if [ -n "$$failed" ]; then echo "check-asan failed:$$failed"; exit 1; fi; \
	echo "check-asan: clean"

.PHONY: sanitized-build check-asan

# ----- the fentry mode on Debian's kernel, under qemu -----
# make vmtest: the integration suite in --mode fentry and --mode tracepoint on
# Debian 12's cloud kernel (6.1), booted by qemu-system-x86_64 (software
# emulation) from a minimal initramfs; fails on any test failure or kernel
# warning. make vmbench: the overhead of each mode, side by side, in the VM.
# tests/vm/vmtest.py says how; the kernel package comes from Debian's archive
# through apt-get and is kept in $(OUTPUT)/vm.
VM_PROGS := $(OUTPUT)/sockwarden $(OUTPUT)/echo_server $(TEST_PROGS) $(OUTPUT)/bench-loop \
	$(OUTPUT)/watchdog_server $(OUTPUT)/inotify_watch $(FAULT_OUT)/sockwarden

vmtest: deps $(VM_PROGS)
	$(Q)python3 tests/vm/vmtest.py

vmbench: deps $(VM_PROGS)
	$(Q)python3 tests/vm/vmtest.py --bench

.PHONY: vmtest vmbench
