"""`make install`: the tree it lays down, and that what it installs works.

Installs into <scratch>/root with PREFIX=/usr, then uses the installed files
only: the binary's --help and --version, a program built with the installed
header, library and pkg-config file, the man pages, the systemd unit (checked
with systemd-analyze, and the agent run under exactly the unit's capability
set, since PID 1 here is not systemd).
"""
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import time

from harness import LIVE, ROOT, Skip, connect_errno, mount_root, test, wait_until

PREFIX = "/usr"
VERSION = "0.1.0"
UNIT_REL = "usr/lib/systemd/system/sockwarden.service"
CONF_REL = "etc/sockwarden/sockwarden.conf"
SBIN_REL = "usr/sbin/sockwarden"

# path relative to the DESTDIR -> mode; symlinks are checked apart
FILES = {
    SBIN_REL: 0o755,
    "usr/lib/libsockwarden.so.%s" % VERSION: 0o755,
    "usr/lib/libsockwarden.a": 0o644,
    "usr/include/sockwarden.h": 0o644,
    "usr/lib/pkgconfig/sockwarden.pc": 0o644,
    "usr/share/man/man8/sockwarden.8": 0o644,
    "usr/share/man/man5/sockwarden.conf.5": 0o644,
    "usr/share/man/man3/libsockwarden.3": 0o644,
    UNIT_REL: 0o644,
    CONF_REL: 0o644,
}
LINKS = {
    "usr/lib/libsockwarden.so.0": "libsockwarden.so.%s" % VERSION,
    "usr/lib/libsockwarden.so": "libsockwarden.so.0",
}
MANPAGES = ["usr/share/man/man8/sockwarden.8", "usr/share/man/man5/sockwarden.conf.5",
            "usr/share/man/man3/libsockwarden.3"]


def need(*tools):
    for t in tools:
        if not shutil.which(t):
            raise Skip("%s is not installed (make deps)" % t)


