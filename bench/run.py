#!/usr/bin/env python3
"""sockwarden benchmarks: `make bench` (full) or `bench/run.py --smoke` (tiny).

Every comparison runs both sides in this one run, alternating, on this machine;
the table reports medians, p99 and ratios, and build/bench.json keeps them all
with the machine, the kernel, the attach mode and the number of trials.
"""
import argparse
import json
import os
import platform
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build")
AGENT = os.path.join(BUILD, "sockwarden")
LOOP = os.path.join(BUILD, "bench-loop")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def pct(values, p):
    v = sorted(values)
    if not v:
        return None
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))
    return v[k]


def summary(values):
    return {"n": len(values), "median": statistics.median(values),
            "p99": pct(values, 99), "min": min(values), "max": max(values)}


class AgentProc:
    """The agent with its events on a pipe, read line by line."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([AGENT, "run"] + list(args),
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.buf = b""
        self.started = self.wait(lambda e: e["event"] == "agent_started", 30)

    def lines(self, timeout):
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                yield json.loads(line), time.monotonic_ns()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no event in time")
            r, _, _ = select.select([fd], [], [], left)
            if r:
                data = os.read(fd, 1 << 16)
                if not data:
                    raise EOFError("agent exited")
                self.buf += data

    def wait(self, pred, timeout=10):
        for ev, t in self.lines(timeout):
            if pred(ev):
                return ev, t

    def cpu_ns(self):
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // CLK_TCK

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def loop(op, n, arg=None):
    args = [LOOP, op, str(n)] + ([arg] if arg else [])
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return json.loads(out)


# ----- detection latency -----

def bench_detection(trials, scratch):
    """unlink() returns → socket_unlinked read from the agent's stdout."""
    path = os.path.join(scratch, "detect.sock")
    agent = AgentProc("--watch", path, "--events", "-")
    lat = []
    try:
        for _ in range(trials):
            s = socket.socket(socket.AF_UNIX)
            s.bind(path)
            s.listen(8)
            # the agent learns the listener from the listen() record; a
            # connect that succeeds orders us after it in the ring buffer
            c = socket.socket(socket.AF_UNIX)
            c.connect(path)
            c.close()
            time.sleep(0.002)
            os.unlink(path)
            t0 = time.monotonic_ns()
            _, t1 = agent.wait(lambda e: e["event"] == "socket_unlinked" and
                               e.get("path") == path)
            lat.append((t1 - t0) / 1e6)
            s.close()
    finally:
        agent.stop()
    return {"unit": "ms", "sockwarden": summary(lat),
            "mode": agent.started[0]["mode"]}


# ----- connect storm -----

