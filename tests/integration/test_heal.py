"""Healing any server by guard link: the same listener back at its path."""
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time

import harness
from harness import (AGENT, BUILD, SLOW, Agent, Server, ROOT, connect_errno, echo, guards_of,
                     peercred, run_py, test, wait_guard, wait_until)

PLAIN = os.path.join(BUILD, "plain_server")
GUARD_DIR = "/.sockwarden-guard"  # the test scratch lives on the root mount


class Proc:
    """A server process of some kind, with its pid as SO_PEERCRED shows it."""

    def __init__(self, kind, path):
        self.kind, self.path = kind, path
        if kind == "c":
            self.p = subprocess.Popen([PLAIN, path], stdout=subprocess.PIPE)
            line = self.p.stdout.readline().split()
            assert line[0] == b"ready"
        elif kind == "socat":
            self.p = subprocess.Popen(["socat", "UNIX-LISTEN:%s,fork,backlog=16" % path,
                                       "EXEC:cat"])
            wait_until(lambda: os.path.exists(path), what="socat listening")
            wait_until(lambda: connect_errno(path) == 0, what="socat accepting")
        else:
            srv = Server(path)
            self.p = srv.proc
        self.pid = self.p.pid

    def stop(self, sig=signal.SIGKILL):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def peer_pid(sock):
    return peercred(sock)[:2]


def heal_scenario(scratch, kind):
    d = os.path.join(scratch, "srv")
    os.makedirs(d)
    # the owner and mode the agent records when it discovers the listener
    os.chown(d, 65534, 65534)
    os.chmod(d, 0o751)
    path = os.path.join(d, "app.sock")
    agent = Agent(scratch)
    srv = Proc(kind, path)
    echoes = kind != "python"  # the python server only accepts
    try:
        wait_guard(path)
        before = socket.socket(socket.AF_UNIX)
        before.connect(path)
        if echoes:
            assert echo(before) == b"ping"
        ino = os.lstat(path).st_ino
        run_py("import os,sys; os.unlink(sys.argv[1])", path)
        ok = agent.wait_event("rebind_succeeded", path=path)
        assert ok["how"] == "link" and ok["heal_ms"] >= 0, ok
        assert os.lstat(path).st_ino == ino, "a different socket file came back"
        after = socket.socket(socket.AF_UNIX)
        after.connect(path)
        assert peer_pid(after)[0] == srv.pid, "the new client reached another listener"
        if echoes:
            assert echo(after) == b"ping"
            assert echo(before, b"still here") == b"still here"
        # rm -rf of the directory: re-created with its recorded owner and mode
        subprocess.run(["rm", "-rf", d], check=True)
        wait_until(lambda: len(agent.find("rebind_succeeded", path=path)) >= 2,
                   what="second heal")
        st = os.stat(d)
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (65534, 65534, 0o751), st
        c3 = socket.socket(socket.AF_UNIX)
        c3.connect(path)
        assert peer_pid(c3)[0] == srv.pid
        if echoes:
            assert echo(c3) == b"ping"
            assert echo(before, b"and still") == b"and still"
        for s in (before, after, c3):
            s.close()
    finally:
        srv.stop()
        agent.stop()


@test
def heal_c_server(scratch):
    heal_scenario(scratch, "c")


@test
def heal_socat(scratch):
    heal_scenario(scratch, "socat")


@test
def heal_python_server(scratch):
    heal_scenario(scratch, "python")


@test
def queued_connection_survives_heal(scratch):
    path = os.path.join(scratch, "q.sock")
    agent = Agent(scratch)
    srv = Proc("c", path)
    try:
        wait_guard(path)
        srv.p.send_signal(signal.SIGUSR1)  # stop accepting
        time.sleep(0.2)  # the server's poll loop notices within 100 ms
        queued = socket.socket(socket.AF_UNIX)
        queued.connect(path)  # sits in the backlog
        os.unlink(path)
        agent.wait_event("rebind_succeeded", path=path)
        late = socket.socket(socket.AF_UNIX)
        late.connect(path)
        srv.p.send_signal(signal.SIGUSR1)  # accept again
        assert echo(queued, b"queued") == b"queued"
        assert echo(late, b"late") == b"late"
    finally:
        srv.stop()
        agent.stop()


@test
def rename_of_file_over_path_is_not_healed(scratch):
    path = os.path.join(scratch, "r.sock")
    agent = Agent(scratch)
    srv = Proc("c", path)
    try:
        wait_guard(path)
        f = os.path.join(scratch, "plain")
        with open(f, "w") as fh:
            fh.write("x")
        os.rename(f, path)
        agent.wait_event("socket_unlinked", path=path)
        sk = agent.wait_event("rebind_skipped", path=path)
        assert sk["reason"] == "replaced", sk
        assert agent.find("rebind_succeeded", path=path) == []
        with open(path) as fh:
            assert fh.read() == "x"
    finally:
        srv.stop()
        agent.stop()


