#!/usr/bin/env python3
"""make vmhost: the Debian packages on a real Debian 12 host, systemd as PID 1.

A minimal bookworm root file system made with debootstrap from Debian's
archive (cached in build/vmhost/, keyed by its package list), the packages of
build/deb/ and the suite (tests/vmhost/suite.py) added to it, packed as an
initramfs and booted with Debian's cloud kernel (tests/vm/vmtest.py fetches
it) under qemu with rdinit=/sbin/init: systemd is PID 1 and the root file
system is the initramfs's tmpfs (the cloud kernel builds virtio_blk as a
module, so a disk would need an initrd of its own). There is no
/etc/initrd-release, so systemd boots it as the host, not as an initrd.
sockwarden-vmhost-suite.service runs the suite after multi-user.target; it
prints "SW-VMHOST-..." lines on the serial console and powers the VM off.

    tests/vmhost/vmhost.py [--debs DIR] [--timeout SECONDS] [--only CHECK,...]

--only runs the named checks of suite.py (in its order); --only boot needs no
packages: the VM plumbing alone.

Exit 0 only if every check passed, no unit failed and the VM powered off.
"""
import argparse
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "vm"))
import vmtest  # noqa: E402  (fetch_kernel: Debian's cloud kernel, cached in build/vm)

BUILD = os.path.join(ROOT, "build")
VMHOSTDIR = os.path.join(BUILD, "vmhost")
MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
# What the root file system holds besides minbase: the init system, what the
# suite drives (socat servers, python3 for the suite itself and the metrics
# scrape, ip, ps, kmod for modprobe) and the packages' run-time dependencies
# so that dpkg -i works without network (checked against the debs' Depends
# below: a missing one is added and makes a new cache key).
ROOTFS_PACKAGES = ["systemd", "systemd-sysv", "dbus", "init-system-helpers", "kmod", "socat",
                   "python3", "iproute2", "procps", "util-linux",
                   "libbpf1", "libjansson4", "libinih1", "libmicrohttpd12", "libelf1",
                   "zlib1g", "libsystemd0", "libc6"]
# modules of the cloud kernel the agent needs: unix_diag answers sock_diag for
# AF_UNIX. They go under /lib/modules; the suite runs depmod in the VM (the
# build host has no kmod) so that the kernel's request_module (sock_diag asks
# for its family's module on demand) or modprobe finds them.
MODULES = ["kernel/net/unix/unix_diag.ko"]
PACKAGES = ["sockwarden", "libsockwarden0", "libsockwarden-dev"]
UPGRADE_SUFFIX = "+vmhost1"


def log(msg):
    print("vmhost: " + msg, flush=True)


def sh(*args, **kw):
    return subprocess.run(list(args), check=True, **kw)


def find_debs(debdir):
    debs = {}
    for name in PACKAGES:
        found = sorted(glob.glob(os.path.join(debdir, name + "_*.deb")))
        if not found:
            raise SystemExit("vmhost: no %s_*.deb in %s (make deb builds them)" % (name, debdir))
        debs[name] = found[-1]
    return debs


def depends_of(debs):
    """The package names the debs depend on (the first of any alternatives)."""
    names = set()
    for deb in debs.values():
        field = subprocess.run(["dpkg-deb", "-f", deb, "Depends", "Pre-Depends"],
                               capture_output=True, text=True, check=True).stdout
        for line in field.splitlines():
            value = line.split(":", 1)[1] if ":" in line else line
            for dep in value.split(","):
                first = dep.split("|")[0].strip()
                m = re.match(r"([a-z0-9][a-z0-9+.-]+)", first)
                if m:
                    names.add(m.group(1))
    return names - set(PACKAGES)


def installed(status_file):
    names = set()
    with open(status_file) as f:
        for block in f.read().split("\n\n"):
            pkg = re.search(r"^Package: (\S+)", block, re.M)
            if pkg and re.search(r"^Status: install ok installed", block, re.M):
                names.add(pkg.group(1))
    return names


def cache_key(packages):
    text = "%s %s minbase\n%s\n" % (MIRROR, SUITE, "\n".join(sorted(packages)))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pack_cpio(directory, image):
    files = subprocess.run(["find", "."], cwd=directory, capture_output=True, check=True).stdout
    with open(image + ".tmp", "wb") as out:
        subprocess.run(["/bin/busybox", "cpio", "-o", "-H", "newc"], cwd=directory,
                       input=files, stdout=out, stderr=subprocess.DEVNULL, check=True)
    os.rename(image + ".tmp", image)


