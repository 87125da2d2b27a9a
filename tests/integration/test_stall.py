"""Stalled consumers (DESIGN §2 "Never blocked by a consumer"): the reader of
the events on stdout stops reading, a metrics client connects and never
sends, clients storm a lost path with failing connects. Detection, healing
and counting go on; what the stalled pipe cannot take waits in a bounded
queue, what overflows it is counted, and one events_lost says how much once
the reader reads again; status is answered all along."""
import fcntl
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

from harness import AGENT, LIVE, MODE, LineReader, connect_errno, mount_root, test, wait_until
from test_operate import free_port, samples, scrape, status_json

QUEUE = 64 << 10
F_GETPIPE_SZ = 1032

LISTENERS_PY = r"""
import os, socket, sys, time
socks = []
for p in sys.argv[1:]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(p)
    s.listen(128)
    socks.append(s)
print("ready", flush=True)
while True:
    time.sleep(3600)
"""

STORM_PY = r"""
import socket, sys, time
path, until = sys.argv[1], time.monotonic() + float(sys.argv[2])
n = 0
while time.monotonic() < until:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError:
        n += 1
    s.close()
print(n, flush=True)
"""


class StdoutAgent:
    """The agent with its events on stdout: a pipe the test reads, or not."""

    def __init__(self, scratch, *args):
        self.stderr_path = os.path.join(scratch, "agent.stderr")
        argv = [AGENT, "run", "--events", "-", "--state", os.path.join(scratch, "state.json"),
                "--control", os.path.join(scratch, "ctl.sock")] + list(args)
        if MODE:
            argv += ["--mode", MODE]
        with open(self.stderr_path, "w") as err:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err)
        LIVE.append(self.proc)
        self.reader = LineReader(self.proc)
        self.wait_line(lambda e: e["event"] == "agent_started", 20)

    def stderr(self):
        with open(self.stderr_path) as f:
            return f.read()

    def events(self):
        # every line whole JSON: json.loads fails on half a line
        return [json.loads(l) for l in self.reader.lines]

    def wait_line(self, pred, timeout=20, start=0):
        """The first event from line `start` on that pred accepts."""
        deadline = time.monotonic() + timeout
        seen = start
        while True:
            evs = self.events()
            for e in evs[seen:]:
                if pred(e):
                    return e
            seen = len(evs)
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise AssertionError("no such event (agent rc %s): %s" %
                                     (self.proc.poll(), self.stderr()))
            self.reader.pump(min(left, 0.2))

    def drain(self):
        """Reads what is there now."""
        while select.select([self.reader.fd], [], [], 0)[0] and self.reader.pump(0):
            pass

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        # read to EOF: the agent drains its queue before it exits
        while self.reader.pump(10):
            pass
        self.proc.wait(timeout=10)
        return self.proc.returncode


def status_latency():
    t0 = time.monotonic()
    doc = status_json()
    return time.monotonic() - t0, doc


