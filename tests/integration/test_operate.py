"""Operating the agent: status (live and from the state file), metrics over
HTTP and in a textfile, the config file and its errors, journald, and the
per-path actions (signal through a pidfd, exec without a shell)."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from harness import (AGENT, LIVE, ROOT, RUN_MODE, Agent, LineReader, Server, connect_errno,
                     test, wait_guard, wait_until)


def run_cli(*args, timeout=20):
    return subprocess.run([AGENT] + list(args), capture_output=True, text=True, timeout=timeout)


def status_json(*args):
    r = run_cli("status", "--json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def endpoint(doc, path):
    for e in doc["endpoints"]:
        if e["path"] == path:
            return e
    return None


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def fail_connects(path, n):
    for _ in range(n):
        assert connect_errno(path) != 0


@test
def status_live_then_from_state_file(scratch):
    state = os.path.join(scratch, "state.json")
    path = os.path.join(scratch, "app.sock")
    agent = Agent(scratch, "--state", state)
    srv = Server(path)
    try:
        wait_until(lambda: endpoint(status_json(), path), what="the endpoint in status")
        doc = status_json()
        assert doc["source"] == "agent" and doc["pid"] == agent.proc.pid, doc
        assert doc["mode"] == RUN_MODE, doc
        e = endpoint(doc, path)
        assert e["state"] == "healthy" and e["owner"]["pid"] == srv.pid, e
        assert e["circuit"]["state"] == "closed"
        human = run_cli("status").stdout
        assert path in human and "healthy" in human and "live from the agent" in human, human
        # the path is lost and healed: the counters and the last error say so
        subprocess.run(["rm", path], check=True)
        agent.wait_event("rebind_succeeded", path=path)
        wait_until(lambda: status_json()["counters"]["heals_ok"] == 1, what="heals_ok")
        e = endpoint(status_json(), path)
        assert e["last_error"]["event"] == "socket_unlinked", e
        # the agent dies: status reads what it wrote last
        wait_until(lambda: os.path.exists(state) and json.load(open(state))["counters"]
                   ["heals_ok"] == 1, what="the state file to catch up")
        agent.stop(signal.SIGKILL)
        doc = status_json("--state", state)
        assert doc["source"] == "state_file" and doc["writer_alive"] is False, doc
        assert endpoint(doc, path)["owner"]["pid"] == srv.pid
        human = run_cli("status", "--state", state).stdout
        assert "(gone)" in human and path in human, human
        # a new agent takes the file over
        agent2 = Agent(scratch, "--state", state, "-v")
        wait_until(lambda: json.load(open(state))["pid"] == agent2.proc.pid,
                   what="the new agent's state file")
        assert "taking over the state file of agent pid %d" % agent.proc.pid in \
            agent2.stderr_text()
        agent2.stop()
    finally:
        srv.stop()
        agent.stop()


@test
def status_refuses_unprivileged_peers(scratch):
    agent = Agent(scratch, "--state", os.path.join(scratch, "s.json"))
    try:
        code = ("import socket,json;s=socket.socket(socket.AF_UNIX,socket.SOCK_SEQPACKET);"
                "s.connect('\\0sockwarden');s.send(b'{\"op\":\"status\"}');"
                "print(s.recv(4096).decode())")
        # the system's python: a per-user interpreter may be unreadable to others
        r = subprocess.run(["/usr/bin/python3", "-c", code], capture_output=True, text=True,
                           user=4242, group=4242, extra_groups=[], timeout=20)
        reply = json.loads(r.stdout)
        assert reply["op"] == "error" and reply["reason"].startswith("not_owner:"), reply
    finally:
        agent.stop()


def scrape(port, url="/metrics", method="GET"):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, url), method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, None, e.read().decode()


def samples(text):
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


# promtool from Debian's prometheus package (make build/tools/promtool;
# make integration-test fetches it): always the main build's, also under
# check-asan's SW_BUILD
PROMTOOL = os.path.join(ROOT, "build", "tools", "promtool")


def promtool_check_metrics(text):
    assert os.access(PROMTOOL, os.X_OK), "no %s: make %s" % (PROMTOOL,
                                                           os.path.relpath(PROMTOOL, ROOT))
    return subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=60)


@test
def metrics_over_http_and_textfile(scratch):
    port = free_port()
    prom = os.path.join(scratch, "sockwarden.prom")
    path = os.path.join(scratch, "app.sock")
    gone = os.path.join(scratch, "gone.sock")
    agent = Agent(scratch, "--metrics", "127.0.0.1:%d" % port, "--metrics-file", prom,
                  "--watch", path, "--watch", gone)
    srv = Server(path)
    try:
        fail_connects(gone, 25)
        agent.wait_event("connect_failing", path=gone)
        subprocess.run(["rm", path], check=True)
        agent.wait_event("rebind_succeeded", path=path)

        def ready():
            st, ctype, body = scrape(port)
            s = samples(body)
            return (s.get('sockwarden_heals_total{how="link",outcome="succeeded"}') == 1 and
                    s.get('sockwarden_connect_failures_total{errno="ENOENT"}') == 25) and \
                (st, ctype, s)
        st, ctype, s = wait_until(ready, what="metrics to show the heal and the failures")
        assert st == 200 and ctype.startswith("text/plain; version=0.0.4"), (st, ctype)
        assert s['sockwarden_build_info{version="0.1.0",mode="%s",discovery="%s"}' % (
            RUN_MODE, status_json()["discovery"])] == 1
        assert s['sockwarden_events_total{event="rebind_succeeded"}'] == 1
        assert s['sockwarden_events_total{event="connect_failing"}'] == 1
        assert s["sockwarden_streaks_open"] == 1
        assert s["sockwarden_endpoints_lost"] == 0
        assert s['sockwarden_lost_total{reason="ringbuf_full"}'] == 0
        # every family has HELP and TYPE, counters end in _total, no pid label
        text = scrape(port)[2]
        for line in text.splitlines():
            if line.startswith("# TYPE") and line.endswith(" counter"):
                assert line.split()[2].endswith("_total"), line
            assert "pid=" not in line
        # the textfile collector's file says the same, and is never half-written
        wait_until(lambda: samples(open(prom).read()).get(
            'sockwarden_heals_total{how="link",outcome="succeeded"}') == 1, what="textfile")
        assert not [n for n in os.listdir(scratch) if ".tmp." in n]
        # Prometheus's own linter finds nothing in either (issue 19); not in
        # make vmtest's VM (SW_PROMTOOL=none: tests/vm/init says why)
        checked = [] if os.environ.get("SW_PROMTOOL") == "none" else [
            ("/metrics", scrape(port)[2]), ("the textfile", open(prom).read())]
        for what, body in checked:
            r = promtool_check_metrics(body)
            assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), \
                (what, r.returncode, r.stdout, r.stderr)
        assert scrape(port, "/nothing")[0] == 404
        assert scrape(port, method="POST")[0] == 405
    finally:
        srv.stop()
        agent.stop()


@test
def metrics_address_in_use_is_an_error(scratch):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    try:
        r = subprocess.run([AGENT, "run", "--events", os.path.join(scratch, "e.jsonl"),
                            "--metrics", "127.0.0.1:%d" % port], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 3, (r.returncode, r.stderr)
        assert "--metrics 127.0.0.1:%d" % port in r.stderr, r.stderr
        r = run_cli("run", "--metrics", "nonsense")
        assert r.returncode == 2 and "HOST:PORT" in r.stderr, (r.returncode, r.stderr)
    finally:
        s.close()


BAD_CONFIGS = [
    ("[agent]\nbogus = 1\n", ":2: [agent] bogus: unknown key"),
    ("[agent]\nwindow = -3\n", ":2: [agent] window: '-3': expected seconds > 0"),
    ("# comment\n[agent]\n\nguard = maybe\n", ":4: [agent] guard: 'maybe': expected yes or no"),
    ("[agents]\nwindow = 3\n", ":2: [agents] window: unknown section"),
    ("[path relative.sock]\nheal = no\n", "[path relative.sock] heal: 'relative.sock' is not"),
    ("[path /run/x.sock]\naction = signal\n", "[path /run/x.sock] action: signal needs"),
    ("[path /run/x.sock]\naction = reboot\n", ":2: [path /run/x.sock] action: 'reboot'"),
    ("[path /run/x.sock]\nsignal = NOPE\n", ":2: [path /run/x.sock] signal: 'NOPE'"),
    ("[path /run/x.sock]\nexec = relative/cmd {path}\n", "exec: 'relative/cmd {path}'"),
    ("[path /%s]\nheal = no\n" % ("a" * 120), "longer than a socket path"),
    ("[agent]\nthis is not ini\n", ":2: not a key = value line"),
]


@test
def config_errors_name_file_line_and_key(scratch):
    for i, (text, want) in enumerate(BAD_CONFIGS):
        conf = write(os.path.join(scratch, "bad%d.conf" % i), text)
        r = run_cli("run", "--config", conf, "--events", os.path.join(scratch, "e.jsonl"))
        assert r.returncode == 2, (text, r.returncode, r.stderr)
        assert r.stderr.startswith("sockwarden: " + conf), (text, r.stderr)
        assert want in r.stderr, (text, want, r.stderr)
    r = run_cli("run", "--config", os.path.join(scratch, "missing.conf"))
    assert r.returncode == 2 and "missing.conf: No such file" in r.stderr, r.stderr


@test
def config_settings_and_flags_over_them(scratch):
    """The file's settings apply, a path section turns healing off for one
    path, and a flag wins over the file."""
    a_path = os.path.join(scratch, "a.sock")
    b_path = os.path.join(scratch, "b.sock")
    conf = write(os.path.join(scratch, "sw.conf"), (
        "[agent]\nheal_delay_ms = 30000\nwindow = 1\nwatch = %s\nwatch = %s\n"
        "[path %s]\nheal = no\n") % (a_path, b_path, a_path))
    agent = Agent(scratch, "--config", conf, "--heal-delay", "0")
    sa, sb = Server(a_path), Server(b_path)
    try:
        started = agent.wait_event("agent_started")
        assert sorted(started["watch"]) == sorted([a_path, b_path]), started
        # both guards made (the listeners came after the agent): b's heal
        # links its guard back
        wait_guard(a_path)
        wait_guard(b_path)
        subprocess.run(["rm", a_path, b_path], check=True)
        skipped = agent.wait_event("rebind_skipped", path=a_path)
        assert skipped["reason"] == "heal_disabled", skipped
        # --heal-delay 0 beats the file's 30 s: b heals at once
        agent.wait_event("rebind_succeeded", path=b_path, timeout=5)
        assert not os.path.exists(a_path)
        doc = status_json()
        assert doc["heal_delay_ms"] == 0 and doc["config"] == conf, doc
        # window = 1 from the file
        fail_connects(a_path, 3)
        agent.wait_event("connect_still_failing", path=a_path, timeout=5)
    finally:
        sa.stop()
        sb.stop()
        agent.stop()


SIGNAL_SERVER = r"""
import os, signal, socket, sys, time
path, fork = sys.argv[1], sys.argv[2] == "fork"
got = []
signal.signal(signal.SIGUSR1, lambda *a: got.append(1) or print("USR1", os.getpid(), flush=True))
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
if fork:
    # forked between bind and listen: at listen() both processes hold it
    child = os.fork()
    if child == 0:
        print("child", os.getpid(), flush=True)
        while True:
            time.sleep(1)
    time.sleep(0.2)
    s.listen()
    print("parent", os.getpid(), flush=True)
    sys.stdin.readline()          # told to go: the parent exits, the child serves on
    os._exit(0)
