"""Detection of lost socket paths (issue: the observer)."""
import os
import socket
import subprocess
import sys

from harness import (AUTO_MODE, Agent, Server, run_py, test, wait_guard, wait_until, AGENT)


def lost_events(agent, path):
    return agent.find("socket_unlinked", path=path)


def marker(agent, scratch, name="marker.sock"):
    """A positive action after a negative one: once its event is in, any event
    the earlier action caused is in too (records are consumed in order)."""
    d = os.path.join(scratch, "marker")
    os.makedirs(d, exist_ok=True)
    p = os.path.join(d, name)
    srv = Server(p)
    try:
        os.unlink(p)
        agent.wait_event("socket_unlinked", path=p)
    finally:
        srv.stop()


def start_watched_server(agent, path, **kw):
    """A listener bound after the agent started: the agent learns it from the
    listen() record, not from a scan. Its guard link shows the agent has
    taken the record in, directories recorded: a slow agent (check-asan, an
    emulated CPU) could otherwise meet an `rm -rf` of the directory before
    it has seen the directory, and the loss would come from the scan."""
    srv = Server(path, **kw)
    wait_guard(path)
    return srv


def one_unlink(scratch, action, via="unlink", actor_comm=None, sub="d"):
    d = os.path.join(scratch, sub)
    os.makedirs(d)
    path = os.path.join(d, "app.sock")
    agent = Agent(scratch)
    srv = None
    try:
        srv = start_watched_server(agent, path)
        actor_pid = action(path, d)
        ev = agent.wait_event("socket_unlinked", path=path)
        marker(agent, scratch)
        evs = lost_events(agent, path)
        assert len(evs) == 1, "expected exactly one socket_unlinked, got %d" % len(evs)
        assert ev["via"] == via, ev
        assert ev["owner"]["pid"] == srv.pid, ev
        if actor_pid is not None:
            assert ev["actor"]["pid"] == actor_pid, ev
        if actor_comm:
            assert ev["actor"]["comm"] == actor_comm, ev
        assert ev["severity"] == "error"
        for k in ("time", "mono_ns", "boot_id", "host"):
            assert k in ev, k
    finally:
        if srv:
            srv.stop()
        agent.stop()
    return agent


@test
def unlink_absolute_path(scratch):
    one_unlink(scratch, lambda p, d: run_py("import os,sys; os.unlink(sys.argv[1])", p)[0])


@test
def unlinkat_with_dirfd(scratch):
    code = ("import os,sys; fd=os.open(sys.argv[1], os.O_DIRECTORY); "
            "os.unlink('app.sock', dir_fd=fd)")
    one_unlink(scratch, lambda p, d: run_py(code, d)[0])


@test
def unlink_relative_from_other_cwd(scratch):
    code = "import os,sys; os.unlink(sys.argv[1])"
    one_unlink(scratch, lambda p, d: run_py(code, "d/app.sock", cwd=scratch)[0])


@test
def unlink_relative_with_dotdot(scratch):
    code = "import os,sys; os.unlink(sys.argv[1])"
    other = os.path.join(scratch, "other")
    os.makedirs(other)
    one_unlink(scratch, lambda p, d: run_py(code, "../d/app.sock", cwd=other)[0])


@test
def rename_over_socket(scratch):
    def act(p, d):
        f = os.path.join(d, "plain")
        open(f, "w").close()
        return run_py("import os,sys; os.rename(sys.argv[1], sys.argv[2])", f, p)[0]
    one_unlink(scratch, act, via="rename")


@test
def rename_socket_away(scratch):
    def act(p, d):
        return run_py("import os,sys; os.rename(sys.argv[1], sys.argv[2])",
                      p, p + ".old")[0]
    one_unlink(scratch, act, via="rename")


@test
def rm_rf_directory(scratch):
    def act(p, d):
        r = subprocess.run(["rm", "-rf", d])
        assert r.returncode == 0
        return None
    one_unlink(scratch, act, actor_comm="rm")


