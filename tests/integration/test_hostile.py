"""Hostile peers on the control socket (issue 9): oversized, empty and
malformed messages, fds of the wrong kind, registrations without end,
connections that never speak, a peer that stops reading its replies, and a
peer of another uid reaching for someone else's path.

Every test checks the same three things besides the refusal itself: the
agent answers with the documented error word or disconnects the peer, a
well-behaved server still registers and is healed afterwards, and the
agent's open fds (/proc/<agent>/fd) come back to what they were before the
abuse.
"""
import ctypes
import json
import os
import select
import socket
import subprocess
import sys
import time

import harness
from harness import AGENT, LIVE, Agent, client, echo, test, wait_until
from test_control import CtlServer, rm

ABSTRACT = "\0sockwarden"
NOBODY = 65534


# ----- helpers -----

def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def fd_baseline(agent):
    """The agent's fds at rest: the least of a few samples, so a scan that
    holds a netlink socket for a moment does not count."""
    samples = []
    for _ in range(20):
        samples.append(fd_count(agent.proc.pid))
        time.sleep(0.01)
    return min(samples)


def fds_back_to(agent, baseline):
    wait_until(lambda: fd_count(agent.proc.pid) <= baseline, 10,
               "agent fds back to %d (now %d)" % (baseline, fd_count(agent.proc.pid)))


def write_config(scratch, **keys):
    path = os.path.join(scratch, "sockwarden.conf")
    with open(path, "w") as f:
        f.write("[agent]\n")
        for k, v in keys.items():
            f.write("%s = %s\n" % (k, v))
    return path