s.listen()
print("ready", os.getpid(), flush=True)
while True:
    time.sleep(1)
"""

INNOCENT = r"""
import os, signal, sys, time
signal.signal(signal.SIGUSR1, lambda *a: print("USR1", flush=True))
print("innocent", os.getpid(), flush=True)
while True:
    time.sleep(1)
"""


def spawn(code, *args, **kw):
    p = subprocess.Popen([sys.executable, "-c", code] + list(args), stdout=subprocess.PIPE,
                         stdin=subprocess.PIPE, **kw)
    LIVE.append(p)
    p.reader = LineReader(p)
    return p


def wait_line(p, prefix, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        for l in p.reader.lines:
            if l.startswith(prefix):
                return l
        left = deadline - time.monotonic()
        if left <= 0 or not p.reader.pump(left):
            raise AssertionError("no %r line: %r" % (prefix, p.reader.lines))


def action_conf(scratch, path, body):
    return write(os.path.join(scratch, "sw.conf"),
                 "[agent]\nguard = no\n[path %s]\nheal = no\n%s" % (path, body))


@test
def action_signal_reaches_the_verified_owner(scratch):
    path = os.path.join(scratch, "app.sock")
    agent = Agent(scratch, "--config", action_conf(scratch, path,
                                                   "action = signal\nsignal = USR1\n"))
    srv = spawn(SIGNAL_SERVER, path, "single")
    try:
        pid = int(wait_line(srv, "ready").split()[1])
        wait_until(lambda: (endpoint(status_json(), path) or {}).get("owner"), what="owner")
        subprocess.run(["rm", path], check=True)
        ev = agent.wait_event("action", path=path)
        assert (ev["action"], ev["outcome"], ev["signal"]) == ("signal", "sent", "USR1"), ev
        assert ev["trigger"] == "rebind_skipped" and ev["target"]["pid"] == pid, ev
        wait_line(srv, "USR1")
    finally:
        agent.stop()


def recycle_pid(pid):
    """Starts a process that gets exactly `pid`, through ns_last_pid."""
    for _ in range(50):
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(pid - 1))
        p = spawn(INNOCENT)
        if p.pid == pid:
            wait_line(p, "innocent")
            return p
        p.kill()
        p.wait()
    raise AssertionError("could not recycle pid %d" % pid)


@test
def action_signal_never_reaches_a_recycled_pid(scratch):
    """The server forks and its parent exits: the child serves on. The
    parent's pid goes to an innocent process; the agent, which knew the parent
    as an owner, must signal the child, never the innocent."""
    path = os.path.join(scratch, "app.sock")
    # the server first: the agent's start-up scan records both owners, and no
    # later scan (an hour away) refreshes them before the action
    srv = spawn(SIGNAL_SERVER, path, "fork")
    parent = int(wait_line(srv, "parent").split()[1])
    child = int(wait_line(srv, "child").split()[1])
    agent = Agent(scratch, "--config", action_conf(scratch, path,
                                                   "action = signal\nsignal = USR1\n"),
                  "--reconcile", "3600")
    try:
        wait_until(lambda: (endpoint(status_json(), path) or {}).get("owners") == 2,
                   what="both owners known")
        srv.stdin.write(b"go\n")
        srv.stdin.flush()
        srv.wait(10)
        innocent = recycle_pid(parent)
        subprocess.run(["rm", path], check=True)
        ev = agent.wait_event("action", path=path)
        assert ev["outcome"] == "sent" and ev["target"]["pid"] == child, ev
        wait_line(srv, "USR1 %d" % child)
        # the signal went to the child: the innocent, given time, saw none
        assert not [l for l in innocent.reader.lines if l.startswith("USR1")]
        innocent.reader.pump(0.5)
        assert not [l for l in innocent.reader.lines if l.startswith("USR1")], \
            "a recycled pid got the signal"
    finally:
        agent.stop()
        os.kill(child, signal.SIGKILL)


RECORDER = r"""
import json, sys
with open(sys.argv[1], "w") as f:
    json.dump(sys.argv[2:], f)
