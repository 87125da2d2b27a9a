"""Integration-test harness: runs the real agent binary against real sockets.

Tests are plain functions registered with @test. Each gets a fresh scratch
directory. Waiting is always for a condition with a deadline, never a bare
sleep; "nothing happened" is proven with a marker: a second, positive action
whose event must arrive after any event the first action could have caused.
"""
import atexit
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# SW_BUILD names another build folder (make check-asan's, the VM's copy)
BUILD = os.environ.get("SW_BUILD") or os.path.join(ROOT, "build")
AGENT = os.path.join(BUILD, "sockwarden")
IN_CI = os.environ.get("CI") == "true"
# SW_TEST_MODE=fentry|tracepoint runs every agent in that attach mode (make
# vmtest runs the suite once per mode); unset, the agent picks (auto).
MODE = os.environ.get("SW_TEST_MODE") or None
# what `--mode auto` must pick on this kernel: tracepoint on these machines
# (DESIGN §7: fentry cannot load), fentry on Debian's kernel under make vmtest
AUTO_MODE = os.environ.get("SW_EXPECT_AUTO_MODE") or "tracepoint"
# the mode the test agents run in
RUN_MODE = MODE or AUTO_MODE
# SW_TEST_SLOW=1 (make vmtest: an emulated CPU) asks the tests that repeat a
# trial many times for fewer trials; what each trial asserts is unchanged
SLOW = os.environ.get("SW_TEST_SLOW") == "1"

TESTS = []
# every process a test starts, stopped after it whatever happened
LIVE = []
STARTED = []  # the agents the running test started, told of when it fails
# SW_IDLE_PROCS=N (make integration-test: 3000): N idle processes with
# IDLE_FDS fds each live for the whole run, a busy host's /proc for every
# scan to walk; IDLE_PRESENT says how many main() started
IDLE_FDS = 40
IDLE_PRESENT = 0

# Every event an Agent reads is checked against docs/events.schema.json
# (tests/schema/events_schema.py). Without python3-jsonschema the check is
# skipped with a warning, except in CI, where main() fails the run. A test
# that swallows the AssertionError (waiting for an event that must not come)
# still fails: main() looks at SCHEMA_FAILURES after every test.
sys.path.insert(0, os.path.join(ROOT, "tests", "schema"))
import events_schema  # noqa: E402
SCHEMA_CHECK = events_schema.load_jsonschema() is not None
SCHEMA_FAILURES = []


def check_event(ev, where=""):
    """Checks one event against the schema; raises AssertionError if it breaks it."""
    if not SCHEMA_CHECK:
        return
    # make vmtest's emulated VM (SLOW) checks the first 50 events of each
    # type a run reads: a full check there costs minutes per storm test, and
    # the host's run checks every event
    name = ev.get("event") if isinstance(ev, dict) else None
    if SLOW and isinstance(name, str) and events_schema.seen.get(name, 0) >= 50:
        return
    try:
        events_schema.check(ev, where)
    except AssertionError as e:
        SCHEMA_FAILURES.append(str(e))
        raise


def enter_private_namespaces(flag):
    """Re-runs this program in network and mount namespaces of its own.

    The control socket @sockwarden is an abstract name, and abstract names
    belong to a network namespace, so an agent running elsewhere on the host
    (a developer's, a deployed one, another test run's) cannot collide with
    the agents under test, nor see or heal their servers: its sock_diag does
    not see this namespace's sockets. Returns once inside."""
    if os.geteuid() != 0 or os.environ.get(flag) == "1":
        return
    os.environ[flag] = "1"
    os.execvp("unshare", ["unshare", "--net", "--mount", "--propagation", "private",
                          "--", sys.executable] + sys.argv)