class Peer:
    """A raw control connection that says exactly what the test tells it."""

    def __init__(self, addr=ABSTRACT):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # a blocking connect waits for room in a full backlog (a non-blocking
        # one fails with EAGAIN at once)
        self.s.connect(addr)
        self.s.settimeout(10)

    def send(self, msg, fds=()):
        data = msg if isinstance(msg, bytes) else json.dumps(msg).encode()
        if fds:
            socket.send_fds(self.s, [data], list(fds))
        else:
            self.s.send(data)

    def recv(self):
        """The next message, or None once the agent has closed the connection."""
        data, fds, _, _ = socket.recv_fds(self.s, 65536, 8)
        if not data:
            return None
        return json.loads(data), fds

    def ask(self, msg, fds=()):
        self.send(msg, fds)
        got = self.recv()
        assert got is not None, "disconnected after %r" % (msg,)
        m, rfds = got
        for fd in rfds:
            os.close(fd)
        return m

    def error_word(self, msg, fds=()):
        m = self.ask(msg, fds)
        assert m["op"] == "error", (msg, m)
        assert ": " in m["reason"], m
        return m["reason"].split(":")[0]

    def closed(self, timeout=10):
        """Whether the agent closed the connection (EOF) within timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.s], [], [], deadline - time.monotonic())
            if not r:
                break
            try:
                data = self.s.recv(65536)
            except ConnectionResetError:
                return True
            if not data:
                return True
        return False

    def close(self):
        self.s.close()


def status(peer=None):
    """The live status document, through the control socket as root."""
    p = peer or Peer()
    try:
        p.send({"op": "status"})
        data, fds, _, _ = socket.recv_fds(p.s, 4096, 1)
        m = json.loads(data)
        assert m["op"] == "status" and len(fds) == 1, m
        with os.fdopen(fds[0], "rb") as f:
            return json.loads(f.read())
    finally:
        if peer is None:
            p.close()


def listener(path, typ=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_UNIX, typ)
    s.bind(path)
    s.listen(16)
    return s


def well_behaved(agent, scratch, name):
    """A server registers, loses its path, gets it back through its control
    fd and serves a new client, then exits: the agent still serves others."""
    path = os.path.join(scratch, name)
    srv = CtlServer(path, "--heal", "fd")
    try:
        agent.wait_event("target_registered", path=path)
        rm(path)
        ok = agent.wait_event("rebind_succeeded", path=path)
        assert ok["how"] == "fd", ok
        echo(client(path), b"still served")
    finally:
        srv.stop()
    agent.wait_event("target_exited", path=path)
    return ok


# ----- messages -----

@test
def hostile_garbage_gets_errors_then_disconnect(scratch):
    """Oversized, empty, non-JSON, wrongly shaped and out-of-order messages:
    each gets its error word and changes nothing; a run of eight in a row
    ends the connection, and the registration it held ends with it."""
    agent = Agent(scratch, "--no-guard")
    try:
        base = fd_baseline(agent)
        path = os.path.join(scratch, "mine.sock")
        lst = listener(path)
        p = Peer()
        assert p.ask({"op": "register", "path": path, "heal": "none"}, [lst.fileno()]) == \
            {"op": "registered", "path": path}
        agent.wait_event("target_registered", path=path)
        cases = [
            (b"{" + b" " * 4095 + b"}", "too_large"),              # 4097 bytes
            (json.dumps({"op": "status", "pad": "x" * 70000}).encode(), "too_large"),
            (b"", "malformed"),                                    # an empty message
            (b"\xff\xfe not json at all", "malformed"),
            (b'{"op":"register","path":"' + path.encode() + b'","heal":"fd"', "malformed"),
            (b"[" * 2048 + b"]" * 2048, "malformed"),              # 4096 bytes, deeply nested
            ({"op": 5}, "malformed"),
            ({"op": "register", "path": 5, "heal": "fd"}, "malformed"),
            ({"op": "register", "path": path, "heal": "fd", "extra": 1}, "malformed"),
            ({"op": "register", "path": path, "heal": "always"}, "malformed"),
            ({"op": "adopted", "path": path, "seq": "1"}, "malformed"),
            ({"op": "adopted", "path": path, "seq": 2 ** 40}, "malformed"),
            ({"op": "unregister", "path": "relative.sock"}, "bad_path"),
            ({"op": "unregister", "path": "/a/../" + path}, "bad_path"),
            ({"op": "unregister", "path": "/" + "x" * 200}, "bad_path"),
            ({"op": "shutdown"}, "unknown_op"),
            ({"op": "adopted", "path": path, "seq": 7}, "unexpected"),  # no rebind was sent
            ({"op": "adopted", "path": "/run/other.sock", "seq": 1}, "not_registered"),
        ]
        words = []
        for i, (msg, want) in enumerate(cases):
            if i and i % 7 == 0:
                # a well-formed request in order ends the run of bad ones
                assert p.error_word({"op": "unregister", "path": "/run/nothing.sock"}) == \
                    "not_registered"
            words.append((p.error_word(msg), want))
        assert all(got == want for got, want in words), words
        assert not agent.find("target_unregistered", path=path), "an error changed something"
        st = status()
        assert st["control"]["registrations"] == 1, st["control"]
        assert p.error_word({"op": "unregister", "path": "/run/nothing.sock"}) == "not_registered"
        # eight in a row: the eighth is answered, then the connection ends
        for i in range(8):
            p.send(b"nonsense %d" % i)
        for i in range(8):
            got = p.recv()
            assert got is not None and got[0]["reason"].startswith("malformed:"), (i, got)
        assert p.closed(), "a peer sending only garbage stays connected"
        ev = agent.wait_event("target_unregistered", path=path)
        assert ev["reason"] == "disconnected", ev
        assert "too many malformed" in agent.stderr_text()
        assert status()["control"]["closed"]["malformed"] == 1
        p.close()
        lst.close()
        well_behaved(agent, scratch, "good.sock")
        fds_back_to(agent, base)
    finally:
        agent.stop()


# ----- fds -----

def agent_holds(agent_pid, target):
    """Whether any fd of the agent refers to the same file as target."""
    st = os.fstat(target)
    for name in os.listdir("/proc/%d/fd" % agent_pid):
        try:
            s = os.stat("/proc/%d/fd/%s" % (agent_pid, name))
        except FileNotFoundError:
            continue
        if (s.st_dev, s.st_ino) == (st.st_dev, st.st_ino):
            return True
    return False


@test
def hostile_fds_of_the_wrong_kind(scratch):
    """A regular file, a TCP listener, a socketpair end, ten fds, 253 fds (more
    than the agent's control buffer takes), fds on messages that take none,
    on an empty and on an oversized message: each is refused with its word,
    and the agent keeps none of them."""
    agent = Agent(scratch, "--no-guard")
    try:
        base = fd_baseline(agent)
        path = os.path.join(scratch, "app.sock")
        lst = listener(path)
        reg = {"op": "register", "path": path, "heal": "fd"}
        regular = os.open(os.path.join(scratch, "plain"), os.O_CREAT | os.O_RDWR, 0o600)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        pair_a, pair_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        dgram.bind(os.path.join(scratch, "dgram.sock"))
        p = Peer()
        cases = [
            (reg, [regular], "bad_fd"),
            (reg, [tcp.fileno()], "bad_fd"),
            (reg, [pair_a.fileno()], "not_listening"),
            (reg, [dgram.fileno()], "not_listening"),
            (reg, [lst.fileno()] * 10, "bad_fd"),
            (reg, [regular] * 253, "bad_fd"),              # SCM_MAX_FD: MSG_CTRUNC
            (reg, [], "bad_fd"),
            ({"op": "unregister", "path": path}, [regular, tcp.fileno()], "bad_fd"),
            ({"op": "status"}, [pair_a.fileno()], "bad_fd"),
            (b"", [regular] * 3, "malformed"),
            (b"x" * 5000, [regular, lst.fileno()], "too_large"),
        ]
        words = []
        for i, (msg, fds, want) in enumerate(cases):
            if i == 6:
                # a well-formed request in order between the runs of bad ones
                assert p.error_word({"op": "unregister", "path": path}) == "not_registered"
            words.append((p.error_word(msg, fds), want))
            for fd in (regular, tcp.fileno(), pair_a.fileno(), lst.fileno()):
                wait_until(lambda fd=fd: not agent_holds(agent.proc.pid, fd), 5,
                           "the agent to close fd %d of %r" % (fd, msg))
        assert all(got == want for got, want in words), words
        assert not agent.find("target_registered", path=path)
        # the agent holds no copy of the socketpair end: closing ours ends it
        pair_a.close()
        pair_b.settimeout(5)
        assert pair_b.recv(1) == b""
        # with all this refused, the right fd registers on the same connection
        assert p.ask(reg, [lst.fileno()])["op"] == "registered"
        p.close()
        agent.wait_event("target_unregistered", path=path)
        for s in (lst, tcp, pair_b, dgram):
            s.close()
        os.close(regular)
        well_behaved(agent, scratch, "good.sock")
        fds_back_to(agent, base)
    finally:
        agent.stop()


# ----- registrations without end -----

@test
def hostile_registration_limits(scratch):
    """Per-connection and total registration limits: past them a clear
    `limit` error and no registration; re-registering a path held already
    does not count; room made by an unregister is usable again."""
    conf = write_config(scratch, control_max_registrations_per_connection=3,
                        control_max_registrations=5)
    agent = Agent(scratch, "--no-guard", "--config", conf)
    try:
        base = fd_baseline(agent)
        socks = {}

        def path(n):
            return os.path.join(scratch, "r%d.sock" % n)

        def register(peer, n):
            if n not in socks:
                socks[n] = listener(path(n))
            return peer.ask({"op": "register", "path": path(n), "heal": "none"},
                            [socks[n].fileno()])

        a, b = Peer(), Peer()
        for n in range(3):
            assert register(a, n)["op"] == "registered"
        m = register(a, 3)
        assert m["op"] == "error" and m["reason"].startswith("limit:"), m
        assert "control_max_registrations_per_connection" in m["reason"], m
        # the same path again is no new registration
        assert register(a, 0)["op"] == "registered"
        for n in (10, 11):
            assert register(b, n)["op"] == "registered"
        m = register(b, 12)
        assert m["op"] == "error" and m["reason"].startswith("limit:"), m
        assert "control_max_registrations)" in m["reason"], m
        # a refusal changes nothing, and a limit is no protocol violation:
        # a peer pressing on stays connected
        for _ in range(10):
            assert register(b, 12)["reason"].startswith("limit:")
        st = status()["control"]
        assert st["registrations"] == 5 and st["limits"]["max_registrations"] == 5, st
        for n in (3, 12):
            assert not agent.find("target_registered", path=path(n))
        # room again: one unregister lets the refused one in
        assert b.ask({"op": "unregister", "path": path(10)})["op"] == "unregistered"
        assert register(b, 12)["op"] == "registered"
        a.close()
        b.close()
        for n in (0, 1, 2, 11, 12):
            agent.wait_event("target_unregistered", path=path(n))
        for s in socks.values():
            s.close()
        assert status()["control"]["registrations"] == 0
        well_behaved(agent, scratch, "good.sock")
        fds_back_to(agent, base)
    finally:
        agent.stop()


# ----- connections that never speak -----

FLOODER = r"""
import os, resource, select, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
conns = []

def closed():
    p = select.poll()
    for s in conns:
        p.register(s, select.POLLIN)
    n = 0
    for fd, ev in p.poll(0):
        try:
            n += socket.socket(fileno=os.dup(fd)).recv(16) == b""
        except ConnectionResetError:
            n += 1
    return n

for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == "open":
        for _ in range(int(cmd[1])):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            s.connect("\0sockwarden")  # blocking: waits for room in the backlog
            conns.append(s)
        print(len(conns), flush=True)
    elif cmd[0] == "closed":
        print(closed(), flush=True)
"""


class Flooder:
    """A process that holds connections to the agent and never speaks on
    them (its own process: thousands of fds are beyond the harness's select)."""

    def __init__(self):
        self.p = subprocess.Popen([sys.executable, "-c", FLOODER], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        LIVE.append(self.p)

    def cmd(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        out = self.p.stdout.readline()
        assert out, "the flooder died"
        return int(out)

    def open(self, n):
        return self.cmd("open %d" % n)

    def closed(self):
        """How many of its connections the agent has closed."""
        return self.cmd("closed")

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def alive(agent):
    assert agent.proc.poll() is None, "agent exited: " + agent.stderr_text()


@test
def hostile_silent_connections_limit_and_idle_timeout(scratch):
    """2000 connections that never speak against a limit of 50 and an idle
    timeout of 1 s: the agent never holds more than the limit, a server that
    arrives during the flood still registers (idle ones make room), the
    silent ones are closed after the timeout, and the registered server's
    control fd is never timed out."""
    conf = write_config(scratch, control_max_connections=50, control_idle_timeout=1)
    agent = Agent(scratch, "--no-guard", "--config", conf)
    flood = Flooder()
    srv = None
    try:
        base = fd_baseline(agent)
        peak = base
        t0 = time.monotonic()
        for _ in range(20):
            flood.open(100)
            peak = max(peak, fd_count(agent.proc.pid))
        flood_s = time.monotonic() - t0
        alive(agent)
        # two fds per connection (its socket and a pidfd), a few for scans
        assert peak <= base + 2 * 50 + 8, (peak, base)
        st = status()["control"]
        assert st["connections"] <= 50, st
        assert st["closed"]["evicted"] >= 2000 - 50, st
        path = os.path.join(scratch, "app.sock")
        srv = CtlServer(path, "--heal", "fd")
        agent.wait_event("target_registered", path=path)
        flood.open(200)
        # every silent connection ends: evicted, or idle past the timeout
        wait_until(lambda: flood.closed() == 2200, 15, "silent connections closed")
        st = status()["control"]
        assert st["closed"]["idle"] > 0, st
        # the server's connection, and the one asking
        assert st["connections"] == 2 and st["registrations"] == 1, st
        # well past the idle timeout, the registered server still heals
        rm(path)
        agent.wait_event("rebind_succeeded", path=path)
        echo(client(path))
        assert agent.find("target_exited", path=path) == []
        assert agent.find("target_unregistered", path=path) == []
        srv.stop()
        agent.wait_event("target_exited", path=path)
        flood.stop()
        well_behaved(agent, scratch, "good.sock")
        fds_back_to(agent, base)
        print("    2000 silent connections in %.2fs, agent fds peak %d (base %d)" %
              (flood_s, peak, base))
    finally:
        if srv:
            srv.stop()
        flood.stop()
        agent.stop()


@test
def hostile_thousands_of_connections_default_limits(scratch):
    """3000 silent connections against the defaults (1024 connections): the
    agent stays within its limit, a server registers and heals meanwhile,
    and when the flood goes the fds go with it."""
    agent = Agent(scratch, "--no-guard")
    flood = Flooder()
    try:
        base = fd_baseline(agent)
        t0 = time.monotonic()
        assert flood.open(3000) == 3000
        flood_s = time.monotonic() - t0
        alive(agent)
        st = status()["control"]
        assert st["limits"]["max_connections"] == 1024, st
        assert st["limits"]["idle_timeout_s"] == 30, st
        assert st["connections"] <= 1024, st
        assert st["closed"]["evicted"] >= 3000 - 1024, st
        assert fd_count(agent.proc.pid) <= base + 2 * 1024 + 8
        assert flood.closed() >= 3000 - 1024
        well_behaved(agent, scratch, "good.sock")
        flood.stop()
        fds_back_to(agent, base)
        print("    3000 silent connections in %.2fs" % flood_s)
    finally:
        flood.stop()
        agent.stop()


@test
def hostile_connection_limit_fits_open_file_limit(scratch):
    """An agent started with a hard open-file limit of 400 cannot hold 1024
    connections at two fds each: it says so at start, takes what fits, and
    a flood of 600 neither makes accept() fail nor stops it serving."""
    # the agent, not this process, gets the limit: a hard limit lowered here
    # could not be raised again without CAP_SYS_RESOURCE
    wrapper = os.path.join(scratch, "agent-400")
    with open(wrapper, "w") as f:
        f.write('#!/bin/sh\nulimit -Sn 400 && ulimit -Hn 400 && exec "%s" "$@"\n' %
                harness.AGENT)
    os.chmod(wrapper, 0o755)
    real, harness.AGENT = harness.AGENT, wrapper
    try:
        agent = Agent(scratch, "--no-guard")
    finally:
        harness.AGENT = real
    with open("/proc/%d/limits" % agent.proc.pid) as f:
        assert any(l.startswith("Max open files") and l.split()[3:5] == ["400", "400"]
                   for l in f), "the agent runs without the limit"
    flood = Flooder()
    try:
        assert "at most 72 connections fit in the open-file limit (400)" in agent.stderr_text()
        base = fd_baseline(agent)
        assert flood.open(600) == 600
        alive(agent)
        st = status()["control"]
        assert st["limits"]["max_connections"] == (400 - 256) // 2, st
        assert st["connections"] <= 72, st
        assert "cannot accept" not in agent.stderr_text()
        well_behaved(agent, scratch, "good.sock")
        flood.stop()
        fds_back_to(agent, base)
    finally:
        flood.stop()
        agent.stop()


# ----- a peer that stops reading -----

@test
def hostile_peer_stops_reading(scratch):
    """A peer floods requests and never reads a reply. Meanwhile another
    server's path is lost and healed and `sockwarden status` is answered;
    then the reader-less peer is disconnected with a logged reason, and its
    queued replies do not outlive it."""
    agent = Agent(scratch, "--no-guard")
    try:
        base = fd_baseline(agent)
        path = os.path.join(scratch, "app.sock")
        srv = CtlServer(path, "--heal", "fd")
        agent.wait_event("target_registered", path=path)
        flood = Peer()
        req = json.dumps({"op": "unregister", "path": "/run/never/registered.sock"}).encode()
        # replies pile up unread in the agent's socket buffer
        for _ in range(100):
            flood.send(req)
        wait_until(lambda: status()["control"]["errors"] >= 100, 10, "100 replies sent")
        rm(path)
        ok = agent.wait_event("rebind_succeeded", path=path)
        echo(client(path))
        t0 = time.monotonic()
        out = subprocess.run([AGENT, "status", "--json"], capture_output=True, timeout=10)
        status_s = time.monotonic() - t0
        assert out.returncode in (0, 1), out
        assert path in out.stdout.decode(), out.stdout
        # the path is lost again while the flood goes on, until the agent
        # gives up on the peer
        rm(path)
        flood.s.setblocking(False)
        sent, t0 = 100, time.monotonic()
        while time.monotonic() - t0 < 20:
            try:
                flood.send(req)
                sent += 1
            except BlockingIOError:
                select.select([], [flood.s], [], 0.05)
            except (BrokenPipeError, ConnectionResetError):
                break
        else:
            raise AssertionError("a peer that never reads was kept for %d requests" % sent)
        assert "does not read its replies" in agent.stderr_text()
        agent.wait_event("rebind_succeeded", path=path, seq=2)
        st = status()["control"]
        assert st["closed"]["not_reading"] == 1, st
        flood.close()
        srv.stop()
        agent.wait_event("target_exited", path=path)
        well_behaved(agent, scratch, "good.sock")
        fds_back_to(agent, base)
        print("    heal during the flood %.1f ms, status answered in %.0f ms, peer dropped "
              "after %d requests" % (ok["heal_ms"], status_s * 1000, sent))
    finally:
        agent.stop()


# ----- another uid -----

def pidfd_getfd(pid, targetfd):
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        fd = libc.syscall(438, pidfd, targetfd, 0)  # pidfd_getfd
        if fd < 0:
            raise OSError(ctypes.get_errno(), "pidfd_getfd")
        return fd
    finally:
        os.close(pidfd)


def listener_fd_of(pid, path):
    """The fd number under which process pid holds the listener bound to path."""
    ino = None
    with open("/proc/net/unix") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            if len(parts) >= 8 and parts[7] == path and parts[5] == "01":
                ino = parts[6]
    assert ino, "no listener at " + path
    for name in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, name)) == "socket:[%s]" % ino:
                return int(name)
        except FileNotFoundError:
            pass
    raise AssertionError("pid %d does not hold %s" % (pid, path))


def as_nobody(fn):
    """Runs fn() in a child that has become uid and gid 65534; its result,
    through a pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            res = fn()
            os.write(w, json.dumps(res).encode())
            os._exit(0)
        except BaseException as e:  # noqa: B036 - report anything to the parent
            os.write(w, json.dumps({"exception": repr(e)}).encode())
            os._exit(1)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
    os.close(r)
    _, status_ = os.waitpid(pid, 0)
    res = json.loads(data)
    assert os.waitstatus_to_exitcode(status_) == 0, res
    return res


@test
def hostile_other_uid_cannot_take_or_drop_a_path(scratch):
    """A uid-65534 peer, even holding a root server's very listener, cannot
    register its path, and cannot unregister or adopt a path another peer
    registered: each refused with its word, the root server's registration
    unchanged and still healing."""
    os.chmod(scratch, 0o755)
    agent = Agent(scratch, "--no-guard")
    try:
        base = fd_baseline(agent)
        path = os.path.join(scratch, "root.sock")
        srv = CtlServer(path, "--heal", "fd")
        agent.wait_event("target_registered", path=path)
        stolen = pidfd_getfd(srv.pid, listener_fd_of(srv.pid, path))
        own_dir = os.path.join(scratch, "nobody")
        os.mkdir(own_dir)
        os.chown(own_dir, NOBODY, NOBODY)

        def attempts():
            p = Peer()
            out = {}
            out["register_stolen"] = p.ask({"op": "register", "path": path, "heal": "fd"},
                                           [stolen])
            mine = listener(os.path.join(own_dir, "mine.sock"))
            out["register_named"] = p.ask({"op": "register", "path": path, "heal": "fd"},
                                          [mine.fileno()])
            out["unregister"] = p.ask({"op": "unregister", "path": path})
            out["adopted"] = p.ask({"op": "adopted", "path": path, "seq": 1})
            out["status"] = p.ask({"op": "status"})
            p.close()
            return out

        got = as_nobody(attempts)
        os.close(stolen)
        want = {"register_stolen": "not_owner", "register_named": "path_mismatch",
                "unregister": "not_registered", "adopted": "not_registered",
                "status": "not_owner"}
        words = {k: v.get("reason", "").split(":")[0] for k, v in got.items()}
        assert words == want, got
        assert all(v["op"] == "error" for v in got.values()), got
        # the root server's registration is as it was: no end, same owner
        assert not agent.find("target_unregistered", path=path)
        regs = agent.find("target_registered", path=path)
        assert len(regs) == 1 and regs[0]["owner"]["pid"] == srv.pid, regs
        rm(path)
        ok = agent.wait_event("rebind_succeeded", path=path)
        assert ok["owner"]["pid"] == srv.pid, ok
        echo(client(path))
        srv.stop()
        agent.wait_event("target_exited", path=path)
        well_behaved(agent, scratch, "good.sock")
        fds_back_to(agent, base)
    finally:
        agent.stop()
