"""SIGHUP reloads the configuration (sockwarden(8) "Reloading"): paths and
per-path settings change in place, keeping every endpoint's streaks, counts
and registrations; a bad file keeps the running configuration and says where
it is wrong; SIGHUP still reopens the events file (test_operate)."""
import os
import signal
import subprocess

from harness import Agent, Server, connect_errno, test, wait_guard, wait_until
from test_control import EchoServer, rm
from test_operate import endpoint, free_port, samples, scrape, status_json, write


def reloads_applied():
    return status_json()["reload"]["applied"]


def sighup(agent, applied_before=None):
    """SIGHUP, then wait for the reload to be applied (status counts it)."""
    if applied_before is None:
        applied_before = reloads_applied()
    agent.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: reloads_applied() == applied_before + 1, what="the reload applied")


def streak_failures(doc, path, err="ENOENT"):
    e = endpoint(doc, path)
    for s in (e or {}).get("streaks", []):
        if s["errno"] == err:
            return s["failures"]
    return None


def fail_connects(path, n):
    for _ in range(n):
        assert connect_errno(path) != 0


@test
def reload_watches_an_added_path(scratch):
    """A path added to the watch list is watched after SIGHUP: its listener is
    found at once, gets a guard, and its removal is healed."""
    a_path = os.path.join(scratch, "a.sock")
    b_path = os.path.join(scratch, "b.sock")
    conf = write(os.path.join(scratch, "sw.conf"), "[agent]\nwatch = %s\n" % a_path)
    agent = Agent(scratch, "--config", conf, "--heal-delay", "0")
    sa, sb = Server(a_path), Server(b_path)
    try:
        wait_guard(a_path)
        doc = status_json()
        assert endpoint(doc, b_path) is None, doc["endpoints"]
        assert doc["reload"]["last_successful"] is True and doc["reload"]["applied"] == 0
        write(conf, "[agent]\nwatch = %s\nwatch = %s\n" % (a_path, b_path))
        sighup(agent, 0)
        wait_until(lambda: (endpoint(status_json(), b_path) or {}).get("state") == "healthy",
                   what="b.sock watched and healthy")
        wait_guard(b_path)
        subprocess.run(["rm", b_path], check=True)
        agent.wait_event("rebind_succeeded", path=b_path)
        assert connect_errno(b_path) == 0
        # a is watched as before
        subprocess.run(["rm", a_path], check=True)
        agent.wait_event("rebind_succeeded", path=a_path)
    finally:
        sa.stop()
        sb.stop()
        assert agent.stop() == 0


@test
def reload_changes_settings_and_keeps_counts(scratch):
    """heal and window of a path change on SIGHUP; an open streak keeps its
    count, the endpoint its heals, and the agent its totals."""
    a_path = os.path.join(scratch, "a.sock")
    gone = os.path.join(scratch, "gone.sock")
    body = "[agent]\nwatch = %s\nwatch = %s\n[path %s]\nheal = %s\n[path %s]\nwindow = %d\n"
    conf = write(os.path.join(scratch, "sw.conf"), body % (a_path, gone, a_path, "yes", gone, 600))
    agent = Agent(scratch, "--config", conf, "--heal-delay", "0")
    sa = Server(a_path)
    try:
        wait_guard(a_path)
        subprocess.run(["rm", a_path], check=True)
        agent.wait_event("rebind_succeeded", path=a_path)
        fail_connects(gone, 5)
        agent.wait_event("connect_failing", path=gone)
        doc = wait_until(lambda: (lambda d: streak_failures(d, gone) == 5 and d)(status_json()),
                         what="the streak's 5 failures in status")
        before = doc["counters"]
        assert before["heals_ok"] == 1 and before["connect_failures"] == 5, before
        assert before["streaks_open"] == 1, before

        write(conf, body % (a_path, gone, a_path, "no", gone, 1))
        sighup(agent, 0)
        doc = status_json()
        after = doc["counters"]
        for k in ("heals_ok", "heals_failed", "heals_skipped", "connect_failures",
                  "streaks_open", "circuits_opened"):
            assert after[k] == before[k], (k, before, after)
        assert streak_failures(doc, gone) == 5, endpoint(doc, gone)
        assert endpoint(doc, a_path)["circuit"]["state"] == "closed"
        assert endpoint(doc, a_path)["state"] == "healthy"

        # the streak goes on, now in windows of 1 s: the first one ends within
        # a second; the next reports exactly the failures made in it
        agent.wait_event("connect_still_failing", path=gone, timeout=5)
        fail_connects(gone, 3)
        wait_until(lambda: len(agent.find("connect_still_failing", path=gone)) == 2,
                   what="a second connect_still_failing")
        still = agent.find("connect_still_failing", path=gone)[1]
        assert still["failures"] == 3, still
        assert streak_failures(status_json(), gone) == 8
        assert len(agent.find("connect_failing", path=gone)) == 1
        # heal = no now: a's next loss is not healed
        subprocess.run(["rm", a_path], check=True)
        skipped = agent.wait_event("rebind_skipped", path=a_path)
        assert skipped["reason"] == "heal_disabled", skipped
        assert status_json()["counters"]["heals_ok"] == 1
    finally:
        sa.stop()
        assert agent.stop() == 0


