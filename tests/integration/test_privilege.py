"""Least privilege: after start-up the agent keeps exactly the documented
capabilities (README "Operating") in every thread, and with only those it
still does its whole job: finds owners, keeps guard links and heals through
them, re-creates another user's directory, heals through a control fd as the
server's user, counts connect failures, serves status and metrics, and signals
another user's server when a path asks for it."""
import os
import re
import subprocess

from harness import Agent, client, connect_errno, echo, mount_root, peercred, test, wait_until
from test_control import UNPRIV, EchoServer, rm
from test_operate import (SIGNAL_SERVER, action_conf, endpoint, fail_connects, free_port,
                          samples, scrape, spawn, status_json, wait_line)

CAP = {"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_FOWNER": 3, "CAP_FSETID": 4, "CAP_KILL": 5,
       "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SYS_PTRACE": 19, "CAP_BPF": 39}
# README "Operating": what every run keeps
RUN_SET = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_SETGID",
           "CAP_SETUID", "CAP_SYS_PTRACE"]


def kernel_wants_cap_bpf_for_maps():
    """Before Linux 5.19, with unprivileged BPF disabled, every bpf() command
    (map lookups on a held fd too) wants CAP_BPF; since 5.19 ("bpf: Restrict
    unprivileged bpf to only create objects") only creating maps and loading
    programs do. make vmtest runs this on Debian's 6.1, this machine is
    newer: on both the agent lets CAP_BPF go."""
    major, minor = (int(x) for x in re.match(r"(\d+)\.(\d+)", os.uname().release).groups())
    with open("/proc/sys/kernel/unprivileged_bpf_disabled") as f:
        disabled = f.read().strip() != "0"
    return disabled and (major, minor) < (5, 19)


def expected(*extra):
    names = RUN_SET + list(extra)
    if kernel_wants_cap_bpf_for_maps():
        names.append("CAP_BPF")
    return sorted(names, key=CAP.get), sum(1 << CAP[n] for n in names)


def caps_of(status_text):
    return {k: int(v, 16) for k, v in
            re.findall(r"^(Cap\w+):\s+([0-9a-f]+)$", status_text, re.M)}


def check_caps(agent, names, mask):
    """Every thread: effective = permitted = bounding = the set; nothing
    inheritable or ambient; still uid 0."""
    pid = agent.proc.pid
    tasks = os.listdir("/proc/%d/task" % pid)
    for tid in tasks:
        with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
            text = f.read()
        c = caps_of(text)
        got = {k: c[k] for k in ("CapEff", "CapPrm", "CapBnd")}
        assert got == {k: mask for k in got}, "thread %s: %r, want %x" % (
            tid, {k: "%x" % v for k, v in got.items()}, mask)
        assert c["CapInh"] == 0 and c["CapAmb"] == 0, (tid, c)
        assert re.search(r"^Uid:\s+0\s+0\s+0\s+0$", text, re.M), text
    assert agent.find("agent_started")[0]["capabilities"] == names
    assert status_json()["capabilities"] == names
    return len(tasks)


def nobody_dir(scratch, name, mode=0o700):
    os.chmod(scratch, 0o755)
    d = os.path.join(scratch, name)
    os.mkdir(d)
    os.chown(d, UNPRIV, UNPRIV)
    os.chmod(d, mode)
    return d


NOBODY_SERVER = ("import os, socket, sys\n"
                 "os.setgroups([]); os.setgid(%d); os.setuid(%d)\n"
                 "s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(8)\n"
                 "print('ready', flush=True)\n"
                 "while True: s.accept()[0].close()\n") % (UNPRIV, UNPRIV)


