"""Every namespace first-class (DESIGN §2 "Namespaces", §5): an endpoint is
(mount namespace, path). Servers here live in namespaces of their own, made
with unshare as a container runtime or systemd's PrivateTmp= would make them:
a tmpfs of their own over a directory the host sees empty, a network
namespace of their own, a root of their own (pivot_root), a cgroup that names
a container. The agent must report their paths as they see them, with the
namespace inodes and the attribution from the cgroup path, heal them inside
their own namespace (guard link on their own mount, never following a symlink
out of their root), count a failed connect on the endpoint of the client's
namespace, and never take a procfs magic-link name for an endpoint.

The namespace plumbing (NsProc, ns_exec, ns_connect, ns_fail_loop, Cgroup,
Podman) is at the top; the tests follow.

Runs in the suite (once tests/integration/run.py imports it), or alone:
    SW_BUILD=DIR python3 tests/integration/test_namespaces.py [NAME...]
"""
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import harness
from harness import (AGENT, IN_CI, LIVE, ROOT, SERVER_PY, Agent, LineReader, Server, Skip,
                     connect_errno, run_py, test, wait_guard, wait_until)

PY = sys.executable
CTL_SERVER = os.path.join(ROOT, "tests", "servers", "ctl_server.py")
GUARD = ".sockwarden-guard"


# ----- namespaces -----

def ns_ino(pid, kind):
    """The nsfs inode of /proc/PID/ns/KIND, as lsns prints it."""
    return os.stat("/proc/%d/ns/%s" % (pid, kind)).st_ino


def children_of(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def alive(pid):
    """Running (a zombie is not)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


class NsProc:
    """A program in namespaces of its own: unshare --mount (always, private
    propagation), --net, --pid --fork. `setup`, a shell script, runs first
    inside them (mounts, pivot_root), then the program is exec'd, so .pid is
    the program's host pid (with pidns: unshare's one child, pid 1 inside).
    It is up once a line of its stdout satisfies `ready` (a string: the line
    starts with it; a callable: it says so)."""

    def __init__(self, argv, setup="", net=False, pidns=False, ready="ready", stdin=False,
                 timeout=30):
        args = ["unshare", "--mount", "--propagation", "private"]
        if net:
            args.append("--net")
        if pidns:
            args += ["--pid", "--fork", "--kill-child"]
        script = "set -e\n%s\nexec \"$@\"\n" % setup
        self.argv = argv
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(args + ["--", "sh", "-c", script, "sh"] + list(argv),
                                     stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self.err)
        LIVE.append(self.proc)
        self.out = LineReader(self.proc)
        self.lines = self.out.lines
        self.pid = None
        try:
            if pidns:
                kids = wait_until(lambda: children_of(self.proc.pid) or self.proc.poll() is not None,
                                  timeout, "the child of unshare --fork")
                if kids is True:
                    raise AssertionError("unshare exited: %s" % self.stderr_text())
                self.pid = kids[0]
            else:
                self.pid = self.proc.pid
            if ready is not None:
                self.wait_line(ready, timeout)
        except BaseException:
            self.stop()
            raise
        self.mntns = ns_ino(self.pid, "mnt")
        self.netns = ns_ino(self.pid, "net")

    def stderr_text(self):
        self.err.seek(0)
        return self.err.read().decode(errors="replace")

    def wait_line(self, ready, timeout=30):
        pred = ready if callable(ready) else (lambda l: l.startswith(ready))
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for line in self.lines[seen:]:
                if pred(line):
                    return line
            seen = len(self.lines)
            left = deadline - time.monotonic()
            if left <= 0 or not self.out.pump(left):
                raise AssertionError("%s: no ready line (got %r, rc %s): %s" % (
                    self.argv[:3], self.lines, self.proc.poll(), self.stderr_text()))

    def send(self, line):
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def root(self, path="/"):
        """PATH as this process sees it, reachable from the host: through
        /proc/PID/root. An absolute symlink met on the way resolves against
        the HOST's root: lstat the last component only."""
        return "/proc/%d/root%s" % (self.pid, path)

    def stop(self):
        if self.pid and self.pid != self.proc.pid:
            # unshare --fork reaps its child, then exits
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.err.close()


def tmpfs_setup(d):
    """Setup for NsProc: a tmpfs of the namespace's own over D (PrivateTmp=,
    a container's /run/app)."""
    return "mount -t tmpfs -o mode=0755 sw-ns %s" % shlex.quote(d)


def ns_server(path, setup="", net=False, pidns=False):
    """harness.SERVER_PY (listens, accepts, holds every connection) at PATH
    inside namespaces of its own."""
    return NsProc([PY, "-c", SERVER_PY, path], setup=setup, net=net, pidns=pidns)


HOLD_PY = "import time; print('ready', flush=True); time.sleep(3600)"


def ns_holder(setup="", net=False):
    """A process that only keeps its namespaces alive, to nsenter into."""
    return NsProc([PY, "-c", HOLD_PY], setup=setup, net=net)


def nsenter_args(pid, net=False, root=False):
    args = ["nsenter", "-t", str(pid), "-m"]
    if net:
        args.append("-n")
    if root:
        # the target's root (a chroot, a pivot_root), cwd at that root
        args += ["-r", "-w"]
    return args + ["--"]


def ns_exec(pid, argv, net=False, root=False, check=True, timeout=60, input=None):
    """Runs argv inside PID's mount (and network) namespace, like
    `nsenter -t PID -m rm PATH`. Returns the CompletedProcess."""
    r = subprocess.run(nsenter_args(pid, net, root) + list(argv), capture_output=True,
                       timeout=timeout, input=input)
    if check:
        assert r.returncode == 0, "in ns of %d: %s: rc %d: %s" % (
            pid, argv, r.returncode, r.stderr.decode(errors="replace"))
    return r