def private_mounts(tag):
    """Inside the mount namespace: scratch space on a tmpfs of its own (TMPDIR),
    and tmpfs mounts on /run/sockwarden and /run/systemd.

    An agent prunes the guard links of listeners it cannot see, and another
    namespace's listeners are invisible to it, so two runs sharing a mount
    would prune each other's guards; /run/sockwarden holds the fixed control
    path and the state file, /run/systemd the journal socket the tests fake.
    Nothing is mounted over /tmp or /run themselves: the checkout under test
    may live there."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    base = tempfile.mkdtemp(prefix=tag + "-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=1777", tag, base], check=True)
    os.environ["TMPDIR"] = base
    tempfile.tempdir = base
    made = []
    for d in ("/run/sockwarden", "/run/systemd"):
        if not os.path.isdir(d):
            os.makedirs(d)
            made.append(d)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", tag, d], check=True)

    def unmount():
        for d in [base, "/run/sockwarden", "/run/systemd"]:
            subprocess.run(["umount", "-l", d], stderr=subprocess.DEVNULL)
        for d in [base] + made:
            try:
                os.rmdir(d)
            except OSError:
                pass
    atexit.register(unmount)


class Skip(Exception):
    pass


def test(fn):
    TESTS.append(fn)
    return fn


def wait_until(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.01)


class Agent:
    """The real agent, events to a file the test reads."""

    def __init__(self, scratch, *args, env=None):
        self.events_path = os.path.join(scratch, "events.jsonl")
        self.stderr_path = os.path.join(scratch, "agent.stderr")
        # a fresh file: an earlier agent's events must not satisfy this one's waits
        for p in (self.events_path, self.stderr_path):
            if os.path.exists(p):
                os.unlink(p)
        self.args = [AGENT, "run", "--events", self.events_path] + list(args)
        if MODE and "--mode" not in args:
            self.args += ["--mode", MODE]
        self.stderr = open(self.stderr_path, "w")
        self.stderr_kept = None
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL,
                                     stderr=self.stderr, env=env)
        LIVE.append(self.proc)
        STARTED.append(self)
        self._offset = 0
        self._buf = b""
        self.events = []
        try:
            self.wait_event("agent_started", timeout=20)
        except AssertionError:
            self.stop()
            raise AssertionError("agent did not start: " + self.stderr_text())

    def stderr_text(self):
        if self.stderr_kept is not None:
            return self.stderr_kept  # stopped: a later agent may reuse the file
        with open(self.stderr_path) as f:
            return f.read()

    def poll(self):
        try:
            with open(self.events_path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return self.events
        self._offset += len(data)
        self._buf += data
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            ev = json.loads(line)
            check_event(ev, self.events_path)
            self.events.append(ev)
        return self.events

    def find(self, name=None, **fields):
        out = []
        for e in self.poll():
            if name and e.get("event") != name:
                continue
            if all(e.get(k) == v for k, v in fields.items()):
                out.append(e)
        return out

    def wait_event(self, name, timeout=10.0, **fields):
        def pred():
            if self.proc.poll() is not None:
                raise AssertionError("agent exited with %s: %s" %
                                     (self.proc.returncode, self.stderr_text()))
            found = self.find(name, **fields)
            return found[0] if found else None
        try:
            return wait_until(pred, timeout, "%s %s" % (name, fields))
        except AssertionError as e:
            raise AssertionError("%s\n%s" % (e, self.story())) from None

    def story(self, events=25, lines=25):
        """What the agent said last: a wait that failed says what came instead."""
        told = ["  last events:"]
        for ev in self.events[-events:]:
            told.append("    " + json.dumps({k: v for k, v in ev.items()
                                             if k not in ("host", "schema", "ts")})[:400])
        told.append("  stderr, last lines:")
        told += ["    " + line for line in self.stderr_text().splitlines()[-lines:]]
        return "\n".join(told)

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()
        if self.stderr_kept is None:
            self.poll()
            self.stderr_kept = self.stderr_text()
        return self.proc.returncode


class IdleProcs:
    """build/idle_procs: n idle processes holding fds open each (a busy
    host). stop() returns once every one of them is gone."""

    def __init__(self, n, fds=IDLE_FDS):
        self.n = n
        t0 = time.monotonic()
        self.proc = subprocess.Popen([os.path.join(BUILD, "idle_procs"), str(n), str(fds)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        out = LineReader(self.proc)
        # 5000 processes of 40 fds are up in under 2 s on these machines (3000
        # in under 1 s); the deadline only ends a helper that hangs
        deadline = time.monotonic() + 120
        while not out.lines:
            left = deadline - time.monotonic()
            if left <= 0 or not out.pump(left):
                self.stop()
                raise AssertionError("idle_procs %d %d did not start (rc %s)" % (
                    n, fds, self.proc.returncode))
        if out.lines[0] != "ready %d" % n:
            self.stop()
            raise AssertionError("idle_procs: %r" % out.lines[0])
        self.seconds = time.monotonic() - t0

    def stop(self):
        """Closing its stdin: it kills and reaps every child, then exits."""
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                # a few hundred ms for 5000; the deadline is for a helper that hangs
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # the children follow: PR_SET_PDEATHSIG
                self.proc.wait()
        return self.proc.returncode


def processes_on_host():
    return sum(1 for d in os.listdir("/proc") if d.isdigit())


def busy_host():
    """SW_IDLE_PROCS=N: the idle processes for the whole run, stopped at exit
    (a failed test, an exception in here, Ctrl-C); if this process is killed,
    idle_procs sees its stdin close and stops by itself."""
    global IDLE_PRESENT
    want = os.environ.get("SW_IDLE_PROCS", "0")
    if not want.isdigit():
        raise SystemExit("SW_IDLE_PROCS=%r: a number of processes, please" % want)
    if int(want) == 0:
        return
    idle = IdleProcs(int(want))
    atexit.register(idle.stop)
    IDLE_PRESENT = idle.n
    print("busy host: %d idle processes with %d fds each (build/idle_procs, up in %.1f s), "
          "%d processes on the host" % (idle.n, IDLE_FDS, idle.seconds, processes_on_host()),
          flush=True)


SERVER_PY = r"""
import os, socket, sys, time, signal
path = sys.argv[1]
backlog = int(sys.argv[2]) if len(sys.argv) > 2 else 16
accept = len(sys.argv) <= 3 or sys.argv[3] != "noaccept"
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(backlog)
print("ready", flush=True)
conns = []
while True:
    if not accept:
        time.sleep(3600)
    c, _ = s.accept()
    conns.append(c)
