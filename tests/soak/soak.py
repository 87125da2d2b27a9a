#!/usr/bin/env python3
"""make soak: unlink→heal cycles against the real agent while clients connect.

    soak.py [--cycles N] [--seconds S] [--clients K] [--client-pause-us U]
            [--redirect off|on] [--container]

Runs build/sockwarden (guard links, --heal-delay 0, the flap guard out of the
way) watching one path served by build/plain_server, K clients of
build/soak_load connecting to it all the time, and build/soak_load's cycler,
which unlinks the path and waits for the heal, up to N cycles or S seconds,
whichever ends first. With --container the server, the clients and the
cycler all run inside a sandbox as a PrivateTmp=/PrivateNetwork= service or
a container has it (mount and network namespaces of their own, a tmpfs of
their own over the socket's directory, which the agent's namespace sees
empty): the agent, on the host, finds the listener, keeps its guard on the
sandbox's mount, sees the cycler's unlinks, heals inside the sandbox and
counts its clients' failures there. Then it checks:

  - every connect that started after a heal and ended before the next loss
    succeeded (the clients' and the cycler's own), the held connection echoed
    throughout, no heal took longer than 5 s;
  - the agent's and the server's open fds are the same at the end as after the
    warm-up (exactly; measured with the clients paused and the server idle),
    and so is their resident memory (within --rss-slack-kib);
  - no count was lost: the failed connects the clients saw equal the agent's
    count (status counter connect_failures) and the sum of total_failures of
    its connect_recovered events, per errno.

SW_SOAK_VERBOSE=1 runs the agent with -v; a failed run leaves the agent's
events and stderr in build/ (soak-events.jsonl, soak-agent.stderr).

Prints a summary and exits 0 when all of it holds, 1 otherwise, 3 when it
cannot run (not root, no binaries). Like the integration tests it runs in
network and mount namespaces of its own, with private /tmp and /run.
"""
import argparse
import collections
import json
import mmap
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("SW_BUILD") or os.path.join(ROOT, "build")
AGENT = os.path.join(BUILD, "sockwarden")
SERVER = os.path.join(BUILD, "plain_server")
LOAD = os.path.join(BUILD, "soak_load")
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402

WARMUP = 0.05  # of the cycles, before the first sample


def private_namespaces():
    """As tests/integration/run.py: an agent elsewhere on the host cannot
    collide with this one (@sockwarden), nor prune its guard links."""
    harness.enter_private_namespaces("SW_SOAK_NS")
    if os.environ.get("SW_SOAK_NS") == "1":
        harness.private_mounts("sw-soak")


def wait_until(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.01)


def nfds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def fd_targets(pid):
    """What each open fd names (socket:[ino], a path, anon_inode:...)."""
    out = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            out.append(os.readlink("/proc/%d/fd/%s" % (pid, fd)))
        except FileNotFoundError:
            pass
    return sorted(out)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class State:
    """The shared page of soak_load: phase (u64), stop (u32), pause (u32)."""

    def __init__(self, path):
        with open(path, "wb") as f:
            f.write(b"\0" * 4096)
        self.f = open(path, "r+b")
        self.m = mmap.mmap(self.f.fileno(), 4096)

    def set(self, field, v):
        off = {"stop": 8, "pause": 12}[field]
        self.m[off:off + 4] = struct.pack("I", v)


def agent_status():
    out = subprocess.run([AGENT, "status", "--json"], capture_output=True, text=True,
                         timeout=30)
    return json.loads(out.stdout)


