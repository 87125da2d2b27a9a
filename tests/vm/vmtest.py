#!/usr/bin/env python3
"""make vmtest: the integration suite on Debian 12's cloud kernel under qemu.

These machines cannot load fentry programs (DESIGN §7), so the fentry mode is
proven on the kernel most fleets run: Debian 12's linux-image-*-cloud-amd64,
taken from Debian's archive with apt-get (nothing else is fetched), booted by
qemu-system-x86_64 under software emulation (there is no KVM here) with a
minimal initramfs that holds busybox, the built agent and its libraries,
Python and the integration tests. /init (tests/vm/init) runs the suite once
per attach mode and the host reads the results off the serial console.

    tests/vm/vmtest.py [--modes fentry,tracepoint] [--suite NAME...]
                       [--bench] [--timeout SECONDS]

Exit 0 only if every mode's suite passed and the kernel logged no warning.
"""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, "build")
VMDIR = os.path.join(BUILD, "vm")
META_PACKAGE = "linux-image-cloud-amd64"

# what the tests run besides Python and busybox (busybox covers the rest)
HOST_PROGRAMS = ["/usr/bin/python3.11", "/usr/bin/setpriv", "/usr/bin/socat",
                 "/usr/bin/unshare"]
BUILT_PROGRAMS = ["sockwarden", "echo_server", "plain_server", "uring_ops", "bench-loop",
                  "watchdog_server", "inotify_watch", "fault/sockwarden"]
# modules the agent needs that Debian's cloud kernel builds as modules:
# unix_diag answers sock_diag for AF_UNIX (discovery, reconcile)
MODULES = ["kernel/net/unix/unix_diag.ko"]
# stdlib parts no test imports: left out to keep the initramfs small
PY_SKIP = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data",
           "distutils", "config-3.11-x86_64-linux-gnu", "site-packages", "dist-packages",
           "unittest", "venv", "sqlite3", "xmlrpc", "curses", "dbm"}
# modules of the suite that run on the host only (/init gets them as
# SW_TEST_EXCLUDE): test_install is not about the kernel and needs a toolchain
# (make install, scdoc, systemd-analyze); test_load is about the agent's own
# event loop under load (1000 server processes, 3000 idle ones), which a
# single-threaded emulated CPU would turn into minutes of a timing-sensitive
# run, and its helpers (idle_procs, many_servers) are not in the initramfs;
# test_redirect needs cgroup/connect_unix (6.7+), which Debian 12's 6.1 lacks:
# there test_heal's redirect_is_announced checks the agent says so;
# test_racers races the agent's path handling (userspace, the same in every
# mode) for thousands of rounds, minutes under emulation for nothing new
HOST_ONLY_SUITES = ["test_install", "test_load", "test_podman", "test_redirect",
                    "test_racers"]

KERNEL_TROUBLE = re.compile(r"WARNING:|BUG:|Oops|general protection|Call Trace|"
                            r"UBSAN|KASAN|refcount_t|kernel panic|soft lockup|hung task")


def log(msg):
    print("vmtest: " + msg, flush=True)


def sh(*args, **kw):
    return subprocess.run(list(args), check=True, **kw)


def kernel_package():
    """The versioned package the meta-package depends on, as apt resolves it."""
    def depends():
        r = subprocess.run(["apt-cache", "depends", META_PACKAGE], capture_output=True,
                           text=True)
        m = re.search(r"Depends: (linux-image-[0-9.]+-[0-9]+-cloud-amd64)\b", r.stdout)
        return m.group(1) if m else None
    pkg = depends()
    if not pkg:
        sh("apt-get", "update", "-qq")
        pkg = depends()
    if not pkg:
        raise SystemExit("vmtest: apt knows no %s (Debian 12's archive?)" % META_PACKAGE)
    return pkg


def fetch_kernel():
    """Downloads (once) and unpacks Debian's cloud kernel into build/vm/kernel."""
    pkg = kernel_package()
    kdir = os.path.join(VMDIR, "kernel-" + pkg)
    vmlinuz = glob.glob(os.path.join(kdir, "boot", "vmlinuz-*"))
    if vmlinuz:
        return kdir, vmlinuz[0]
    dl = os.path.join(VMDIR, "deb")
    os.makedirs(dl, exist_ok=True)
    if not glob.glob(os.path.join(dl, pkg + "_*.deb")):
        log("downloading %s from Debian's archive" % pkg)
        r = subprocess.run(["apt-get", "download", pkg], cwd=dl, capture_output=True, text=True)
        if r.returncode != 0:
            sh("apt-get", "update", "-qq")
            sh("apt-get", "download", pkg, cwd=dl, stdout=subprocess.DEVNULL)
    deb = glob.glob(os.path.join(dl, pkg + "_*.deb"))[0]
    tmp = kdir + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    sh("dpkg-deb", "-x", deb, tmp)
    os.rename(tmp, kdir)
    return kdir, glob.glob(os.path.join(kdir, "boot", "vmlinuz-*"))[0]


