"""The redirect (DESIGN §2 "Redirect", issue 18): while a lost path waits for
its heal, the kernel sends its connects to the guard mirror, which reaches
the same listener, with the same permission checks as the original path.

Host-only (tests/vm/vmtest.py HOST_ONLY_SUITES): the VM's 6.1 kernel has no
cgroup/connect_unix; there test_heal's redirect_is_announced checks that the
agent says so and heals as before.
"""
import errno
import json
import os
import signal
import subprocess
import sys

from harness import (AGENT, BUILD, IN_CI, Agent, Server, Skip, connect_errno, echo, mount_root, peercred,
                     test, wait_guard, wait_until)
from test_heal import Proc, other_netns_agent, scans_of
from test_namespaces import (CONNECT_PY, HostNeverSees, ns_connect, ns_exec, ns_server,
                             status_json, tmpfs_setup, wait_ns_guard, wait_path_event)

LOOP = os.path.join(BUILD, "bench-loop")
MIRROR = ".sockwarden-redirect"
OTHER_UID, OWNER_UID = 4321, 1234


def redirect_agent(scratch, *args):
    """An agent that must have the redirect on: on a kernel without it this
    suite has nothing to test (and in CI that is a failure)."""
    agent = Agent(scratch, *args)
    started = agent.wait_event("agent_started")
    if not started.get("redirect"):
        agent.stop()
        msg = "no redirect on this kernel: %s" % started.get("redirect_reason")
        if IN_CI:
            raise AssertionError(msg)
        raise Skip(msg)
    return agent


def endpoint(path, must=True):
    eps = [e for e in status_json()["endpoints"] if e.get("path") == path]
    assert len(eps) == 1 or (not must and not eps), eps
    return eps[0] if eps else {}


def wait_armed(path):
    wait_guard(path)
    return wait_until(lambda: endpoint(path, False).get("redirect") == "armed",
                      what="the redirect of %s armed" % path)


def count(agent, name, path, **fields):
    return len(agent.find(name, path=path, **fields))


def connect_as(uid, path, gid=None):
    """A client of another uid (no supplementary groups): (0, the listener's
    pid) or (errno, 0)."""
    gid = uid if gid is None else gid

    def drop():
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    # Debian's python: the test's own may live where only root may look
    r = subprocess.run(["/usr/bin/python3", "-c", CONNECT_PY, path], capture_output=True,
                       preexec_fn=drop, timeout=30)
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.split()
    return int(out[0]), int(out[1])


@test
def redirect_hundred_losses_no_failed_connect(scratch):
    """A client retrying every 100 us across 100 losses with the default
    grace: not one connect fails, the held connection lives, and each loss
    is reported redirected with its count."""
    d = os.path.join(scratch, "app")
    os.makedirs(d)
    path = os.path.join(d, "app.sock")
    agent = redirect_agent(scratch, "--flap-max", "63", "--flap-window", "0.1")
    srv = Proc("c", path)
    try:
        wait_armed(path)
        r = subprocess.run([LOOP, "heal", "100", path, "100"], capture_output=True,
                           timeout=600)
        assert r.returncode == 0, r.stderr.decode()
        res = json.loads(r.stdout)
        failed = [t["failed"] for t in res["trials"]]
        assert res["failed"] == 0, "failed connects per loss: %s" % failed
        assert res["dropped"] == 0, res
        wait_until(lambda: len(agent.find("rebind_succeeded", path=path)) >= 100,
                   timeout=60, what="100 heals")
        lost = agent.find("socket_unlinked", path=path)
        assert len(lost) == 100 and all(e["redirect"] is True for e in lost), lost[:3]
        ok = agent.find("rebind_succeeded", path=path)
        assert all(e["redirected_connects"] >= 1 for e in ok), [e["redirected_connects"]
                                                                  for e in ok]
        # redirected connects are not failures: no streak was ever opened
        assert not agent.find("connect_failing", path=path), agent.find("connect_failing")
        assert endpoint(path)["redirected_connects"] >= 100
    finally:
        srv.stop()
        agent.stop()


