#!/usr/bin/env python3
"""Baseline: probe-and-restart supervision, as a health check plus a process
supervisor does it. Every PERIOD seconds it connects to PATH; when that fails
it kills the server and starts it again (which re-creates the path). The
server's established connections die with it: that is the cost this baseline
reports, counted by the bench from its clients.

    supervisor.py PATH PERIOD_S -- SERVER ARGV...   prints "ready" and
    "restarted <n>" lines on stdout
"""
import os
import signal
import socket
import subprocess
import sys
import time


def probe(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def start(argv):
    p = subprocess.Popen(argv, stdout=subprocess.PIPE)
    p.stdout.readline()  # "ready"
    return p


def main():
    path, period = sys.argv[1], float(sys.argv[2])
    argv = sys.argv[sys.argv.index("--") + 1:]
    server = start(argv)
    print("ready", flush=True)
    restarts = 0
    signal.signal(signal.SIGTERM, lambda *a: (server.kill(), os._exit(0)))
    while True:
        time.sleep(period)
        if probe(path):
            continue
        server.kill()
        server.wait()
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        server = start(argv)
        restarts += 1
        print("restarted", restarts, flush=True)


if __name__ == "__main__":
    main()