@test
def rename_parent_directory(scratch):
    def act(p, d):
        return run_py("import os,sys; os.rename(sys.argv[1], sys.argv[2])",
                      d, d + ".moved")[0]
    one_unlink(scratch, act, via="rename")


@test
def regular_file_of_same_name_is_ignored(scratch):
    d = os.path.join(scratch, "d")
    other = os.path.join(scratch, "other")
    os.makedirs(d)
    os.makedirs(other)
    path = os.path.join(d, "app.sock")
    agent = Agent(scratch)
    srv = start_watched_server(agent, path)
    try:
        decoy = os.path.join(other, "app.sock")
        open(decoy, "w").close()
        os.unlink(decoy)
        # a bound socket that never listens, at a path of its own
        nl = os.path.join(other, "idle.sock")
        s = socket.socket(socket.AF_UNIX)
        s.bind(nl)
        os.unlink(nl)
        s.close()
        marker(agent, scratch)
        assert lost_events(agent, path) == []
        assert lost_events(agent, decoy) == []
        assert lost_events(agent, nl) == []
    finally:
        srv.stop()
        agent.stop()


@test
def watch_limits_the_set(scratch):
    d = os.path.join(scratch, "d")
    os.makedirs(d)
    a, b = os.path.join(d, "a.sock"), os.path.join(d, "b.sock")
    agent = Agent(scratch, "--watch", a)
    sa, sb = Server(a), Server(b)
    try:
        os.unlink(b)
        os.unlink(a)
        agent.wait_event("socket_unlinked", path=a)
        assert agent.find("socket_unlinked", path=b) == []
    finally:
        sa.stop()
        sb.stop()
        agent.stop()


@test
def orphan_before_start_is_reported(scratch):
    d = os.path.join(scratch, "d")
    os.makedirs(d)
    path = os.path.join(d, "orphan.sock")
    srv = Server(path)
    os.unlink(path)
    try:
        agent = Agent(scratch)
        try:
            ev = agent.wait_event("listener_orphaned", path=path)
            assert ev["owner"]["pid"] == srv.pid, ev
        finally:
            agent.stop()
        r = subprocess.run([AGENT, "doctor", "--json"], capture_output=True, text=True)
        assert r.returncode == 1, r
        import json
        doc = json.loads(r.stdout)
        hits = [p for p in doc["problems"] if p["path"] == path]
        assert hits and hits[0]["problem"] == "orphaned_listener", doc
        assert hits[0]["owners"][0]["pid"] == srv.pid
        r = subprocess.run([AGENT, "doctor"], capture_output=True, text=True)
        assert r.returncode == 1 and path in r.stdout and "orphaned" in r.stdout
        r = subprocess.run([AGENT, "probe", path, "--json"], capture_output=True, text=True)
        assert r.returncode == 1, r
        pr = json.loads(r.stdout)
        assert pr["verdict"] == "orphaned", pr
        assert pr["exists"] is False
        r = subprocess.run([AGENT, "probe", path], capture_output=True, text=True)
        assert r.returncode == 1 and "ORPHANED" in r.stdout, r.stdout
    finally:
        srv.stop()