@test
def redirect_reaches_the_same_listener(scratch):
    """During a long grace: each connect reaches the server itself
    (SO_PEERCRED), a connection held across the loss still echoes, status
    says so, and rebind_succeeded counts exactly the connects redirected."""
    path = os.path.join(scratch, "same.sock")
    agent = redirect_agent(scratch, "--heal-delay", "60000")
    srv = Proc("c", path)
    try:
        wait_armed(path)
        held = socket_to(path)
        ino = os.lstat(path).st_ino
        os.unlink(path)
        lost = agent.wait_event("socket_unlinked", path=path)
        assert lost["redirect"] is True, lost
        assert not os.path.lexists(path)
        n = 7
        for _ in range(n):
            c = socket_to(path)
            assert peercred(c)[0] == srv.pid, "reached another listener"
            assert echo(c) == b"ping"
            c.close()
        assert echo(held, b"held") == b"held"
        ep = endpoint(path)
        assert ep["redirect"] == "redirecting" and ep["redirected_connects"] == n, ep
        human = subprocess.run([AGENT, "status"], capture_output=True, text=True,
                               timeout=30).stdout
        assert "redirect redirecting (%d connects)" % n in human, human
        # the mirror is the same socket file
        assert os.lstat(mirror_of_ino(ino, path)).st_ino == ino
        # a connect that fails for its own reasons is not the redirect's
        assert connect_errno(path + ".other") == errno.ENOENT
        agent.stop()
        # the redirect goes with the agent
        assert connect_errno(path) == errno.ENOENT
    finally:
        srv.stop()
        agent.stop()


def socket_to(path):
    import socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    return s


def blocking_socket_to(path):
    import socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.settimeout(5)
    return s


def mirror_top(path, ino=None):
    """<the mount root of path>/.sockwarden-redirect[/<ino>]."""
    top = os.path.join(mount_root(path), MIRROR)
    return top if ino is None else os.path.join(top, "%x" % ino)


def mirror_of_ino(ino, path, below=None):
    """The mirror of the socket file ino at path (or of its ancestor below):
    <mount root>/.sockwarden-redirect/<ino>/<the path below the mount root>."""
    mp = mount_root(path)
    rel = os.path.relpath(below or path, mp)
    return os.path.join(mirror_top(path, ino), rel) if rel != "." else mirror_top(path, ino)


@test
def redirect_counted_exactly_at_the_heal(scratch):
    """rebind_succeeded's redirected_connects is the number of connects the
    kernel sent to the guard during that loss, no more and no less."""
    path = os.path.join(scratch, "count.sock")
    agent = redirect_agent(scratch, "--heal-delay", "1500")
    srv = Proc("c", path)
    try:
        wait_armed(path)
        os.unlink(path)
        agent.wait_event("socket_unlinked", path=path)
        n = 0
        # until the heal: connects by the path, each one succeeding
        while not os.path.lexists(path):
            assert connect_errno(path) == 0
            n += 1
        ok = agent.wait_event("rebind_succeeded", path=path)
        # the agent's own connect that verifies the heal comes after link()
        # and before the path is unmarked: it may be redirected too; the
        # loop's last connect may come after link() and the unmarking, the
        # path looked at before them: it reaches the path itself
        assert n > 0 and n - 1 <= ok["redirected_connects"] <= n + 1, (ok, n)
        ep = endpoint(path)
        assert ep["redirect"] == "armed", ep
    finally:
        srv.stop()
        agent.stop()


@test
def redirect_new_server_wins(scratch):
    """A new server binding the lost path during the grace gets the very
    next connect; the old one is not healed over it."""
    path = os.path.join(scratch, "new.sock")
    agent = redirect_agent(scratch, "--heal-delay", "60000")
    old = Proc("c", path)
    new = None
    try:
        wait_armed(path)
        os.unlink(path)
        assert agent.wait_event("socket_unlinked", path=path)["redirect"] is True
        c = socket_to(path)
        assert peercred(c)[0] == old.pid
        c.close()
        new = Server(path)
        c = socket_to(path)
        assert peercred(c)[0] == new.pid, "the redirect beat the new listener"
        c.close()
        sk = agent.wait_event("rebind_skipped", path=path)
        assert sk["reason"] == "rebound", sk
        c = socket_to(path)
        assert peercred(c)[0] == new.pid
        c.close()
    finally:
        if new:
            new.stop()
        old.stop()
        agent.stop()


