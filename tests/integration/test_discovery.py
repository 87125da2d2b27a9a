"""Discovery from either source (README "How it works"): the BPF iterator
(--discovery iter) and its fallback (--discovery procfs: sock_diag in every
network namespace plus the /proc/PID/fd walk) find the same listeners, in
every network namespace, with every process that holds them."""
import json
import os
import signal
import socket
import subprocess
import sys

from harness import (AGENT, IN_CI, Agent, Server, Skip, echo, peercred, run_py, test,
                     wait_guard, wait_until)

SOURCES = ("iter", "procfs")

# A listener held by `holders` processes: the first binds and listens, each
# child it forks inherits the fd. Prints the pids, then waits for stdin.
HELD_PY = r"""
import os, socket, sys
path, holders = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(16)
pids = [os.getpid()]
for _ in range(holders - 1):
    pid = os.fork()
    if pid == 0:
        sys.stdin.read()
        os._exit(0)
    pids.append(pid)
print(" ".join(map(str, pids)), flush=True)
sys.stdin.read()
"""


class Held:
    def __init__(self, path, holders):
        self.proc = subprocess.Popen([sys.executable, "-c", HELD_PY, path, str(holders)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.pids = [int(x) for x in self.proc.stdout.readline().split()]
        assert len(self.pids) == holders

    def stop(self):
        for pid in self.pids[1:]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.kill()
        self.proc.wait()


def status_json():
    r = subprocess.run([AGENT, "status", "--json"], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr.decode()
    return json.loads(r.stdout)


def endpoint(path):
    for e in status_json()["endpoints"]:
        if e["path"] == path:
            return e
    return None


def netns_of(pid):
    return os.stat("/proc/%d/ns/net" % pid).st_ino


def started_with(agent, source):
    ev = agent.find("agent_started")[0]
    assert ev["discovery"] == source, ev
    assert ev["discovery_reason"], ev
    return ev


def heal_in_another_netns(scratch, source):
    path = os.path.join(scratch, "app.sock")
    srv = Server(path, netns=True)
    agent = None
    try:
        assert netns_of(srv.pid) != netns_of(os.getpid()), "the server shares our netns"
        agent = Agent(scratch, "--discovery", source)
        started_with(agent, source)
        wait_guard(path)
        e = wait_until(lambda: endpoint(path), what="the endpoint in status")
        assert e["owner"]["pid"] == srv.pid, e
        ino = os.lstat(path).st_ino
        run_py("import os,sys; os.unlink(sys.argv[1])", path)
        lost = agent.wait_event("socket_unlinked", path=path)
        assert lost["owner"]["pid"] == srv.pid, lost
        ok = agent.wait_event("rebind_succeeded", path=path)
        assert ok["how"] == "link", ok
        assert os.lstat(path).st_ino == ino, "a different socket file came back"
        c = socket.socket(socket.AF_UNIX)
        c.settimeout(5)
        c.connect(path)
        assert peercred(c)[0] == srv.pid, "the client reached another listener"
        c.close()
    finally:
        srv.stop()
        if agent:
            agent.stop()


@test
def listener_in_another_netns_is_healed_iter(scratch):
    heal_in_another_netns(scratch, "iter")


@test
def listener_in_another_netns_is_healed_procfs(scratch):
    heal_in_another_netns(scratch, "procfs")


def held_by_three(scratch, source):
    path = os.path.join(scratch, "shared.sock")
    held = Held(path, 3)
    agent = None
    try:
        agent = Agent(scratch, "--discovery", source)
        started_with(agent, source)
        e = wait_until(lambda: endpoint(path), what="the endpoint in status")
        assert e["owners"] == 3, e
        r = subprocess.run([AGENT, "probe", "--json", path], capture_output=True, timeout=30)
        doc = json.loads(r.stdout)
        owners = [o for l in doc["listeners"] for o in l["owners"]]
        pids = sorted(o["pid"] for o in owners)
        assert pids == sorted(held.pids), (pids, held.pids, doc)
    finally:
        held.stop()
        if agent:
            agent.stop()


@test
def listener_held_by_three_processes_lists_all_three_iter(scratch):
    held_by_three(scratch, "iter")


@test
def listener_held_by_three_processes_lists_all_three_procfs(scratch):
    held_by_three(scratch, "procfs")


def endpoints_of(scratch, source):
    """This test's endpoints: both sources see the whole host, whose other
    listeners (another test run's, a developer's) come and go meanwhile."""
    agent = Agent(scratch, "--discovery", source)
    try:
        started_with(agent, source)
        doc = status_json()
        return {e["path"]: (e["state"], e.get("inode"), e.get("owners"),
                            e.get("owner", {}).get("pid"))
                for e in doc["endpoints"] if e["path"].startswith(scratch + "/")}
    finally:
        agent.stop()


@test
def iter_and_procfs_give_the_same_endpoint_table(scratch):
    here = Server(os.path.join(scratch, "here.sock"))
    there = Server(os.path.join(scratch, "there.sock"), netns=True)
    held = Held(os.path.join(scratch, "held.sock"), 2)
    os.mkdir(os.path.join(scratch, "rel"))
    rel = Server("rel.sock", cwd=os.path.join(scratch, "rel"))
    abstract = subprocess.Popen([sys.executable, "-c",
                                 "import socket,sys; s=socket.socket(socket.AF_UNIX); "
                                 "s.bind('\\0sw-test-abstract'); s.listen(1); "
                                 "print('ready', flush=True); sys.stdin.read()"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert abstract.stdout.readline().strip() == b"ready"
    try:
        by_iter = endpoints_of(scratch, "iter")
        by_procfs = endpoints_of(scratch, "procfs")
        assert by_iter == by_procfs, (by_iter, by_procfs)
        for name in ("here.sock", "there.sock", "held.sock", "rel/rel.sock"):
            assert os.path.join(scratch, name) in by_iter, (name, by_iter)
        assert by_iter[os.path.join(scratch, "held.sock")][2] == 2
        assert not [p for p in by_iter if "sw-test-abstract" in p], by_iter
    finally:
        for s in (here, there, rel):
            s.stop()
        held.stop()
        abstract.kill()
        abstract.wait()


@test
def auto_picks_the_iterator_where_it_loads(scratch):
    """Under CI=true the kernel has iterators (DESIGN §7): auto must load the
    program, never fall back quietly."""
    agent = Agent(scratch)
    try:
        ev = agent.find("agent_started")[0]
        if ev["discovery"] != "iter":
            msg = "auto chose %s: %s" % (ev["discovery"], ev["discovery_reason"])
            if IN_CI:
                raise AssertionError(msg)
            raise Skip(msg)
        doc = status_json()
        assert doc["discovery"] == "iter" and doc["scan"]["source"] == "iter", doc
    finally:
        agent.stop()


FAULT_AGENT = os.path.join(os.path.dirname(AGENT), "fault", "sockwarden")


@test
def forced_iter_that_cannot_load_exits_3(scratch):
    """The fault build's SW_FAULT_NO_ITER makes the iterator's load fail as a
    kernel without iterators or BTF would: a forced --discovery iter exits 3
    and says why; auto falls back to procfs and says why."""
    env = dict(os.environ, SW_FAULT_NO_ITER="1")
    r = subprocess.run([FAULT_AGENT, "run", "--events", "-", "--discovery", "iter"],
                       env=env, capture_output=True, timeout=60)
    assert r.returncode == 3, (r.returncode, r.stderr)
    err = r.stderr.decode()
    assert "--discovery iter" in err and "iter/task_file" in err, err
    p = subprocess.Popen([FAULT_AGENT, "run", "--events", os.path.join(scratch, "ev.jsonl")],
                         env=env, stderr=subprocess.PIPE)
    try:
        def started():
            try:
                with open(os.path.join(scratch, "ev.jsonl")) as f:
                    for line in f:
                        ev = json.loads(line)
                        if ev["event"] == "agent_started":
                            return ev
            except FileNotFoundError:
                return None
            assert p.poll() is None, p.stderr.read()
            return None
        ev = wait_until(started, timeout=20, what="agent_started")
        assert ev["discovery"] == "procfs", ev
        assert "iter/task_file" in ev["discovery_reason"], ev
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=10)
