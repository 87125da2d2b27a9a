"""A real container runtime: podman 4.3 with runc, as Debian 12 ships them
(DESIGN §7), on the host only (make vmtest's VM has no runtime: vmtest.py's
HOST_ONLY_SUITES). Where podman is missing the tests skip, and fail under
CI=true, where `make deps` installs it."""
import os
import secrets
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import IN_CI, SERVER_PY, Agent, Skip, test, wait_until  # noqa: E402,F401
from test_namespaces import (assert_endpoint, assert_sane, ns_connect, ns_ino,  # noqa: E402
                             wait_ns_guard, wait_path_event)
from test_cli_namespaces import cli, cli_json, findings, in_ns  # noqa: E402


# ----- tests: a real container runtime -----

class Podman:
    """A podman container (runc: crun refuses the hybrid cgroup layout) with
    the host's root as its image (--rootfs /:O), a tmpfs at /run/app and
    socat listening at /run/app/app.sock."""

    def __init__(self, name, path="/run/app/app.sock"):
        self.name = name
        self.path = path
        r = self.podman("--runtime", "runc", "run", "-d", "--network", "none",
                        "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=20000:20000",
                        "--tmpfs", os.path.dirname(path), "--name", name, "--rootfs", "/:O",
                        "socat", "UNIX-LISTEN:%s,fork" % path, "EXEC:cat")
        self.id = self.inspect("{{.Id}}")
        assert len(self.id) == 64 and r.stdout.strip() == self.id, (self.id, r.stdout)
        self.pid = int(self.inspect("{{.State.Pid}}"))
        wait_until(lambda: os.path.lexists(self.root(path)), 30, "socat listening")
        self.mntns = ns_ino(self.pid, "mnt")
        self.netns = ns_ino(self.pid, "net")

    @staticmethod
    def podman(*args, check=True, timeout=120, input=None):
        r = subprocess.run(["podman"] + list(args), capture_output=True, text=True,
                           timeout=timeout, input=input)
        assert not check or r.returncode == 0, "podman %s: %s" % (" ".join(args), r.stderr)
        return r

    def inspect(self, fmt):
        return self.podman("inspect", "-f", fmt, self.name).stdout.strip()

    def root(self, path="/"):
        return "/proc/%d/root%s" % (self.pid, path)

    def exec(self, *argv, input=None, check=True):
        return self.podman("exec", "-i", self.name, *argv, input=input, check=check)

    def remove(self):
        self.podman("rm", "-f", "-t", "0", self.name, check=False)


@test
def podman_container(scratch):
    """(6) A real container: podman with runc, socat on the container's own
    tmpfs. The loss inside is reported with the container's id and runtime
    from its cgroup (/libpod_parent/libpod-ID here), healed inside; conmon's
    attach socket (bound through /proc/self/fd/N/attach) is never an
    endpoint."""
    if not (shutil.which("podman") and shutil.which("runc")):
        msg = "podman and runc are needed (Debian packages podman, runc)"
        if IN_CI:
            raise AssertionError(msg + ": CI=true on the host, where DESIGN §7 has them")
        raise Skip(msg)
    name = "swtest-" + secrets.token_hex(4)
    path = "/run/app/app.sock"
    agent = Agent(scratch)
    ctr = None
    try:
        ctr = Podman(name, path)
        assert ctr.mntns != ns_ino(os.getpid(), "mnt")
        wait_ns_guard(ctr.pid, path, timeout=15)
        assert ctr.exec("socat", "-", "UNIX-CONNECT:" + path, input="hi\n").stdout == "hi\n"
        ctr.exec("rm", path)
        lost = wait_path_event(agent, "socket_unlinked", path)
        assert_endpoint(lost, ctr)
        assert lost["container"]["id"] == ctr.id, lost
        assert lost["container"]["runtime"] == "podman", lost
        ok = wait_path_event(agent, "rebind_succeeded", path)
        assert_endpoint(ok, ctr)
        assert ok["how"] == "link" and ok["container"]["id"] == ctr.id, ok
        out = ctr.exec("socat", "-", "UNIX-CONNECT:" + path, input="back\n").stdout
        assert out == "back\n", out
        assert ns_connect(ctr.pid, path, root=True) == (0, ctr.pid)
        assert_sane(agent, [path])
    finally:
        if ctr:
            ctr.remove()
        else:
            Podman.podman("rm", "-f", "-t", "0", name, check=False)
        agent.stop()
    assert_sane(agent, [path])


def podman(*args, check=True):
    r = subprocess.run(["podman"] + list(args), capture_output=True, text=True,
                       timeout=120)
    assert not check or r.returncode == 0, "podman %s: %s" % (" ".join(args), r.stderr)
    return r


@test
def cli_ns_probe_and_doctor_name_the_container(scratch):
    """A real container (DESIGN §7: podman with runc, the host's root as its
    image): probe --pid and doctor name it by the id and runtime its cgroup
    gives."""
    if not (shutil.which("podman") and shutil.which("runc")):
        msg = "podman and runc are needed (Debian packages podman, runc)"
        if IN_CI:
            raise AssertionError(msg + ": CI=true on the host, where DESIGN §7 has them")
        raise Skip(msg)
    name = "swcli-" + secrets.token_hex(4)
    path = "/run/app/app.sock"
    try:
        podman("--runtime", "runc", "run", "-d", "--network", "none",
               "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=20000:20000",
               "--tmpfs", "/run/app", "--name", name, "--rootfs", "/:O",
               sys.executable, "-c", SERVER_PY, path)
        cid = podman("inspect", "-f", "{{.Id}}", name).stdout.strip()
        pid = int(podman("inspect", "-f", "{{.State.Pid}}", name).stdout.strip())
        # listening once a connect through its root is answered
        wait_until(lambda: harness.connect_errno("/proc/%d/root%s" % (pid, path)) == 0, 30,
                   "the container's server listening")
        rc, pr = cli_json("probe", path, "--pid", str(pid))
        assert rc == 0 and pr["connect"]["result"] == "ok", pr
        assert pr["container"] == {"id": cid, "runtime": "podman"}, pr
        assert pr["mntns"] == ns_ino(pid, "mnt") and pr["netns"] == ns_ino(pid, "net"), pr
        r = cli("probe", path, "--pid", str(pid))
        assert "container: %s (podman)" % cid[:12] in r.stdout, r.stdout

        _, doc = cli_json("doctor")
        assert not findings(doc, path), doc
        # conmon binds its attach socket through /proc/self/fd/N/attach
        assert not [x for x in doc["problems"] if x["path"].startswith("/proc/")], doc
        in_ns(pid, "rm", path)
        _, doc = cli_json("doctor")
        hits = [x for x in findings(doc, path) if x.get("mntns") == ns_ino(pid, "mnt")]
        assert len(hits) == 1 and hits[0]["problem"] == "orphaned_listener", doc
        assert hits[0]["container"] == {"id": cid, "runtime": "podman"}, hits
        r = cli("doctor")
        line = [ln for ln in r.stdout.splitlines() if path in ln and cid[:12] in ln]
        assert line and "namespace mnt:[%d]" % ns_ino(pid, "mnt") in line[0], r.stdout
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)


if __name__ == "__main__":
    harness.enter_private_namespaces("SW_TEST_NETNS")
    if os.environ.get("SW_TEST_NETNS") == "1":
        harness.private_mounts("sw-it")
    sys.exit(harness.main())