@test
def redirect_late_record_never_takes_a_new_listener(scratch):
    """The agent reads an unlink's record only after a new server has bound
    the path (the kernel's mark, set by the unlink, was cleared by that
    bind): the late record must not mark the path lost again, and the next
    connect reaches the new server. (bench-smoke met it: a connect right
    after a bind was refused, redirected to the old listener's guard.)"""
    from test_faults import fault_agent, wait_stopped
    path = os.path.join(scratch, "late.sock")
    agent = fault_agent(scratch, "unlink_report_before", "--heal-delay", "60000")
    started = agent.find("agent_started")[0]
    if not started.get("redirect"):
        agent.stop()
        raise AssertionError("no redirect: %s" % started.get("redirect_reason"))
    old = Proc("c", path)
    new = None
    try:
        wait_armed(path)
        os.unlink(path)
        wait_stopped(agent)  # at the unlink's record, before anything of it
        old.stop()
        new = Server(path)
        assert peercred(blocking_socket_to(path))[0] == new.pid
        agent.proc.send_signal(signal.SIGCONT)
        lost = agent.wait_event("socket_unlinked", path=path)
        assert lost["redirect"] is False, lost
        # blocking connects: a server slow to accept (under ASan) makes them
        # wait for room in its backlog, never fail with EAGAIN
        for _ in range(5):
            c = blocking_socket_to(path)
            assert peercred(c)[0] == new.pid, "a late record redirected a connect"
            c.close()
    finally:
        if new:
            new.stop()
        old.stop()
        agent.stop()


@test
def redirect_never_to_a_dead_listener(scratch):
    """The listener dies during the grace: the next connect fails as it
    would without sockwarden, and the ones after it too."""
    path = os.path.join(scratch, "dead.sock")
    agent = redirect_agent(scratch, "--heal-delay", "60000")
    srv = Proc("c", path)
    try:
        wait_armed(path)
        os.unlink(path)
        assert agent.wait_event("socket_unlinked", path=path)["redirect"] is True
        assert connect_errno(path) == 0
        srv.stop()
        first = connect_errno(path)
        assert first in (errno.ECONNREFUSED, errno.ENOENT), first
        # that refusal ended the redirect in the kernel itself
        for _ in range(20):
            assert connect_errno(path) == errno.ENOENT
    finally:
        srv.stop()
        agent.stop()


@test
def redirect_gone_with_a_killed_agent(scratch):
    """SIGKILL while a path is redirected: nothing of the redirect remains
    (a bpf_link goes with its process); a new agent heals the path from
    the guard it finds and redirects again."""
    path = os.path.join(scratch, "kill.sock")
    agent = redirect_agent(scratch, "--heal-delay", "60000")
    srv = Proc("c", path)
    again = None
    try:
        wait_armed(path)
        os.unlink(path)
        assert agent.wait_event("socket_unlinked", path=path)["redirect"] is True
        assert connect_errno(path) == 0
        agent.stop(signal.SIGKILL)
        # the link's last reference was the agent's fd
        wait_until(lambda: connect_errno(path) == errno.ENOENT, what="the redirect gone")
        for _ in range(20):
            assert connect_errno(path) == errno.ENOENT
        second = os.path.join(scratch, "second")  # its own events file
        os.mkdir(second)
        again = redirect_agent(second, "--reconcile", "0.5")
        again.wait_event("rebind_succeeded", path=path)
        c = socket_to(path)
        assert peercred(c)[0] == srv.pid
        c.close()
        wait_armed(path)
        # the earlier run's mirror was replaced by this run's
        ino = os.lstat(path).st_ino
        assert "%x" % ino in os.listdir(mirror_top(path))
        os.unlink(path)
        assert again.wait_event("socket_unlinked", path=path, via="unlink")["redirect"] is True
        assert connect_errno(path) == 0
    finally:
        srv.stop()
        agent.stop()
        if again:
            again.stop()


