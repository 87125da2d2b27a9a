"""Discovery's cost on a busy host: the iterator against procfs, side by side.

A host of `procs` idle processes holding `fds` fds each (build/idle_procs)
and `listeners` listening sockets. For each source in turn, alternating over
`rounds` rounds, one agent runs with a 1 s reconcile period; the scans it
reports in status (scan.last: duration_ms, apply_ms; scan.scans) and its CPU
time across them give the time and the CPU per scan. Imported by run.py.
"""
import json
import os
import statistics
import subprocess
import sys
import time

LISTENERS_PY = r"""
import os, socket, sys
d, n = sys.argv[1], int(sys.argv[2])
socks = []
for i in range(n):
    s = socket.socket(socket.AF_UNIX)
    s.bind(os.path.join(d, "d%02d.sock" % i))
    s.listen(4)
    socks.append(s)
print("ready", flush=True)
sys.stdin.read()
"""


def _status(agent_bin):
    r = subprocess.run([agent_bin, "status", "--json"], capture_output=True, timeout=60)
    return json.loads(r.stdout)


def _one_run(agent_cls, agent_bin, source, scans):
    """One agent on the source: per-scan durations and CPU over `scans` scans."""
    agent = agent_cls("--events", "-", "--reconcile", "1", "--discovery", source)
    try:
        chosen = agent.started[0]["discovery"]
        assert chosen == source, "asked for %s, got %s" % (source, chosen)
        durations, applies = [], []
        doc = _status(agent_bin)
        seen = doc["scan"]["scans"]
        cpu0, seen0 = agent.cpu_ns(), seen
        deadline = time.monotonic() + 30 + 5 * scans
        while seen < seen0 + scans:
            if time.monotonic() > deadline:
                raise TimeoutError("%s: %d scans in time" % (source, seen - seen0))
            time.sleep(0.2)
            doc = _status(agent_bin)
            if doc["scan"]["scans"] != seen:
                seen = doc["scan"]["scans"]
                last = doc["scan"]["last"]
                durations.append(last["duration_ms"])
                applies.append(last["apply_ms"])
        cpu = agent.cpu_ns() - cpu0
        last = doc["scan"]["last"]
        return {"scan_ms": durations, "apply_ms": applies,
                "cpu_ms_per_scan": cpu / 1e6 / (seen - seen0),
                "listeners": last["listeners"], "processes": last["processes"],
                "fds": last["fds"]}
    finally:
        agent.stop()


def bench_discovery(agent_cls, agent_bin, build, scratch, procs, fds, listeners,
                    rounds, scans):
    d = os.path.join(scratch, "disc")
    os.makedirs(d, exist_ok=True)
    idle = subprocess.Popen([os.path.join(build, "idle_procs"), str(procs), str(fds)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    holder = None
    try:
        line = idle.stdout.readline().decode().strip()
        assert line == "ready %d" % procs, line
        holder = subprocess.Popen([sys.executable, "-c", LISTENERS_PY, d, str(listeners)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert holder.stdout.readline().strip() == b"ready"
        runs = {"iter": [], "procfs": []}
        for r in range(rounds):
            order = ("iter", "procfs") if r % 2 == 0 else ("procfs", "iter")
            for source in order:
                runs[source].append(_one_run(agent_cls, agent_bin, source, scans))
        out = {"procs": procs, "fds_per_proc": fds, "listeners": listeners,
               "rounds": rounds, "scans_per_round": scans}
        for source, rs in runs.items():
            scan_ms = [x for run in rs for x in run["scan_ms"]]
            out[source] = {
                "scan_ms_median": statistics.median(scan_ms),
                "apply_ms_median": statistics.median(
                    [x for run in rs for x in run["apply_ms"]]),
                "cpu_ms_per_scan_median": statistics.median(
                    [run["cpu_ms_per_scan"] for run in rs]),
                "covered": {k: rs[-1][k] for k in ("listeners", "processes", "fds")},
                "runs": rs}
        out["ratio_scan_ms"] = out["iter"]["scan_ms_median"] / out["procfs"]["scan_ms_median"]
        out["ratio_cpu"] = (out["iter"]["cpu_ms_per_scan_median"] /
                            out["procfs"]["cpu_ms_per_scan_median"])
        return out
    finally:
        if holder:
            holder.kill()
            holder.wait()
        idle.stdin.close()
        idle.wait(timeout=120)
        subprocess.run(["rm", "-rf", d])