def customize_rootfs(root):
    """What makes the debootstrapped tree boot as a host in a VM."""
    def write(path, text, mode=0o644):
        p = os.path.join(root, path.lstrip("/"))
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, mode)
    write("/etc/hostname", "sw-vmhost\n")
    write("/etc/hosts", "127.0.0.1 localhost\n127.0.1.1 sw-vmhost\n")
    # the root file system is the initramfs's tmpfs: nothing to mount or fsck
    write("/etc/fstab", "# the root is the initramfs (tests/vmhost/vmhost.py)\n")
    # a machine id made at each boot (systemd writes /etc/machine-id itself)
    write("/etc/machine-id", "")
    # /tmp as a tmpfs of its own (Debian 12 ships the unit, not enabled)
    unit = os.path.join(root, "usr/share/systemd/tmp.mount")
    if os.path.exists(unit):
        shutil.copy(unit, os.path.join(root, "etc/systemd/system/tmp.mount"))
        os.makedirs(os.path.join(root, "etc/systemd/system/local-fs.target.wants"),
                    exist_ok=True)
        os.symlink("../tmp.mount",
                   os.path.join(root, "etc/systemd/system/local-fs.target.wants/tmp.mount"))
    # keep the image small: the VM reads none of these
    for d in ("usr/share/doc", "usr/share/man", "usr/share/locale", "usr/share/info",
              "var/cache/apt", "var/lib/apt/lists", "usr/share/zoneinfo"):
        p = os.path.join(root, d)
        if os.path.isdir(p):
            for e in os.listdir(p):
                q = os.path.join(p, e)
                shutil.rmtree(q) if os.path.isdir(q) and not os.path.islink(q) else os.unlink(q)
    # dpkg keeps documentation and man pages out on install too (the suite's
    # checks look at binaries, units and conffiles)
    write("/etc/dpkg/dpkg.cfg.d/vmhost-nodoc",
          "path-exclude /usr/share/doc/*\npath-exclude /usr/share/locale/*\n")