"""


@test
def action_exec_passes_arguments_without_a_shell(scratch):
    d = os.path.join(scratch, "odd;dir $(touch pwned)")
    os.mkdir(d)
    path = os.path.join(d, "app.sock")
    out = os.path.join(scratch, "args.json")
    rec = write(os.path.join(scratch, "rec.py"), RECORDER)
    conf = action_conf(scratch, path, "action = exec\nexec = %s %s %s {path} pid={pid} "
                       "unit={unit}\n" % (sys.executable, rec, out))
    agent = Agent(scratch, "--config", conf)
    srv = spawn(SIGNAL_SERVER, path, "single")
    try:
        pid = int(wait_line(srv, "ready").split()[1])
        wait_until(lambda: (endpoint(status_json(), path) or {}).get("owner"), what="owner")
        subprocess.run(["rm", path], check=True)
        started = agent.wait_event("action", path=path, outcome="started")
        assert started["argv"][3] == path and started["argv"][4] == "pid=%d" % pid, started
        done = agent.wait_event("action", path=path, outcome="exited")
        assert done["exit_status"] == 0 and done["child_pid"] == started["child_pid"], done
        args = json.load(open(out))
        assert args[0] == path and args[1] == "pid=%d" % pid and args[2].startswith("unit="), args
        assert not os.path.exists(os.path.join(d, "pwned"))
        assert not os.path.exists("pwned")
    finally:
        agent.stop()


REBINDING_SERVER = r"""
import os, signal, socket, sys, time
path = sys.argv[1]
state = {}
def listen():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen()
    old, state["s"] = state.get("s"), s
    if old:
        old.close()