def make_install(scratch, *extra):
    root = os.path.join(scratch, "root")
    p = subprocess.run(["make", "-s", "--no-print-directory", "install",
                        "DESTDIR=" + root, "PREFIX=" + PREFIX] + list(extra),
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, "make install failed:\n%s%s" % (p.stdout, p.stderr)
    return root, p.stdout + p.stderr


def run(args, **kw):
    kw.setdefault("timeout", 60)
    return subprocess.run(args, capture_output=True, text=True, **kw)


def unit_values(root, key):
    """Every value of `key=` in the installed unit, space-separated lists joined."""
    out = []
    with open(os.path.join(root, UNIT_REL)) as f:
        for line in f:
            line = line.strip()
            if line.startswith(key + "="):
                out.extend(line[len(key) + 1:].split())
    return out


@test
def test_install_tree(scratch):
    need("scdoc")
    root, _ = make_install(scratch)
    for rel, mode in FILES.items():
        p = os.path.join(root, rel)
        st = os.lstat(p)
        assert stat.S_ISREG(st.st_mode), "%s is not a regular file" % rel
        assert stat.S_IMODE(st.st_mode) == mode, "%s has mode %o, not %o" % (
            rel, stat.S_IMODE(st.st_mode), mode)
    for rel, target in LINKS.items():
        p = os.path.join(root, rel)
        assert os.path.islink(p), "%s is not a symlink" % rel
        assert os.readlink(p) == target, (rel, os.readlink(p))
        assert os.path.isfile(p), "%s dangles" % rel
    # the soname the linker records is the installed .so.0
    d = run(["readelf", "-d", os.path.join(root, "usr/lib/libsockwarden.so.%s" % VERSION)])
    if d.returncode == 0:
        assert "Library soname: [libsockwarden.so.0]" in d.stdout, d.stdout

    pc = open(os.path.join(root, "usr/lib/pkgconfig/sockwarden.pc")).read()
    assert re.search(r"^prefix=/usr$", pc, re.M), pc
    assert "build" not in pc and "@" not in pc, pc
    assert re.search(r"^Version: %s$" % re.escape(VERSION), pc, re.M), pc

    unit = open(os.path.join(root, UNIT_REL)).read()
    exec_start = unit_values(root, "ExecStart")
    assert exec_start[:2] == ["/usr/sbin/sockwarden", "run"], exec_start
    for flag in ("--config", "--journal", "--state"):
        assert flag in exec_start, (flag, exec_start)
    assert exec_start[exec_start.index("--config") + 1] == "/etc/sockwarden/sockwarden.conf"
    assert "RuntimeDirectory=sockwarden" in unit

    # the default config: every key present, commented out
    conf = open(os.path.join(root, CONF_REL)).read()
    assert conf == open(os.path.join(ROOT, "dist", "sockwarden.conf")).read()
    keys = set(re.findall(r"^#([a-z_]+) =", conf, re.M))
    for k in ("watch", "events", "journal", "state", "metrics", "metrics_file", "mode",
              "window", "reconcile", "any_path", "guard", "heal_delay_ms", "flap_max",
              "flap_window", "control", "rebind_timeout", "heal", "action", "signal",
              "exec"):
        assert k in keys, "default config lacks key %s" % k
    assert not re.search(r"^[a-z_]+ *=", conf, re.M), "a key is not commented out"

    # an existing config is never overwritten
    with open(os.path.join(root, CONF_REL), "w") as f:
        f.write("[agent]\nwindow = 7\n")
    _, out = make_install(scratch)
    assert open(os.path.join(root, CONF_REL)).read() == "[agent]\nwindow = 7\n"
    assert "KEEP" in out, out

    # PREFIX follows into every path; SYSCONFDIR moves the config
    o, _ = make_install(scratch, "PREFIX=/opt/sw", "SYSCONFDIR=/opt/sw/etc")
    assert os.path.isfile(os.path.join(o, "opt/sw/sbin/sockwarden"))
    assert os.path.isfile(os.path.join(o, "opt/sw/etc/sockwarden/sockwarden.conf"))
    pc = open(os.path.join(o, "opt/sw/lib/pkgconfig/sockwarden.pc")).read()
    assert re.search(r"^prefix=/opt/sw$", pc, re.M), pc
    u = open(os.path.join(o, "opt/sw/lib/systemd/system/sockwarden.service")).read()
    assert "ExecStart=/opt/sw/sbin/sockwarden run --config /opt/sw/etc/sockwarden/" \
        "sockwarden.conf" in u, u


@test
def test_install_cli(scratch):
    root, _ = make_install(scratch)
    sw = os.path.join(root, SBIN_REL)

    for flag in ("--version", "-V"):
        p = run([sw, flag])
        assert p.returncode == 0, p
        lines = p.stdout.splitlines()
        assert lines[0] == "sockwarden " + VERSION, lines
        assert any(l.startswith("Copyright (C) ") for l in lines), lines
        assert "License: MIT <https://opensource.org/licenses/MIT>." in lines, lines
        assert any("free software" in l for l in lines), lines
        assert any("NO WARRANTY" in l for l in lines), lines
        assert p.stderr == "", p.stderr

    for flag in ("--help", "-h"):
        p = run([sw, flag])
        assert p.returncode == 0, p
        assert p.stdout.startswith("Usage: sockwarden "), p.stdout[:200]
        last = p.stdout.rstrip("\n").splitlines()
        assert any(l.startswith("Report bugs to: ") for l in last[-3:]), last[-3:]
        for word in ("run", "status", "probe", "doctor", "report", "--config",
                     "--journal", "--state", "--metrics", "--metrics-file", "--watch"):
            assert word in p.stdout, "--help does not mention " + word

    # every command takes --help, exit 0, text on stdout
    for cmd in ("run", "status", "probe", "doctor", "report"):
        p = run([sw, cmd, "--help"])
        assert p.returncode == 0, (cmd, p)
        assert p.stdout.startswith("Usage: sockwarden"), (cmd, p.stdout[:200])
    # --help wins over a config file that is missing or broken
    p = run([sw, "run", "--config", os.path.join(scratch, "missing.conf"), "--help"])
    assert p.returncode == 0 and p.stdout.startswith("Usage:"), p

    # usage errors: exit 2, a message on stderr, nothing on stdout
    for args in ([], ["frobnicate"], ["run", "--no-such-option"], ["run", "extra"],
                 ["probe"], ["doctor", "--bogus"], ["status", "--bogus"],
                 ["run", "--window", "soon"]):
        p = run([sw] + args)
        assert p.returncode == 2, (args, p)
        assert p.stderr.strip(), (args, "no message")
        assert p.stdout == "", (args, p.stdout)

    # a bad config: exit 2, the message names file, line and key
    bad = os.path.join(scratch, "bad.conf")
    with open(bad, "w") as f:
        f.write("[agent]\n# comment\nwindw = 5\n")
    p = run([sw, "run", "--config", bad, "--events", os.path.join(scratch, "ev.jsonl")])
    assert p.returncode == 2, p
    assert "%s:3:" % bad in p.stderr and "windw" in p.stderr, p.stderr


CLIENT_C = r"""
#include <stdio.h>
#include <string.h>
#include <sockwarden.h>

int main(void)
{
	struct sw_client_opts opts;
	struct sw_client *c;

	memset(&opts, 0, sizeof(opts));
	opts.abstract_name = "sockwarden-install-test-nobody"; /* no agent there */
	opts.control_path = "";
	c = sw_client_open(&opts);
	if (!c)
		return 1;
	if (sw_client_fd(c) < 0 || sw_dispatch(c) != 0 || sw_client_connected(c))
		return 2;
	printf("%s %s\n", sw_heal_name(SW_HEAL_FD), sw_event_name(SW_EV_REGISTERED));
	sw_client_close(c);
	c = sw_client_open(NULL);  /* every default */
	if (!c)
		return 3;
	sw_client_close(c);
	return 0;
}
"""


@test
def test_install_pkgconfig(scratch):
    need("pkg-config", "cc")
    root, _ = make_install(scratch)
    env = dict(os.environ, PKG_CONFIG_SYSROOT_DIR=root,
               PKG_CONFIG_LIBDIR=os.path.join(root, "usr/lib/pkgconfig"))
    env.pop("PKG_CONFIG_PATH", None)
    p = run(["pkg-config", "--modversion", "sockwarden"], env=env)
    assert p.returncode == 0 and p.stdout.strip() == VERSION, p
    p = run(["pkg-config", "--cflags", "--libs", "sockwarden"], env=env)
    assert p.returncode == 0, p
    flags = shlex.split(p.stdout)
    assert "-I" + os.path.join(root, "usr/include") in flags, flags
    assert "-L" + os.path.join(root, "usr/lib") in flags and "-lsockwarden" in flags, flags

    src = os.path.join(scratch, "client.c")
    with open(src, "w") as f:
        f.write(CLIENT_C)
    exe = os.path.join(scratch, "client")
    # only the installed header: nothing from the source tree on the path
    p = run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", src, "-o", exe] + flags)
    assert p.returncode == 0, p.stderr
    d = run(["readelf", "-d", exe])
    if d.returncode == 0:
        assert "Shared library: [libsockwarden.so.0]" in d.stdout, d.stdout
    p = run([exe], env=dict(os.environ, LD_LIBRARY_PATH=os.path.join(root, "usr/lib")))
    assert p.returncode == 0, p
    assert p.stdout.strip() == "fd registered", p.stdout

    # and statically, from the installed archive
    exe_static = exe + "-static"
    p = run(["cc", "-std=c11", src, "-I" + os.path.join(root, "usr/include"),
             os.path.join(root, "usr/lib/libsockwarden.a"), "-o", exe_static])
    assert p.returncode == 0, p.stderr
    p = run([exe_static])
    assert p.returncode == 0 and p.stdout.strip() == "fd registered", p


@test
def test_install_man(scratch):
    need("man", "groff")
    root, _ = make_install(scratch)
    for rel in MANPAGES:
        page = os.path.join(root, rel)
        p = run(["groff", "-ww", "-z", "-man", page])
        assert p.returncode == 0 and p.stderr == "", (rel, p.stderr)
        p = run(["man", "--warnings", "-l", page],
                env=dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="0"))
        assert p.returncode == 0, (rel, p)
        assert p.stderr == "", (rel, p.stderr)
        text = re.sub(r".\x08", "", p.stdout)
        assert "NAME" in text and "SEE ALSO" in text, rel
    # found by name through MANPATH, as a user would look them up
    env = dict(os.environ, MANPATH=os.path.join(root, "usr/share/man"))
    for name in (["8", "sockwarden"], ["5", "sockwarden.conf"], ["3", "libsockwarden"]):
        p = run(["man", "-w"] + name, env=env)
        assert p.returncode == 0 and p.stdout.startswith(root), (name, p)
    # sockwarden(8) names every option the binary's --help names
    page = run(["man", "-l", os.path.join(root, MANPAGES[0])],
               env=dict(os.environ, MANWIDTH="200")).stdout
    page = re.sub(r".\x08", "", page)
    help_text = run([os.path.join(root, SBIN_REL), "--help"]).stdout
    for opt in sorted(set(re.findall(r"--[a-z][a-z-]+", help_text))):
        assert opt in page, "sockwarden(8) does not document " + opt
    for code in ("0", "1", "2", "3"):
        assert re.search(r"^\s+%s\s*$" % code, page, re.M), "exit status %s" % code
    # sockwarden.conf(5) documents every key of the default config
    conf = open(os.path.join(root, CONF_REL)).read()
    page5 = re.sub(r".\x08", "", run(["man", "-l", os.path.join(root, MANPAGES[1])],
                                     env=dict(os.environ, MANWIDTH="200")).stdout)
    for k in set(re.findall(r"^#([a-z_]+) =", conf, re.M)):
        assert re.search(r"^\s+%s = " % k, page5, re.M) or "%s = " % k in page5, k


