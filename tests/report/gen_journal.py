#!/usr/bin/env python3
"""A big, realistic event journal for `sockwarden report` (docs/events.md).

    gen_journal.py [--events N] [--seed S] [--endpoints K] > events.jsonl

or generate(file, events, seed, endpoints) from Python (memory_check.py).
Deterministic for a seed. Many endpoints (some in containers), agent runs that
start and stop (and one that is killed), and incidents of every kind the agent
writes: a path removed and healed by link (with the failed connects it caused),
removed and not healed on purpose, a failed or suppressed heal, a stale socket,
a wedged listener, connect storms that last many windows
(connect_still_failing), lost events. Times are the agent's: RFC 3339 with
nanoseconds, mono_ns and boot_id; two boots. Lines come in the order the agent
writes them, with an occasional one a little late (the report sorts by mono_ns).
"""
import argparse
import json
import random
import sys
import time

ERRNOS = ["ENOENT", "ECONNREFUSED", "EAGAIN"]


def generate(out, events=200000, seed=1, endpoints=400):
    """Writes a journal of at least `events` lines to the text file out."""
    rnd = random.Random(seed)
    boots = ["aaaaaaaa-0000-4000-8000-%012d" % 1, "bbbbbbbb-0000-4000-8000-%012d" % 2]
    state = {"boot": 0, "mono": 5_000_000_000, "wall": 1795960800_000_000_000,
             "n": 0, "pid": 4000}
    host = "node1"
    eps = []
    for i in range(endpoints):
        ep = {"path": "/run/svc%03d/svc.sock" % i,
              "owner": {"pid": 1000 + i, "comm": "svc%03d" % i, "uid": 900 + i % 7}}
        if i % 10 == 3:
            ep["mntns"] = 4026532000 + i
            ep["container"] = {"id": "%064x" % (0xC0FFEE + i), "runtime": "containerd"}
        else:
            ep["mntns"] = 4026531841
        eps.append(ep)
    pending = []  # lines held back to be written a little late

    def fmt_time(ns):
        s, frac = divmod(ns, 1_000_000_000)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + ".%09dZ" % frac

    def emit(event, severity, ep=None, **fields):
        state["mono"] += rnd.randint(20_000, 40_000_000)
        o = {"time": fmt_time(state["wall"] + state["mono"]), "mono_ns": state["mono"],
             "boot_id": boots[state["boot"]], "event": event, "severity": severity,
             "host": host, "schema": 1}
        if ep is not None:
            o["path"] = ep["path"]
            o["mntns"] = ep["mntns"]
            if "container" in ep:
                o["container"] = ep["container"]
        o.update(fields)
        line = json.dumps(o, separators=(",", ":"))
        state["n"] += 1
        if rnd.random() < 0.002:
            pending.append(line)
        else:
            out.write(line + "\n")
            if pending and rnd.random() < 0.5:
                out.write(pending.pop() + "\n")

    def client():
        pid = rnd.randint(20000, 60000)
        return {"pid": pid, "comm": rnd.choice(["curl", "python3", "worker", "nginx", "php-fpm"]),
                "uid": rnd.choice([0, 33, 1000, 1001])}

    def streak(ep, err, windows, how):
        c = client()
        emit("connect_failing", "warning", ep, errno=err, client=c)
        total = 1
        start = state["mono"]
        for _ in range(windows):
            f = rnd.randint(1, 5000)
            total += f
            emit("connect_still_failing", "warning", ep, errno=err, failures=f,
                 streak_duration_ms=(state["mono"] - start) // 1_000_000 + 1)
        return c, total, start

    def recovered(ep, err, c, total, start, how):
        others = [client() for _ in range(rnd.randint(0, 4))]
        first = max(1, total - sum(rnd.randint(0, 3) for _ in others))
        clients = [dict(c, failures=first)] + [dict(o, failures=1) for o in others]
        emit("connect_recovered", "info", ep, errno=err,
             streak_duration_ms=(state["mono"] - start) // 1_000_000 + 1,
             swallowed_failures=total - 1, total_failures=total, how=how, clients=clients)

    def windows():
        r = rnd.random()
        if r < 0.6:
            return 0
        if r < 0.95:
            return rnd.randint(1, 10)
        return rnd.randint(50, 1500)  # a storm

    def incident(ep):
        kind = rnd.random()
        actor = {"pid": rnd.randint(100, 9999), "comm": rnd.choice(["rm", "tmpfiles", "find"]),
                 "uid": 0}
        if kind < 0.55:  # removed, failing, healed by link
            emit("socket_unlinked", "error", ep, actor=actor, owner=ep["owner"],
                 via=rnd.choice(["unlink", "unlink", "rename"]), inode=rnd.randint(1, 1 << 30),
                 redirect=False, redirect_reason="no_guard")
            c, total, start = streak(ep, "ENOENT", windows(), "link")
            if rnd.random() < 0.1:
                emit("rebind_failed", "error", ep, how="link", reason="link_failed",
                     error="Read-only file system")
            emit("rebind_started", "info", ep, how="link", seq=rnd.randint(1, 1 << 20))
            emit("rebind_succeeded", "info", ep, how="link",
                 heal_ms=round(rnd.uniform(0.1, 400.0), 3), owner=ep["owner"])
            recovered(ep, "ENOENT", c, total, start, "link")
        elif kind < 0.65:  # the owner removed its own path
            emit("socket_unlinked", "error", ep, actor=ep["owner"], owner=ep["owner"],
                 via="unlink", inode=rnd.randint(1, 1 << 30))
            emit("rebind_skipped", "info", ep, reason="owner_unlinked", actor=ep["owner"],
                 owner=ep["owner"])
        elif kind < 0.80:  # the server died: stale socket, refused until it restarts
            emit("stale_socket", "error", ep, last_owner=ep["owner"])
            c, total, start = streak(ep, "ECONNREFUSED", windows(), "connect")
            recovered(ep, "ECONNREFUSED", c, total, start, "connect")
        elif kind < 0.92:  # wedged
            emit("listener_wedged", "error", ep, backlog=128, max_backlog=128,
                 owner=ep["owner"], reason="connect_eagain")
            c, total, start = streak(ep, "EAGAIN", windows(), "connect")
            recovered(ep, "EAGAIN", c, total, start, "connect")
        else:  # a flapping path: healed, removed again, the flap guard opens
            for _ in range(rnd.randint(2, 6)):
                emit("socket_unlinked", "error", ep, actor=actor, owner=ep["owner"],
                     via="unlink", inode=rnd.randint(1, 1 << 30))
                emit("rebind_started", "info", ep, how="link")
                emit("rebind_succeeded", "info", ep, how="link",
                     heal_ms=round(rnd.uniform(0.1, 50.0), 3), owner=ep["owner"])
            emit("socket_unlinked", "error", ep, actor=actor, via="unlink")
            emit("rebind_suppressed", "warning", ep, rebinds=5, window_s=60,
                 retry_at=fmt_time(state["wall"] + state["mono"] + 60_000_000_000), actor=actor)
            emit("rebind_skipped", "info", ep, reason="circuit_open")
            emit("rebind_started", "info", ep, how="link")
            emit("rebind_succeeded", "info", ep, how="link", heal_ms=60000.0,
                 owner=ep["owner"])

    def agent_start():
        state["pid"] += 1
        emit("agent_started", "info", mode="tracepoint", mode_reason="forced",
             discovery="iter", kernel="6.1.0-27-amd64", watched=len(eps),
             version="0.1.0", pid=state["pid"], mntns=4026531841, redirect=False)

    agent_start()
    run_events = 0
    while state["n"] < events:
        ep = rnd.choice(eps)
        r = rnd.random()
        if r < 0.03:
            emit("target_registered", "info", ep, owner=ep["owner"], heal="fd")
        elif r < 0.035:
            emit("events_lost", "warning", count=rnd.randint(1, 50), reason="ringbuf_full")
        else:
            incident(ep)
        run_events += 1
        if run_events > 300 and rnd.random() < 0.002:
            run_events = 0
            if state["boot"] == 0 and state["n"] > events // 2:
                # a reboot a minute later: the agent was killed (no
                # agent_stopping), mono_ns starts again
                now = state["wall"] + state["mono"]
                state["boot"] = 1
                state["mono"] = 3_000_000_000
                state["wall"] = now + 60_000_000_000 - state["mono"]
            else:
                emit("agent_stopping", "info", mode="tracepoint", records=state["n"],
                     events_lost=0)
            agent_start()
    for line in pending:
        out.write(line + "\n")
    emit("agent_stopping", "info", mode="tracepoint", records=state["n"], events_lost=0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--endpoints", type=int, default=400)
    args = ap.parse_args()
    generate(sys.stdout, args.events, args.seed, args.endpoints)


if __name__ == "__main__":
    main()
