"""No way out of a user's directory (issue 20): a local user who owns a
directory on a watched path races the agent's heals for thousands of rounds
(a directory swapped for a symbolic link, renamed away and replaced, a bind
mount over it in the user's own namespace), and nothing the agent does lands
outside that directory: no socket file, no link, no chown, no chmod.

The layout of each test, in a root-owned 0755 scratch directory:

    outside/        root 0755, empty: must stay empty
    victim          root 0600: its owner and mode must stay
    u/              the racer's (uid 65534) 0755
    u/d/app.sock    a root server's listener, mode 0666

A watcher thread lists `outside` and stats `victim` the whole time. The
racer is a real unprivileged process; each of its rounds removes the path
and then attacks while the agent heals (--heal-delay 0, the flap guard off),
and waits for the path to be served again before the next.
"""
import json
import os
import stat
import subprocess
import sys
import threading

from harness import (BUILD, LIVE, SLOW, Agent, connect_errno, test, wait_guard,
                     wait_until)

NOBODY = 65534
PLAIN = os.path.join(BUILD, "plain_server")
ECHO = os.path.join(BUILD, "echo_server")
ROUNDS = int(os.environ.get("SW_RACER_ROUNDS") or (300 if SLOW else 2000))
ROUND_WAIT_S = 30 if SLOW else 10

# The racer, as uid 65534: argv = mode, u, outside, victim, rounds,
# round_wait_s, a directory fd of u/d.
# Each round: remove the socket's name, attack, restore, then wait until the
# path accepts a connection again (the agent's heal) before the next round.
RACER = r"""
import errno, json, os, socket, sys, time
mode, u, outside, victim, rounds, wait_s, dfd = sys.argv[1:8]
dfd = int(dfd)  # the host's u/d, opened before any namespace of the racer's
rounds, wait_s = int(rounds), float(wait_s)
d = os.path.join(u, "d"); away = os.path.join(u, "d.away")
sock = os.path.join(d, "app.sock")
stats = {"rounds": 0, "healed": 0, "late": 0, "swaps": 1 if mode == "bind_mount" else 0}
def quiet(fn, *a, **kw):
    try:
        fn(*a, **kw)
    except OSError:
        pass
# through the host's u/d: in the bind_mount racer's namespace u/d is `outside`
probe = "/proc/self/fd/%d/app.sock" % dfd
def served():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(probe)
        return True
    except OSError:
        return False
    finally:
        s.close()
def clear_name():
    # the agent re-creates a missing directory on the way (with its recorded
    # owner and mode) and may heal into it: the racer takes the name back
    while True:
        try:
            if os.path.islink(d):
                os.unlink(d)
            else:
                for n in os.listdir(d):
                    quiet(os.unlink, os.path.join(d, n))
                os.rmdir(d)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.ENOTEMPTY:
                raise
def put(fn, *a):
    # fn(*a) takes the name d; whatever the agent made there meanwhile goes
    while True:
        try:
            fn(*a)
            return
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            clear_name()
def swap_for_link():
    # the directory goes away and a link to `outside` takes its name
    os.rename(d, away)
    put(os.symlink, outside, d)
    stats["swaps"] += 1
    os.sched_yield()
    clear_name()
    put(os.rename, away, d)
def rename_and_replace():
    # renamed away and a new directory of the user's own in its place: a
    # heal may land in either, both the user's
    os.rename(d, away)
    put(os.mkdir, d, 0o755)
    stats["swaps"] += 1
    os.sched_yield()
    clear_name()
    put(os.rename, away, d)
for i in range(rounds):
    stats["rounds"] += 1
    quiet(os.unlink, "app.sock", dir_fd=dfd) if mode == "bind_mount" else quiet(os.unlink, sock)
    for _ in range(3):
        if mode == "symlink":
            swap_for_link()
        elif mode == "replace":
            rename_and_replace()
    deadline = time.monotonic() + wait_s
    while not served():
        if time.monotonic() > deadline:
            stats["late"] += 1
            break
        time.sleep(0.0002)
    else:
        stats["healed"] += 1
        continue
    break  # a round the agent left unhealed: the test fails now, not hours later
print(json.dumps(stats), flush=True)
"""

CLONE_NEWNS, CLONE_NEWUSER, MS_BIND = 0x00020000, 0x10000000, 0x1000