"""


class Server:
    """A listener in its own process that knows nothing of sockwarden."""

    def __init__(self, path, backlog=16, accept=True, cwd=None, netns=False):
        args = [sys.executable, "-c", SERVER_PY, path, str(backlog)]
        if not accept:
            args.append("noaccept")
        if netns:
            # a network namespace of its own (a container's, PrivateNetwork=):
            # unshare execs the server, so its pid is the server's
            args = ["unshare", "--net", "--"] + args
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, cwd=cwd)
        line = self.proc.stdout.readline()
        assert line.strip() == b"ready", "server did not start"
        self.pid = self.proc.pid

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run_py(code, *args, cwd=None):
    """Runs code in a new python process; returns (pid, stdout)."""
    p = subprocess.Popen([sys.executable, "-c", code] + list(args), cwd=cwd,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, "helper failed: %s" % err.decode()
    return p.pid, out.decode()


def peercred(sock):
    """(pid, uid, gid) of the process that listened, as SO_PEERCRED says."""
    import struct
    return struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))


def echo(sock, data=b"ping"):
    """Sends data and reads the same bytes back."""
    sock.settimeout(5)
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = sock.recv(100)
        assert chunk, "connection closed"
        got += chunk
    assert got == data, got
    return got


def client(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    return s


def mount_root(path):
    """The mount point holding path, from /proc/self/mountinfo."""
    best = "/"
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4]
            if (path == mp or path.startswith(mp.rstrip("/") + "/")) and len(mp) > len(best):
                best = mp
    return best


def guards_of(path):
    gd = os.path.join(mount_root(path), ".sockwarden-guard")
    try:
        return os.listdir(gd), gd
    except FileNotFoundError:
        return [], gd


def wait_guard(path):
    """This listener's guard link: other listeners (the agent's own control
    socket among them) have guards on the same mount."""
    ino = os.lstat(path).st_ino
    return wait_until(lambda: [n for n in guards_of(path)[0] if n.endswith("-%d" % ino)],
                      what="the guard of %s" % path)


def connect_errno(path, typ=socket.SOCK_STREAM, nonblock=False):
    s = socket.socket(socket.AF_UNIX, typ)
    if nonblock:
        s.setblocking(False)
    try:
        s.connect(path)
        return 0
    except OSError as e:
        return e.errno
    finally:
        s.close()


def tell_agents():
    """Every agent of a failed test, in the order started: what each said
    last, whatever the failure was (a wait_event says it already)."""
    for i, agent in enumerate(STARTED):
        try:
            if agent.proc.poll() is None:
                agent.poll()
            print("agent %d of %d (%s):\n%s" % (i + 1, len(STARTED), " ".join(agent.args[1:]),
                                                agent.story()), flush=True)
        except (OSError, ValueError) as e:
            print("agent %d of %d: its story is unreadable: %s" % (i + 1, len(STARTED), e))


def reap_live():
    while LIVE:
        p = LIVE.pop()
        if p.poll() is None:
            p.kill()
            p.wait()


class LineReader:
    """Lines from a child's stdout without Python's buffering, so select()
    tells the truth about what is left to read."""

    def __init__(self, proc):
        self.proc = proc
        self.fd = proc.stdout.fileno()
        self.buf = b""
        self.lines = []

    def pump(self, timeout):
        r, _, _ = select.select([self.fd], [], [], max(timeout, 0))
        if r:
            data = os.read(self.fd, 65536)
            if not data:
                return False
            self.buf += data
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                self.lines.append(line.decode())
        return True


def main():
    only = sys.argv[1:]
    passed = failed = skipped = 0
    if os.geteuid() != 0:
        msg = "integration tests need root (BPF)"
        if IN_CI:
            print("FAIL: " + msg)
            print("0 passed, 1 failed")
            return 1
        print("SKIP: " + msg)
        print("0 passed, 0 failed, %d skipped" % len(TESTS))
        return 0
    if not SCHEMA_CHECK:
        msg = "python3-jsonschema is missing: events are not checked against docs/events.schema.json"
        if IN_CI:
            print("FAIL: " + msg)
            print("0 passed, 1 failed")
            return 1
        print("WARNING: " + msg, flush=True)
    try:
        busy_host()
    except (AssertionError, OSError) as e:
        print("FAIL: busy host (SW_IDLE_PROCS): %s" % e)
        print("0 passed, 1 failed")
        return 1
    # SW_TEST_EXCLUDE: test modules left out of this run (make vmtest leaves out
    # tests/vm/vmtest.py's HOST_ONLY_SUITES: test_install, which needs a
    # toolchain and is not about the kernel, and test_load)
    excluded = set(os.environ.get("SW_TEST_EXCLUDE", "").split())
    # SW_TEST_REPEAT=N runs each selected test N times in a row (hunting a flake)
    repeat = max(1, int(os.environ.get("SW_TEST_REPEAT") or 1))
    for fn in [f for f in TESTS for _ in range(repeat)]:
        if only and fn.__name__ not in only:
            continue
        if fn.__module__ in excluded:
            continue
        scratch = tempfile.mkdtemp(prefix="sw-" + fn.__name__[:20] + "-")
        t0 = time.monotonic()
        try:
            schema_failures = len(SCHEMA_FAILURES)
            fn(scratch)
            if len(SCHEMA_FAILURES) > schema_failures:
                raise AssertionError("events broke docs/events.schema.json:\n" +
                                     "\n".join(SCHEMA_FAILURES[schema_failures:]))
            passed += 1
            print("PASS %-50s %.2fs" % (fn.__name__, time.monotonic() - t0), flush=True)
        except Skip as e:
            if IN_CI:
                failed += 1
                print("FAIL %-50s skipped in CI: %s" % (fn.__name__, e), flush=True)
            else:
                skipped += 1
                print("SKIP %-50s %s" % (fn.__name__, e), flush=True)
        except Exception:
            failed += 1
            print("FAIL %-50s" % fn.__name__, flush=True)
            traceback.print_exc()
            tell_agents()
        finally:
            reap_live()
            STARTED.clear()
            if os.environ.get("SW_KEEP") != "1":
                subprocess.run(["rm", "-rf", scratch])
    if SCHEMA_CHECK:
        print("schema: %d events of %d types checked against docs/events.schema.json, "
              "%d broke it" % (events_schema.validated, len(events_schema.seen),
                               len(SCHEMA_FAILURES)))
        print("schema: by type: " + ", ".join(
            "%s %d" % kv for kv in sorted(events_schema.seen.items(), key=str)))
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if failed else 0
