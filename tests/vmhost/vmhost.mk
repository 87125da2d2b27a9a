# make vmhost: the Debian packages (make deb) installed on a real Debian 12
# host under qemu, systemd as PID 1, and checked there against the packaged
# service (tests/vmhost/vmhost.py says how). The root file system comes from
# Debian's archive through debootstrap and is cached in $(OUTPUT)/vmhost;
# the kernel is make vmtest's, cached in $(OUTPUT)/vm. Included by the
# top-level Makefile.

DEPS += debootstrap

.PHONY: vmhost

vmhost: deps deb
	$(Q)python3 tests/vmhost/vmhost.py --debs $(OUTPUT)/deb