def bench_storm(total, procs, scratch):
    """total failed connects from `procs` processes as fast as they go."""
    path = os.path.join(scratch, "storm.sock")
    agent = AgentProc("--watch", path, "--events", "-")
    try:
        cpu0 = agent.cpu_ns()
        t0 = time.monotonic()
        ps = [subprocess.Popen([LOOP, "connect_fail", str(total // procs), path],
                               stdout=subprocess.PIPE, text=True) for _ in range(procs)]
        outs = [json.loads(p.communicate()[0]) for p in ps]
        wall = time.monotonic() - t0
        cpu_agent = agent.cpu_ns() - cpu0
        # end the streak so the agent reports its exact total
        s = socket.socket(socket.AF_UNIX)
        s.bind(path)
        s.listen(8)
        c = socket.socket(socket.AF_UNIX)
        c.connect(path)
        events = []
        rec, _ = agent.wait(lambda e: events.append(e) or
                            e["event"] == "connect_recovered", 30)
        agent.stop()
        for ev, _ in agent.lines(2):
            events.append(ev)
    except (EOFError, TimeoutError):
        pass
    finally:
        if agent.proc.poll() is None:
            agent.stop()
    storm_cpu = sum(o["cpu_ns"] for o in outs)
    lost = sum(e.get("count", 0) for e in events if e["event"] == "events_lost")
    return {
        "failed_connects": sum(o["failures"] for o in outs),
        "processes": procs,
        "counted_by_agent": rec["total_failures"],
        "events_written": len([e for e in events if e["event"] != "agent_stopping"]),
        "events_lost": lost,
        "agent_cpu_ms": cpu_agent / 1e6,
        "storm_cpu_ms": storm_cpu / 1e6,
        "agent_cpu_share": cpu_agent / storm_cpu if storm_cpu else None,
        "wall_s": wall,
    }


# ----- heal -----

ECHO = os.path.join(BUILD, "echo_server")


def bench_heal(trials, scratch):
    """Unlink returns -> a new client's connect succeeds, for each way of
    healing, the client retrying every 100 us. The flap guard is opened wide:
    these heals are back to back on purpose."""
    out = {}
    variants = [("link", [], "fd"), ("fd", ["--no-guard"], "fd"),
                ("notify", ["--no-guard"], "notify")]
    for delay in ("20", "0"):
        for name, flags, heal in variants:
            d = os.path.join(scratch, "heal-%s-%s" % (name, delay))
            os.makedirs(d, exist_ok=True)
            path = os.path.join(d, "app.sock")
            agent = AgentProc("--events", "-", "--heal-delay", delay,
                              "--flap-max", "63", "--flap-window", "0.1", *flags)
            srv = subprocess.Popen([ECHO, path, "--heal", heal], stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL)
            try:
                line = srv.stdout.readline()
                assert line.startswith(b"ready"), line
                r = subprocess.run([LOOP, "heal", str(trials), path, "100"],
                                   capture_output=True, timeout=600)
                assert r.returncode == 0, r.stderr.decode()
                res = json.loads(r.stdout)
            finally:
                srv.kill()
                srv.wait()
                agent.stop()
            ms = [t["heal_ms"] for t in res["trials"]]
            failed = [t["failed"] for t in res["trials"]]
            out["%s_delay%sms" % (name, delay)] = {
                "heal_ms": summary(ms), "failed_connects_total": res["failed"],
                "failed_connects_per_heal": summary(failed),
                "retry_every_us": 100, "heal_delay_ms": int(delay)}
    return out


# ----- overhead -----

OVERHEAD_OPS = [("connect_fail", "path"), ("connect_ok", "dir"), ("bind_unlink", "dir"),
                ("unlink_file", "dir"), ("getppid", None)]


def bench_overhead(n, rounds, scratch):
    """Time per call without and with the agent, alternating rounds."""
    work = os.path.join(scratch, "ovh")
    os.makedirs(work, exist_ok=True)
    watched = os.path.join(work, "nothing.sock")
    res = {op: {"without": [], "with": []} for op, _ in OVERHEAD_OPS}
    for r in range(rounds):
        for side in ("without", "with"):
            agent = AgentProc("--events", "-") if side == "with" else None
            try:
                for op, kind in OVERHEAD_OPS:
                    arg = {"path": watched, "dir": work, None: None}[kind]
                    if op == "connect_fail" and agent:
                        pass
                    res[op][side].append(loop(op, n, arg)["ns_per_op"])
            finally:
                if agent:
                    agent.stop()
    out = {}
    for op, _ in OVERHEAD_OPS:
        wo = statistics.median(res[op]["without"])
        wi = statistics.median(res[op]["with"])
        out[op] = {"without_ns": wo, "with_ns": wi, "ratio": wi / wo, "rounds": rounds,
                   "n_per_round": n}
    return out


def machine():
    return {"kernel": platform.release(), "cpus": os.cpu_count(),
            "machine": platform.machine(), "node": platform.node()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: the programs run")
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--out", default=os.path.join(BUILD, "bench.json"))
    args = ap.parse_args()
    small = args.smoke
    scratch = tempfile.mkdtemp(prefix="sw-bench-")
    results = {"machine": machine(), "smoke": small}
    sections = [
        ("detection", lambda: bench_detection(5 if small else 200, scratch)),
        ("storm", lambda: bench_storm(2000 if small else 1_000_000, 2, scratch)),
        ("heal", lambda: bench_heal(5 if small else 100, scratch)),
        ("overhead", lambda: bench_overhead(2000 if small else 200_000,
                                            1 if small else 5, scratch)),
    ]
    for name, fn in sections:
        if args.only and name not in args.only:
            continue
        t = time.monotonic()
        results[name] = fn()
        print("== %s (%.1fs)" % (name, time.monotonic() - t), flush=True)
        print(json.dumps(results[name], indent=2), flush=True)
    subprocess.run(["rm", "-rf", scratch])
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