@test
def privilege_run_set_guard_heal_counts_status(scratch):
    names, mask = expected()
    port = free_port()
    # setgid: files made inside keep the group (re-creating it so needs CAP_FSETID)
    d = nobody_dir(scratch, "srv", 0o2700)
    path = os.path.join(d, "app.sock")
    gone = os.path.join(scratch, "gone.sock")
    srv = spawn(NOBODY_SERVER, path)
    wait_line(srv, "ready")
    agent = Agent(scratch, "--metrics", "127.0.0.1:%d" % port, "--journal", "--any-path",
                  "--state", os.path.join(scratch, "state.json"))
    try:
        # the loop, the journald sender and the HTTP server: three threads
        assert check_caps(agent, names, mask) >= 3

        # a guard link to another user's socket in a 0700 directory
        ino = os.lstat(path).st_ino
        gd = os.path.join(mount_root(path), ".sockwarden-guard")
        wait_until(lambda: any(n.endswith("-%d" % ino)
                               for n in (os.listdir(gd) if os.path.isdir(gd) else [])),
                   what="guard link of a nobody socket in a 0700 dir")
        # the whole directory removed: re-created with its owner and mode
        # (setgid bit included), the path re-linked, the owner named
        rm(d)
        ok = agent.wait_event("rebind_succeeded", path=path)
        assert ok["how"] == "link", ok
        assert (ok["owner"]["uid"], ok["owner"]["pid"]) == (UNPRIV, srv.pid), ok
        st = os.lstat(d)
        assert (st.st_uid, st.st_gid, oct(st.st_mode & 0o7777)) == (UNPRIV, UNPRIV, "0o2700")
        assert os.lstat(path).st_ino == ino and connect_errno(path) == 0
        assert not agent.find("guard_lost") and not agent.find("rebind_failed")

        # connect failures: counted exactly, from the kernel's maps
        fail_connects(gone, 40)
        agent.wait_event("connect_failing", path=gone)
        wait_until(lambda: status_json()["counters"]["connect_failures"] == 40,
                   what="40 failures in status")
        wait_until(lambda: samples(scrape(port)[2]).get(
            'sockwarden_connect_failures_total{errno="ENOENT"}') == 40, what="metrics")
        assert endpoint(status_json(), path)["owner"]["uid"] == UNPRIV
        check_caps(agent, names, mask)
    finally:
        agent.stop()
        srv.kill()
    assert agent.proc.returncode == 0, agent.stderr_text()


@test
def privilege_run_set_fd_heal_as_the_servers_user(scratch):
    """setfsuid/setfsgid (CAP_SETUID, CAP_SETGID) with only the run set: the
    new socket is the server's from the start, in its re-created directory."""
    names, mask = expected()
    d = nobody_dir(scratch, "u")
    path = os.path.join(d, "app.sock")
    agent = Agent(scratch, "--no-guard")
    srv = EchoServer(path, "fd", user=UNPRIV)
    try:
        check_caps(agent, names, mask)
        agent.wait_event("target_registered", path=path)
        old = client(path)
        rm(d)
        ok = agent.wait_event("rebind_succeeded", path=path)
        assert ok["how"] == "fd", ok
        st = os.lstat(path)
        assert (st.st_uid, st.st_gid) == (UNPRIV, UNPRIV), (st.st_uid, st.st_gid)
        sd = os.lstat(d)
        assert (sd.st_uid, sd.st_gid, sd.st_mode & 0o777) == (UNPRIV, UNPRIV, 0o700)
        s = client(path)
        assert peercred(s)[:2] == (srv.pid, UNPRIV)
        echo(s)
        echo(old, b"still")
    finally:
        srv.stop()
        agent.stop()


@test
def privilege_signal_action_keeps_cap_kill(scratch):
    """CAP_KILL only when a path's action is signal, and then it reaches a
    server of another user."""
    d = nobody_dir(scratch, "sig")
    path = os.path.join(d, "app.sock")
    become = ("import os, signal, socket, sys, time\n"
              "os.setgroups([]); os.setgid(%d); os.setuid(%d)\n") % (UNPRIV, UNPRIV)
    srv = spawn(become + SIGNAL_SERVER, path, "single")
    pid = int(wait_line(srv, "ready").split()[1])
    agent = Agent(scratch, "--config", action_conf(scratch, path,
                                                   "action = signal\nsignal = USR1\n"))
    try:
        names, mask = expected("CAP_KILL")
        check_caps(agent, names, mask)
        wait_until(lambda: (endpoint(status_json(), path) or {}).get("owner"), what="owner")
        subprocess.run(["rm", path], check=True)
        ev = agent.wait_event("action", path=path)
        assert (ev["outcome"], ev["target"]["pid"]) == ("sent", pid), ev
        wait_line(srv, "USR1")
    finally:
        agent.stop()
        srv.kill()