def rootfs(debs):
    """The cached base image: build/vmhost/rootfs-KEY.cpio (and its dpkg status)."""
    os.makedirs(VMHOSTDIR, exist_ok=True)
    packages = set(ROOTFS_PACKAGES)
    need = depends_of(debs)
    for _ in range(2):
        key = cache_key(packages)
        image = os.path.join(VMHOSTDIR, "rootfs-%s.cpio" % key)
        status = image[:-len(".cpio")] + ".status"
        if os.path.exists(image) and os.path.exists(status):
            missing = need - installed(status)
            if not missing:
                log("root file system cached: %s (%d MiB)" %
                    (os.path.relpath(image, ROOT), os.path.getsize(image) >> 20))
                return image
            # a dependency the list lacks: a new list, a new key
            log("the cached root file system lacks %s: adding it" % " ".join(sorted(missing)))
            packages |= missing
            continue
        break
    if shutil.which("debootstrap") is None:
        raise SystemExit("vmhost: debootstrap is not installed (make deps)")
    tmp = os.path.join(VMHOSTDIR, "rootfs.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    include = sorted(packages | need)
    log("debootstrap --variant=minbase %s from %s (+ %d packages)" % (SUITE, MIRROR,
                                                                      len(include)))
    t0 = time.monotonic()
    r = subprocess.run(["debootstrap", "--variant=minbase", "--include=" + ",".join(include),
                        SUITE, tmp, MIRROR], capture_output=True, text=True)
    if r.returncode != 0:
        sys.stdout.write(r.stdout[-4000:] + r.stderr[-4000:])
        log_file = os.path.join(tmp, "debootstrap", "debootstrap.log")
        if os.path.exists(log_file):
            with open(log_file) as f:
                sys.stdout.write(f.read()[-4000:])
        raise SystemExit("vmhost: debootstrap failed")
    log("debootstrap took %.0f s" % (time.monotonic() - t0))
    missing = need - installed(os.path.join(tmp, "var/lib/dpkg/status"))
    if missing:
        raise SystemExit("vmhost: debootstrap did not install %s" % " ".join(sorted(missing)))
    customize_rootfs(tmp)
    key = cache_key(set(include))
    image = os.path.join(VMHOSTDIR, "rootfs-%s.cpio" % key)
    shutil.copy(os.path.join(tmp, "var/lib/dpkg/status"), image[:-len(".cpio")] + ".status")
    pack_cpio(tmp, image)
    shutil.rmtree(tmp)
    with open(image[:-len(".cpio")] + ".packages", "w") as f:
        f.write("\n".join(include) + "\n")
    log("root file system: %s (%d MiB)" % (os.path.relpath(image, ROOT),
                                           os.path.getsize(image) >> 20))
    return image


def upgrade_deb(deb, workdir):
    """The sockwarden package again with a higher version: what an upgrade installs."""
    tree = os.path.join(workdir, "repack")
    sh("dpkg-deb", "-R", deb, tree)
    control = os.path.join(tree, "DEBIAN", "control")
    with open(control) as f:
        text = f.read()
    version = re.search(r"^Version: (\S+)", text, re.M).group(1)
    newer = version + UPGRADE_SUFFIX
    with open(control, "w") as f:
        f.write(re.sub(r"^Version: \S+", "Version: " + newer, text, flags=re.M))
    out = os.path.join(workdir, "sockwarden_%s_upgrade.deb" % newer.split(":")[-1])
    sh("dpkg-deb", "--root-owner-group", "-b", tree, out, stdout=subprocess.DEVNULL)
    shutil.rmtree(tree)
    return out, version, newer


def shared_echo_server(debs, workdir):
    """build/echo_server links libsockwarden.a statically; the VM needs a server
    that loads the packaged libsockwarden.so.0, so the example is built here
    against the -dev package's header and library (no rpath)."""
    sysroot = os.path.join(workdir, "sysroot")
    for name in ("libsockwarden0", "libsockwarden-dev"):
        sh("dpkg-deb", "-x", debs[name], sysroot)
    inc = os.path.join(sysroot, "usr", "include")
    libdirs = [os.path.dirname(p) for p in
               glob.glob(os.path.join(sysroot, "usr", "lib", "**", "libsockwarden.so"),
                         recursive=True)]
    if not libdirs:
        raise SystemExit("vmhost: libsockwarden-dev has no libsockwarden.so")
    out = os.path.join(workdir, "echo_server")
    sh(os.environ.get("CC", "cc"), "-O2", "-Wall", "-Wextra", "-Werror", "-I" + inc,
       os.path.join(ROOT, "examples", "echo_server.c"), "-L" + libdirs[0], "-lsockwarden",
       "-o", out)
    needed = subprocess.run(["readelf", "-d", out], capture_output=True, text=True).stdout
    if "libsockwarden.so.0" not in needed or re.search(r"R(UN)?PATH", needed):
        raise SystemExit("vmhost: echo_server does not load libsockwarden.so.0 by soname")
    shutil.rmtree(sysroot)
    return out


def overlay(kdir, debs, workdir, only):
    """The second cpio: the debs, the suite and its unit, the kernel's modules."""
    root = os.path.join(workdir, "overlay")
    vh = os.path.join(root, "vmhost")
    os.makedirs(os.path.join(vh, "debs"))
    if debs:
        for name, deb in debs.items():
            shutil.copy(deb, os.path.join(vh, "debs"))
        upgrade, version, newer = upgrade_deb(debs["sockwarden"], workdir)
        os.makedirs(os.path.join(vh, "upgrade"))
        shutil.move(upgrade, os.path.join(vh, "upgrade"))
        shutil.move(shared_echo_server(debs, workdir), os.path.join(vh, "echo_server"))
        with open(os.path.join(vh, "versions"), "w") as f:
            f.write("%s\n%s\n" % (version, newer))
    for f in ("suite.py", "security-exposure"):
        shutil.copy(os.path.join(HERE, f), vh)
    if only:
        with open(os.path.join(vh, "only"), "w") as f:
            f.write("\n".join(only) + "\n")
    units = os.path.join(root, "etc", "systemd", "system")
    os.makedirs(os.path.join(units, "multi-user.target.wants"))
    shutil.copy(os.path.join(HERE, "sockwarden-vmhost-suite.service"), units)
    os.symlink("../sockwarden-vmhost-suite.service",
               os.path.join(units, "multi-user.target.wants", "sockwarden-vmhost-suite.service"))
    # the VM has no network: apt's daily timers would only fail
    for unit in ("apt-daily.timer", "apt-daily-upgrade.timer"):
        os.symlink("/dev/null", os.path.join(units, unit))
    kver = os.path.basename(glob.glob(os.path.join(kdir, "lib", "modules", "*"))[0])
    mods = os.path.join(root, "lib", "modules", kver)
    for m in MODULES:
        vmtest.copy_into(root, os.path.join(kdir, "lib", "modules", kver, m),
                         "/lib/modules/%s/%s" % (kver, m))
    for f in ("modules.builtin", "modules.builtin.modinfo", "modules.order"):
        src = os.path.join(kdir, "lib", "modules", kver, f)
        if os.path.exists(src):
            shutil.copy(src, mods)
    # merged /usr: the base image has /lib -> usr/lib; a real lib/ directory in
    # the overlay would replace that link when the kernel unpacks it
    os.makedirs(os.path.join(root, "usr"))
    os.rename(os.path.join(root, "lib"), os.path.join(root, "usr", "lib"))
    image = os.path.join(workdir, "overlay.cpio")
    pack_cpio(root, image)
    return image


def boot(vmlinuz, image, timeout):
    accel = "tcg,thread=single"
    if kvm_works(vmlinuz):
        accel = "kvm"
    # systemd.getty_auto=0: no serial getty fights the suite for the console.
    # systemd.firstboot=off: /etc/machine-id is empty (a fresh host), and
    # systemd-firstboot would prompt for a locale and a root password.
    # panic=-1: a panic powers the VM off (-no-reboot) instead of hanging.
    append = ("console=ttyS0 rdinit=/sbin/init panic=-1 loglevel=4 random.trust_cpu=on "
              "systemd.getty_auto=0 systemd.firstboot=off systemd.show_status=1")
    cmd = ["qemu-system-x86_64", "-machine", "q35", "-accel", accel,
           "-smp", "2", "-m", "3072", "-kernel", vmlinuz, "-initrd", image,
           "-append", append, "-nic", "none", "-display", "none", "-monitor", "none",
           "-serial", "stdio", "-no-reboot"]
    if accel.startswith("tcg"):
        cmd[cmd.index("-smp"):cmd.index("-smp")] = ["-cpu", "max"]
    log("booting %s with %s (%d MiB initramfs)" % (os.path.basename(vmlinuz), accel,
                                                    os.path.getsize(image) >> 20))
    t0 = time.monotonic()
    console = []
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    timed_out = False
    try:
        deadline = t0 + timeout
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            console.append(line)
            print("  vm| " + line, flush=True)
            if time.monotonic() > deadline:
                timed_out = True
                break
        if not timed_out:
            proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        timed_out = True
    if timed_out:
        proc.kill()
        proc.wait()
        log("timed out after %d s" % timeout)
    return console, time.monotonic() - t0, not timed_out


def kvm_works(vmlinuz):
    """Whether KVM really runs a guest: /dev/kvm can be there and still hang
    (nested virtualization on this machine spins in the host kernel without the
    guest printing a line). The kernel must print its banner within 15 s."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    cmd = ["qemu-system-x86_64", "-machine", "q35", "-accel", "kvm", "-m", "256",
           "-kernel", vmlinuz, "-append", "console=ttyS0 panic=-1", "-nic", "none",
           "-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    ok = False
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + 15
    buf = b""
    while time.monotonic() < deadline and not ok:
        if not sel.select(timeout=max(0.1, deadline - time.monotonic())):
            continue
        chunk = os.read(proc.stdout.fileno(), 4096)
        if not chunk:
            break
        buf += chunk
        ok = b"Linux version" in buf
    proc.kill()
    proc.wait()
    log("KVM %s" % ("works" if ok else "does not run a guest here: TCG"))
    return ok


def judge(console, completed, elapsed):
    checks = []
    end = None
    for line in console:
        m = re.search(r"SW-VMHOST-CHECK (\S+) (ok|FAIL) ([0-9.]+)s", line)
        if m:
            checks.append((m.group(1), m.group(2), float(m.group(3))))
        m = re.search(r"SW-VMHOST-END rc=(\d+)", line)
        if m:
            end = int(m.group(1))
    log("checks:")
    for name, verdict, secs in checks:
        print("  %-28s %-4s %6.1f s" % (name, verdict, secs))
    ok = completed and end == 0 and checks and all(v == "ok" for _, v, _ in checks)
    if end is None:
        log("no result came back (the VM died or hung?)")
    trouble = [l for l in console if vmtest.KERNEL_TROUBLE.search(l)]
    if trouble:
        ok = False
        log("the kernel logged trouble:")
        for l in trouble[:40]:
            print("  " + l)
    log("VM ran %.0f s; %s" % (elapsed, "PASSED" if ok else "FAILED"))
    return bool(ok)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--debs", default=os.path.join(BUILD, "deb"))
    ap.add_argument("--timeout", type=int, default=1800)
    ap.add_argument("--only", default="", help="checks of suite.py to run (default: all)")
    a = ap.parse_args()
    only = [c for c in a.only.split(",") if c]
    if os.geteuid() != 0:
        raise SystemExit("vmhost: needs root (debootstrap, apt-get)")
    t0 = time.monotonic()
    debs = {} if only == ["boot"] else find_debs(a.debs)
    kdir, vmlinuz = vmtest.fetch_kernel()
    base = rootfs(debs)
    with tempfile.TemporaryDirectory(dir=VMHOSTDIR) as work:
        extra = overlay(kdir, debs, work, only)
        image = os.path.join(work, "vm.cpio")
        # the kernel unpacks concatenated archives one after the other
        with open(image, "wb") as out:
            for part in (base, extra):
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
        console, elapsed, completed = boot(vmlinuz, image, a.timeout)
    with open(os.path.join(VMHOSTDIR, "console.log"), "w") as f:
        f.write("\n".join(console) + "\n")
    ok = judge(console, completed, elapsed)
    log("console saved in build/vmhost/console.log; %.0f s in all" % (time.monotonic() - t0))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