@test
def owner_unlink_on_shutdown_is_not_healed(scratch):
    path = os.path.join(scratch, "own.sock")
    agent = Agent(scratch)
    srv = Proc("c", path)
    try:
        wait_guard(path)
        # the server unlinks its path while still listening, then exits
        srv.stop(signal.SIGTERM)
        ev = wait_until(lambda: agent.find("rebind_skipped", path=path) or
                        agent.find("socket_unlinked", path=path) == [] and
                        not os.path.exists(path) and ["gone"], what="decision")
        time.sleep(0.1)
        assert not os.path.exists(path)
        assert agent.find("rebind_succeeded", path=path) == []
        for sk in agent.find("rebind_skipped", path=path):
            assert sk["reason"] in ("owner_unlinked", "listener_gone"), sk
    finally:
        srv.stop()
        agent.stop()


@test
def new_instance_never_meets_eaddrinuse(scratch):
    path = os.path.join(scratch, "idiom.sock")
    agent = Agent(scratch)
    srv = Proc("c", path)
    try:
        wait_guard(path)
        trials = 200 if SLOW else 1000
        out = subprocess.run([PLAIN, path, "--replace", str(trials)], capture_output=True,
                             text=True, timeout=300).stdout
        res = json.loads(out)
        assert res["trials"] == trials and res["failed"] == 0, res
        assert srv.p.poll() is None, "the old instance still runs"
        assert agent.find("rebind_succeeded", path=path) == []
        reasons = {e["reason"] for e in agent.find("rebind_skipped", path=path)}
        assert reasons <= {"same_executable", "owner_unlinked", "listener_gone",
                           "rebound"}, reasons
    finally:
        srv.stop()
        agent.stop()


@test
def swept_guard_is_reported_and_remade(scratch):
    path = os.path.join(scratch, "sw.sock")
    agent = Agent(scratch, "--reconcile", "0.3")
    srv = Proc("c", path)
    try:
        ino = os.lstat(path).st_ino

        def mine():
            return [n for n in guards_of(path)[0] if n.endswith("-%d" % ino)]
        names = wait_until(mine, what="this listener's guard")
        _, gd = guards_of(path)
        for n in names:
            os.unlink(os.path.join(gd, n))
        lost = agent.wait_event("guard_lost", path=path)
        assert lost["reason"] == "swept", lost
        wait_until(mine, what="guard re-made")
        os.unlink(path)
        agent.wait_event("rebind_succeeded", path=path)
    finally:
        srv.stop()
        agent.stop()


@test
def flapping_path_opens_the_circuit(scratch):
    path = os.path.join(scratch, "flap.sock")
    agent = Agent(scratch, "--heal-delay", "5")
    srv = Proc("c", path)
    try:
        wait_guard(path)
        # remove the path each time it is back, until the circuit opens: the
        # sixth heal inside the 60 s window is refused (slow machines, such as
        # make vmtest's emulated one, only need more time)
        t0 = time.monotonic()
        removed = 0
        while (removed < 10 and time.monotonic() - t0 < 30 and
               not agent.find("rebind_suppressed", path=path)):
            if os.path.exists(path):
                run_py("import os,sys; os.unlink(sys.argv[1])", path)
                removed += 1
            else:
                time.sleep(0.005)
        sup = agent.wait_event("rebind_suppressed", path=path)
        assert sup["rebinds"] == 5 and sup["window_s"] == 60, sup
        assert sup["actor"]["comm"].startswith("python"), sup
        assert "retry_at" in sup
        assert len(agent.find("rebind_succeeded", path=path)) == 5
        # counting goes on while the circuit is open
        assert connect_errno(path) == 2
        agent.wait_event("connect_failing", path=path)
    finally:
        srv.stop()
        agent.stop()


@test
def closed_listener_leaves_no_guard(scratch):
    path = os.path.join(scratch, "bye.sock")
    agent = Agent(scratch, "--reconcile", "0.3")
    srv = Proc("c", path)
    try:
        ino = os.lstat(path).st_ino
        # other listeners (the agent's own control socket) have guards too
        mine = wait_until(lambda: [n for n in guards_of(path)[0] if n.endswith("-%d" % ino)],
                          what="this listener's guard")
        srv.stop()
        wait_until(lambda: mine[0] not in guards_of(path)[0], what="guard pruned")
    finally:
        srv.stop()
        agent.stop()
    assert not [n for n in guards_of(path)[0] if n.endswith("-%d" % ino)]


@test
def no_guard_flag_makes_no_links(scratch):
    path = os.path.join(scratch, "ng.sock")
    before = set(guards_of(path)[0])
    agent = Agent(scratch, "--no-guard")
    srv = Proc("c", path)
    try:
        os.unlink(path)
        agent.wait_event("socket_unlinked", path=path)
        time.sleep(0.1)
        assert not os.path.exists(path)
        assert set(guards_of(path)[0]) - before == set()
        assert agent.find("rebind_succeeded", path=path) == []
    finally:
        srv.stop()
        agent.stop()