def own_namespace_with_a_mount(u, outside):
    """In the racer's own user and mount namespace, `outside` is bind-mounted
    over u/d; the racer removes the socket through a directory fd it opened
    before (the host's u/d), so the agent sees a loss in a namespace where
    u/d is something else."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    # setresuid() made the process undumpable, and its /proc files root's
    libc.prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare")
    for name, text in (("setgroups", "deny"), ("uid_map", "0 %d 1" % NOBODY),
                       ("gid_map", "0 %d 1" % NOBODY)):
        with open("/proc/self/" + name, "w") as f:
            f.write(text)
    if libc.mount(b"none", b"/", None, 0x40000 | 0x4000, None) != 0:  # MS_PRIVATE|MS_REC
        raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
    if libc.mount(outside.encode(), os.path.join(u, "d").encode(), None, MS_BIND, None) != 0:
        raise OSError(ctypes.get_errno(), "mount --bind")


class Watcher(threading.Thread):
    """Looks at `outside` and `victim` until stopped; remembers what it saw."""

    def __init__(self, outside, victim):
        super().__init__(daemon=True)
        self.outside, self.victim = outside, victim
        st = os.lstat(victim)
        self.victim_was = (st.st_uid, st.st_gid, st.st_mode, st.st_ino)
        self.seen = set()
        self.victim_changed = None
        self.looks = 0
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            self.seen.update(os.listdir(self.outside))
            st = os.lstat(self.victim)
            if (st.st_uid, st.st_gid, st.st_mode, st.st_ino) != self.victim_was:
                self.victim_changed = (st.st_uid, st.st_gid, oct(st.st_mode))
            self.looks += 1

    def stop(self):
        self.done.set()
        self.join()
        self.run_once()

    def run_once(self):
        self.done.set()
        self.seen.update(os.listdir(self.outside))


def layout(scratch):
    os.chmod(scratch, 0o755)
    outside = os.path.join(scratch, "outside")
    victim = os.path.join(scratch, "victim")
    u = os.path.join(scratch, "u")
    os.mkdir(outside, 0o755)
    with open(victim, "w") as f:
        f.write("root's\n")
    os.chmod(victim, 0o600)
    os.mkdir(u, 0o755)
    os.mkdir(os.path.join(u, "d"), 0o755)
    for p in (u, os.path.join(u, "d")):
        os.chown(p, NOBODY, NOBODY)
    return outside, victim, u, os.path.join(u, "d", "app.sock")


def server(scratch, path, heal):
    """A root server in C (a python one would share its executable with the
    racer, and the agent stands down for a program's own instance): plain
    for the guard link, examples/echo_server registered with heal fd. Its
    socket is made 0777 (umask 0) so the racer can tell it is served; its
    output goes to a file, thousands of adoptions would fill a pipe."""
    out = os.path.join(scratch, "server.out")
    args = [PLAIN, path] if heal == "link" else [ECHO, path, "--heal", "fd"]
    with open(out, "wb") as f:
        p = subprocess.Popen(args, stdout=f, stderr=subprocess.DEVNULL,
                             preexec_fn=lambda: os.umask(0))
    LIVE.append(p)

    def ready():
        assert p.poll() is None, "the server exited with %s" % p.returncode
        with open(out, "rb") as f:
            return f.read().startswith(b"ready")
    wait_until(ready, what="the server ready")
    return p


def as_nobody():
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)


def race(mode, u, outside, victim, rounds):
    """The racer, forked and made uid 65534 (the test's interpreter may sit
    where that user cannot exec it); its stats, through a pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.dup2(w, 1)
            dfd = os.open(os.path.join(u, "d"), os.O_RDONLY | os.O_DIRECTORY)
            as_nobody()
            if mode == "bind_mount":
                own_namespace_with_a_mount(u, outside)
            sys.argv = ["racer", mode, u, outside, victim, str(rounds), str(ROUND_WAIT_S),
                        str(dfd)]
            exec(compile(RACER, "racer", "exec"), {"__name__": "racer"})
            os._exit(0)
        except BaseException as e:  # noqa: B036 - the parent reports anything
            os.write(2, ("racer: %r\n" % e).encode())
            os._exit(1)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the racer failed: %r" % out
    return json.loads(out)


def nothing_outside(scratch, u, watcher):
    assert not watcher.seen, "the agent put %s in %s" % (sorted(watcher.seen), watcher.outside)
    assert watcher.victim_changed is None, "root's file changed: %s" % (watcher.victim_changed,)
    stray = set(os.listdir(scratch)) - {"outside", "victim", "u", "events.jsonl",
                                        "agent.stderr", "server.out"}
    assert not stray, "beside the user's directory: %s" % sorted(stray)
    st = os.lstat(os.path.join(u, "d"))
    # the agent re-makes a missing directory with its recorded owner; one
    # its owner put back meanwhile is never taken from them
    assert stat.S_ISDIR(st.st_mode) and st.st_uid == NOBODY, \
        "u/d is no longer the user's: uid %d mode %o" % (st.st_uid, st.st_mode)
    left = set(os.listdir(u)) - {"d"}
    assert not left, "the racer's own leftovers or the agent's in %s: %s" % (u, sorted(left))


def heal_outcomes(agent, path):
    n = {}
    for e in agent.find(path=path):
        if e["event"] in ("rebind_succeeded", "rebind_failed", "rebind_skipped"):
            key = e["event"] + ":" + e.get("reason", e.get("how", ""))
            n[key] = n.get(key, 0) + 1
    return n


def racer_test(scratch, mode, heal, rounds=ROUNDS):
    outside, victim, u, path = layout(scratch)
    guard_args = [] if heal == "link" else ["--no-guard"]
    agent = Agent(scratch, "--heal-delay", "0", "--flap-max", "0", "--reconcile", "60",
                  *guard_args)
    srv = server(scratch, path, heal)
    watcher = Watcher(outside, victim)
    try:
        if heal == "link":
            wait_guard(path)
        else:
            agent.wait_event("target_registered", path=path)
        watcher.start()
        stats = race(mode, u, outside, victim, rounds)
        watcher.stop()
        wait_until(lambda: connect_errno(path) == 0, timeout=90, what=path + " served at the end")
        # a server listens on an fd heal's socket before the agent hears
        # `adopted` and says rebind_succeeded: the last one may be on its way
        try:
            wait_until(lambda: heal_outcomes(agent, path).get("rebind_succeeded:" + heal, 0)
                       >= rounds, timeout=30, what="a rebind_succeeded per round")
        except AssertionError:
            pass  # the assertion below tells what came
        outcomes = heal_outcomes(agent, path)
        print("  %s/%s: %s; heals %s; %d looks outside" % (mode, heal, stats, outcomes,
                                                           watcher.looks))
        nothing_outside(scratch, u, watcher)
        assert stats["rounds"] == rounds and stats["swaps"] > 0, stats
        # every round's loss was healed; a round that waited past its bound
        # (an agent that gave up) shows here
        assert stats["late"] == 0, stats
        assert outcomes.get("rebind_succeeded:" + heal, 0) >= rounds, outcomes
        assert agent.proc.poll() is None
    finally:
        watcher.run_once()
        srv.kill()
        srv.wait()
        agent.stop()


@test
def racer_symlink_swap_link_heal(scratch):
    """The socket's directory swapped for a link to `outside` around each
    heal through the guard link: the agent's walk never follows it, its link
    never lands there, and every loss is healed once the directory is back."""
    racer_test(scratch, "symlink", "link")


@test
def racer_bind_mount_in_own_namespace(scratch):
    """In the racer's own user and mount namespace, `outside` is mounted over
    the socket's directory and the socket removed through a directory fd: the
    agent heals the host's path, in the host's namespace, and nothing reaches
    `outside` (which the mount made the racer's view of u/d)."""
    racer_test(scratch, "bind_mount", "link")


@test
def racer_symlink_swap_fd_heal(scratch):
    """The same swaps around heals through a registered server's fd: the
    agent's bind runs as the directory's owner, so through the link it meets
    root's directory and is refused; a socket it bound anywhere but the
    walked directory is discarded there, never by name."""
    racer_test(scratch, "symlink", "fd")


@test
def racer_rename_and_replace(scratch):
    """The directory renamed away and a new one of the user's put in its
    place, around each heal through the guard link: the link lands in one of
    the user's two directories, never elsewhere, and every loss is healed."""
    # each swap is healed into one directory or the other: 12 heals a round
    racer_test(scratch, "replace", "link", rounds=max(ROUNDS // 4, 1))