@test
def test_install_unit_verify(scratch):
    need("systemd-analyze")
    root, _ = make_install(scratch)
    unit = os.path.join(root, UNIT_REL)
    # the installed unit names /usr/sbin/sockwarden, which lives in the
    # DESTDIR here: verify a copy that points there, with the installed
    # man pages on MANPATH (Documentation= is checked too)
    vdir = os.path.join(scratch, "verify")
    os.makedirs(vdir)
    text = open(unit).read()
    assert "ExecStart=/usr/sbin/sockwarden " in text
    with open(os.path.join(vdir, "sockwarden.service"), "w") as f:
        f.write(text.replace("ExecStart=/usr/sbin/sockwarden ",
                             "ExecStart=%s " % os.path.join(root, SBIN_REL)))
    env = dict(os.environ, MANPATH=os.path.join(root, "usr/share/man") + ":",
               SYSTEMD_LOG_LEVEL="notice")
    p = run(["systemd-analyze", "verify", os.path.join(vdir, "sockwarden.service")], env=env)
    assert p.returncode == 0 and p.stderr.strip() == "", p.stdout + p.stderr

    caps = unit_values(root, "CapabilityBoundingSet")
    assert caps and all(c.startswith("CAP_") for c in caps), caps
    assert sorted(unit_values(root, "AmbientCapabilities")) == sorted(caps)
    # CAP_SYS_ADMIN is for start-up only (perf_event_open on Debian's kernels,
    # the unit says why): test_install_unit_capabilities checks the running
    # agent has let it go
    for key, want in (("Type", "simple"), ("Restart", "on-failure"),
                      ("NoNewPrivileges", "yes"), ("PrivateTmp", "no"),
                      ("LockPersonality", "yes"), ("MemoryDenyWriteExecute", "yes"),
                      ("SystemCallArchitectures", "native")):
        assert unit_values(root, key) == [want], (key, unit_values(root, key))
    assert sorted(unit_values(root, "RestrictAddressFamilies")) == sorted(
        ["AF_UNIX", "AF_NETLINK", "AF_INET", "AF_INET6"])


