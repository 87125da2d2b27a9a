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

if __name__ == "__main__":
    sys.exit(harness.main())
