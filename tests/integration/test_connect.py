"""Connect failures: counted in the kernel, reported once, recovery reported."""
import os
import signal
import socket
import subprocess
import sys

from harness import SLOW, Agent, Server, connect_errno, run_py, test, wait_until

FAIL_LOOP = r"""
import socket, sys, errno
path, n = sys.argv[1], int(sys.argv[2])
bad = 0
for i in range(n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        s.connect(path)
    except OSError as e:
        bad += 1
    s.close()
print(bad)
"""


def fail_loop(path, n):
    pid, out = run_py(FAIL_LOOP, path, str(n))
    assert int(out) == n, "expected %d failures, client saw %s" % (n, out)
    return pid


@test
def ten_thousand_failures_one_event_exact_total(scratch):
    path = os.path.join(scratch, "svc.sock")
    srv = Server(path)
    agent = Agent(scratch, "--no-guard")  # the path must stay lost
    try:
        os.unlink(path)
        agent.wait_event("socket_unlinked", path=path)
        client = fail_loop(path, 10000)
        first = agent.wait_event("connect_failing", path=path)
        assert first["errno"] == "ENOENT" and first["client"]["pid"] == client, first
        srv.stop()
        srv = Server(path)
        assert connect_errno(path) == 0
        rec = agent.wait_event("connect_recovered", path=path)
        assert rec["total_failures"] == 10000, rec
        assert rec["swallowed_failures"] == 9999, rec
        assert rec["clients"][0]["pid"] == client and rec["clients"][0]["failures"] == 10000
        assert rec["streak_duration_ms"] >= 0
        assert len(agent.find("connect_failing", path=path)) == 1
    finally:
        srv.stop()
        agent.stop()


@test
def still_failing_once_per_window(scratch):
    path = os.path.join(scratch, "gone.sock")
    agent = Agent(scratch, "--window", "1", "--watch", path)
    try:
        fail_loop(path, 50)
        agent.wait_event("connect_failing", path=path)
        ev = agent.wait_event("connect_still_failing", path=path, timeout=5)
        assert ev["failures"] == 50, ev
        fail_loop(path, 70)
        wait_until(lambda: len(agent.find("connect_still_failing", path=path)) >= 2,
                   timeout=5, what="second window")
        ev2 = agent.find("connect_still_failing", path=path)[1]
        assert ev2["failures"] == 70, ev2
        assert ev2["streak_duration_ms"] > ev["streak_duration_ms"]
        srv = Server(path)
        try:
            assert connect_errno(path) == 0
            rec = agent.wait_event("connect_recovered", path=path)
            assert rec["total_failures"] == 120, rec
        finally:
            srv.stop()
    finally:
        agent.stop()


@test
def dead_server_gives_stale_socket(scratch):
    path = os.path.join(scratch, "dead.sock")
    srv = Server(path)
    agent = Agent(scratch)
    try:
        srv.stop()  # SIGKILL: the socket file stays behind
        assert os.path.exists(path)
        for _ in range(3):
            assert connect_errno(path) == 111
        stale = agent.wait_event("stale_socket", path=path)
        assert stale["last_owner"]["pid"] == srv.pid, stale
        f = agent.wait_event("connect_failing", path=path)
        assert f["errno"] == "ECONNREFUSED"
        fail_loop(path, 500)
        os.unlink(path)
        srv = Server(path)
        assert connect_errno(path) == 0
        rec = agent.wait_event("connect_recovered", path=path)
        assert rec["total_failures"] == 503 and rec["errno"] == "ECONNREFUSED", rec
        assert len(agent.find("stale_socket", path=path)) == 1
    finally:
        srv.stop()
        agent.stop()


@test
def full_backlog_gives_listener_wedged(scratch):
    path = os.path.join(scratch, "busy.sock")
    agent = Agent(scratch)
    srv = Server(path, backlog=1, accept=False)
    held = []
    try:
        errs = []
        for _ in range(10):
            s = socket.socket(socket.AF_UNIX)
            s.setblocking(False)
            try:
                s.connect(path)
                errs.append(0)
            except OSError as e:
                errs.append(e.errno)
            held.append(s)
        assert 11 in errs, errs
        ev = agent.wait_event("listener_wedged", path=path)
        assert ev["owner"]["pid"] == srv.pid, ev
        assert ev["max_backlog"] == 1 and ev["backlog"] >= 1, ev
        f = agent.wait_event("connect_failing", path=path)
        assert f["errno"] == "EAGAIN"
    finally:
        for s in held:
            s.close()
        srv.stop()
        agent.stop()


@test
def two_clients_both_attributed(scratch):
    path = os.path.join(scratch, "two.sock")
    agent = Agent(scratch, "--watch", path)
    try:
        a = fail_loop(path, 300)
        b = fail_loop(path, 200)
        srv = Server(path)
        try:
            assert connect_errno(path) == 0
            rec = agent.wait_event("connect_recovered", path=path)
        finally:
            srv.stop()
        by_pid = {c["pid"]: c for c in rec["clients"]}
        assert by_pid[a]["failures"] == 300 and by_pid[b]["failures"] == 200, rec
        assert rec["clients"][0]["pid"] == a, "clients are ordered by failures"
        assert rec["total_failures"] == 500
    finally:
        agent.stop()


@test
def unknown_paths_need_any_path(scratch):
    known = os.path.join(scratch, "known.sock")
    other = os.path.join(scratch, "other.sock")
    agent = Agent(scratch, "--watch", known)
    try:
        fail_loop(other, 5)
        fail_loop(known, 5)
        agent.wait_event("connect_failing", path=known)
        assert agent.find("connect_failing", path=other) == []
    finally:
        agent.stop()
    agent = Agent(scratch, "--watch", known, "--any-path")
    try:
        fail_loop(other, 5)
        agent.wait_event("connect_failing", path=other)
    finally:
        agent.stop()


STORM = r"""
import socket, sys
prefix, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect("%s/%d" % (prefix, i))
    except OSError:
        pass
    s.close()
"""


@test
def ring_buffer_overflow_keeps_exact_totals(scratch):
    path = os.path.join(scratch, "storm.sock")
    agent = Agent(scratch, "--watch", path, "--any-path")
    try:
        # A stopped agent cannot drain the ring buffer: 8,000 first failures on
        # distinct paths (8,000 records) overflow its 1 MiB.
        agent.proc.send_signal(signal.SIGSTOP)
        run_py(STORM, os.path.join(scratch, "nowhere"), "8000")
        client = fail_loop(path, 10000)
        agent.proc.send_signal(signal.SIGCONT)
        # 8,000 connect_failing events come first, and the harness checks each
        # against the schema: the emulated VM (SLOW) needs minutes for that
        lost = agent.wait_event("events_lost", timeout=300 if SLOW else 60)
        assert lost["count"] > 0 and lost["reason"] == "ringbuf_full", lost
        agent.wait_event("connect_failing", path=path, timeout=20)
        srv = Server(path)
        try:
            assert connect_errno(path) == 0
            rec = agent.wait_event("connect_recovered", path=path, timeout=20)
        finally:
            srv.stop()
        assert rec["total_failures"] == 10000, rec
        assert rec["clients"][0]["pid"] == client
    finally:
        agent.proc.send_signal(signal.SIGCONT)
        agent.stop()
