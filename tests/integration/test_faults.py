"""Faults: a server or the agent is SIGKILLed at each step of a heal.

The steps of a heal, each reached at an observable point, never by timing:

guard link (any server; the agent's guard link brings the same socket back)
  guarded      the listener is known and its guard link made (the link exists)
  grace        the unlink is seen (socket_unlinked), the heal waits out
               --heal-delay (1.5 s here, far longer than the step takes)
  link_before  the heal is decided, parents made, link(guard, path) not done:
               the fault build stops itself there (SW_FAULT_STOP, SIGSTOP)
  link_after   link(guard, path) done, not yet verified: the same
               (SW_FAULT_STOP=link_before,link_after stops at both)
  healed       rebind_succeeded

control fd (registered servers; the agent runs with --no-guard)
  grace        as above
  received     heal fd: the rebind and its new bound socket reached the server,
               which holds them without listen(); heal notify: the rebind
               reached the server, which has not bound the path
  listened     the server listen()s on the socket (fd) or bound and listens on
               the path itself (notify) and holds its `adopted`
  adopted      the agent took `adopted`: rebind_succeeded
  adopted_done the same, once the agent has done with it (the test of a
               removal right after it)

A server killed at a step: afterwards its path accepts no connection (connect
fails with ENOENT or ECONNREFUSED), no guard link is left for the dead listener
once the next reconcile ran, and the agent, still running, heals another
server. The agent killed at a step and started again: the server is healed
again (its path connects to it, a connection held since before the loss still
echoes, the next loss heals too), no guard link is left without a listener
behind it, and at no point does the path accept connections nobody serves.
"""
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time

import harness
from harness import (BUILD, LIVE, IN_CI, Agent, LineReader, Skip, client, connect_errno, echo,
                     mount_root, peercred, test, wait_until)
from test_control import EchoServer
from test_heal import Proc

FAULT_AGENT = os.path.join(BUILD, "fault", "sockwarden")
GRACE_MS = "1500"

# A registered server that speaks the protocol itself and stops at a chosen
# step of a rebind until the test says "go" on stdin. It echoes on every
# listener it holds; when the control connection drops it reconnects and
# registers the newest listener it holds, as libsockwarden does.
HELD_SERVER = r"""
import json, os, selectors, socket, sys, time
path, heal, hold = sys.argv[1], sys.argv[2], sys.argv[3]
def out(o):
    sys.stdout.write(json.dumps(o) + "\n"); sys.stdout.flush()
sel = selectors.DefaultSelector()
def serve(s):
    s.setblocking(False); sel.register(s, selectors.EVENT_READ, "listener")
lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
lst.bind(path); lst.listen(64); serve(lst)
current = lst              # the listener a registration names
ctl = None
def connect():
    global ctl
    c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        c.connect("\0sockwarden")
        # the connect can land in the backlog of an agent that is dying (a
        # SIGKILLed agent closes this connection before its listener): the
        # register then fails with ECONNRESET, and the next try goes on
        socket.send_fds(c, [json.dumps({"op": "register", "path": path,
                                        "heal": heal}).encode()], [current.fileno()])
    except OSError:
        c.close()
        return False
    ctl = c
    sel.register(ctl, selectors.EVENT_READ, "control")
    return True
def send(msg):
    if ctl is None:
        return False
    try:
        ctl.send(json.dumps(msg).encode())
        return True
    except OSError:
        return False
sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
connect()
pending = None             # (message, fds) held at a step
def step_listen(msg, fds):
    global current
    if fds:
        n = socket.socket(fileno=fds[0])
    else:
        n = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        n.bind(path)
    n.listen(64); serve(n); current = n
    out({"listening": msg["seq"]})
def step_adopt(msg):
    ok = send({"op": "adopted", "path": path, "seq": msg["seq"]})
    out({"adopted": msg["seq"], "sent": ok})
while True:
    if ctl is None and connect():
        out({"reconnected": True})
    for key, _ in sel.select(0.02 if ctl is None else None):
        what = key.data
        if what == "listener":
            try:
                c, _ = key.fileobj.accept()
            except BlockingIOError:
                continue
            c.setblocking(False); sel.register(c, selectors.EVENT_READ, "conn")
        elif what == "conn":
            try:
                data = key.fileobj.recv(4096)
            except ConnectionError:
                data = b""
            if not data:
                sel.unregister(key.fileobj); key.fileobj.close()
            else:
                key.fileobj.sendall(data)
        elif what == "stdin":
            line = sys.stdin.readline()
            if not line:
                os._exit(0)
            if line.strip() == "go" and pending:
                msg, fds, at = pending
                pending = None
                if at == "received":
                    step_listen(msg, fds)
                step_adopt(msg)
        elif what == "control":
            try:
                data, fds, _, _ = socket.recv_fds(ctl, 8192, 4)
            except ConnectionError:
                data, fds = b"", []
            if not data:
                sel.unregister(ctl); ctl.close(); ctl = None
                out({"control_closed": True})
                continue
            msg = json.loads(data)
            out({"got": msg, "fds": len(fds)})
            if msg.get("op") == "registered":
                out({"ready": os.getpid()})
            elif msg.get("op") == "rebind":
                if hold == "received":
                    pending = (msg, fds, "received"); hold = "none"
                    out({"holding": "received"})
                    continue
                step_listen(msg, fds)
                if hold == "listened":
                    pending = (msg, fds, "listened"); hold = "none"
                    out({"holding": "listened"})
                    continue
                step_adopt(msg)
            else:
                for fd in fds:
                    os.close(fd)
"""


