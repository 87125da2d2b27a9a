"""sockwarden report: the postmortem of a real loss, from the agent's own journal.

A real server, a real `rm` of its path, real connects that fail until the guard
link heals it: the report must name rm as the actor, count exactly the connects
this test saw fail, and say the path was healed by link.
"""
import json
import os
import socket
import subprocess
import time

from harness import AGENT, Agent, Server, connect_errno, mount_root, test, wait_until


def guard_made(path):
    gd = os.path.join(mount_root(path), ".sockwarden-guard")
    try:
        return bool(os.listdir(gd))
    except FileNotFoundError:
        return False


def connect_once(path):
    """0 or the errno of one connect() from this process."""
    return connect_errno(path)


def report(*args, stdin=None):
    return subprocess.run([AGENT, "report"] + list(args), input=stdin, capture_output=True,
                          text=True, timeout=60)


def lose_and_heal(scratch):
    """Runs the scenario; returns the journal path and what the test saw."""
    path = os.path.join(scratch, "app.sock")
    # a grace long enough that the connects below meet the lost path
    # connects that fail while the path is lost are the incident's: no redirect
    agent = Agent(scratch, "--watch", path, "--heal-delay", "300", "--no-redirect")
    srv = Server(path)
    try:
        wait_until(lambda: guard_made(path), what="guard link made")
        rm = subprocess.Popen(["rm", path])
        rm.wait(timeout=10)
        assert rm.returncode == 0
        failed = 0
        deadline = time.monotonic() + 10
        while True:
            err = connect_once(path)
            if err == 0:
                break
            failed += 1
            assert time.monotonic() < deadline, "never healed"
            time.sleep(0.02)
        assert failed >= 1, "the heal came before any connect could fail"
        # the recovery is what carries the exact count: wait for it before stopping
        agent.wait_event("connect_recovered", path=path)
    finally:
        srv.stop()
        agent.stop()
    return {"journal": agent.events_path, "path": path, "rm_pid": rm.pid,
            "server_pid": srv.pid, "failed": failed}


def check_model(model, seen):
    eps = [e for e in model["endpoints"] if e["path"] == seen["path"]]
    assert len(eps) == 1, model["endpoints"]
    ep = eps[0]
    assert ep["incidents_total"] == 1, ep["incidents"]
    inc = ep["incidents"][0]
    assert inc["status"] == "healed", inc
    assert inc["opened_by"] == "socket_unlinked", inc
    assert inc["via"] == "unlink", inc
    assert inc["actor"]["pid"] == seen["rm_pid"] and inc["actor"]["comm"] == "rm", inc
    assert inc["owner"]["pid"] == seen["server_pid"], inc
    n = seen["failed"]
    assert inc["connect_failures"] == {"total": n, "by_errno": {"ENOENT": n},
                                       "exact": True}, inc
    assert inc["clients"][0]["pid"] == os.getpid(), inc["clients"]
    assert inc["clients"][0]["failures"] == n, inc["clients"]
    assert inc["heal"]["how"] == "link" and inc["heal"]["heal_ms"] >= 300, inc
    assert inc["outage_s"] > 0.29, inc
    assert inc["outage_clock"] == "mono_ns", inc
    events = [x["event"] for x in ep["timeline"]]
    assert events[0] == "socket_unlinked", events
    assert "rebind_succeeded" in events and "connect_recovered" in events, events
    assert [x["offset_s"] for x in ep["timeline"]] == sorted(x["offset_s"] for x in ep["timeline"])
    run = model["agent"]["runs"][0]
    assert run["end"] == "clean" and run["mode"] in ("tracepoint", "fentry"), run


@test
def report_of_healed_loss(scratch):
    seen = lose_and_heal(scratch)
    human = report(seen["journal"])
    assert human.returncode == 0, human.stderr
    assert human.stderr == "", human.stderr
    out = human.stdout
    n = seen["failed"]
    assert "%s: 1 incident (healed)" % seen["path"] in out, out
    assert "path removed by rm (pid %d, uid 0) via unlink" % seen["rm_pid"] in out, out
    assert "+0.000s" in out, out
    assert "incident #1 healed: outage " in out, out
    assert "%d failed connect%s (ENOENT %d) from 1 client, healed by link in " % (
        n, "" if n == 1 else "s", n) in out, out
    as_json = report(seen["journal"], "--json")
    assert as_json.returncode == 0, as_json.stderr
    check_model(json.loads(as_json.stdout), seen)
    # stdin, and the flag before the file, say the same
    with open(seen["journal"]) as f:
        piped = report("--json", "-", stdin=f.read())
    assert json.loads(piped.stdout)["endpoints"] == json.loads(as_json.stdout)["endpoints"]


@test
def report_skips_garbage_line(scratch):
    seen = lose_and_heal(scratch)
    with open(seen["journal"]) as f:
        lines = f.read().splitlines()
    middle = len(lines) // 2
    # a torn write and a stray log line, in the middle of the journal
    lines[middle:middle] = ['{"time":"2026-11-23T14:00:00Z","event":"socket_unl',
                            "WARNING: something else wrote here"]
    # and the lines out of order: the report sorts them by (boot_id, mono_ns)
    lines.reverse()
    garbled = os.path.join(scratch, "garbled.jsonl")
    with open(garbled, "w") as f:
        f.write("\n".join(lines) + "\n")
    bad = [len(lines) - middle, len(lines) - middle - 1]  # their numbers once reversed
    res = report(garbled, "--json")
    assert res.returncode == 0, res.stderr
    for n in bad:
        assert "line %d: not JSON, skipped" % n in res.stderr, res.stderr
    assert "skipped 2 of %d lines" % len(lines) in res.stderr, res.stderr
    model = json.loads(res.stdout)
    assert model["skipped_lines"] == 2 and sorted(s["line"] for s in model["skipped"]) == sorted(bad)
    check_model(model, seen)
    human = report(garbled)
    assert human.returncode == 0 and "1 incident (healed)" in human.stdout, human.stdout


@test
def report_usage_and_environment_errors(scratch):
    missing = os.path.join(scratch, "no-such-journal.jsonl")
    res = report(missing)
    assert res.returncode == 3, (res.returncode, res.stderr)
    assert "cannot open %s: No such file or directory" % missing in res.stderr, res.stderr
    res = report(scratch)  # a directory opens, but does not read
    assert res.returncode == 3 and "Is a directory" in res.stderr, res.stderr
    res = report("--no-such-flag")
    assert res.returncode == 2 and "--no-such-flag" in res.stderr, res.stderr
    res = report("a", "b")
    assert res.returncode == 2, res.stderr
    empty = os.path.join(scratch, "empty.jsonl")
    open(empty, "w").close()
    res = report(empty)
    assert res.returncode == 0 and res.stdout == "no events\n", res
    res = report("-", stdin="")
    assert res.returncode == 0 and res.stdout == "no events\n", res
    res = report("--json", stdin="\n\n")
    assert res.returncode == 0 and json.loads(res.stdout)["events"] == 0, res