@test
def stall_stdout_reader_heals_counts_and_reports_the_loss(scratch):
    n_paths, rounds, storm_s = 100, 10, 3.0
    port = free_port()
    paths = [os.path.join(scratch, "s%03d.sock" % i) for i in range(n_paths)]
    gone = os.path.join(scratch, "gone.sock")
    srv = subprocess.Popen([sys.executable, "-c", LISTENERS_PY] + paths,
                           stdout=subprocess.PIPE)
    LIVE.append(srv)
    assert srv.stdout.readline().strip() == b"ready"
    ino = {p: os.lstat(p).st_ino for p in paths}
    agent = StdoutAgent(scratch, "--events-queue", "64K", "--metrics", "127.0.0.1:%d" % port,
                        "--any-path", "--flap-max", "63", "--reconcile", "1")
    try:
        pipe_size = fcntl.fcntl(agent.reader.fd, F_GETPIPE_SZ)
        gd = os.path.join(mount_root(scratch), ".sockwarden-guard")
        suffixes = {"-%d" % i for i in ino.values()}
        wait_until(lambda: len([n for n in (os.listdir(gd) if os.path.isdir(gd) else [])
                                if "-" + n.rsplit("-", 1)[-1] in suffixes]) == n_paths,
                   timeout=20, what="guard links of every listener")
        # from here on nobody reads the agent's stdout
        agent.drain()
        read_before = len(agent.reader.lines)

        # healing goes on: every path removed, again and again, and back each time
        for r in range(rounds):
            for p in paths:
                os.unlink(p)
            try:
                wait_until(lambda: all(os.path.exists(p) and os.lstat(p).st_ino == ino[p]
                                       for p in paths), timeout=30,
                           what="round %d: every path healed while stdout is stalled" % r)
            except AssertionError as e:
                lost = [p for p in paths if not (os.path.exists(p) and
                                                 os.lstat(p).st_ino == ino[p])]
                eps = {x["path"]: x for x in status_json()["endpoints"]}
                raise AssertionError("%s: %d not healed: %s" % (
                    e, len(lost), [(p, eps.get(p)) for p in lost[:3]]))
        assert all(connect_errno(p) == 0 for p in paths[::10])
        heals = n_paths * rounds

        # an idle metrics client (connects, never sends) holds nothing up
        idle = socket.create_connection(("127.0.0.1", port))
        t0 = time.monotonic()

        def counted():
            s = samples(scrape(port)[2])
            return (s.get('sockwarden_heals_total{how="link",outcome="succeeded"}') == heals
                    and s.get('sockwarden_lost_total{reason="sink_overflow"}', 0) > 0) and s
        s = wait_until(counted, timeout=20, what="metrics: every heal, and lines dropped")
        scrape_s = time.monotonic() - t0
        assert status_json()["counters"]["heals_ok"] == heals

        # a storm of failing connects: status answered throughout, failures exact
        storms = [subprocess.Popen([sys.executable, "-c", STORM_PY, gone, str(storm_s)],
                                   stdout=subprocess.PIPE) for _ in range(2)]
        LIVE.extend(storms)
        lat = []
        while any(p.poll() is None for p in storms):
            lat.append(status_latency()[0])
        storm_failures = sum(int(p.stdout.read()) for p in storms)
        assert lat and max(lat) < 2.0, lat
        wait_until(lambda: status_json()["counters"]["connect_failures"] == storm_failures,
                   what="%d storm failures counted" % storm_failures)
        wait_until(lambda: samples(scrape(port)[2]).get(
            'sockwarden_connect_failures_total{errno="ENOENT"}') == storm_failures,
            what="metrics: storm failures")
        # the idle client is cut off by the server's timeout, not left hanging
        idle.settimeout(15)
        assert idle.recv(1) == b""
        idle_s = time.monotonic() - t0
        idle.close()

        # the reader reads again: what was queued, one events_lost, then the rest
        lost = agent.wait_line(lambda e: e["event"] == "events_lost")
        dropped = status_json()["counters"]["lost_sink"]
        assert (lost["reason"], lost["count"], lost["queue_bytes"]) == \
            ("sink_overflow", dropped, QUEUE), (lost, dropped)
        assert dropped > 0
        i_lost = agent.reader.lines.index(next(l for l in agent.reader.lines
                                               if '"events_lost"' in l))
        # bounded: before the gap, at most a pipe's and a queue's worth of lines
        before = sum(len(l) + 1 for l in agent.reader.lines[read_before:i_lost])
        assert before <= pipe_size + QUEUE, (before, pipe_size, QUEUE)
        # a marker after the gap: new events flow again, after the report
        os.unlink(paths[0])
        agent.wait_line(lambda e: e["event"] == "rebind_succeeded" and e["path"] == paths[0],
                        start=i_lost + 1)

        # every event emitted is either a line read or counted as lost
        def balanced():
            agent.drain()
            c = status_json()["counters"]
            return c["events"] == len(agent.reader.lines) + c["lost_sink"] and c
        c = wait_until(balanced, what="events = lines + lost")
        assert c["lost_sink"] == dropped  # no second gap
        assert samples(scrape(port)[2])['sockwarden_lost_total{reason="sink_overflow"}'] == \
            dropped
        reports = [e for e in agent.events() if e["event"] == "events_lost"]
        assert len(reports) == 1, reports
        print("  %d events, %d lines read, %d lost (queue %d B, pipe %d B), %d heals, "
              "%d storm failures, status max %.0f ms over %d calls, scrape %.2f s, "
              "idle client cut after %.1f s; live listeners a scan's dump skipped: %d" % (
                  c["events"], len(agent.reader.lines), dropped, QUEUE, pipe_size, heals + 1,
                  storm_failures, max(lat) * 1000, len(lat), scrape_s, idle_s,
                  status_json()["scan"]["dump_misses"]))
    finally:
        rc = agent.stop()
        srv.kill()
    assert rc == 0, agent.stderr()
    assert agent.events()[-1]["event"] == "agent_stopping"