class HeldServer:
    def __init__(self, path, heal, hold="none"):
        self.path = path
        self.p = subprocess.Popen([sys.executable, "-c", HELD_SERVER, path, heal, hold],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        LIVE.append(self.p)
        self.pid = self.p.pid
        self.out = LineReader(self.p)
        self.wait("ready")

    def msgs(self):
        return [json.loads(l) for l in self.out.lines]

    def wait(self, key, timeout=10, count=1):
        deadline = time.monotonic() + timeout
        while sum(1 for m in self.msgs() if key in m) < count:
            left = deadline - time.monotonic()
            if left <= 0 or not self.out.pump(left):
                raise AssertionError("held server: no %r (got %r, rc %s)" % (
                    key, self.out.lines, self.p.poll()))

    def go(self):
        self.p.stdin.write(b"go\n")
        self.p.stdin.flush()

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


def fault_agent(scratch, point, *args):
    """The fault build of the agent, stopping itself once at `point`."""
    if not os.path.exists(FAULT_AGENT):
        msg = "no %s: make fault-build" % FAULT_AGENT
        if IN_CI:
            raise AssertionError(msg)
        raise Skip(msg)
    saved = harness.AGENT
    harness.AGENT = FAULT_AGENT
    try:
        return Agent(scratch, *args, env=dict(os.environ, SW_FAULT_STOP=point))
    finally:
        harness.AGENT = saved


def proc_state(pid):
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def wait_stopped(agent):
    wait_until(lambda: proc_state(agent.proc.pid) == "T", what="the agent at its fault point")


def kill_reaped(p):
    """SIGKILL and reap: the process's files are closed when this returns."""
    if p.poll() is None:
        p.kill()
    p.wait()


def guard_dir(path):
    return os.path.join(mount_root(path), ".sockwarden-guard")


def guards_of(ino, path):
    try:
        return [n for n in os.listdir(guard_dir(path)) if n.endswith("-%d" % ino)]
    except FileNotFoundError:
        return []


def stray_guards(path):
    """Guard links with no listener behind them: a connect to the link itself
    is refused (the agent's own control socket is SOCK_SEQPACKET)."""
    stray = []
    gd = guard_dir(path)
    for n in os.listdir(gd) if os.path.isdir(gd) else []:
        err = connect_errno(os.path.join(gd, n))
        if err == errno.EPROTOTYPE:
            err = connect_errno(os.path.join(gd, n), socket.SOCK_SEQPACKET)
        if err not in (0,):
            stray.append((n, errno.errorcode.get(err, err)))
    return stray


def not_serving(path):
    """The path accepts no connection: it is gone or refuses."""
    err = connect_errno(path)
    assert err in (errno.ENOENT, errno.ECONNREFUSED), \
        "%s: connect gave %s: accepted by nobody" % (path, errno.errorcode.get(err, err))
    return err


def served_by(path, pid):
    """The path connects to the server pid, and it answers."""
    s = client(path)
    try:
        assert peercred(s)[0] == pid, "%s served by pid %d, not %d" % (path, peercred(s)[0], pid)
        echo(s, b"served")
    finally:
        s.close()


def served_by_or_say(agent, path, pid):
    """served_by, and when it fails, what the path and the agent's events
    were then, in the failure's own message (a CI log keeps its head)."""
    try:
        served_by(path, pid)
    except (OSError, AssertionError) as e:
        try:
            st = os.lstat(path)
            there = "ino %d mode %o" % (st.st_ino, st.st_mode)
        except OSError as le:
            there = le.strerror
        agent.poll()
        told = ["%s %s %s %s" % (x["mono_ns"], x["event"], x.get("how") or x.get("via") or "",
                                 x.get("reason") or "") for x in agent.events[-20:]]
        raise AssertionError("%s: %s; the path now: %s (connect: %s); events: %s" % (
            path, e, there, errno.errorcode.get(connect_errno(path), "ok"),
            "; ".join(told))) from e


def never_unserved(path):
    """Whatever the path holds now, a connect to it is served or refused."""
    err = connect_errno(path)
    if err == 0:
        s = client(path)
        try:
            echo(s, b"anyone?")
        finally:
            s.close()
    else:
        assert err in (errno.ENOENT, errno.ECONNREFUSED), errno.errorcode.get(err, err)


def unlink(path):
    # another program than the server, as a cleanup job would be
    subprocess.run(["rm", "-f", path], check=True)


def heal_again(agent, path):
    """One more loss of path, healed by this agent: the heal that follows
    this unlink's own record (its actor is this rm, or a scan found it). The
    agent reports a heal only after linkat() and a check of the listener, so
    the heal before may serve the path before its rebind_succeeded is out; a
    count taken before the unlink would then take that late event for this
    heal."""
    mark = len(agent.poll())
    rm = subprocess.Popen(["rm", "-f", path])
    assert rm.wait() == 0, rm.returncode

    def this_loss():
        for i in range(mark, len(agent.poll())):
            e = agent.events[i]
            if e.get("event") == "socket_unlinked" and e.get("path") == path and (
                    e.get("via") == "scan" or (e.get("actor") or {}).get("pid") == rm.pid):
                return i + 1
        return None

    after = wait_until(this_loss, what="the loss of %s by rm %d" % (path, rm.pid))
    wait_until(lambda: [e for e in agent.poll()[after:]
                        if e.get("event") == "rebind_succeeded" and e.get("path") == path],
               what="the heal of %s after that loss" % path)


# ----- guard link -----

GUARD_STEPS = ("guarded", "grace", "link_before", "link_after", "healed")


def guard_agent(scratch, step):
    args = ["--reconcile", "0.3"]
    if step == "grace":
        args += ["--heal-delay", GRACE_MS]
    if step in ("link_before", "link_after"):
        return fault_agent(scratch, step, *args)
    return Agent(scratch, *args)


def guard_reach(agent, path, step):
    """Unlinks path and returns at `step` (the agent stopped for link_*)."""
    if step == "guarded":
        return
    unlink(path)
    agent.wait_event("socket_unlinked", path=path)
    if step in ("link_before", "link_after"):
        wait_stopped(agent)
    elif step == "healed":
        agent.wait_event("rebind_succeeded", path=path)


def guard_server_killed(scratch, step):
    path = os.path.join(scratch, "a.sock")
    other = os.path.join(scratch, "b.sock")
    agent = guard_agent(scratch, step)
    srv, by = Proc("c", path), Proc("c", other)
    try:
        ino = os.lstat(path).st_ino
        wait_until(lambda: guards_of(ino, path), what="the guard link")
        wait_until(lambda: guards_of(os.lstat(other).st_ino, other), what="the bystander's guard")
        guard_reach(agent, path, step)
        srv.stop()
        if step in ("link_before", "link_after"):
            agent.proc.send_signal(signal.SIGCONT)
            failed = agent.wait_event("rebind_failed", path=path)
            assert failed["reason"] == "listener_gone", failed
        err = not_serving(path)
        if step in ("grace", "link_before", "link_after"):
            # a connect redirected to the dead listener is refused as the
            # path would have refused it, and ends the redirect in the kernel
            if err == errno.ECONNREFUSED and step == "grace":
                err = not_serving(path)
            assert err == errno.ENOENT, "the dead server's file was put back"
        wait_until(lambda: not guards_of(ino, path), what="the dead listener's guard pruned")
        # the agent runs on and heals others; its heal comes after any
        # the dead server's path could still have had
        unlink(other)
        agent.wait_event("rebind_succeeded", path=other, timeout=15)
        served_by(other, by.pid)
        assert not agent.find("rebind_succeeded", path=path) or step == "healed"
        not_serving(path)
        assert stray_guards(path) == [], stray_guards(path)
        assert agent.proc.poll() is None
    finally:
        srv.stop()
        by.stop()
        agent.stop()


@test
def heal_is_stamped_before_the_connects_it_lets_through(scratch):
    """A client whose connect gets through between link(guard, path) and the
    agent's next step (the agent stopped at link_after) ends its streak with
    a kernel stamp later than rebind_succeeded's: sorted by mono_ns, as
    `sockwarden report` sorts a journal, the heal comes before the recovery
    it caused, and the report credits the heal with its time."""
    path = os.path.join(scratch, "a.sock")
    # the streak needs a connect that fails while the path is lost: no redirect
    agent = fault_agent(scratch, "link_before,link_after", "--watch", path, "--no-redirect")
    srv = Proc("c", path)
    try:
        ino = os.lstat(path).st_ino
        wait_until(lambda: guards_of(ino, path), what="the guard link")
        unlink(path)
        agent.wait_event("socket_unlinked", path=path)
        wait_stopped(agent)  # at link_before: the path is still gone
        assert connect_errno(path) == errno.ENOENT  # a streak opens
        agent.proc.send_signal(signal.SIGCONT)
        # stopped again at link_after, the path back: a client gets through
        wait_until(lambda: os.path.exists(path) and proc_state(agent.proc.pid) == "T",
                   what="the agent at link_after")
        served_by(path, srv.pid)
        agent.proc.send_signal(signal.SIGCONT)
        ok = agent.wait_event("rebind_succeeded", path=path)
        rec = agent.wait_event("connect_recovered", path=path)
        assert ok["mono_ns"] < rec["mono_ns"], (ok, rec)
        agent.stop()
        r = subprocess.run([harness.AGENT, "report", "--json", agent.events_path],
                           capture_output=True, text=True, timeout=60)
        inc = [e for e in json.loads(r.stdout)["endpoints"]
               if e["path"] == path][0]["incidents"][0]
        assert inc["status"] == "healed" and inc["heal"]["how"] == "link", inc
        assert inc["heal"]["heal_ms"] == ok["heal_ms"], (inc, ok)
    finally:
        srv.stop()
        agent.stop()


def guard_agent_killed(scratch, step):
    path = os.path.join(scratch, "a.sock")
    agent = guard_agent(scratch, step)
    srv = Proc("c", path)
    try:
        ino = os.lstat(path).st_ino
        wait_until(lambda: guards_of(ino, path), what="the guard link")
        held = client(path)
        echo(held, b"before")
        guard_reach(agent, path, step)
        kill_reaped(agent.proc)
        never_unserved(path)
        agent.stop()
        agent = Agent(scratch, "--reconcile", "0.3")
        wait_until(lambda: connect_errno(path) == 0, what="the path healed by the new agent")
        served_by(path, srv.pid)
        echo(held, b"still here")
        assert os.lstat(path).st_ino == ino
        heal_again(agent, path)
        served_by(path, srv.pid)
        echo(held, b"and again")
        assert len(guards_of(ino, path)) == 1
        assert stray_guards(path) == [], stray_guards(path)
    finally:
        srv.stop()
        agent.stop()


# ----- control fd -----

CONTROL_STEPS = {"fd": ("grace", "received", "listened", "adopted"),
                 "notify": ("grace", "received", "listened", "adopted")}


def control_agent(scratch, step, guards=False):
    args = ["--reconcile", "0.3"] + ([] if guards else ["--no-guard"])
    if step == "grace":
        args += ["--heal-delay", GRACE_MS]
    return Agent(scratch, *args)


def control_reach(agent, srv, path, step):
    unlink(path)
    agent.wait_event("socket_unlinked", path=path)
    if step in ("received", "listened"):
        srv.wait("holding")
    elif step == "adopted":
        agent.wait_event("rebind_succeeded", path=path)
        srv.wait("adopted")


def held_server(path, heal, step):
    return HeldServer(path, heal, step if step in ("received", "listened") else "none")


def control_server_killed(scratch, heal, step):
    path = os.path.join(scratch, "a.sock")
    other = os.path.join(scratch, "b.sock")
    agent = control_agent(scratch, step)
    srv = held_server(path, heal, step)
    by = None
    try:
        agent.wait_event("target_registered", path=path)
        by = EchoServer(other, heal)
        agent.wait_event("target_registered", path=other)
        control_reach(agent, srv, path, step)
        srv.kill()
        agent.wait_event("target_exited", path=path)
        if step in ("grace", "received") or (step, heal) == ("listened", "fd"):
            # nothing of the server's is at the path: nothing may be
            wait_until(lambda: not os.path.lexists(path), what="the path left empty")
        if step in ("received", "listened"):
            failed = agent.wait_event("rebind_failed", path=path)
            assert failed["reason"] == "target_exited", failed
        not_serving(path)
        unlink(other)
        agent.wait_event("rebind_succeeded", path=other, timeout=15)
        served_by(other, by.pid)
        if step != "adopted":
            assert not agent.find("rebind_succeeded", path=path)
        not_serving(path)
        assert agent.proc.poll() is None
    finally:
        srv.kill()
        if by:
            by.stop()
        agent.stop()


def control_agent_killed(scratch, heal, step):
    # Killed in the grace, the agent has sent nothing yet and the path is
    # gone: a server cannot register a path that no longer resolves to its
    # socket (DESIGN §4), so only the guard link a previous run left can heal
    # it. This step runs with guards, as the agent does by default, and does
    # not wait for the re-registration: it races the guard heal, and a
    # register that arrives first is refused (path_mismatch).
    guards = step == "grace"
    path = os.path.join(scratch, "a.sock")
    agent = control_agent(scratch, step, guards)
    srv = held_server(path, heal, step)
    try:
        agent.wait_event("target_registered", path=path)
        held = client(path)
        echo(held, b"before")
        control_reach(agent, srv, path, step)
        kill_reaped(agent.proc)
        never_unserved(path)
        if step in ("received", "listened"):
            srv.go()  # the server finishes the rebind; its `adopted` finds no agent
            srv.wait("adopted")
            never_unserved(path)
        agent.stop()
        srv.wait("control_closed")
        agent = Agent(scratch, "--reconcile", "0.3", *([] if guards else ["--no-guard"]))
        if not guards:
            try:
                agent.wait_event("target_registered", path=path, timeout=15)
            except AssertionError as e:
                srv.out.pump(0)
                raise AssertionError("%s; server said %s; agent: %s; stderr: %s" % (
                    e, srv.out.lines[-6:], [(x["event"], x.get("reason")) for x in agent.poll()],
                    agent.stderr_text()[-800:]))
        wait_until(lambda: connect_errno(path) == 0, what="the path served again")
        served_by_or_say(agent, path, srv.pid)
        echo(held, b"still here")
        heal_again(agent, path)
        served_by(path, srv.pid)
        echo(held, b"and again")
    finally:
        srv.kill()
        agent.stop()


@test
def removal_right_after_an_adoption_is_seen(scratch):
    """heal fd: the socket the agent bound for the server is a new file, and
    the server's listen() on it adds nothing to the kernel's filters (the
    server did not bind it). A cleaner that removes the path the moment
    rebind_succeeded is out, the agent stopped right after it (adopted_done),
    is still seen by the kernel: socket_unlinked via unlink, not a scan's
    listener_orphaned, and healed again. fentry mode matches unlinks by inode
    alone, so there this fails unless the filters are synced before the event;
    tracepoint mode also matches the name."""
    path = os.path.join(scratch, "a.sock")
    agent = fault_agent(scratch, "adopted_done", "--no-guard", "--reconcile", "60")
    srv = EchoServer(path, "fd")
    try:
        agent.wait_event("target_registered", path=path)
        unlink(path)
        agent.wait_event("rebind_succeeded", path=path)
        wait_stopped(agent)
        unlink(path)
        agent.proc.send_signal(signal.SIGCONT)
        lost = wait_until(lambda: agent.find("socket_unlinked", path=path)[1:],
                          what="the second loss")[0]
        assert lost["via"] == "unlink", lost
        wait_until(lambda: len(agent.find("rebind_succeeded", path=path)) >= 2,
                   what="the second heal")
        assert not agent.find("listener_orphaned", path=path)
        assert peercred(client(path))[0] == srv.pid
    finally:
        srv.stop()
        agent.stop()


@test
def fd_heal_removed_again_is_healed_again(scratch):
    """The path is removed again inside the agent's own bind-and-check of an
    fd heal (a cleanup loop faster than the heal): that try fails with
    removed_again, and the agent heals the path once more, through the
    control fd, to the same server."""
    path = os.path.join(scratch, "a.sock")
    agent = fault_agent(scratch, "bind_check_before", "--no-guard", "--heal-delay", "0")
    srv = EchoServer(path, "fd")
    try:
        agent.wait_event("target_registered", path=path)
        unlink(path)
        wait_stopped(agent)
        # the agent's new socket is bound at the path, not yet checked
        assert os.path.lexists(path), "nothing bound at the fault point"
        unlink(path)
        agent.proc.send_signal(signal.SIGCONT)
        failed = agent.wait_event("rebind_failed", path=path)
        assert failed["reason"] == "removed_again", failed
        ok = agent.wait_event("rebind_succeeded", path=path)
        assert ok["how"] == "fd" and ok["seq"] > failed["seq"], (failed, ok)
        srv.wait_line("adopted")
        served_by(path, srv.p.pid)
        assert len(agent.find("rebind_started", path=path)) == 2
    finally:
        srv.stop()
        agent.stop()


def _register(name, fn, *args):
    def t(scratch):
        fn(scratch, *args)
    t.__name__ = name
    t.__module__ = __name__
    test(t)


for _s in GUARD_STEPS:
    _register("fault_guard_server_killed_" + _s, guard_server_killed, _s)
    _register("fault_guard_agent_killed_" + _s, guard_agent_killed, _s)
for _h, _steps in CONTROL_STEPS.items():
    for _s in _steps:
        _register("fault_%s_server_killed_%s" % (_h, _s), control_server_killed, _h, _s)
        _register("fault_%s_agent_killed_%s" % (_h, _s), control_agent_killed, _h, _s)
