"""probe and doctor in every mount namespace (DESIGN §2 "Namespaces", §3).

A server in a mount namespace of its own (a container's, PrivateTmp=) binds a
path on a tmpfs only that namespace sees: on the host the path does not
exist. `probe PATH --pid PID` looks at it where PID sees it (the file, its
listener, a connect through the socket's inode); `doctor` checks each
listener in its holders' namespace and walks every namespace's socket
directories for stale files.

Runs in the suite (tests/integration/run.py), or alone:
    SW_BUILD=/tmp/clib python3 tests/integration/test_cli_namespaces.py [NAME...]
"""
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import AGENT, IN_CI, SERVER_PY, Skip, test, wait_until  # noqa: E402


# where doctor looks for stale socket files, in every mount namespace
STALE_DIRS = ("/run", "/tmp", "/var/run", "/dev/shm")


def ns_ino(pid, kind):
    return os.stat("/proc/%d/ns/%s" % (pid, kind)).st_ino


def cli(*args):
    return subprocess.run([AGENT] + list(args), capture_output=True, text=True, timeout=60)


def cli_json(*args):
    r = cli(*args, "--json")
    assert r.returncode in (0, 1), r
    return r.returncode, json.loads(r.stdout)


def findings(doc, path):
    return [p for p in doc["problems"] if p["path"] == path]


def in_ns(pid, *argv, **kw):
    """Runs argv to its end in the mount namespace of pid."""
    r = subprocess.run(["nsenter", "-t", str(pid), "-m", "--"] + list(argv),
                       capture_output=True, text=True, timeout=60, **kw)
    assert r.returncode == 0, r
    return r


BIND_AND_CLOSE = ("import socket, sys; s = socket.socket(socket.AF_UNIX); "
                  "s.bind(sys.argv[1]); s.listen(1); s.close()")


class NsServer:
    """A listener (harness.SERVER_PY) in a mount namespace of its own, and a
    network namespace of its own with netns, bound at DIR/NAME where a tmpfs
    only its namespace sees is mounted over DIR (an empty directory on the
    host). unshare and sh exec the server: its pid is the process's."""

    def __init__(self, d, name="app.sock", netns=False):
        self.dir = d
        self.path = os.path.join(d, name)
        os.makedirs(d, exist_ok=True)
        flags = ["--mount", "--propagation", "private"] + (["--net"] if netns else [])
        script = 'mount -t tmpfs nsapp "$1" && exec "$2" -c "$3" "$4"'
        self.proc = subprocess.Popen(
            ["unshare"] + flags + ["--", "sh", "-c", script, "sh", d, sys.executable,
                                   SERVER_PY, self.path],
            stdout=subprocess.PIPE, start_new_session=True)
        harness.LIVE.append(self.proc)
        self.pid = self.proc.pid
        # "ready" once it listens; nothing (EOF) when the mount failed
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            self.stop()
            raise AssertionError("namespaced server did not start")
        self.mntns = ns_ino(self.pid, "mnt")
        self.netns = ns_ino(self.pid, "net")
        assert self.mntns != ns_ino(os.getpid(), "mnt"), "the server shares our mount ns"

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()


class NsEnterServer:
    """A second listener in srv's mount namespace, bound by a relative name
    from working directory wd there (nsenter and sh exec it: its pid is the
    server's)."""

    def __init__(self, srv, wd, name):
        in_ns(srv.pid, "mkdir", "-p", wd)
        # (nsenter --wd opens the directory before it enters the namespace)
        self.proc = subprocess.Popen(
            ["nsenter", "-t", str(srv.pid), "-m", "--", "sh", "-c",
             'cd "$1" && exec "$2" -c "$3" "$4"', "sh", wd, sys.executable, SERVER_PY,
             name], stdout=subprocess.PIPE, start_new_session=True)
        harness.LIVE.append(self.proc)
        self.pid = self.proc.pid
        if self.proc.stdout.readline().strip() != b"ready":
            self.stop()
            raise AssertionError("second namespaced server did not start")

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()


def under_stale_dirs(path):
    real = os.path.realpath(path)
    return any(real == d or real.startswith(d + "/") for d in STALE_DIRS)


