#!/usr/bin/env python3
"""Runs every integration test: `python3 tests/integration/run.py [NAME...]`."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import test_detect  # noqa: E402,F401
import test_connect  # noqa: E402,F401
import test_heal  # noqa: E402,F401
import test_control  # noqa: E402,F401
import test_report  # noqa: E402,F401
import test_operate  # noqa: E402,F401
import test_install  # noqa: E402,F401


def private_network():
    """Runs the tests in a network namespace of their own: the control socket
    @sockwarden is an abstract name, and abstract names belong to a network
    namespace, so an agent running elsewhere on the host (a developer's, a
    deployed one) cannot collide with the agents under test, nor see or heal
    their servers (its sock_diag does not see this namespace's sockets)."""
    if os.geteuid() != 0 or os.environ.get("SW_TEST_NETNS") == "1":
        return
    os.environ["SW_TEST_NETNS"] = "1"
    os.execvp("unshare", ["unshare", "--net", "--", sys.executable] + sys.argv)


if __name__ == "__main__":
    private_network()
    if os.environ.get("SW_TEST_NETNS") == "1":
        import subprocess
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    sys.exit(harness.main())