class UnitAgent:
    """The installed agent, started as the unit starts it (its ExecStart,
    paths moved into the DESTDIR and scratch), under exactly the unit's
    capabilities: bounding set, inheritable and ambient set, no new privileges."""

    def __init__(self, scratch, root, caps, extra=()):
        self.events = os.path.join(scratch, "events.jsonl")
        self.stderr_path = os.path.join(scratch, "agent.stderr")
        for p in (self.events, self.stderr_path):
            if os.path.exists(p):
                os.unlink(p)
        args = unit_values(root, "ExecStart")
        args[0] = os.path.join(root, args[0].lstrip("/"))
        i = args.index("--config")
        args[i + 1] = os.path.join(root, args[i + 1].lstrip("/"))
        i = args.index("--state")
        args[i + 1] = os.path.join(scratch, "state.json")
        args += ["--events", self.events, "--control", os.path.join(scratch, "ctl.sock")]
        args += list(extra)
        capset = "-all" + "".join(",+" + c[4:].lower() for c in caps)
        self.argv = ["setpriv", "--bounding-set", capset, "--inh-caps", capset,
                     "--ambient-caps", capset, "--no-new-privs", "--"] + args
        with open(self.stderr_path, "w") as err:
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=err)
        LIVE.append(self.proc)

    def stderr(self):
        with open(self.stderr_path) as f:
            return f.read()

    def find(self, name, **fields):
        try:
            with open(self.events) as f:
                evs = [json.loads(l) for l in f if l.endswith("\n")]
        except FileNotFoundError:
            return []
        return [e for e in evs if e.get("event") == name and
                all(e.get(k) == v for k, v in fields.items())]

    def wait_event(self, name, timeout=20, **fields):
        def pred():
            found = self.find(name, **fields)
            if found:
                return found[0]
            if self.proc.poll() is not None:
                raise AssertionError("agent exited with %s: %s" %
                                     (self.proc.returncode, self.stderr()))
            return None
        return wait_until(pred, timeout, "%s %s" % (name, fields))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_unit_agent(scratch, root, caps, extra=()):
    """Starts it, waiting while another test's agent holds @sockwarden."""
    deadline = time.monotonic() + 180
    while True:
        a = UnitAgent(scratch, root, caps, extra)
        try:
            a.wait_event("agent_started", timeout=30)
            return a
        except AssertionError:
            a.stop()
            if "another agent holds" in a.stderr() and time.monotonic() < deadline:
                time.sleep(1)
                continue
            raise