@test
def an_agent_keeps_another_agents_redirect(scratch):
    """Two agents on one host, one per network namespace, share a mount's
    mirror directory: the second one's start and its scans leave the first
    one's mirror in place, so a path the first has lost stays redirected to
    its listener (a tree goes with its listener, not with a start)."""
    a_path = os.path.join(scratch, "a.sock")
    b_path = os.path.join(scratch, "b.sock")
    a = redirect_agent(scratch, "--watch", a_path, "--heal-delay", "60000", "--reconcile", "0.2")
    sa = Proc("c", a_path)
    b = sb = None
    try:
        wait_armed(a_path)
        ino_a = os.lstat(a_path).st_ino
        os.unlink(a_path)
        assert a.wait_event("socket_unlinked", path=a_path)["redirect"] is True
        assert connect_errno(a_path) == 0
        b = other_netns_agent(scratch, "--watch", b_path, "--reconcile", "0.2")
        sb = Proc("c", b_path)
        ino_b = os.lstat(b_path).st_ino
        wait_until(lambda: os.path.isdir(mirror_top(b_path, ino_b)), what="the second's mirror")
        start = scans_of(b)
        wait_until(lambda: scans_of(b) >= start + 5, timeout=30,
                   what="five more scans of the second agent")
        assert os.path.isdir(mirror_top(a_path, ino_a)), os.listdir(mirror_top(a_path))
        for _ in range(20):
            assert connect_errno(a_path) == 0
        c = socket_to(a_path)
        assert peercred(c)[0] == sa.pid
        c.close()
        # a closed listener's tree goes, whoever's it was
        sa.stop()
        wait_until(lambda: not os.path.lexists(mirror_top(a_path, ino_a)),
                   what="the closed listener's mirror removed")
        assert os.path.isdir(mirror_top(b_path, ino_b))
    finally:
        sa.stop()
        if sb:
            sb.stop()
        if b:
            b.stop()
        a.stop()


def make_dirs(scratch, spec):
    """spec: [(name, uid, gid, mode)] nested under scratch (0755)."""
    os.chmod(scratch, 0o755)
    d = scratch
    for name, uid, gid, mode in spec:
        d = os.path.join(d, name)
        os.mkdir(d)
        os.chown(d, uid, gid)
        os.chmod(d, mode)
    return d


@test
def redirect_keeps_permissions(scratch):
    """A socket in a 0700 directory of another user: a client without
    access is refused before the loss and during it, directly or at the
    mirror's own name; the owner is redirected. The mirror's directories
    are the originals' owners and modes, and follow a chmod."""
    d = make_dirs(scratch, [("srv", 0, 0, 0o755), ("priv", OWNER_UID, OWNER_UID, 0o700)])
    path = os.path.join(d, "app.sock")
    agent = redirect_agent(scratch, "--heal-delay", "60000")
    srv = Proc("c", path)
    try:
        os.chmod(path, 0o777)  # the socket file's own check lets anyone write
        wait_armed(path)
        assert connect_as(OWNER_UID, path) == (0, srv.pid)
        assert connect_as(OTHER_UID, path) == (errno.EACCES, 0)
        ino = os.lstat(path).st_ino
        mirror = mirror_of_ino(ino, path)
        # the mirror's directories below the mount root are the originals'
        for orig in (scratch, os.path.dirname(d), d):
            m = mirror_of_ino(ino, path, orig)
            so, sm = os.lstat(orig), os.lstat(m)
            assert (sm.st_uid, sm.st_gid, sm.st_mode) == (so.st_uid, so.st_gid, so.st_mode), \
                (orig, oct(so.st_mode), oct(sm.st_mode), sm.st_uid)
        for top in (mirror_top(path), mirror_top(path, ino)):
            st = os.lstat(top)
            assert (st.st_uid, st.st_mode & 0o7777) == (0, 0o711), (top, oct(st.st_mode))
        assert connect_as(OTHER_UID, mirror) == (errno.EACCES, 0), "the mirror is a way in"
        os.unlink(path)
        assert agent.wait_event("socket_unlinked", path=path)["redirect"] is True
        assert connect_as(OWNER_UID, path) == (0, srv.pid), "the owner is not redirected"
        assert connect_as(OTHER_UID, path) == (errno.EACCES, 0), "the redirect is a way in"
        assert connect_as(OTHER_UID, mirror) == (errno.EACCES, 0)
        # the kernel rewrites before the lookup: the refused client's connect
        # was sent to the mirror too (and failed there with EACCES, as it
        # would have at the original)
        n = endpoint(path)["redirected_connects"]
        assert n == 2, n
    finally:
        srv.stop()
        agent.stop()