@test
def probe_healthy_stale_and_wedged(scratch):
    import json
    p = os.path.join(scratch, "h.sock")
    srv = Server(p)
    try:
        r = subprocess.run([AGENT, "probe", p, "--json"], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout
        pr = json.loads(r.stdout)
        assert pr["verdict"] == "healthy" and pr["connect"]["result"] == "ok"
        assert pr["listeners"][0]["owners"][0]["pid"] == srv.pid
    finally:
        srv.stop()
    r = subprocess.run([AGENT, "probe", p, "--json"], capture_output=True, text=True)
    assert r.returncode == 1 and json.loads(r.stdout)["verdict"] == "stale", r.stdout
    r = subprocess.run([AGENT, "doctor", "--json"], capture_output=True, text=True)
    assert any(x["path"] == p and x["problem"] == "stale_socket"
               for x in json.loads(r.stdout)["problems"])
    w = os.path.join(scratch, "w.sock")
    srv = Server(w, backlog=1, accept=False)
    held = []
    try:
        for _ in range(8):
            s = socket.socket(socket.AF_UNIX)
            s.setblocking(False)
            try:
                s.connect(w)
            except OSError:
                pass
            held.append(s)
        r = subprocess.run([AGENT, "probe", w, "--json"], capture_output=True, text=True)
        assert r.returncode == 1 and json.loads(r.stdout)["verdict"] == "wedged", r.stdout
    finally:
        for s in held:
            s.close()
        srv.stop()


@test
def probe_rejects_bad_paths(scratch):
    long = "/tmp/" + "x" * 103
    assert len(long) == 108
    r = subprocess.run([AGENT, "probe", long], capture_output=True, text=True)
    assert r.returncode == 2 and "107" in r.stderr, r
    r = subprocess.run([AGENT, "probe"], capture_output=True, text=True)
    assert r.returncode == 2


@test
def non_utf8_path_is_escaped(scratch):
    d = os.path.join(scratch, "d").encode()
    os.makedirs(d)
    path = d + b"/\xff\xfe.sock"
    agent = Agent(scratch)
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.listen(4)
    try:
        c = socket.socket(socket.AF_UNIX)
        c.connect(path)
        c.close()
        run_py("import os,sys; os.unlink(os.fsencode(sys.argv[1]))", os.fsdecode(path))
        ev = agent.wait_event("socket_unlinked",
                              path_hex=path.hex())
        assert "\\xff\\xfe" in ev["path"], ev
    finally:
        s.close()
        agent.stop()


@test
def agent_stops_cleanly_and_reports(scratch):
    agent = Agent(scratch, "--mode", "auto")
    rc = agent.stop(sig=2)
    assert rc == 0, rc
    assert agent.find("agent_stopping"), "no agent_stopping"
    started = agent.find("agent_started")[0]
    assert started["mode"] == AUTO_MODE, started
    assert "mode_reason" in started, started
    assert started["kernel"] == os.uname().release


@test
def unprivileged_run_says_what_is_missing(scratch):
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        "--inh-caps=-all", AGENT, "run", "--events", "/dev/null"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 3, r
    assert "CAP_BPF" in r.stderr, r.stderr


@test
def usage_errors_exit_2(scratch):
    for args in (["run", "--mode", "bogus"], ["run", "--window", "0"], ["frobnicate"],
                 ["run", "--watch", "/tmp/" + "y" * 110],
                 # a number with junk after it, one past int: both refused whole
                 ["probe", "/tmp/x.sock", "--timeout", "5x"],
                 ["probe", "/tmp/x.sock", "--timeout", "99999999999"]):
        r = subprocess.run([AGENT] + args, capture_output=True, text=True)
        assert r.returncode == 2, (args, r)
    r = subprocess.run([AGENT, "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("sockwarden ")


@test
def forced_mode_follows_what_the_kernel_can_load(scratch):
    """--mode names a mode; where the kernel cannot load it (fentry on these
    machines: function tracing is locked off) the agent says so and exits 3
    rather than falling back. Where fentry loads (make vmtest's Debian
    kernel), both forced modes start and say which they run."""
    if AUTO_MODE == "tracepoint":
        r = subprocess.run([AGENT, "run", "--mode", "fentry", "--events", "/dev/null"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 3, r
        assert "--mode fentry" in r.stderr and "fentry" in r.stderr, r.stderr
        return
    for mode in ("fentry", "tracepoint"):
        agent = Agent(scratch, "--mode", mode)
        try:
            started = agent.find("agent_started")[0]
            assert started["mode"] == mode, started
        finally:
            agent.stop()