@test
def reload_keeps_a_registration(scratch):
    """A libsockwarden server's registration survives SIGHUP: the agent still
    heals it through the control fd."""
    path = os.path.join(scratch, "app.sock")
    conf = write(os.path.join(scratch, "sw.conf"), "[agent]\nwindow = 30\n")
    agent = Agent(scratch, "--no-guard", "--config", conf)
    srv = None
    try:
        srv = EchoServer(path, "fd")
        agent.wait_event("target_registered", path=path)
        assert status_json()["counters"]["registered"] == 1
        write(conf, "[agent]\nwindow = 5\n[path %s]\nflap_max = 3\n" % path)
        sighup(agent, 0)
        doc = status_json()
        assert doc["counters"]["registered"] == 1, doc["counters"]
        assert endpoint(doc, path)["registered"]["heal"] == "fd", endpoint(doc, path)
        assert doc["window_s"] == 5
        rm(path)
        ok = agent.wait_event("rebind_succeeded", path=path)
        assert ok["how"] == "fd", ok
        srv.wait_line("adopted")
        assert not agent.find("target_unregistered", path=path)
    finally:
        if srv:
            srv.stop()
        assert agent.stop() == 0


@test
def reload_of_a_bad_file_keeps_the_running_one(scratch):
    """A bad file: the error names file, line and key, the metric says 0 and
    the running configuration keeps working; a good file again gives 1. A key
    that needs a restart is named and keeps its running value."""
    port = free_port()
    a_path = os.path.join(scratch, "a.sock")
    good = "[agent]\nwatch = %s\n[path %s]\nheal = no\n" % (a_path, a_path)
    conf = write(os.path.join(scratch, "sw.conf"), good)
    agent = Agent(scratch, "--config", conf, "--heal-delay", "0",
                  "--metrics", "127.0.0.1:%d" % port)
    sa = Server(a_path)

    def metric(name):
        return samples(scrape(port)[2]).get("sockwarden_" + name)
    try:
        wait_until(lambda: metric("config_last_reload_successful") == 1, what="metric 1")
        t0 = metric("config_last_reload_success_timestamp_seconds")
        assert t0 > 0
        # line 4 has the bad value
        write(conf, "[agent]\nwatch = %s\n[path %s]\nheal = sometimes\n" % (a_path, a_path))
        agent.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: metric("config_last_reload_successful") == 0, what="metric 0")
        assert metric("config_last_reload_success_timestamp_seconds") == t0
        want = "%s:4: [path %s] heal: 'sometimes'" % (conf, a_path)
        wait_until(lambda: want in agent.stderr_text(), what="the error in the log")
        doc = status_json()
        assert doc["reload"]["last_successful"] is False and doc["reload"]["applied"] == 0
        # the old configuration still works: a is watched, not healed
        wait_guard(a_path)
        subprocess.run(["rm", a_path], check=True)
        skipped = agent.wait_event("rebind_skipped", path=a_path)
        assert skipped["reason"] == "heal_disabled", skipped

        # an unknown key, on line 2
        write(conf, "[agent]\nsometimes = yes\n")
        agent.proc.send_signal(signal.SIGHUP)
        want = "%s:2: [agent] sometimes: unknown key" % conf
        wait_until(lambda: want in agent.stderr_text(), what="the unknown key in the log")
        assert metric("config_last_reload_successful") == 0

        # a good file again, with one key that needs a restart
        write(conf, good + "[agent]\ncontrol_max_connections = 7\n")
        sighup(agent, 0)
        wait_until(lambda: metric("config_last_reload_successful") == 1, what="metric 1 again")
        assert metric("config_last_reload_success_timestamp_seconds") > t0
        assert 'key "control_max_connections" needs a restart' in agent.stderr_text()
        assert agent.proc.poll() is None
    finally:
        sa.stop()
        assert agent.stop() == 0


@test
def reload_still_reopens_the_events_file(scratch):
    """SIGHUP reloads and reopens the events file in one: the renamed file
    gets nothing more, the new one the events after it."""
    path = os.path.join(scratch, "app.sock")
    conf = write(os.path.join(scratch, "sw.conf"), "[agent]\nwatch = %s\n" % path)
    agent = Agent(scratch, "--config", conf, "--no-guard")
    try:
        rotated = agent.events_path + ".1"
        os.rename(agent.events_path, rotated)
        sighup(agent, 0)
        assert os.path.exists(agent.events_path)
        agent._offset = 0
        agent.events = []
        srv = Server(path)
        subprocess.run(["rm", path], check=True)
        agent.wait_event("socket_unlinked", path=path)
        srv.stop()
        with open(rotated) as f:
            assert "socket_unlinked" not in f.read()
    finally:
        assert agent.stop() == 0