def shared_libs(paths):
    """Every shared library the given ELF files load, with the loader."""
    libs = set()
    for p in paths:
        r = subprocess.run(["ldd", p], capture_output=True, text=True)
        for line in r.stdout.splitlines():
            m = re.search(r"=> (/\S+)", line) or re.match(r"\s*(/\S+)", line)
            if m:
                libs.add(m.group(1))
    return libs


def copy_into(root, src, dst=None):
    dst = os.path.join(root, (dst or src).lstrip("/"))
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copy2(os.path.realpath(src), dst)
    return dst


def build_initramfs(kdir, suites, bench, serial):
    root = os.path.join(VMDIR, "root")
    shutil.rmtree(root, ignore_errors=True)
    for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "run", "etc", "root", "sw",
              "usr/bin", "usr/sbin"):
        os.makedirs(os.path.join(root, d), exist_ok=True)

    # busybox: every applet as a link, unless a real program takes its name
    copy_into(root, "/bin/busybox")
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True,
                             text=True, check=True).stdout.split()
    for a in applets:
        link = os.path.join(root, "bin", a)
        if not os.path.lexists(link):
            os.symlink("busybox", link)

    built = [os.path.join(BUILD, p) for p in BUILT_PROGRAMS]
    missing = [p for p in built if not os.path.exists(p)]
    if missing:
        raise SystemExit("vmtest: not built: %s (make vmtest builds them)" % " ".join(missing))
    dynload = glob.glob("/usr/lib/python3.11/lib-dynload/*.so")
    for lib in sorted(shared_libs(HOST_PROGRAMS + built + dynload)):
        copy_into(root, lib)
    # /lib64 and /lib are links on Debian (merged /usr): the loader's path must resolve
    for lib in list(shared_libs(HOST_PROGRAMS)):
        if lib.startswith("/lib64/"):
            copy_into(root, lib)
    for p in HOST_PROGRAMS:
        copy_into(root, p)
        # a busybox applet of the same name must not shadow the real program
        for d in ("bin", "usr/bin"):
            link = os.path.join(root, d, os.path.basename(p))
            if os.path.islink(link):
                os.unlink(link)
    os.symlink("python3.11", os.path.join(root, "usr/bin/python3"))
    for p in built:
        copy_into(root, p, "/sw/build/" + os.path.relpath(p, BUILD))

    # the Python standard library, without what no test imports
    src = "/usr/lib/python3.11"
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        if rel == ".":
            dirnames[:] = [d for d in dirnames if d not in PY_SKIP]
        for f in filenames:
            copy_into(root, os.path.join(dirpath, f))

    # python3-jsonschema and what it imports (docs/schema.mk): the harness checks
    # every event against docs/events.schema.json, and under CI=true a missing
    # jsonschema fails the run
    dist = "/usr/lib/python3/dist-packages"
    for name in ["jsonschema", "attr", "attrs", "pyrsistent", "_pyrsistent_version.py"] + \
            [os.path.basename(p) for p in glob.glob(dist + "/pvectorc*.so")]:
        src = os.path.join(dist, name)
        for f in ([src] if os.path.isfile(src) else
                  [os.path.join(d, n) for d, _, ns in os.walk(src) for n in ns
                   if "__pycache__" not in d]):
            copy_into(root, f)
    copy_into(root, os.path.join(ROOT, "docs", "events.schema.json"),
              "/sw/docs/events.schema.json")

    # the suite
    shutil.copytree(os.path.join(ROOT, "tests"), os.path.join(root, "sw", "tests"),
                    ignore=shutil.ignore_patterns("__pycache__", "vm", "unit"))
    shutil.copytree(os.path.join(ROOT, "bench"), os.path.join(root, "sw", "bench"),
                    ignore=shutil.ignore_patterns("__pycache__"))

    # kernel modules
    kver = os.path.basename(glob.glob(os.path.join(kdir, "lib", "modules", "*"))[0])
    for m in MODULES:
        copy_into(root, os.path.join(kdir, "lib", "modules", kver, m),
                  "/lib/modules/%s/%s" % (kver, m))

    with open(os.path.join(root, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    with open(os.path.join(root, "etc", "group"), "w") as f:
        f.write("root:x:0:\nnogroup:x:65534:\n")
    with open(os.path.join(root, "etc", "hostname"), "w") as f:
        f.write("sw-vm\n")
    with open(os.path.join(root, "sw", "vm.conf"), "w") as f:
        f.write("SUITES='%s'\nEXCLUDE='%s'\nBENCH=%d\nBENCH_ARGS='%s'\nPARALLEL=%d\n" % (
            " ".join(suites), " ".join(HOST_ONLY_SUITES), 1 if bench else 0, bench or "",
            0 if serial else 1))
    init = copy_into(root, os.path.join(ROOT, "tests", "vm", "init"), "/init")
    os.chmod(init, 0o755)

    image = os.path.join(VMDIR, "initramfs.cpio")
    files = subprocess.run(["find", "."], cwd=root, capture_output=True, check=True).stdout
    with open(image + ".tmp", "wb") as out:
        subprocess.run(["/bin/busybox", "cpio", "-o", "-H", "newc"], cwd=root, input=files,
                       stdout=out, stderr=subprocess.DEVNULL, check=True)
    os.rename(image + ".tmp", image)
    return image


def boot(vmlinuz, image, modes, timeout, loglevel):
    # softlockup_panic: a kernel stuck in our programs' path ends the run with
    # its trace instead of hanging until the timeout
    append = ("console=ttyS0 loglevel=%d panic=-1 oops=panic softlockup_panic=1 "
              "random.trust_cpu=on sw.modes=%s" % (loglevel, ",".join(modes)))
    # thread=single: one host thread runs both vCPUs in turn. With
    # thread=multi, a CPU running syscall_trace_enter while another patches
    # its static branch (attaching a syscall tracepoint) kept executing the
    # stale code: a soft lockup at syscall_trace_enter, seen twice in 8 runs.
    cmd = ["qemu-system-x86_64", "-machine", "q35", "-accel", "tcg,thread=single",
           "-cpu", "max", "-smp", "2", "-m", "3072", "-kernel", vmlinuz, "-initrd", image,
           "-append", append, "-nic", "none", "-display", "none", "-monitor", "none",
           "-serial", "stdio", "-no-reboot"]
    log("booting %s (%d MiB initramfs), modes %s" %
        (os.path.basename(vmlinuz), os.path.getsize(image) >> 20, ",".join(modes)))
    t0 = time.monotonic()
    console = []
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    try:
        deadline = t0 + timeout
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            console.append(line)
            if not line.startswith("SW-DMESG "):
                print("  vm| " + line, flush=True)
            if time.monotonic() > deadline:
                raise TimeoutError
        proc.wait(timeout=30)
    except (TimeoutError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()
        log("timed out after %d s" % timeout)
        return console, None
    return console, time.monotonic() - t0


def bench_result(console):
    """The VM's bench.json, saved as build/vm-bench.json, and its table."""
    for line in console:
        if line.startswith("SW-VMTEST-BENCH "):
            doc = json.loads(line[len("SW-VMTEST-BENCH "):])
            with open(os.path.join(BUILD, "vm-bench.json"), "w") as f:
                json.dump(doc, f, indent=2)
            subprocess.run([sys.executable, os.path.join(ROOT, "bench", "run.py"), "--table",
                            os.path.join(BUILD, "vm-bench.json")])
            log("wrote build/vm-bench.json")
            return True
    log("no bench result came back")
    return False


def judge(console, modes, elapsed):
    ok = True
    if elapsed is None:
        return False
    results = {}
    for line in console:
        m = re.match(r"SW-VMTEST-END mode=(\S+) rc=(\d+) seconds=(\d+)", line)
        if m:
            results[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    for mode in modes:
        if mode not in results:
            log("mode %s: no result (the VM died or hung?)" % mode)
            ok = False
        elif results[mode][0] != 0:
            log("mode %s: FAILED (rc %d)" % (mode, results[mode][0]))
            ok = False
        else:
            log("mode %s: passed in %d s" % (mode, results[mode][1]))
    trouble = [l for l in console if l.startswith("SW-DMESG ") and KERNEL_TROUBLE.search(l)]
    if trouble:
        ok = False
        log("the kernel logged trouble:")
        for l in trouble[:40]:
            print("  " + l[len("SW-DMESG "):])
    if not any(l.startswith("SW-DMESG ") for l in console):
        log("no kernel log came back")
        ok = False
    log("VM ran %.0f s in all" % elapsed)
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default="fentry,tracepoint")
    ap.add_argument("--suite", nargs="*", default=[],
                    help="test names to run (default: the whole suite but %s)" %
                    ",".join(HOST_ONLY_SUITES))
    ap.add_argument("--bench", nargs="?", const="--overhead-n 20000 --overhead-rounds 5",
                    metavar="ARGS", help="instead of the tests, bench/run.py's overhead with "
                    "the agent in each mode, side by side (ARGS go to bench/run.py)")
    ap.add_argument("--parallel", action="store_true",
                    help="the modes side by side, each in namespaces of its own (default: "
                    "one after the other; side by side, two suites share two emulated "
                    "CPUs and the timing-sensitive tests suffer)")
    ap.add_argument("--timeout", type=int, default=3000)
    ap.add_argument("--loglevel", type=int, default=3,
                    help="the kernel's console log level (7: everything, live)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("vmtest: needs root (apt-get, the same privileges as make test)")
    modes = [m for m in a.modes.split(",") if m]
    kdir, vmlinuz = fetch_kernel()
    image = build_initramfs(kdir, a.suite, a.bench, not a.parallel)
    console, elapsed = boot(vmlinuz, image, modes, a.timeout, a.loglevel)
    with open(os.path.join(VMDIR, "console.log"), "w") as f:
        f.write("\n".join(console) + "\n")
    ok = judge(console, ["bench"] if a.bench else modes, elapsed)
    if a.bench:
        ok = bench_result(console) and ok
    log("console saved in build/vm/console.log")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
