#!/usr/bin/env python3
"""Runs every integration test: `python3 tests/integration/run.py [NAME...]`."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import test_detect  # noqa: E402,F401
import test_connect  # noqa: E402,F401
import test_heal  # noqa: E402,F401
import test_uring  # noqa: E402,F401
import test_control  # noqa: E402,F401
import test_report  # noqa: E402,F401
import test_operate  # noqa: E402,F401
import test_install  # noqa: E402,F401
import test_hostile  # noqa: E402,F401
import test_faults  # noqa: E402,F401
import test_stall  # noqa: E402,F401
import test_privilege  # noqa: E402,F401


def private_namespaces():
    """Runs the tests in network and mount namespaces of their own.

    The control socket @sockwarden is an abstract name, and abstract names
    belong to a network namespace, so an agent running elsewhere on the host
    (a developer's, a deployed one, another test run's) cannot collide with
    the agents under test, nor see or heal their servers: its sock_diag does
    not see this namespace's sockets.

    /tmp and /run are fresh tmpfs mounts in a private mount namespace. An
    agent prunes guard links of listeners it cannot see, and another
    namespace's listeners are invisible to it, so two runs sharing a mount
    would prune each other's guards; /run holds the fixed control path
    /run/sockwarden/control.sock and the journal socket the tests fake."""
    if os.geteuid() != 0 or os.environ.get("SW_TEST_NETNS") == "1":
        return
    os.environ["SW_TEST_NETNS"] = "1"
    os.execvp("unshare", ["unshare", "--net", "--mount", "--propagation", "private",
                          "--", sys.executable] + sys.argv)


def private_mounts():
    import subprocess
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for d in ("/tmp", "/run"):
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=1777", "sw-test", d], check=True)


if __name__ == "__main__":
    private_namespaces()
    if os.environ.get("SW_TEST_NETNS") == "1":
        private_mounts()
    sys.exit(harness.main())