@test
def redirect_follows_a_chmod(scratch):
    """The mirror follows the originals: a directory opened to others after
    the guard was made lets others in by the redirect too (the loss copies
    the modes again), and closed again it keeps them out."""
    d = make_dirs(scratch, [("priv", OWNER_UID, OWNER_UID, 0o700)])
    path = os.path.join(d, "app.sock")
    agent = redirect_agent(scratch, "--heal-delay", "300")
    srv = Proc("c", path)
    try:
        os.chmod(path, 0o777)
        wait_armed(path)
        for mode, want in ((0o711, (0, srv.pid)), (0o700, (errno.EACCES, 0)),
                           (0o755, (0, srv.pid))):
            os.chmod(d, mode)
            assert connect_as(OTHER_UID, path) == want, oct(mode)
            heals = count(agent, "rebind_succeeded", path)
            losses = count(agent, "socket_unlinked", path)
            os.unlink(path)
            wait_until(lambda: count(agent, "socket_unlinked", path) > losses, what="the loss")
            got = connect_as(OTHER_UID, path)
            assert got == want, "mode %o during the loss: %s, not %s" % (mode, got, want)
            wait_until(lambda: count(agent, "rebind_succeeded", path) > heals, what="the heal")
            wait_armed(path)
    finally:
        srv.stop()
        agent.stop()


@test
def redirect_stays_in_its_namespace(scratch):
    """A loss inside a container (a tmpfs of its own) is redirected for the
    container's clients, inside it; the mirror is on the container's tmpfs
    and the host never sees the path."""
    d = os.path.join(scratch, "run", "app")
    os.makedirs(d)
    path = os.path.join(d, "app.sock")
    host = HostNeverSees(path, os.path.join(d, MIRROR))
    agent = srv = None
    try:
        agent = redirect_agent(scratch, "--heal-delay", "60000")
        srv = ns_server(path, setup=tmpfs_setup(d))
        wait_ns_guard(srv.pid, path)
        wait_until(lambda: endpoint(path, False).get("redirect") == "armed",
                   what="the container's redirect armed")
        assert ns_connect(srv.pid, path, net=False) == (0, srv.pid)
        ns_exec(srv.pid, ["rm", path])
        lost = wait_path_event(agent, "socket_unlinked", path)
        assert lost["redirect"] is True and lost["mntns"] == srv.mntns, lost
        assert ns_connect(srv.pid, path, net=False) == (0, srv.pid), "not redirected inside"
        # the same name from the host is not that container's path
        assert connect_errno(path) == errno.ENOENT
        assert os.path.isdir(srv.root(os.path.join(d, MIRROR)))
        assert endpoint(path)["redirected_connects"] == 1
        host.check()
    finally:
        host.stop()
        if srv:
            srv.stop()
        if agent:
            agent.stop()
    host.check()


@test
def redirect_off_for_a_path_too_long(scratch):
    """A path whose mirror name would not fit in sun_path is not redirected,
    and the loss says why; it is still healed."""
    d = scratch
    while len(d) < 85:
        d = os.path.join(d, "d" * 8)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "long.sock")
    assert len(path) < 107
    agent = redirect_agent(scratch, "--heal-delay", "300")
    srv = Proc("c", path)
    try:
        wait_guard(path)
        ep = wait_until(lambda: endpoint(path, False).get("redirect_reason") and endpoint(path),
                        what="the reason")
        assert ep["redirect"] == "off" and ep["redirect_reason"] == "too_long", ep
        os.unlink(path)
        lost = agent.wait_event("socket_unlinked", path=path)
        assert lost["redirect"] is False and lost["redirect_reason"] == "too_long", lost
        assert connect_errno(path) == errno.ENOENT
        agent.wait_event("rebind_succeeded", path=path)
        assert connect_errno(path) == 0
    finally:
        srv.stop()
        agent.stop()


@test
def redirect_leaves_no_mirror_behind(scratch):
    """The listener goes: its mirror goes with it."""
    path = os.path.join(scratch, "gone.sock")
    agent = redirect_agent(scratch, "--reconcile", "0.5")
    srv = Proc("c", path)
    try:
        wait_armed(path)
        ino = os.lstat(path).st_ino
        top = mirror_top(path, ino)
        assert os.path.isdir(top)
        srv.stop()
        wait_until(lambda: not os.path.lexists(top), what="the mirror removed")
    finally:
        srv.stop()
        agent.stop()