def on_usr1(*a):
    listen()   # the usual reaction to SIGHUP-like signals: re-create the socket
    print("rebound", flush=True)
signal.signal(signal.SIGUSR1, on_usr1)
listen()
print("ready", os.getpid(), flush=True)
while True:
    time.sleep(1)
"""


@test
def action_flap_guard_limits_actions(scratch):
    """Each loss makes the agent signal the server, which re-creates its
    socket; a cleanup job that keeps removing it opens the actions' circuit
    after flap_max actions."""
    path = os.path.join(scratch, "app.sock")
    conf = action_conf(scratch, path, "action = signal\nsignal = USR1\nflap_max = 2\n")
    agent = Agent(scratch, "--config", conf)
    srv = spawn(REBINDING_SERVER, path)
    try:
        wait_line(srv, "ready")
        for i in range(3):
            wait_until(lambda: (endpoint(status_json(), path) or {}).get("state") == "healthy",
                       what="a healthy listener")
            subprocess.run(["rm", path], check=True)
            ev = wait_until(lambda: len(agent.find("action", path=path)) > i and
                            agent.find("action", path=path)[i], what="action %d" % i)
            if i < 2:
                assert ev["outcome"] == "sent", ev
                wait_until(lambda: srv.reader.pump(0.1) and
                           sum(l == "rebound" for l in srv.reader.lines) > i, what="rebound")
            else:
                assert ev["outcome"] == "suppressed" and ev["reason"] == "circuit_open", ev
        assert sum(l == "rebound" for l in srv.reader.lines) == 2
    finally:
        agent.stop()


def lose_a_path(scratch, *agent_args):
    """An agent, a server, and the server's path removed by `rm`."""
    path = os.path.join(scratch, "app.sock")
    agent = Agent(scratch, *agent_args)
    srv = Server(path)
    subprocess.run(["rm", path], check=True)
    agent.wait_event("socket_unlinked", path=path)
    return agent, srv, path


