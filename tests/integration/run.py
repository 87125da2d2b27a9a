#!/usr/bin/env python3
"""Runs every integration test: `python3 tests/integration/run.py [NAME...]`."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import test_detect  # noqa: E402,F401
import test_connect  # noqa: E402,F401
import test_heal  # noqa: E402,F401
import test_discovery  # noqa: E402,F401
import test_uring  # noqa: E402,F401
import test_control  # noqa: E402,F401
import test_report  # noqa: E402,F401
import test_operate  # noqa: E402,F401
import test_install  # noqa: E402,F401
import test_hostile  # noqa: E402,F401
import test_faults  # noqa: E402,F401
import test_stall  # noqa: E402,F401
import test_privilege  # noqa: E402,F401
import test_load  # noqa: E402,F401
import test_namespaces  # noqa: E402,F401
import test_cli_namespaces  # noqa: E402,F401
import test_podman  # noqa: E402,F401
import test_reload  # noqa: E402,F401
import test_redirect  # noqa: E402,F401
import test_racers  # noqa: E402,F401


if __name__ == "__main__":
    harness.enter_private_namespaces("SW_TEST_NETNS")
    if os.environ.get("SW_TEST_NETNS") == "1":
        harness.private_mounts("sw-it")
    sys.exit(harness.main())