def events(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def recovered_by_errno(evs, path, own_pid):
    """Failures per errno the agent's streaks counted, less its own: a connect
    that verifies a heal can meet the path removed again, and the agent
    reports it as a client of its own (pid and comm) like any other."""
    out = {}
    for e in evs:
        if e.get("event") == "connect_recovered" and e.get("path") == path:
            own = sum(c["failures"] for c in e.get("clients", []) if c["pid"] == own_pid)
            n = out.get(e["errno"], 0) + e["total_failures"] - own
            if n:
                out[e["errno"]] = n
    return out


def own_failures(evs, path, own_pid):
    return sum(c["failures"] for e in evs
               if e.get("event") == "connect_recovered" and e.get("path") == path
               for c in e.get("clients", []) if c["pid"] == own_pid)


class Sandbox:
    """--container: one process holding mount and network namespaces of their
    own, with a tmpfs over `box`; the soak's processes are nsenter'd into it
    (nsenter without -p execs in place: a Popen's pid is the program's)."""

    def __init__(self, box):
        import test_namespaces as ns  # the suite's namespace plumbing
        self.ns = ns
        os.mkdir(box)
        self.holder = ns.ns_holder(setup=ns.tmpfs_setup(box), net=True)
        self.pid = self.holder.pid
        self.mntns = ns.ns_ino(self.pid, "mnt")

    def argv(self, argv):
        return self.ns.nsenter_args(self.pid, net=True) + argv

    def wait_guard(self, path):
        self.ns.wait_ns_guard(self.pid, path)

    def check_apart(self, path):
        """The sandbox is one: the host's namespace does not see its socket."""
        if os.path.lexists(path):
            raise RuntimeError("the host sees %s: no sandbox" % path)
        if self.ns.ns_ino(self.pid, "mnt") == self.ns.ns_ino(os.getpid(), "mnt"):
            raise RuntimeError("the sandbox shares the host's mount namespace")

    def stop(self):
        self.holder.stop()


class Host:
    """Without --container: the soak's own namespaces."""

    def argv(self, argv):
        return argv

    def wait_guard(self, path):
        harness.wait_guard(path)

    mntns = None

    def check_apart(self, path):
        pass

    def stop(self):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=int(os.environ.get("SOAK_CYCLES", 10000)))
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 1800)))
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--client-pause-us", type=int, default=200)
    ap.add_argument("--rss-slack-kib", type=int, default=512)
    ap.add_argument("--redirect", choices=("off", "on"), default="off",
                    help="the kernel's redirect of connects during a loss (on: every "
                    "connect in a cycle is expected to succeed; off: the clients meet "
                    "the loss, and every failure must be counted)")
    ap.add_argument("--event-totals", choices=("exact", "report"), default="exact",
                    help="whether connect_recovered totals must equal what the clients saw "
                    "(exact), or a difference is only reported (report; the kernel's "
                    "counter is checked exactly either way)")
    ap.add_argument("--container", action="store_true",
                    help="the server, clients and cycler in a sandbox of their own "
                    "(mount and network namespaces, a private tmpfs); the agent on the host")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("soak: needs root (BPF)")
        return 1 if os.environ.get("CI") == "true" else 3
    for b in (AGENT, SERVER, LOAD):
        if not os.path.exists(b):
            print("soak: no %s (make all %s)" % (b, os.path.relpath(LOAD, ROOT)))
            return 3
    private_namespaces()
    # a stopped run (SIGTERM, timeout) still stops what it started
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    work = tempfile.mkdtemp(prefix="sw-soak-")
    box = os.path.join(work, "box")
    path = os.path.join(box if a.container else work, "soak.sock")
    evpath = os.path.join(work, "events.jsonl")
    st = State(os.path.join(work, "state"))
    procs = []
    problems = []
    t_start = time.monotonic()
    where = Host()
    try:
        if a.container:
            where = Sandbox(box)
        srv = subprocess.Popen(where.argv([SERVER, path, "--backlog", "256"]),
                               stdout=subprocess.PIPE)
        procs.append(srv)
        assert srv.stdout.readline().split()[0] == b"ready"
        where.check_apart(path)
        server_fds0 = nfds(srv.pid)  # no client connected
        agent_err = open(os.path.join(work, "agent.stderr"), "w+")
        agent = subprocess.Popen([AGENT, "run", "--events", evpath, "--watch", path,
                                  "--heal-delay", "0", "--flap-max", "0"] +
                                 (["-v"] if os.environ.get("SW_SOAK_VERBOSE") == "1" else []) +
                                 ([] if a.redirect == "on" else ["--no-redirect"]),
                                 stdout=subprocess.DEVNULL, stderr=agent_err)
        procs.append(agent)
        where.wait_guard(path)

        clients = [subprocess.Popen(where.argv([LOAD, "client", st.f.name, path,
                                                str(a.client_pause_us)]),
                                    stdout=subprocess.PIPE) for _ in range(a.clients)]
        procs += clients

        def cycle(n, seconds):
            out = subprocess.run(where.argv([LOAD, "cycle", st.f.name, path, str(n),
                                             "%.3f" % seconds]),
                                 capture_output=True, text=True, timeout=seconds + 60)
            if out.returncode != 0:
                raise RuntimeError("cycler: " + out.stderr)
            return json.loads(out.stdout)

        def quiet_sample(what):
            """fds and RSS with the clients paused and every connection closed."""
            st.set("pause", 1)
            try:
                wait_until(lambda: nfds(srv.pid) == server_fds0, 10,
                           "the server back to %d fds (%s)" % (server_fds0, what))
            except TimeoutError as e:
                problems.append(str(e) + ": %d" % nfds(srv.pid))
            s = {"agent_fds": nfds(agent.pid), "server_fds": nfds(srv.pid),
                 "agent_fd_targets": fd_targets(agent.pid),
                 "agent_rss_kib": rss_kib(agent.pid), "server_rss_kib": rss_kib(srv.pid)}
            st.set("pause", 0)
            return s

        deadline = t_start + a.seconds
        warm = max(1, int(a.cycles * WARMUP))
        results = [cycle(warm, max(1.0, deadline - time.monotonic()))]
        first = quiet_sample("after warm-up")
        samples = [first]
        left = a.cycles - results[0]["cycles"]
        chunk = max(1, left // 10)
        while left > 0 and time.monotonic() < deadline and results[-1]["heal_timeouts"] == 0:
            r = cycle(min(chunk, left), max(1.0, deadline - time.monotonic()))
            results.append(r)
            left -= r["cycles"]
            samples.append({"agent_fds": nfds(agent.pid), "agent_rss_kib": rss_kib(agent.pid),
                            "server_rss_kib": rss_kib(srv.pid)})
            if r["cycles"] == 0:
                break
        st.set("pause", 1)
        # the agent's own fds settle (a verifying connect is closed at once)
        try:
            wait_until(lambda: nfds(agent.pid) == first["agent_fds"], 10, "agent fds")
        except TimeoutError:
            pass
        last = quiet_sample("at the end")
        st.set("stop", 1)
        counts = {}
        for c in clients:
            out, _ = c.communicate(timeout=30)
            for k, v in json.loads(out).items():
                counts[k] = counts.get(k, 0) + v
        elapsed = time.monotonic() - t_start

        failed_seen = {k: counts[k] for k in ("ENOENT", "ECONNREFUSED", "EAGAIN") if counts[k]}
        total_seen = sum(failed_seen.values()) + counts["other"]
        # the agent reads the last streak's end from the kernel within a tick
        try:
            wait_until(lambda: recovered_by_errno(events(evpath), path, agent.pid) == failed_seen, 10,
                       "the agent's recovered counts")
        except TimeoutError:
            pass
        counted = recovered_by_errno(events(evpath), path, agent.pid)
        status = agent_status()
        agent_own = own_failures(events(evpath), path, agent.pid)
        kernel_counted = status["counters"]["connect_failures"] - agent_own

        cycles = sum(r["cycles"] for r in results)
        heal_p50 = max(r["heal_ms_p50"] for r in results)
        heal_p99 = max(r["heal_ms_p99"] for r in results)
        heal_max = max(r["heal_ms_max"] for r in results)
        own_fail = sum(r["own_connect_failures"] for r in results)
        echo_fail = sum(r["held_echo_failures"] for r in results)
        timeouts = sum(r["heal_timeouts"] + r["unlink_failures"] for r in results)
        evs = events(evpath)
        ok_heals = sum(1 for e in evs if e.get("event") == "rebind_succeeded" and
                       e.get("path") == path)
        summary = {
            "cycles": cycles, "cycles_asked": a.cycles, "seconds": round(elapsed, 1),
            "heal_delay_ms": 0, "redirect": a.redirect, "container": a.container,
            "heals_reported": ok_heals,
            "heal_ms": {"p50_max_of_chunks": heal_p50, "p99_max_of_chunks": heal_p99,
                        "max": heal_max},
            "client_connects": counts["connects"], "client_ok": counts["ok"],
            "failures_seen": failed_seen, "failures_counted_events": counted,
            "failures_counted_kernel": kernel_counted, "agent_own_failures": agent_own,
            "post_heal_failures": counts["post_heal_failures"] + own_fail,
            "held_echo_failures": echo_fail, "heal_timeouts": timeouts,
            "agent_fds": [first["agent_fds"], last["agent_fds"]],
            "server_fds": [first["server_fds"], last["server_fds"]],
            "agent_rss_kib": [first["agent_rss_kib"], last["agent_rss_kib"]],
            "server_rss_kib": [first["server_rss_kib"], last["server_rss_kib"]],
            "agent_rss_kib_max": max(s["agent_rss_kib"] for s in samples + [last]),
        }
        print(json.dumps(summary, indent=1))

        if cycles == 0:
            problems.append("no cycle ran")
        if summary["post_heal_failures"]:
            problems.append("%d connects after a heal failed" % summary["post_heal_failures"])
        if echo_fail:
            problems.append("the held connection stopped echoing")
        if timeouts:
            problems.append("a heal did not come within 5 s")
        if ok_heals != cycles:
            problems.append("%d cycles but %d rebind_succeeded" % (cycles, ok_heals))
        if a.container:
            # the endpoint is the sandbox's: every loss, heal and streak says so
            elsewhere = [e for e in evs if e.get("path") == path and e.get("event") in (
                "socket_unlinked", "rebind_succeeded", "connect_recovered") and
                e.get("mntns") != where.mntns]
            if elsewhere:
                problems.append("%d events name another mount namespace than the "
                                "sandbox's %d: %s" % (len(elsewhere), where.mntns,
                                                      json.dumps(elsewhere[0])))
        if counts["other"]:
            problems.append("%d connects failed with an unexpected errno" % counts["other"])
        # every failure belongs to exactly one streak: the recovered totals
        # equal what the clients saw, no fewer (lost) and no more (twice)
        for err, n in failed_seen.items():
            if counted.get(err, 0) != n:
                msg = ("clients saw %d %s failures, the agent's connect_recovered totals "
                       "count %d" % (n, err, counted.get(err, 0)))
                if a.event_totals == "exact":
                    problems.append(msg)
                else:
                    print("soak: note: " + msg)
        if set(counted) - set(failed_seen):
            problems.append("the agent counted failures nobody saw: %s" % counted)
        if kernel_counted != total_seen:
            problems.append("counts lost: clients saw %d failures, the agent counted %d" %
                            (total_seen, kernel_counted))
        for who in ("agent", "server"):
            if first[who + "_fds"] != last[who + "_fds"]:
                problems.append("%s fds %d -> %d" % (who, first[who + "_fds"],
                                                     last[who + "_fds"]))
        if first["agent_fds"] != last["agent_fds"]:
            was, now = (collections.Counter(first["agent_fd_targets"]),
                        collections.Counter(last["agent_fd_targets"]))
            problems.append("agent fds opened since the warm-up: %s; closed: %s" % (
                dict(now - was), dict(was - now)))
            grew = last[who + "_rss_kib"] - first[who + "_rss_kib"]
            if grew > a.rss_slack_kib:
                problems.append("%s RSS grew %d KiB" % (who, grew))
        if problems:
            # the last events, for whoever reads the failure, and the whole
            # journal kept outside the private /tmp
            for e in evs[-12:]:
                print("soak: event: " + json.dumps(e))
            kept = os.path.join(ROOT, "build", "soak-events.jsonl")
            shutil.copyfile(evpath, kept)
            shutil.copyfile(agent_err.name, os.path.join(ROOT, "build", "soak-agent.stderr"))
            print("soak: the agent's events are in %s, its stderr beside them" % kept)
        if agent.poll() is not None:
            agent_err.seek(0)
            problems.append("the agent exited: " + agent_err.read())
    finally:
        st.set("stop", 1)
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        where.stop()
        subprocess.run(["rm", "-rf", work])
    for p in problems:
        print("soak: FAIL: " + p)
    if not problems:
        print("soak: ok (%d cycles)" % cycles)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