def parse_native(data):
    """journald's native protocol: KEY=value lines, or KEY\\n<le64 len>value\\n."""
    fields, i = {}, 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            k, v = line.split(b"=", 1)
            i = nl + 1
        else:
            k = line
            n = int.from_bytes(data[nl + 1:nl + 9], "little")
            v = data[nl + 9:nl + 9 + n]
            i = nl + 9 + n + 1
        fields[k.decode()] = v.decode()
    return fields


@test
def journald_gets_structured_fields(scratch):
    sock_path = "/run/systemd/journal/socket"
    if os.path.exists(sock_path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            probe.connect(sock_path)
            raise AssertionError("a real journald runs here; this test stands in for it")
        except ConnectionRefusedError:
            os.unlink(sock_path)  # left by an interrupted run
        finally:
            probe.close()
    os.makedirs(os.path.dirname(sock_path), exist_ok=True)
    j = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    j.bind(sock_path)
    j.settimeout(10)
    agent, srv, path = lose_a_path(scratch, "--journal", "--no-guard")
    try:
        got = {}
        while "socket_unlinked" not in got:
            f = parse_native(j.recv(1 << 20))
            got[f.get("SOCKWARDEN_EVENT")] = f
        f = got["socket_unlinked"]
        assert f["PRIORITY"] == "3" and f["SYSLOG_IDENTIFIER"] == "sockwarden", f
        assert f["MESSAGE"].startswith("socket_unlinked %s by rm[" % path), f["MESSAGE"]
        assert len(f["MESSAGE_ID"]) == 32 and f["SOCKWARDEN_PATH"] == path, f
        assert f["SOCKWARDEN_OWNER_PID"] == str(srv.pid) and f["SOCKWARDEN_ACTOR_COMM"] == "rm"
        assert json.loads(f["SOCKWARDEN_JSON"])["event"] == "socket_unlinked"
        assert got["agent_started"]["PRIORITY"] == "6"
        assert got["agent_started"]["MESSAGE_ID"] != f["MESSAGE_ID"]
    finally:
        srv.stop()
        agent.stop()
        j.close()
        os.unlink(sock_path)


@test
def journald_absent_is_not_an_error(scratch):
    assert not os.path.exists("/run/systemd/journal/socket")
    agent, srv, path = lose_a_path(scratch, "--journal", "--no-guard")
    try:
        assert agent.find("socket_unlinked", path=path)
    finally:
        srv.stop()
        assert agent.stop() == 0


@test
def sighup_reopens_the_events_file(scratch):
    """logrotate renames the file and sends SIGHUP: new events go to a new file."""
    agent = Agent(scratch, "--no-guard")
    try:
        rotated = agent.events_path + ".1"
        os.rename(agent.events_path, rotated)
        agent.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: os.path.exists(agent.events_path), what="a new events file")
        agent._offset = 0
        agent.events = []
        path = os.path.join(scratch, "app.sock")
        srv = Server(path)
        subprocess.run(["rm", path], check=True)
        agent.wait_event("socket_unlinked", path=path)
        srv.stop()
        assert agent.proc.poll() is None
        with open(rotated) as f:
            assert "socket_unlinked" not in f.read()
    finally:
        assert agent.stop() == 0


@test
def unusable_state_file_is_an_error_when_named(scratch):
    r = subprocess.run([AGENT, "run", "--events", os.path.join(scratch, "e.jsonl"),
                        "--state", "relative/state.json"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2 and "--state relative/state.json" in r.stderr, (r.returncode,
                                                                              r.stderr)
