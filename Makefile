# sockwarden — build, test, run, install.
#
#   make            build build/sockwarden, build/libsockwarden.{a,so}
#   make deps       install missing Debian 12 packages (idempotent, quiet when all is there)
#   make test       deps + build + every test (unit, BPF integration, end to end)
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
	libmicrohttpd-dev socat python3 procps iproute2

BPF_CFLAGS := -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_$(ARCH) -Wall -Werror \
	-I$(OUTPUT) -Ivmlinux/$(VMLINUX_ARCH) -Ibpf
CFLAGS ?= -O2 -g
CFLAGS += -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter \
	-D_GNU_SOURCE -DSOCKWARDEN_VERSION='"$(VERSION)"' \
	-I$(OUTPUT) -Ibpf -Iuser -Iuser/include
LDLIBS_AGENT := -lbpf -lelf -lz -ljansson -lsystemd -linih -lmicrohttpd

AGENT_SRCS := $(wildcard user/*.c)
AGENT_OBJS := $(patsubst user/%.c,$(OUTPUT)/user/%.o,$(AGENT_SRCS))
LIB_SRCS := $(wildcard user/lib/*.c)
LIB_OBJS := $(patsubst user/lib/%.c,$(OUTPUT)/lib/%.o,$(LIB_SRCS))
SKEL := $(OUTPUT)/sockwarden.skel.h

.PHONY: all deps test unit-test integration-test run bench bench-smoke install clean

all: $(OUTPUT)/sockwarden $(OUTPUT)/libsockwarden.a $(OUTPUT)/libsockwarden.so

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

$(OUTPUT)/sockwarden.bpf.o: bpf/sockwarden.bpf.c bpf/sockwarden.h vmlinux/$(VMLINUX_ARCH)/vmlinux.h | $(OUTPUT)
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(SKEL): $(OUTPUT)/sockwarden.bpf.o
	$(call msg,GEN-SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name sockwarden_bpf > $@

$(OUTPUT)/user/%.o: user/%.c $(wildcard user/*.h) bpf/sockwarden.h $(SKEL) | $(OUTPUT)/user
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(OUTPUT)/lib/%.o: user/lib/%.c user/include/sockwarden.h | $(OUTPUT)/lib
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) -fPIC -fvisibility=hidden -c $< -o $@

$(OUTPUT)/sockwarden: $(AGENT_OBJS)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS_AGENT)

$(OUTPUT)/libsockwarden.a: $(LIB_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(OUTPUT)/libsockwarden.so: $(LIB_OBJS)
	$(call msg,LINK,$@)
	$(Q)$(CC) -shared -Wl,-soname,libsockwarden.so.0 $^ -o $@

$(OUTPUT)/bench-loop: bench/loop.c | $(OUTPUT)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $< -o $@

include tests/tests.mk

# The full benchmark run (minutes); README's Performance table comes from it.
bench: deps all $(OUTPUT)/bench-loop
	$(Q)python3 bench/run.py

# Tiny sizes, so the benchmark programs cannot rot; part of `make test`.
bench-smoke: all $(OUTPUT)/bench-loop
	$(Q)python3 bench/run.py --smoke --out $(OUTPUT)/bench-smoke.json >/dev/null
	@echo "bench smoke: ok"

run: deps all
	./$(OUTPUT)/sockwarden run

test: deps all
	$(Q)$(MAKE) --no-print-directory unit-test
	$(Q)$(MAKE) --no-print-directory integration-test
	$(Q)$(MAKE) --no-print-directory bench-smoke

clean:
	$(call msg,CLEAN,$(OUTPUT))
	$(Q)rm -rf $(OUTPUT)