@test
def heal_ends_connect_streak(scratch):
    path = os.path.join(scratch, "streak.sock")
    # without the redirect: the connects made during the grace fail
    agent = Agent(scratch, "--heal-delay", "300", "--no-redirect")
    srv = Proc("c", path)
    try:
        wait_guard(path)
        os.unlink(path)
        for _ in range(25):
            assert connect_errno(path) == 2
        agent.wait_event("rebind_succeeded", path=path)
        rec = agent.wait_event("connect_recovered", path=path)
        assert rec["how"] == "link" and rec["total_failures"] == 25, rec
    finally:
        srv.stop()
        agent.stop()


@test
def stale_guards_of_a_crashed_agent_are_pruned_or_used(scratch):
    path = os.path.join(scratch, "crash.sock")
    agent = Agent(scratch)
    srv = Proc("c", path)
    try:
        wait_guard(path)
        agent.stop(sig=signal.SIGKILL)  # no chance to clean up
        ino = os.lstat(path).st_ino
        assert [n for n in guards_of(path)[0] if n.endswith("-%d" % ino)]
        os.unlink(path)  # lost while no agent runs
        agent = Agent(scratch)
        agent.wait_event("listener_orphaned", path=path)
        agent.wait_event("rebind_succeeded", path=path)
        assert os.lstat(path).st_ino == ino
    finally:
        srv.stop()
        agent.stop()


def other_netns_agent(scratch, *args):
    """A second agent on the host: in a network namespace of its own (its own
    @sockwarden), with its own events, control path and state file in a
    directory of scratch."""
    d = os.path.join(scratch, "other-agent")
    os.makedirs(d)
    wrapper = os.path.join(d, "other-netns-agent")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nexec unshare --net -- %s \"$@\"\n" % AGENT)
    os.chmod(wrapper, 0o755)
    saved, harness.AGENT = harness.AGENT, wrapper
    try:
        return Agent(d, *args, "--control", os.path.join(d, "ctl.sock"), "--state",
                     os.path.join(d, "state.json"))
    finally:
        harness.AGENT = saved


def scans_of(agent):
    """How many scans agent has applied (asked in its network namespace)."""
    r = subprocess.run(["nsenter", "--net=/proc/%d/ns/net" % agent.proc.pid, AGENT,
                        "status", "--json"], capture_output=True, text=True, timeout=30)
    return json.loads(r.stdout)["scan"]["scans"] if r.returncode == 0 else -1


@test
def an_agent_keeps_another_agents_guards(scratch):
    """Two agents on one host, one per network namespace, each watching its
    own server: neither prunes the other's guard link, scan after scan, and
    each heals its own path from it."""
    a_path = os.path.join(scratch, "a.sock")
    b_path = os.path.join(scratch, "b.sock")
    a = Agent(scratch, "--watch", a_path, "--reconcile", "0.2")
    b = other_netns_agent(scratch, "--watch", b_path, "--reconcile", "0.2")
    sa, sb = Proc("c", a_path), Proc("c", b_path)
    try:
        wait_guard(a_path)
        wait_guard(b_path)
        ino_a, ino_b = os.lstat(a_path).st_ino, os.lstat(b_path).st_ino
        # each agent's own scans, several of them, with both guards in place
        start_a, start_b = scans_of(a), scans_of(b)
        wait_until(lambda: scans_of(a) >= start_a + 5 and scans_of(b) >= start_b + 5,
                   timeout=30, what="five more scans of each agent")
        names = guards_of(a_path)[0]
        for ino in (ino_a, ino_b):
            assert [n for n in names if n.endswith("-%d" % ino)], (ino, names)
        for agent in (a, b):
            assert not agent.find("guard_lost"), agent.find("guard_lost")
        subprocess.run(["rm", a_path, b_path], check=True)
        ok_a = a.wait_event("rebind_succeeded", path=a_path)
        ok_b = b.wait_event("rebind_succeeded", path=b_path)
        assert ok_a["how"] == ok_b["how"] == "link", (ok_a, ok_b)
        assert os.lstat(a_path).st_ino == ino_a and os.lstat(b_path).st_ino == ino_b
    finally:
        sa.stop()
        sb.stop()
        b.stop()
        a.stop()


@test
def redirect_is_announced(scratch):
    """agent_started and status say whether connects to a lost path are
    redirected, and why not: on kernels before 6.7 (the VM's 6.1) the agent
    runs without it and says so; --no-redirect turns it off."""
    rel = tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2])
    agent = Agent(scratch)
    try:
        st = agent.wait_event("agent_started")
        if rel >= (6, 7):
            assert st["redirect"] is True, st
            assert st["redirect_reason"].startswith("cgroup/connect_unix at "), st
        else:
            assert st["redirect"] is False, st
            assert "6.7" in st["redirect_reason"], st
    finally:
        agent.stop()
    agent = Agent(scratch, "--no-redirect")
    try:
        st = agent.wait_event("agent_started")
        assert st["redirect"] is False and "--no-redirect" in st["redirect_reason"], st
        doc = json.loads(subprocess.run([AGENT, "status", "--json"],
                                        capture_output=True, timeout=30).stdout)
        assert doc["redirect"] is False, doc
    finally:
        agent.stop()