@test
def cli_ns_probe_pid_resolves_in_the_servers_namespace(scratch):
    srv = NsServer(os.path.join(scratch, "nsapp"), netns=True)
    long_srv = None
    try:
        assert not os.path.exists(srv.path)
        rc, pr = cli_json("probe", srv.path, "--pid", str(srv.pid))
        assert rc == 0, pr
        assert pr["exists"] is True and pr["is_socket"] is True, pr
        assert pr["verdict"] == "healthy", pr
        assert pr["pid"] == srv.pid
        assert pr["mntns"] == srv.mntns, (pr["mntns"], srv.mntns)
        assert pr["netns"] == srv.netns, (pr["netns"], srv.netns)
        assert pr["connect"]["result"] == "ok", pr
        live = [l for l in pr["listeners"] if l["bound_here"]]
        assert len(live) == 1 and live[0]["listening"], pr
        assert live[0]["owners"][0]["pid"] == srv.pid, pr

        # the same name on the host: no such path, and the namespace's
        # listener is not taken for an orphan of it
        rc, host = cli_json("probe", srv.path)
        assert rc == 1, host
        assert host["exists"] is False and host["verdict"] == "missing", host
        assert host["listeners"] == [], host
        assert host["mntns"] == ns_ino(os.getpid(), "mnt"), host

        r = cli("probe", srv.path, "--pid", str(srv.pid))
        assert r.returncode == 0, r
        assert "namespace: mnt:[%d]" % srv.mntns in r.stdout, r.stdout
        assert "connect test: ok" in r.stdout, r.stdout

        # an absolute symlink inside the namespace resolves inside it
        in_ns(srv.pid, "ln", "-s", srv.dir, os.path.join(srv.dir, "alias"))
        rc, pr = cli_json("probe", os.path.join(srv.dir, "alias", "app.sock"),
                          "--pid", str(srv.pid))
        assert rc == 0 and pr["connect"]["result"] == "ok", pr

        # longer than sun_path can hold: bound by a relative name, connected
        # to through the inode
        wd = os.path.join(srv.dir, "d" * 60, "e" * 60)
        long_srv = NsEnterServer(srv, wd, "long.sock")
        long_path = os.path.join(wd, "long.sock")
        assert len(long_path) > 107
        rc, pr = cli_json("probe", long_path, "--pid", str(srv.pid))
        assert rc == 0 and pr["verdict"] == "healthy", pr
        assert pr["connect"]["result"] == "ok", pr
        assert pr["listeners"][0]["owners"][0]["pid"] == long_srv.pid, pr
        # without --pid such a path is refused, as before
        assert cli("probe", long_path).returncode == 2
    finally:
        if long_srv:
            long_srv.stop()
        srv.stop()


@test
def cli_ns_doctor_checks_a_listener_in_its_own_namespace(scratch):
    srv = NsServer(os.path.join(scratch, "nsapp"))
    try:
        _, doc = cli_json("doctor")
        assert not findings(doc, srv.path), doc
        assert doc["namespaces"] >= 2, doc

        in_ns(srv.pid, "rm", srv.path)
        _, pr = cli_json("probe", srv.path, "--pid", str(srv.pid))
        assert pr["verdict"] == "orphaned" and pr["exists"] is False, pr
        rc, doc = cli_json("doctor")
        assert rc == 1, doc
        hits = findings(doc, srv.path)
        assert len(hits) == 1 and hits[0]["problem"] == "orphaned_listener", doc
        assert hits[0]["mntns"] == srv.mntns, (hits, srv.mntns)
        assert hits[0]["netns"] == srv.netns, (hits, srv.netns)
        assert hits[0]["owners"][0]["pid"] == srv.pid, hits

        r = cli("doctor")
        assert r.returncode == 1, r
        line = [ln for ln in r.stdout.splitlines() if srv.path in ln]
        assert line and "orphaned_listener" in line[0], r.stdout
        assert "namespace mnt:[%d]" % srv.mntns in line[0], line
    finally:
        srv.stop()