NOBODY = 65534
SERVER_PY = ("import os, socket, sys, time\n"
             "os.setgid(%d); os.setuid(%d)\n"
             "s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(8)\n"
             "print('ready', flush=True)\n"
             "while True: s.accept()[0].close()\n") % (NOBODY, NOBODY)


@test
def test_install_unit_capabilities(scratch):
    """The unit's capability set is enough for the agent's whole job: it
    starts, finds the owner of another user's listener in a directory only
    that user can enter, keeps a guard link to it, and heals its path."""
    need("setpriv")
    root, _ = make_install(scratch)
    caps = unit_values(root, "CapabilityBoundingSet")
    os.chmod(scratch, 0o755)
    d = os.path.join(scratch, "srv")
    os.makedirs(d)
    os.chown(d, NOBODY, NOBODY)
    os.chmod(d, 0o700)
    path = os.path.join(d, "app.sock")
    srv = subprocess.Popen([sys.executable, "-c", SERVER_PY, path], stdout=subprocess.PIPE)
    LIVE.append(srv)
    assert srv.stdout.readline().strip() == b"ready"

    agent = start_unit_agent(scratch, root, caps, ["--watch", path])
    try:
        started = agent.wait_event("agent_started")
        assert started["mode"] in ("fentry", "tracepoint"), started
        # the unit's set (CAP_NET_ADMIN) attaches the redirect where the
        # kernel has it (6.7+)
        rel = tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2])
        assert started["redirect"] is (rel >= (6, 7)), started
        with open("/proc/%d/status" % agent.proc.pid) as f:
            status = f.read()
        bnd = int(re.search(r"^CapBnd:\s+([0-9a-f]+)", status, re.M).group(1), 16)
        eff = int(re.search(r"^CapEff:\s+([0-9a-f]+)", status, re.M).group(1), 16)
        assert eff == bnd, "effective %x != bounding %x" % (eff, bnd)
        assert not bnd & (1 << 21), "CAP_SYS_ADMIN in the bounding set"

        # the guard link: CAP_FOWNER (protected_hardlinks), CAP_DAC_OVERRIDE
        ino = os.lstat(path).st_ino
        gd = os.path.join(mount_root(path), ".sockwarden-guard")
        wait_until(lambda: any(n.endswith("-%d" % ino)
                               for n in (os.listdir(gd) if os.path.isdir(gd) else [])),
                   timeout=15, what="guard link of a nobody socket in a 0700 dir")
        # removed by someone else: healed, with the owner known (CAP_SYS_PTRACE)
        subprocess.run(["rm", "-f", path], check=True)
        ok = agent.wait_event("rebind_succeeded", path=path)
        assert ok["how"] == "link", ok
        owner = ok.get("owner") or {}
        assert owner.get("uid") == NOBODY and owner.get("pid") == srv.pid, ok
        assert os.lstat(path).st_ino == ino
        assert connect_errno(path) == 0
        lost = agent.find("guard_lost")
        assert not lost, lost
    finally:
        rc = agent.stop()
        srv.kill()
        srv.wait()
    assert rc == 0, "agent exit status %s: %s" % (rc, agent.stderr())
    assert agent.find("agent_stopping")


@test
def test_install_unit_without_bpf(scratch):
    """Without CAP_BPF (the rest of the unit's set kept, but CAP_SYS_ADMIN,
    which the kernel takes for either) the agent exits 3 and names what is
    missing."""
    need("setpriv")
    root, _ = make_install(scratch)
    caps = unit_values(root, "CapabilityBoundingSet")
    assert "CAP_BPF" in caps
    for drop in ("CAP_BPF", "CAP_PERFMON"):
        a = UnitAgent(scratch, root, [c for c in caps if c not in (drop, "CAP_SYS_ADMIN")])
        try:
            rc = a.proc.wait(timeout=30)
        finally:
            a.stop()
        err = a.stderr()
        assert rc == 3, "without %s: exit %s, %s" % (drop, rc, err)
        assert drop in err and "missing privilege" in err, err
        assert not a.find("agent_started")
