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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from discovery import bench_discovery  # noqa: E402

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

INOTIFY = os.path.join(BUILD, "inotify_watch")


def bench_detection(trials, scratch):
    """unlink() returns -> the removal is read from the watcher's stdout, for
    sockwarden (socket_unlinked) and an inotify watcher of the parent
    directory, both running, trials alternating between them."""
    path = os.path.join(scratch, "detect.sock")
    agent = AgentProc("--watch", path, "--events", "-")
    ino = subprocess.Popen([INOTIFY, scratch, "detect.sock"], stdout=subprocess.PIPE)
    assert ino.stdout.readline().strip() == b"ready"
    lat = {"sockwarden": [], "inotify": []}
    actor = None
    try:
        for i in range(2 * trials):
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
            if i % 2 == 0:
                ev, t1 = agent.wait(lambda e: e["event"] == "socket_unlinked" and
                                    e.get("path") == path)
                actor = ev.get("actor")
                lat["sockwarden"].append((t1 - t0) / 1e6)
            else:
                line = ino.stdout.readline()
                t1 = time.monotonic_ns()
                assert line.startswith(b"gone"), line
                lat["inotify"].append((t1 - t0) / 1e6)
            s.close()
            if i % 2 == 0:
                ino.stdout.readline()  # the inotify line of this trial, not timed
    finally:
        agent.stop()
        ino.kill()
        ino.wait()
    sw, it = summary(lat["sockwarden"]), summary(lat["inotify"])
    return {"unit": "ms", "sockwarden": sw, "inotify": it,
            "ratio_median": sw["median"] / it["median"],
            "who_removed_it": {"sockwarden": actor, "inotify": None},
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
PLAIN = os.path.join(BUILD, "plain_server")


WATCHDOG = os.path.join(BUILD, "watchdog_server")
SUPERVISOR = os.path.join(ROOT, "bench", "supervisor.py")


def heal_run(path, trials, server_argv, agent_args=None, jitter_s=0):
    """One way of getting a lost path back: `trials` heals measured by the
    client side (bench-loop heal), which also holds a connection across each."""
    agent = AgentProc("--events", "-", *agent_args) if agent_args is not None else None
    srv = subprocess.Popen(server_argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        line = srv.stdout.readline()
        assert line.startswith(b"ready"), line
        r = subprocess.run([LOOP, "heal", str(trials), path, "100",
                            str(int(jitter_s * 1e6))], capture_output=True, timeout=3600)
        assert r.returncode == 0, r.stderr.decode()
        res = json.loads(r.stdout)
    finally:
        srv.terminate()
        srv.wait()
        if agent:
            agent.stop()
    ms = [t["heal_ms"] for t in res["trials"]]
    return {"heal_ms": summary(ms), "path_back_ms": summary([t["path_ms"] for t in res["trials"]]),
            "failed_connects_total": res["failed"],
            "failed_connects_per_heal": summary([t["failed"] for t in res["trials"]]),
            "established_dropped": res["dropped"], "trials": trials, "retry_every_us": 100}


def bench_heal(trials, baseline_trials, scratch, periods=(5, 1)):
    """Path removed -> a new client's connect succeeds, for sockwarden's ways
    of healing and for what users run instead, in one run. The client retries
    every 100 us. sockwarden's flap guard is opened wide: these heals are back
    to back on purpose."""
    out = {}

    def d(name):
        p = os.path.join(scratch, "heal-" + name)
        os.makedirs(p, exist_ok=True)
        return os.path.join(p, "app.sock")
    flap = ["--flap-max", "63", "--flap-window", "0.1"]
    for delay in ("20", "0"):
        # "link" runs with the redirect (where the kernel has it), and
        # "link_noredirect" without, side by side
        for name, flags, heal in (("link", [], "fd"), ("link_noredirect", ["--no-redirect"], "fd"),
                                  ("fd", ["--no-guard"], "fd"),
                                  ("notify", ["--no-guard"], "notify")):
            key = "sockwarden_%s_delay%sms" % (name, delay)
            path = d(key)
            out[key] = heal_run(path, trials, [ECHO, path, "--heal", heal],
                                ["--heal-delay", delay] + flap + flags)
            out[key]["heal_delay_ms"] = int(delay)
    for period in periods:
        key = "watchdog_stat_every_%gs" % period
        path = d(key)
        out[key] = heal_run(path, baseline_trials, [WATCHDOG, path, str(int(period * 1000))],
                            jitter_s=period)
    key = "probe_and_restart_every_%gs" % periods[0]
    path = d(key)
    out[key] = heal_run(path, baseline_trials, [sys.executable, SUPERVISOR, path,
                                                str(periods[0]), "--", PLAIN, path],
                        jitter_s=periods[0])
    return out


# ----- scale -----

LISTENERS = r"""
import os, resource, socket, sys, time
n, d = int(sys.argv[1]), sys.argv[2]
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 100, n + 100))
socks = []
for i in range(n):
    s = socket.socket(socket.AF_UNIX)
    s.bind(os.path.join(d, "l%05d.sock" % i))
    s.listen(4)
    socks.append(s)
print("ready", flush=True)
sys.stdin.read()
"""


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def bench_scale(counts, scratch):
    """n listening sockets on the host: the agent's start-up (exec ->
    agent_started, after the first scan), one reconcile scan, resident memory."""
    out = {}
    for n in counts:
        d = os.path.join(scratch, "scale%d" % n)
        os.makedirs(d, exist_ok=True)
        holder = subprocess.Popen([sys.executable, "-c", LISTENERS, str(n), d],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert holder.stdout.readline().strip() == b"ready"
        try:
            t0 = time.monotonic()
            agent = AgentProc("--events", "-", "--reconcile", "1")
            startup = time.monotonic() - t0
            try:
                time.sleep(2.5)  # two scans on the 1 s period
                st = subprocess.run([AGENT, "status", "--json"], capture_output=True,
                                    timeout=60)
                doc = json.loads(st.stdout)
                row = out["listeners_%d" % n] = {
                    "startup_s": startup,
                    "watched": agent.started[0]["watched"],
                    "scan_ms": doc["counters"]["last_scan_ms"],
                    "rss_kib": rss_kib(agent.proc.pid),
                    "endpoints": len(doc["endpoints"])}
                # the scan's two halves: gathering (discovery, on the scanner's
                # thread) and applying it to the endpoint table (on the loop)
                last = (doc.get("scan") or {}).get("last") or {}
                if "apply_ms" in last:
                    row["scan_apply_ms"] = last["apply_ms"]
                if "duration_ms" in last:
                    row["scan_duration_ms"] = last["duration_ms"]
            finally:
                agent.stop()
        finally:
            holder.kill()
            holder.wait()
        subprocess.run(["rm", "-rf", d])
    return out


# ----- overhead -----

OVERHEAD_OPS = [("connect_fail", "path"), ("connect_ok", "dir"), ("bind_unlink", "dir"),
                ("unlink_file", "dir"), ("getppid", None)]


def bench_overhead(n, rounds, scratch, modes=None):
    """Time per call without and with the agent, alternating rounds.

    With modes (say fentry and tracepoint), the agent runs once per mode in
    each round, so the modes are compared on the same kernel in one run."""
    work = os.path.join(scratch, "ovh")
    os.makedirs(work, exist_ok=True)
    watched = os.path.join(work, "nothing.sock")
    # "noredirect": the agent without its cgroup/connect_unix program, so the
    # program's own cost is a ratio measured side by side
    sides = ["without"] + (["with_" + m for m in modes] if modes else ["with", "noredirect"])
    res = {op: {side: [] for side in sides} for op, _ in OVERHEAD_OPS}
    for r in range(rounds):
        for side in sides:
            agent = None
            if side == "with":
                agent = AgentProc("--events", "-")
            elif side == "noredirect":
                agent = AgentProc("--events", "-", "--no-redirect")
            elif side.startswith("with_"):
                agent = AgentProc("--events", "-", "--mode", side[len("with_"):])
            try:
                for op, kind in OVERHEAD_OPS:
                    arg = {"path": watched, "dir": work, None: None}[kind]
                    res[op][side].append(loop(op, n, arg)["ns_per_op"])
            finally:
                if agent:
                    agent.stop()
    out = {}
    for op, _ in OVERHEAD_OPS:
        med = {side: statistics.median(res[op][side]) for side in sides}
        wo = med["without"]
        if not modes:
            out[op] = {"without_ns": wo, "with_ns": med["with"], "ratio": med["with"] / wo,
                       "noredirect_ns": med["noredirect"],
                       "redirect_ratio": med["with"] / med["noredirect"],
                       "rounds": rounds, "n_per_round": n}
            continue
        o = {"without_ns": wo, "rounds": rounds, "n_per_round": n}
        for m in modes:
            o[m + "_ns"] = med["with_" + m]
            o[m + "_ratio"] = med["with_" + m] / wo
        if len(modes) == 2:
            o["%s_vs_%s" % tuple(modes)] = med["with_" + modes[0]] / med["with_" + modes[1]]
        out[op] = o
    return out


def machine():
    return {"kernel": platform.release(), "cpus": os.cpu_count(),
            "machine": platform.machine(), "node": platform.node()}


def table(r):
    """The human summary of one run (Markdown, as README.md carries it)."""
    m = r["machine"]
    lines = ["machine: %s, %d cpus, kernel %s%s" % (m["machine"], m["cpus"], m["kernel"],
                                                   ", SMOKE sizes" if r.get("smoke") else "")]
    if "detection" in r:
        d = r["detection"]
        lines += ["", "detection (unlink returns -> event read), mode %s, %d trials each" % (
            d["mode"], d["sockwarden"]["n"]),
            "| watcher | median ms | p99 ms | who removed it |", "| --- | --- | --- | --- |",
            "| sockwarden | %.3f | %.3f | pid, comm, uid |" % (d["sockwarden"]["median"],
                                                          d["sockwarden"]["p99"]),
            "| inotify on the directory | %.3f | %.3f | nothing |" % (d["inotify"]["median"],
                                                                   d["inotify"]["p99"])]
    if "heal" in r:
        lines += ["", "heal (path removed -> a new client's connect succeeds; client retries "
                  "every 100 us; a connection held across each heal)",
                  "| how | trials | median ms | p99 ms | x sockwarden link, no redirect | path back, median ms "
                  "| failed connects per heal (median / p99) | held connections dropped |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        # the reference is the heal without the redirect: its time to a first
        # success is the path's, where the redirect's is the next connect's
        ref = (r["heal"].get("sockwarden_link_noredirect_delay20ms") or
               r["heal"].get("sockwarden_link_delay20ms", {})).get("heal_ms", {}).get("median")
        for k, v in r["heal"].items():
            lines.append("| %s | %d | %.2f | %.2f | %s | %.2f | %d / %d | %d |" % (
                k, v["trials"], v["heal_ms"]["median"], v["heal_ms"]["p99"],
                "%.3g" % (v["heal_ms"]["median"] / ref) if ref else "-",
                v["path_back_ms"]["median"], v["failed_connects_per_heal"]["median"],
                v["failed_connects_per_heal"]["p99"], v["established_dropped"]))
    if "storm" in r:
        st = r["storm"]
        lines += ["", "storm: %d failed connects from %d processes: counted %d, %d events "
                  "written, %d lost; agent CPU %.0f ms vs storm CPU %.0f ms" % (
                      st["failed_connects"], st["processes"], st["counted_by_agent"],
                      st["events_written"], st["events_lost"], st["agent_cpu_ms"],
                      st["storm_cpu_ms"])]
    if "scale" in r:
        lines += ["", "| listeners on the host | start-up s | reconcile scan ms | RSS MiB |",
                  "| --- | --- | --- | --- |"]
        for k, v in r["scale"].items():
            lines.append("| %s | %.2f | %.1f | %.1f |" % (k.split("_")[1], v["startup_s"],
                                                          v["scan_ms"], v["rss_kib"] / 1024))
    if "discovery" in r:
        d = r["discovery"]
        lines += ["", "discovery on a host of %d processes x %d fds with %d listeners "
                  "(medians, %d alternating rounds of %d scans)" % (
                      d["procs"], d["fds_per_proc"], d["listeners"], d["rounds"],
                      d["scans_per_round"]),
                  "| source | scan ms | apply ms | agent CPU ms per scan | processes | fds |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for src in ("iter", "procfs"):
            v = d[src]
            lines.append("| %s | %.1f | %.2f | %.1f | %d | %d |" % (
                src, v["scan_ms_median"], v["apply_ms_median"], v["cpu_ms_per_scan_median"],
                v["covered"]["processes"], v["covered"]["fds"]))
        lines.append("| iter / procfs | %.3f | | %.3f | | |" % (d["ratio_scan_ms"],
                                                              d["ratio_cpu"]))
    if "overhead_modes" in r:
        modes = r["overhead_modes"]["modes"]
        lines += ["", "overhead per call by attach mode on one kernel (medians of alternating "
                  "rounds)",
                  "| operation | without ns | %s | %s vs %s |" % (
                      " | ".join("%s ns | %s ratio" % (m, m) for m in modes), modes[0], modes[1]),
                  "| --- " * (3 + 2 * len(modes)) + "|"]
        for k, v in r["overhead_modes"]["ops"].items():
            lines.append("| %s | %.0f | %s | %.2f |" % (
                k, v["without_ns"],
                " | ".join("%.0f | %.2f" % (v[m + "_ns"], v[m + "_ratio"]) for m in modes),
                v["%s_vs_%s" % tuple(modes)]))
    if "overhead" in r:
        lines += ["", "overhead per call, agent running vs not (medians of alternating rounds)",
                  "| operation | without ns | with ns | ratio | with --no-redirect ns "
                  "| x redirect program |", "| --- | --- | --- | --- | --- | --- |"]
        for k, v in r["overhead"].items():
            lines.append("| %s | %.0f | %.0f | %.2f | %.0f | %.3f |" % (
                k, v["without_ns"], v["with_ns"], v["ratio"], v["noredirect_ns"],
                v["redirect_ratio"]))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: the programs run")
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--out", default=os.path.join(BUILD, "bench.json"))
    ap.add_argument("--table", metavar="BENCH_JSON", help="print the table of an earlier run")
    ap.add_argument("--overhead-modes", metavar="M1,M2",
                    help="section overhead_modes: the overhead with the agent in each of "
                    "two attach modes, side by side (make vmbench: fentry,tracepoint)")
    ap.add_argument("--overhead-n", type=int, help="calls per round in the overhead sections")
    ap.add_argument("--overhead-rounds", type=int, help="rounds in the overhead sections")
    args = ap.parse_args()
    if args.table:
        with open(args.table) as f:
            print(table(json.load(f)))
        return
    small = args.smoke
    ovh_n = args.overhead_n or (2000 if small else 200_000)
    ovh_rounds = args.overhead_rounds or (1 if small else 5)
    scratch = tempfile.mkdtemp(prefix="sw-bench-")
    results = {"machine": machine(), "smoke": small}
    sections = [
        ("detection", lambda: bench_detection(5 if small else 200, scratch)),
        ("storm", lambda: bench_storm(2000 if small else 1_000_000, 2, scratch)),
        ("heal", lambda: bench_heal(3 if small else 100, 1 if small else 20, scratch,
                                    (0.2, 0.1) if small else (5, 1))),
        ("scale", lambda: bench_scale([0, 100] if small else [0, 10000], scratch)),
        ("overhead", lambda: bench_overhead(ovh_n, ovh_rounds, scratch)),
        # a busy host (5,000 processes x 40 fds) with 10 listeners: a scan by
        # the iterator against one by procfs, alternating (bench/discovery.py)
        ("discovery", lambda: bench_discovery(
            AgentProc, AGENT, BUILD, scratch, procs=200 if small else 5000, fds=40,
            listeners=10, rounds=1 if small else 3, scans=2 if small else 5)),
    ]
    if args.overhead_modes:
        modes = args.overhead_modes.split(",")
        sections.append(("overhead_modes", lambda: {
            "modes": modes, "ops": bench_overhead(ovh_n, ovh_rounds, scratch, modes)}))
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
    print(table(results))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