@test
def cli_ns_doctor_finds_stale_sockets_in_every_namespace(scratch):
    if not under_stale_dirs(scratch):
        raise Skip("the scratch directory %s is not under %s" % (scratch, STALE_DIRS))
    srv = NsServer(os.path.join(scratch, "nsapp"))
    try:
        # a socket file left by a listener that closed, on the namespace's tmpfs
        stale = os.path.join(srv.dir, "stale.sock")
        in_ns(srv.pid, sys.executable, "-c", BIND_AND_CLOSE, stale)
        # and one on a mount both namespaces see: one finding, by its name here
        shared = os.path.join(scratch, "shared-stale.sock")
        subprocess.run([sys.executable, "-c", BIND_AND_CLOSE, shared], check=True)
        assert os.path.exists("/proc/%d/root%s" % (srv.pid, shared))

        rc, doc = cli_json("doctor")
        assert rc == 1, doc
        hits = findings(doc, stale)
        assert len(hits) == 1 and hits[0]["problem"] == "stale_socket", doc
        assert hits[0]["mntns"] == srv.mntns, (hits, srv.mntns)
        hits = findings(doc, shared)
        assert len(hits) == 1 and hits[0]["problem"] == "stale_socket", doc
        assert hits[0]["mntns"] == ns_ino(os.getpid(), "mnt"), hits
        # the live listener's file is no stale one
        assert not findings(doc, srv.path), doc

        _, pr = cli_json("probe", stale, "--pid", str(srv.pid))
        assert pr["verdict"] == "stale", pr
        assert pr["connect"]["result"] == "ECONNREFUSED", pr
    finally:
        srv.stop()


@test
def cli_ns_doctor_skips_names_bound_through_proc(scratch):
    """A name bound through a procfs magic link (conmon's
    /proc/self/fd/N/attach) means nothing to anyone else: not an orphan."""
    d = os.path.join(scratch, "viaproc")
    os.makedirs(d)
    code = ("import os, socket, sys\n"
            "fd = os.open(sys.argv[1], os.O_PATH | os.O_DIRECTORY)\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            "s.bind('/proc/self/fd/%d/attach' % fd)\n"
            "s.listen(1)\n"
            "print('ready', flush=True)\n"
            "sys.stdin.read()\n")
    p = subprocess.Popen([sys.executable, "-c", code, d], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    harness.LIVE.append(p)
    try:
        assert p.stdout.readline().strip() == b"ready"
        assert os.path.exists(os.path.join(d, "attach"))
        _, doc = cli_json("doctor")
        assert not [x for x in doc["problems"] if x["path"].startswith("/proc/")], doc
    finally:
        p.kill()
        p.wait()


@test
def cli_ns_probe_pid_refuses_what_it_cannot_use(scratch):
    gone = subprocess.Popen(["true"])
    gone.wait()
    # reaped: its pid names no process (unless reused meanwhile; then not ours
    # to probe, and the test would say so)
    wait_until(lambda: not os.path.exists("/proc/%d" % gone.pid), what="pid gone")
    r = cli("probe", "/run/app.sock", "--pid", str(gone.pid))
    assert r.returncode == 2, r
    assert "no process %d" % gone.pid in r.stderr, r.stderr
    for args in (["probe", "/run/app.sock", "--pid", "0"],
                 ["probe", "/run/app.sock", "--pid", "12x"],
                 ["probe", "relative.sock", "--pid", str(os.getpid())],
                 ["doctor", "--pid", str(os.getpid())]):
        r = cli(*args)
        assert r.returncode == 2, (args, r)
    # the own namespace through --pid: the same answer as without it
    path = os.path.join(scratch, "here.sock")
    srv = harness.Server(path)
    try:
        rc, pr = cli_json("probe", path, "--pid", str(srv.pid))
        assert rc == 0 and pr["connect"]["result"] == "ok", pr
        assert pr["mntns"] == ns_ino(os.getpid(), "mnt"), pr
    finally:
        srv.stop()


if __name__ == "__main__":
    # as run.py does: private network and mount namespaces, scratch on a tmpfs
    harness.enter_private_namespaces("SW_TEST_NETNS")
    if os.environ.get("SW_TEST_NETNS") == "1":
        harness.private_mounts("sw-it")
    sys.exit(harness.main())