CONNECT_PY = r"""
import socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print(e.errno, 0)
    sys.exit(0)
pid, uid, gid = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
print(0, pid)
"""


def ns_connect(pid, path, net=True, root=False):
    """A client inside PID's namespaces connects to PATH: (0, the listener's
    pid as SO_PEERCRED says) or (errno, 0)."""
    out = ns_exec(pid, [PY, "-c", CONNECT_PY, path], net=net, root=root).stdout.split()
    return int(out[0]), int(out[1])


# the connect suite's client: n non-blocking connects, prints its failures
from test_connect import FAIL_LOOP  # noqa: E402


def ns_fail_loop(pid, path, n, net=True, root=False):
    """n connects to PATH from inside PID's namespaces. Returns (the client's
    pid, the failures it saw). nsenter without -p execs in place: its pid is
    the client's."""
    p = subprocess.Popen(nsenter_args(pid, net, root) + [PY, "-c", FAIL_LOOP, path, str(n)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, "fail loop in ns of %d: %s" % (pid, err.decode())
    return p.pid, int(out)


def host_fail_loop(path, n):
    pid, out = run_py(FAIL_LOOP, path, str(n))
    return pid, int(out)


def mountinfo_points(pid):
    """Mount points of PID's mount namespace, as PID sees them."""
    pts = []
    with open("/proc/%d/mountinfo" % pid) as f:
        for line in f:
            mp = line.split()[4]
            pts.append(mp.encode().decode("unicode_escape"))
    return pts


def ns_mount_root(pid, path):
    best = "/"
    for mp in mountinfo_points(pid):
        if (path == mp or path.startswith(mp.rstrip("/") + "/")) and len(mp) > len(best):
            best = mp
    return best


def ns_guard_dir(pid, path):
    """The guard directory of PATH as PID's namespace sees it: at the root of
    the mount holding PATH there."""
    return os.path.join(ns_mount_root(pid, path), GUARD)


def ns_guards(pid, path):
    """Names in the guard directory (PID's view of PATH's mount) that are
    hard links to the socket file now at PATH there."""
    try:
        st = os.lstat("/proc/%d/root%s" % (pid, path))
    except FileNotFoundError:
        return []
    gd = "/proc/%d/root%s" % (pid, ns_guard_dir(pid, path))
    out = []
    try:
        names = os.listdir(gd)
    except FileNotFoundError:
        return []
    for n in names:
        try:
            g = os.lstat(os.path.join(gd, n))
        except FileNotFoundError:
            continue
        if (g.st_dev, g.st_ino) == (st.st_dev, st.st_ino):
            out.append(n)
    return out


def wait_ns_guard(pid, path, timeout=10):
    return wait_until(lambda: ns_guards(pid, path), timeout,
                      "the guard of %s in the namespace of %d" % (path, pid))


class HostNeverSees:
    """Polls host paths in a thread for as long as the test runs: none of
    them may ever exist (lexists) on the host."""

    def __init__(self, *paths):
        self.paths = paths
        self.seen = []
        self.done = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.done.is_set():
            for p in self.paths:
                if os.path.lexists(p) and p not in self.seen:
                    self.seen.append(p)
            self.done.wait(0.002)

    def check(self):
        assert not self.seen, "the host saw %s" % self.seen

    def stop(self):
        self.done.set()
        self.t.join()


# ----- cgroups -----

def cgroup2_mount():
    """Where cgroup v2 is mounted: /sys/fs/cgroup/unified on these (hybrid)
    hosts, /sys/fs/cgroup in make vmtest's VM."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] == "cgroup2":
                return fields[4]
    return None


def cgroup_of(pid):
    with open("/proc/%d/cgroup" % pid) as f:
        for line in f:
            if line.startswith("0::"):
                return line[3:].strip()
    return "/"


class Cgroup:
    """A cgroup v2 directory REL (e.g. system.slice/docker-ID.scope) under
    the cgroup2 mount, made for the test: each level the test made is removed
    again, deepest first, after the processes moved in went back where they
    came from."""

    def __init__(self, rel):
        self.base = cgroup2_mount()
        if not self.base:
            raise Skip("no cgroup2 mount in /proc/self/mountinfo")
        self.rel = rel.strip("/")
        self.dir = os.path.join(self.base, self.rel)
        self.made = []
        self.moved = []  # (pid, where it was)
        d = self.base
        for part in self.rel.split("/"):
            d = os.path.join(d, part)
            if not os.path.isdir(d):
                os.mkdir(d)
                self.made.append(d)

    def add(self, pid):
        self.moved.append((pid, cgroup_of(pid)))
        with open(os.path.join(self.dir, "cgroup.procs"), "w") as f:
            f.write(str(pid))
        assert cgroup_of(pid) == "/" + self.rel, cgroup_of(pid)

    def remove(self):
        for pid, was in self.moved:
            if alive(pid):
                try:
                    with open(os.path.join(self.base, was.lstrip("/"), "cgroup.procs"), "w") as f:
                        f.write(str(pid))
                except OSError:  # gone meanwhile
                    pass
        for d in reversed(self.made):
            # a killed process leaves its cgroup once reaped: EBUSY for a moment
            deadline = time.monotonic() + 10
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)


# ----- the agent -----

def status_json():
    r = subprocess.run([AGENT, "status", "--json"], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr.decode()
    return json.loads(r.stdout)


def endpoints_at(path, doc=None):
    doc = doc or status_json()
    return [e for e in doc["endpoints"] if e.get("path") == path]


def wait_scans(after_ns, count=1, timeout=30):
    """Returns once `count` reconcile scans that started after the
    CLOCK_MONOTONIC instant after_ns (ns) have ended (status's `scan`)."""
    last = None
    t = after_ns
    for i in range(count):
        def ended():
            doc = status_json()
            assert "scan" in doc, "status has no `scan` object: %s" % doc
            l = doc["scan"].get("last")
            return l and l["started_mono_ns"] > t and l
        last = wait_until(ended, timeout, "reconcile scan %d after %d" % (i + 1, t))
        t = last["started_mono_ns"]
    return last


def by_path(agent, path, name=None):
    return [e for e in agent.poll() if e.get("path") == path and
            (name is None or e["event"] == name)]


def wait_path_event(agent, name, path, timeout=10):
    """The first NAME event for PATH, whichever namespace it names: the
    caller asserts which one it must be, so a wrong one fails with the event
    in the message instead of a time-out."""
    return agent.wait_event(name, timeout=timeout, path=path)


def assert_endpoint(ev, proc=None, mntns=None, netns=None):
    """ev is about PROC's endpoint: its namespaces and its owner."""
    if proc is not None:
        mntns = proc.mntns if mntns is None else mntns
        netns = proc.netns if netns is None else netns
    assert ev.get("mntns") == mntns, ("mntns", mntns, ev)
    assert ev.get("netns") == netns, ("netns", netns, ev)
    if proc is not None and "owner" in ev:
        o = ev["owner"]
        assert o["pid"] == proc.pid and "comm" in o and "uid" in o, ("owner", proc.pid, ev)


def assert_sane(agent, paths=()):
    """What holds for every event of every test here: no path through a
    procfs magic link, and every event about one of PATHS names both
    namespaces as nsfs inode numbers."""
    for e in agent.poll():
        p = e.get("path")
        if p is None:
            continue
        assert not p.startswith("/proc/"), "an endpoint through /proc: %s" % e
        if p in paths:
            assert isinstance(e.get("mntns"), int) and e["mntns"] > 0, e
            assert isinstance(e.get("netns"), int) and e["netns"] > 0, e


def heal_outcomes(agent, path):
    return [e for e in by_path(agent, path)
            if e["event"] in ("rebind_succeeded", "rebind_failed", "rebind_skipped")]


# ----- tests: healing inside a namespace -----

def lose_and_heal_in_private_tmp(scratch, net):
    d = os.path.join(scratch, "run", "app")
    os.makedirs(d)
    path = os.path.join(d, "app.sock")
    host = HostNeverSees(path, os.path.join(d, GUARD))
    agent = srv = None
    try:
        agent = Agent(scratch)
        srv = ns_server(path, setup=tmpfs_setup(d), net=net)
        assert srv.mntns != ns_ino(os.getpid(), "mnt")
        if net:
            assert srv.netns != ns_ino(os.getpid(), "net")
        # the guard on the namespace's own tmpfs: /run/app/.sockwarden-guard there
        wait_ns_guard(srv.pid, path)
        assert ns_guard_dir(srv.pid, path) == os.path.join(d, GUARD)
        ino = os.lstat(srv.root(path)).st_ino
        assert ns_connect(srv.pid, path, net=net) == (0, srv.pid)
        ns_exec(srv.pid, ["rm", path])
        lost = wait_path_event(agent, "socket_unlinked", path)
        assert_endpoint(lost, srv)
        assert lost["via"] in ("unlink", "scan"), lost
        if lost["via"] == "unlink":
            assert lost["actor"]["comm"] == "rm", lost
        started = wait_path_event(agent, "rebind_started", path)
        assert started["how"] == "link", started
        assert_endpoint(started, srv)
        ok = wait_path_event(agent, "rebind_succeeded", path)
        assert ok["how"] == "link", ok
        assert_endpoint(ok, srv)
        assert os.lstat(srv.root(path)).st_ino == ino, "another socket file came back"
        err, peer = ns_connect(srv.pid, path, net=net)
        assert (err, peer) == (0, srv.pid), "a client in the namespace: errno %d, peer %d" % (
            err, peer)
        host.check()
        assert os.listdir(d) == [], "the host's %s: %s" % (d, os.listdir(d))
        # status, for a person: the endpoint is the namespace's
        human = subprocess.run([AGENT, "status"], capture_output=True, text=True,
                               timeout=30).stdout
        line = [ln for ln in human.splitlines() if ln.strip().startswith(path)]
        assert line and "namespace mnt:[%d]" % srv.mntns in line[0], human
        assert not [e for e in agent.poll() if e.get("path") == path and
                    e.get("mntns") not in (None, srv.mntns)]
        assert_sane(agent, [path])
    finally:
        host.stop()
        if srv:
            srv.stop()
        if agent:
            agent.stop()
    host.check()


@test
def private_tmp_loses_and_heals(scratch):
    """(1) A tmpfs of the namespace's own over a directory the host sees
    empty: removed from inside, healed inside, the host never sees a file."""
    lose_and_heal_in_private_tmp(scratch, net=False)


@test
def own_network_namespace(scratch):
    """(2) The same, in a network namespace of its own too: the events name
    the server's netns, not the host's."""
    lose_and_heal_in_private_tmp(scratch, net=True)


def two_containers(d, path, net=False):
    a = ns_server(path, setup=tmpfs_setup(d), net=net)
    try:
        b = ns_server(path, setup=tmpfs_setup(d), net=net)
    except BaseException:
        a.stop()
        raise
    assert a.mntns != b.mntns
    return a, b


@test
def two_containers_same_path(scratch):
    """(3) Two mount namespaces, each with its own tmpfs at the same path and
    its own server there: two endpoints. A loss in A is reported with A's
    mntns and healed in A only; B is never touched nor named."""
    d = os.path.join(scratch, "run", "app")
    os.makedirs(d)
    path = os.path.join(d, "app.sock")
    agent = Agent(scratch)
    a = b = None
    try:
        a, b = two_containers(d, path)
        wait_ns_guard(a.pid, path)
        wait_ns_guard(b.pid, path)
        b_ino = os.lstat(b.root(path)).st_ino
        eps = wait_until(lambda: len(endpoints_at(path)) == 2 and endpoints_at(path),
                         what="two endpoints for %s in status" % path)
        if all("mntns" in e for e in eps):
            assert {e["mntns"] for e in eps} == {a.mntns, b.mntns}, eps
        assert ns_connect(b.pid, path) == (0, b.pid)
        ns_exec(a.pid, ["rm", path])
        lost = wait_path_event(agent, "socket_unlinked", path)
        assert_endpoint(lost, a)
        ok = wait_path_event(agent, "rebind_succeeded", path)
        assert_endpoint(ok, a)
        assert ok["how"] == "link", ok
        assert ns_connect(a.pid, path) == (0, a.pid)
        assert ns_connect(b.pid, path) == (0, b.pid)
        assert os.lstat(b.root(path)).st_ino == b_ino
        assert os.listdir(d) == []
        named_b = [e for e in agent.poll() if e.get("mntns") == b.mntns]
        assert not named_b, "events name B: %s" % named_b
        assert len(by_path(agent, path, "socket_unlinked")) == 1
        assert len(by_path(agent, path, "rebind_succeeded")) == 1
        assert_sane(agent, [path])
    finally:
        for p in (a, b):
            if p:
                p.stop()
        agent.stop()


@test
def two_containers_same_path_failures_counted_apart(scratch):
    """(3, storm) Healing off: A's socket renamed away inside A, 300 failed
    connects inside A, renamed back, one success: A's connect_recovered has
    exactly the client's count; B's clients never fail and no connect event
    names B."""
    d = os.path.join(scratch, "run", "app")
    os.makedirs(d)
    path = os.path.join(d, "app.sock")
    agent = Agent(scratch, "--no-guard")
    a = b = None
    n = 300
    try:
        a, b = two_containers(d, path)
        wait_until(lambda: len(endpoints_at(path)) == 2, what="two endpoints for %s" % path)
        ns_exec(a.pid, ["mv", path, path + ".away"])
        lost = wait_path_event(agent, "socket_unlinked", path)
        assert_endpoint(lost, a)
        assert lost["via"] in ("rename", "scan"), lost
        assert ns_connect(b.pid, path) == (0, b.pid)
        client, failures = ns_fail_loop(a.pid, path, n)
        assert failures == n, "the client in A saw %d failures of %d" % (failures, n)
        first = wait_path_event(agent, "connect_failing", path)
        assert_endpoint(first, a)
        assert first["errno"] == "ENOENT" and first["client"]["pid"] == client, first
        assert ns_connect(b.pid, path) == (0, b.pid)
        ns_exec(a.pid, ["mv", path + ".away", path])
        assert ns_connect(a.pid, path) == (0, a.pid)
        rec = wait_path_event(agent, "connect_recovered", path)
        assert_endpoint(rec, a)
        assert rec["total_failures"] == failures, (rec, failures)
        assert rec["swallowed_failures"] == failures - 1, rec
        assert ns_connect(b.pid, path) == (0, b.pid)
        assert len(by_path(agent, path, "connect_failing")) == 1
        named_b = [e for e in agent.poll() if e.get("mntns") == b.mntns]
        assert not named_b, "events name B: %s" % named_b
        assert_sane(agent, [path])
    finally:
        for p in (a, b):
            if p:
                p.stop()
        agent.stop()


# ----- tests: a root of its own -----

REPLACE_PY = r"""
import os, sys
os.unlink("/srv/app/app.sock")
os.rmdir("/srv/app")
os.symlink(sys.argv[1], "/srv/app")
"""


def minimal_root_setup(r):
    """Setup for NsProc(pidns=True): a tmpfs root at R with what python3
    needs read-only (/usr, /etc, the interpreter's prefix; merged-/usr
    symlinks as symlinks), its own /proc, /srv/app, then pivot_root into it
    (chroot where pivot_root is refused)."""
    q = shlex.quote
    lines = ["R=%s" % q(r), 'mount -t tmpfs -o mode=0755 sw-root "$R"']
    binds = ["/usr", "/etc", "/bin", "/sbin", "/lib", "/lib64", "/dev"]
    for p in (sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(PY))):
        if not any(p == b or p.startswith(b + "/") for b in binds):
            binds.append(p)
    for b in binds:
        if os.path.islink(b):
            lines.append('ln -s %s "$R"%s' % (q(os.readlink(b)), q(b)))
        elif os.path.isdir(b):
            lines.append('mkdir -p "$R"%s' % q(b))
            lines.append('mount -o bind %s "$R"%s' % (q(b), q(b)))
            lines.append('mount -o remount,bind,ro "$R"%s' % q(b))
    lines += ['mkdir -p "$R/proc" "$R/srv/app" "$R/.oldroot"',
              'mount -t proc proc "$R/proc"',
              'cd "$R"',
              'if pivot_root . .oldroot; then umount -l /.oldroot; rmdir /.oldroot; cd /;'
              ' else exec chroot . "$@"; fi']
    return "\n".join(lines)


@test
def pivot_root_symlink_not_followed(scratch):
    """(4) A container with a root of its own (pivot_root, pid namespace):
    its path is reported as it sees it; its socket directory is replaced by
    an absolute symlink to a directory that exists on the HOST only. The
    agent must not follow it out of the container's root: nothing is created
    in the host directory, whatever it decides."""
    r = os.path.join(scratch, "root")
    os.mkdir(r)
    victim = os.path.join(scratch, "swvictim-" + secrets.token_hex(4))
    os.mkdir(victim)
    path = "/srv/app/app.sock"
    host_had = os.path.lexists("/srv/app")
    agent = Agent(scratch, "--reconcile", "0.3", "--heal-delay", "200")
    srv = None
    try:
        srv = ns_server(path, setup=minimal_root_setup(r), pidns=True)
        assert os.listdir(r) == [], "the host sees the container's root"
        assert os.path.lexists(srv.root(path))
        wait_ns_guard(srv.pid, path)
        assert ns_guard_dir(srv.pid, path) == "/" + GUARD
        ns_exec(srv.pid, [PY, "-c", REPLACE_PY, victim], root=True)
        assert os.readlink(srv.root("/srv/app")) == victim
        lost = wait_path_event(agent, "socket_unlinked", path)
        assert_endpoint(lost, srv)
        outcome = wait_until(lambda: heal_outcomes(agent, path), 15, "the heal's outcome")[0]
        assert_endpoint(outcome, srv)
        # a reconcile scan after the outcome must not take the symlink either
        wait_scans(outcome["mono_ns"], count=2)
        assert os.listdir(victim) == [], "created on the host: %s" % os.listdir(victim)
        assert os.listdir(r) == []
        if not host_had:
            assert not os.path.lexists("/srv/app"), "/srv/app appeared on the host"
        if outcome["event"] == "rebind_succeeded":
            # healed inside the container, through its own root
            assert ns_connect(srv.pid, path, root=True) == (0, srv.pid)
        for e in agent.poll():
            p = e.get("path") or ""
            assert not (p.endswith("/srv/app/app.sock") and p != path), \
                "the container's path seen from outside: %s" % e
        assert_sane(agent, [path])
    finally:
        if srv:
            srv.stop()
        agent.stop()
    assert os.listdir(victim) == [], "created on the host: %s" % os.listdir(victim)


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


@test
def container_killed_during_a_heal_leaves_nothing(scratch):
    """(4b) The whole container dies while the agent is inside a heal (the
    fault build stopped at link_before: its directories made again, the
    link not yet made). Nothing is created anywhere outside it, the agent
    goes on, and it lets go of the dead namespace's root and guard."""
    from test_faults import fault_agent, wait_stopped
    r = os.path.join(scratch, "root")
    os.mkdir(r)
    path = "/srv/app/app.sock"
    host_had = os.path.lexists("/srv/app")
    agent = fault_agent(scratch, "link_before", "--reconcile", "0.3")
    srv = None
    try:
        wait_scans(0, count=2)
        base = fd_count(agent.proc.pid)
        srv = ns_server(path, setup=minimal_root_setup(r), pidns=True)
        wait_ns_guard(srv.pid, path)
        # the socket's directory goes too: the heal makes it again first
        ns_exec(srv.pid, ["rm", "-rf", "/srv/app"], root=True)
        lost = wait_path_event(agent, "socket_unlinked", path)
        assert_endpoint(lost, srv)
        wait_stopped(agent)
        assert agent.wait_event("rebind_started", path=path)["mntns"] == srv.mntns
        mntns = srv.mntns
        srv.stop()
        wait_until(lambda: not alive(srv.pid), what="the container gone")
        os.kill(agent.proc.pid, signal.SIGCONT)
        outcome = wait_until(lambda: heal_outcomes(agent, path), 15, "the heal's outcome")[0]
        assert outcome["event"] in ("rebind_failed", "rebind_skipped"), outcome
        assert outcome["mntns"] == mntns, outcome
        # scans after it: the root and the guard directory of the dead
        # namespace are let go, no fd is left on its mounts
        wait_until(lambda: fd_count(agent.proc.pid) <= base, 20,
                   "the agent's fds back to %d (now %d)" % (base, fd_count(agent.proc.pid)))
        assert os.listdir(r) == [], os.listdir(r)
        if not host_had:
            assert not os.path.lexists("/srv/app"), "/srv/app appeared on the host"
        assert agent.proc.poll() is None, "the agent died"
        assert_sane(agent, [path])
    finally:
        if srv:
            srv.stop()
        agent.stop()


@test
def directories_come_back_inside_with_their_owner_and_mode(scratch):
    """A namespace's socket directory tree removed from inside by a relative
    name (rm -rf from its parent, as a cleanup job does): the loss is matched
    to the namespace's endpoint, and the heal makes the directories again in
    the namespace with their recorded owner and mode."""
    d = os.path.join(scratch, "run")
    os.makedirs(d)
    sub = os.path.join(d, "app", "deep")
    path = os.path.join(sub, "app.sock")
    setup = tmpfs_setup(d) + "\nmkdir -p %s\nchown 1234:2345 %s\nchmod 0750 %s" % (
        shlex.quote(sub), shlex.quote(os.path.dirname(sub)), shlex.quote(os.path.dirname(sub)))
    agent = srv = None
    try:
        agent = Agent(scratch)
        srv = ns_server(path, setup=setup)
        wait_ns_guard(srv.pid, path)
        ns_exec(srv.pid, ["sh", "-c", "cd %s && rm -rf app" % shlex.quote(d)])
        lost = wait_path_event(agent, "socket_unlinked", path)
        assert_endpoint(lost, srv)
        ok = wait_path_event(agent, "rebind_succeeded", path)
        assert_endpoint(ok, srv)
        st = os.stat(srv.root(os.path.dirname(sub)))
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1234, 2345, 0o750), st
        assert ns_connect(srv.pid, path) == (0, srv.pid)
        assert os.listdir(d) == [], "the host's %s: %s" % (d, os.listdir(d))
    finally:
        if srv:
            srv.stop()
        if agent:
            agent.stop()


@test
def read_only_mount_in_a_namespace_is_reported(scratch):
    """A listener on a mount its namespace made read-only: no guard can be
    kept there. That is a guard_lost with its reason and namespace, and the
    agent goes on."""
    d = os.path.join(scratch, "run", "app")
    os.makedirs(d)
    path = os.path.join(d, "app.sock")
    agent = srv = None
    try:
        # bound first, then the mount goes read-only, then the agent meets it
        srv = ns_server(path, setup=tmpfs_setup(d))
        ns_exec(srv.pid, ["mount", "-o", "remount,ro", d])
        agent = Agent(scratch)
        lost = wait_path_event(agent, "guard_lost", path)
        assert lost["reason"] == "read_only", lost
        assert_endpoint(lost, srv)
        assert agent.proc.poll() is None
        assert ns_connect(srv.pid, path) == (0, srv.pid)
        assert_sane(agent, [path])
    finally:
        if srv:
            srv.stop()
        if agent:
            agent.stop()


# ----- tests: attribution from the cgroup path -----

def cgroup_cases():
    """(name, cgroup path, what the events must carry), with a fresh id."""
    cid = secrets.token_hex(32)
    uid = str(uuid.uuid4())
    unit = "nginx-test-%s.service" % secrets.token_hex(3)
    return [
        ("docker_systemd", "system.slice/docker-%s.scope" % cid,
         {"container": {"id": cid, "runtime": "docker"}}),
        ("docker_cgroupfs", "docker/%s" % cid,
         {"container": {"id": cid, "runtime": "docker"}}),
        ("containerd_kubepods_systemd",
         "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod%s.slice/"
         "cri-containerd-%s.scope" % (uid.replace("-", "_"), cid),
         {"container": {"id": cid, "runtime": "containerd"}, "pod": {"uid": uid}}),
        ("containerd_kubepods_cgroupfs", "kubepods/burstable/pod%s/%s" % (uid, cid),
         {"container": {"id": cid, "runtime": "containerd"}, "pod": {"uid": uid}}),
        ("podman", "machine.slice/libpod-%s.scope" % cid,
         {"container": {"id": cid, "runtime": "podman"}}),
        ("crio", "system.slice/crio-%s.scope" % cid,
         {"container": {"id": cid, "runtime": "cri-o"}}),
        ("systemd_unit", "system.slice/%s" % unit, {"unit": unit}),
    ]


def assert_attribution(ev, want):
    for key, val in want.items():
        got = ev.get(key)
        if isinstance(val, dict):
            assert isinstance(got, dict), (key, want, ev)
            for k, v in val.items():
                assert got.get(k) == v, (key, k, want, ev)
        else:
            assert got == val, (key, want, ev)
    if "container" not in want:
        assert "container" not in ev, ev
    if "pod" not in want:
        assert "pod" not in ev, ev


def attribution_scenario(scratch, case):
    _, rel, want = [c for c in cgroup_cases() if c[0] == case][0]
    path = os.path.join(scratch, "app.sock")
    srv = Server(path)
    cg = agent = None
    try:
        cg = Cgroup(rel)
        cg.add(srv.pid)  # before the agent discovers it
        agent = Agent(scratch)
        wait_guard(path)
        subprocess.run(["rm", path], check=True)
        lost = agent.wait_event("socket_unlinked", path=path)
        assert lost["owner"]["pid"] == srv.pid, lost
        assert_attribution(lost, want)
        ok = agent.wait_event("rebind_succeeded", path=path)
        assert_attribution(ok, want)
        assert_sane(agent, [path])
    finally:
        srv.stop()
        if agent:
            agent.stop()
        if cg:
            cg.remove()


def _attribution_test(case):
    def fn(scratch):
        attribution_scenario(scratch, case)
    fn.__name__ = "events_name_the_container_from_its_cgroup_" + case
    fn.__qualname__ = fn.__name__
    fn.__doc__ = "(5) attribution from the cgroup path: %s" % case
    return test(fn)


for _case in cgroup_cases():
    _attribution_test(_case[0])
del _case


# ----- tests: names that are no endpoints -----

MAGIC_PY = r"""
import os, socket, sys
d = sys.argv[1]
dfd = os.open(d, os.O_PATH | os.O_DIRECTORY)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
name = "/proc/self/fd/%d/x.sock" % dfd
s.bind(name)
s.listen(16)
assert s.getsockname() == name, s.getsockname()
print("ready", name, flush=True)
conns = []
while True:
    c, _ = s.accept()
    conns.append(c)
"""


class MagicServer:
    """A server that binds "/proc/self/fd/N/x.sock", N an O_PATH fd of D
    (conmon's way with its attach socket)."""

    def __init__(self, d):
        os.makedirs(d, exist_ok=True)
        self.real = os.path.join(d, "x.sock")
        self.proc = subprocess.Popen([PY, "-c", MAGIC_PY, d], stdout=subprocess.PIPE)
        LIVE.append(self.proc)
        line = self.proc.stdout.readline().split()
        assert line and line[0] == b"ready", "magic-link server did not start"
        self.name = line[1].decode()
        self.pid = self.proc.pid
        assert os.path.lexists(self.real)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@test
def magic_link_path_is_never_an_endpoint(scratch):
    """(7) A socket bound through a procfs magic link (its sun_path names the
    binder's own fd) is no endpoint: no event, no status entry, no heal; the
    agent's own fd N is not the binder's."""
    before = MagicServer(os.path.join(scratch, "m1"))  # found by discovery
    agent = marker = after = None
    try:
        agent = Agent(scratch, "--reconcile", "0.3")
        after = MagicServer(os.path.join(scratch, "m2"))  # found by its bind()
        mpath = os.path.join(scratch, "marker.sock")
        marker = Server(mpath)
        wait_guard(mpath)
        for m in (before, after):
            assert connect_errno(m.real) == 0
        for ep in status_json()["endpoints"]:
            assert not ep.get("path", "").startswith("/proc/"), ep
        for m in (before, after):
            os.unlink(m.real)
        # a marker: a heal whose events come after anything the unlinks
        # could have caused, then two reconcile scans
        os.unlink(mpath)
        ok = agent.wait_event("rebind_succeeded", path=mpath)
        wait_scans(ok["mono_ns"], count=2)
        for m in (before, after):
            assert not os.path.lexists(m.real), "a magic-link socket was healed"
            assert not by_path(agent, m.real), by_path(agent, m.real)
            assert not by_path(agent, m.name), by_path(agent, m.name)
        for ep in status_json()["endpoints"]:
            assert not ep.get("path", "").startswith("/proc/"), ep
        assert_sane(agent, [mpath])
    finally:
        for s in (before, after, marker):
            if s:
                s.stop()
        if agent:
            agent.stop()
    assert_sane(agent)


# ----- tests: registration from a container -----

def ctl_ready(line):
    try:
        return "ready" in json.loads(line)
    except ValueError:
        return False


def ctl_error(line):
    try:
        return json.loads(line).get("got", {}).get("op") == "error"
    except ValueError:
        return False


@test
def container_registers_through_the_control_path(scratch):
    """(8) A server in mount and network namespaces of its own (so @sockwarden
    is out of reach) with the agent's control directory bind-mounted in at
    /run/sockwarden registers its path, which exists only in its own
    namespace; the path is resolved there, and heal `notify` brings it back
    there. Heal `fd` from a foreign namespace is refused: unsupported."""
    ctl_dir = os.path.join(scratch, "agent-run")
    os.mkdir(ctl_dir)
    ctl = os.path.join(ctl_dir, "control.sock")
    agent = Agent(scratch, "--no-guard", "--control", ctl)
    srv = fdsrv = None
    try:
        wait_until(lambda: os.path.lexists(ctl), what="the control path %s" % ctl)
        d = os.path.join(scratch, "run", "app")
        os.makedirs(d)
        path = os.path.join(d, "app.sock")
        setup = "%s\nmount -o bind %s /run/sockwarden" % (tmpfs_setup(d), shlex.quote(ctl_dir))
        cmd = [PY, CTL_SERVER, path, "--control", "/run/sockwarden/control.sock"]
        srv = NsProc(cmd + ["--heal", "notify"], setup=setup, net=True, ready=ctl_ready,
                     stdin=True)
        reg = wait_path_event(agent, "target_registered", path)
        assert_endpoint(reg, srv)
        assert reg["heal"] == "notify", reg
        assert not os.path.lexists(path)
        ns_exec(srv.pid, ["rm", path])
        ok = wait_path_event(agent, "rebind_succeeded", path)
        assert ok["how"] == "notify", ok
        assert_endpoint(ok, srv)
        srv.wait_line(lambda l: "adopted" in json.loads(l))
        assert ns_connect(srv.pid, path) == (0, srv.pid)
        assert not os.path.lexists(path), "the host got the container's path"
        # heal fd: the agent would bind in its own namespace
        d2 = os.path.join(scratch, "run", "app2")
        os.makedirs(d2)
        p2 = os.path.join(d2, "app.sock")
        setup2 = "%s\nmount -o bind %s /run/sockwarden" % (tmpfs_setup(d2),
                                                          shlex.quote(ctl_dir))
        fdsrv = NsProc([PY, CTL_SERVER, p2, "--control", "/run/sockwarden/control.sock",
                        "--heal", "fd"], setup=setup2, net=True, ready=ctl_error, stdin=True)
        err = [json.loads(l)["got"] for l in fdsrv.lines if ctl_error(l)][0]
        assert err["reason"].startswith("unsupported"), err
        assert not by_path(agent, p2, "target_registered")
        assert_sane(agent, [path])
    finally:
        for p in (srv, fdsrv):
            if p:
                p.stop()
        agent.stop()


# ----- tests: scans -----

def no_false_orphan(scratch, source):
    paths = []
    procs = []
    agent = Agent(scratch, "--reconcile", "0.3", "--discovery", source)
    try:
        for i, net in enumerate((False, True)):
            d = os.path.join(scratch, "ns%d" % i)
            os.mkdir(d)
            path = os.path.join(d, "app.sock")
            procs.append(ns_server(path, setup=tmpfs_setup(d), net=net))
            paths.append(path)
        for p, path in zip(procs, paths):
            wait_ns_guard(p.pid, path)
        t0 = time.monotonic_ns()
        wait_scans(t0, count=3)
        for path in paths:
            bad = [e for e in by_path(agent, path) if e["event"] in (
                "listener_orphaned", "stale_socket", "socket_unlinked", "guard_lost",
                "rebind_started", "connect_failing")]
            assert not bad, bad
            eps = endpoints_at(path)
            assert len(eps) == 1 and eps[0]["state"] == "healthy", eps
        for p, path in zip(procs, paths):
            assert ns_connect(p.pid, path) == (0, p.pid)
        assert_sane(agent, paths)
    finally:
        for p in procs:
            p.stop()
        agent.stop()


@test
def no_false_orphan_for_live_namespace_socket_iter(scratch):
    """(9) Reconcile scans (the iterator) over live listeners on tmpfs
    mounts the host cannot see, one in a network namespace of its own: no
    orphan, no stale socket, no loss."""
    no_false_orphan(scratch, "iter")


@test
def no_false_orphan_for_live_namespace_socket_procfs(scratch):
    """(9) The same with the fallback: sock_diag per network namespace and
    the /proc walk."""
    no_false_orphan(scratch, "procfs")


# ----- tests: one file, two namespaces -----

@test
def bind_mounted_host_dir_is_one_endpoint(scratch):
    """(10) A host directory bind-mounted at the same path in a mount
    namespace: the socket in it is one endpoint. Failed connects from the
    host and from inside the namespace count on it together."""
    d = os.path.join(scratch, "shared")
    os.mkdir(d)
    path = os.path.join(d, "app.sock")
    srv = Server(path)
    agent = ns = None
    n_host, n_ns = 200, 150
    try:
        agent = Agent(scratch, "--no-guard")
        ns = ns_holder(setup="mount -o bind %s %s" % (shlex.quote(d), shlex.quote(d)))
        assert ns.mntns != ns_ino(os.getpid(), "mnt")
        assert ns_connect(ns.pid, path) == (0, srv.pid)
        wait_until(lambda: endpoints_at(path), what="the endpoint in status")
        os.rename(path, path + ".away")
        lost = agent.wait_event("socket_unlinked", path=path)
        assert lost["owner"]["pid"] == srv.pid, lost
        host_client, hf = host_fail_loop(path, n_host)
        assert hf == n_host, hf
        agent.wait_event("connect_failing", path=path)
        ns_client, nf = ns_fail_loop(ns.pid, path, n_ns)
        assert nf == n_ns, nf
        os.rename(path + ".away", path)
        assert connect_errno(path) == 0
        rec = agent.wait_event("connect_recovered", path=path)
        assert rec["total_failures"] == n_host + n_ns, rec
        assert rec["swallowed_failures"] == n_host + n_ns - 1, rec
        by_pid = {c["pid"]: c["failures"] for c in rec.get("clients", [])}
        assert by_pid.get(host_client) == n_host and by_pid.get(ns_client) == n_ns, rec
        assert len(by_path(agent, path, "connect_failing")) == 1, by_path(agent, path)
        host_mnt, host_net = ns_ino(srv.pid, "mnt"), ns_ino(srv.pid, "net")
        for e in by_path(agent, path):
            assert_endpoint(e, mntns=host_mnt, netns=host_net)
        eps = endpoints_at(path)
        assert len(eps) == 1, eps
        assert_sane(agent, [path])
    finally:
        if ns:
            ns.stop()
        srv.stop()
        if agent:
            agent.stop()


@test
def bind_mounted_elsewhere_is_one_endpoint_under_the_host_name(scratch):
    """(10b) A host directory bind-mounted into a namespace at another path,
    the server inside binding it by the namespace's name: one endpoint, by
    the host's name, with the namespace's name as its alias. Failed connects
    by either name count on it together; a loss is healed on the host."""
    d = os.path.join(scratch, "shared")
    inside = os.path.join(scratch, "ctr", "data")
    os.makedirs(d)
    os.makedirs(inside)
    host_path = os.path.join(d, "app.sock")
    ns_path = os.path.join(inside, "app.sock")
    agent = srv = None
    n_host, n_ns = 120, 90
    try:
        agent = Agent(scratch, "--no-guard")
        srv = ns_server(ns_path, setup="mount -o bind %s %s" % (shlex.quote(d),
                                                                  shlex.quote(inside)))
        assert srv.mntns != ns_ino(os.getpid(), "mnt")
        assert not os.path.lexists(ns_path), "the host's %s stays empty" % inside
        wait_until(lambda: endpoints_at(host_path), what="the endpoint by the host's name")
        ep = endpoints_at(host_path)
        assert len(ep) == 1 and ep[0].get("alias") == {"path": ns_path, "mntns": srv.mntns}, ep
        assert not endpoints_at(ns_path), endpoints_at(ns_path)
        # removed from inside by the namespace's name: the host's endpoint lost it
        ns_exec(srv.pid, ["mv", ns_path, ns_path + ".away"])
        lost = agent.wait_event("socket_unlinked", path=host_path)
        assert lost["owner"]["pid"] == srv.pid, lost
        assert lost["alias"] == {"path": ns_path, "mntns": srv.mntns}, lost
        assert lost["owner"].get("mntns") == srv.mntns, lost
        host_client, hf = host_fail_loop(host_path, n_host)
        assert hf == n_host, hf
        agent.wait_event("connect_failing", path=host_path)
        ns_client, nf = ns_fail_loop(srv.pid, ns_path, n_ns, net=False)
        assert nf == n_ns, nf
        os.rename(host_path + ".away", host_path)
        assert connect_errno(host_path) == 0
        rec = agent.wait_event("connect_recovered", path=host_path)
        assert rec["total_failures"] == n_host + n_ns, rec
        by_pid = {c["pid"]: c["failures"] for c in rec.get("clients", [])}
        assert by_pid.get(host_client) == n_host and by_pid.get(ns_client) == n_ns, rec
        assert not by_path(agent, ns_path), by_path(agent, ns_path)
        assert_sane(agent, [host_path])
    finally:
        if srv:
            srv.stop()
        if agent:
            agent.stop()


if __name__ == "__main__":
    # as run.py does: private network and mount namespaces, scratch on a tmpfs
    harness.enter_private_namespaces("SW_TEST_NETNS")
    if os.environ.get("SW_TEST_NETNS") == "1":
        harness.private_mounts("sw-it")
    sys.exit(harness.main())
