"""What each attach mode sees of operations issued through io_uring.

An unlinkat or connect submitted to io_uring runs inside io_uring_enter (or an
io-wq worker thread of the submitter): the unlink and connect system calls are
never entered, so their tracepoints never fire, while vfs_unlink and
unix_stream_connect run as always. So:
- fentry mode catches both, with the submitting process as actor or client;
- tracepoint mode catches the unlink only through the reconcile scan (no
  actor), and misses the failed connect entirely: it is neither counted nor
  reported. These tests pin down both, so a change in either shows.
"""
import os
import subprocess

from harness import (BUILD, LIVE, RUN_MODE, Agent, Server, connect_errno, test, wait_guard,
                     wait_until)

URING_OPS = os.path.join(BUILD, "uring_ops")


def uring(op, path):
    """Runs one io_uring operation; returns (pid, result word)."""
    p = subprocess.Popen([URING_OPS, op, path], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    LIVE.append(p)
    out, err = p.communicate(timeout=20)
    assert p.returncode == 0, "uring_ops %s: %s" % (op, err)
    return p.pid, out.split()[0]


@test
def uring_unlinkat_is_caught(scratch):
    path = os.path.join(scratch, "u.sock")
    agent = Agent(scratch, "--reconcile", "0.5")
    srv = Server(path)
    try:
        wait_guard(path)  # known, and healable, before it goes
        pid, res = uring("unlinkat", path)
        assert res == "ok", res
        ev = agent.wait_event("socket_unlinked", path=path)
        if RUN_MODE == "fentry":
            # vfs_unlink ran in the submitter (or its io-wq worker): exact actor
            assert ev["via"] == "unlink", ev
            assert ev["actor"]["pid"] == pid, ev
        else:
            # no unlink syscall: only the reconcile scan sees the path gone
            assert ev["via"] == "scan", ev
            assert "actor" not in ev, ev
        assert ev["owner"]["pid"] == srv.pid, ev
        agent.wait_event("rebind_succeeded", path=path)
        wait_until(lambda: connect_errno(path) == 0, what="the path healed")
    finally:
        srv.stop()
        agent.stop()


@test
def uring_connect_failure_is_counted_in_fentry_mode_only(scratch):
    path = os.path.join(scratch, "c.sock")
    srv = Server(path)
    agent = Agent(scratch, "--no-guard")  # the path must stay lost
    try:
        os.unlink(path)
        agent.wait_event("socket_unlinked", path=path)
        pid, res = uring("connect", path)
        assert res == "ENOENT", res
        if RUN_MODE == "fentry":
            f = agent.wait_event("connect_failing", path=path)
            assert f["errno"] == "ENOENT" and f["client"]["pid"] == pid, f
        # then one failure through the connect system call, seen in both modes
        assert connect_errno(path) == 2
        if RUN_MODE != "fentry":
            f = agent.wait_event("connect_failing", path=path)
            assert f["client"]["pid"] == os.getpid(), \
                "the io_uring connect was seen in tracepoint mode: %s" % f
        srv.stop()
        srv = Server(path)
        assert connect_errno(path) == 0
        rec = agent.wait_event("connect_recovered", path=path)
        want = 2 if RUN_MODE == "fentry" else 1
        assert rec["total_failures"] == want, (RUN_MODE, rec)
        assert len(agent.find("connect_failing", path=path)) == 1
    finally:
        srv.stop()
        agent.stop()
