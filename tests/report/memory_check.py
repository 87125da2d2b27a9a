#!/usr/bin/env python3
"""`sockwarden report` streams: its memory does not grow with the events.

    memory_check.py SOCKWARDEN [--events N] [--limit-mib M]

Generates a journal of N events (default 200,000; gen_journal.py, in this
process, so nothing else is measured), then runs `SOCKWARDEN report` on it
twice: the text report from the FILE (read in place), and --json from a pipe
(spooled to a temporary file). Each run must exit 0, say it read every event,
and keep its peak resident set size (the child's own ru_maxrss, from wait4)
under M MiB (default 64). Held whole, such a journal took 1.1 GB; streamed, it
takes about 13 MiB, so the limit is no measure of speed or load. The figure is
an upper bound: a child's ru_maxrss also counts the pages of the Python that
forked it (about 15 MiB) before it became sockwarden.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ left in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_journal  # noqa: E402


def run(argv, stdin, out_path):
    """Runs argv, its stdout to out_path; returns (exit status, peak RSS KiB)."""
    with open(out_path, "wb") as out:
        p = subprocess.Popen(argv, stdin=stdin, stdout=out, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        err = p.stderr.read().decode(errors="replace")
        p.stderr.close()
    if err:
        sys.stderr.write(err)
    return p.returncode, usage.ru_maxrss  # KiB on Linux


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sockwarden")
    ap.add_argument("--events", type=int, default=200000)
    ap.add_argument("--limit-mib", type=float, default=64)
    args = ap.parse_args()
    failed = []
    with tempfile.TemporaryDirectory(prefix="sw-report-mem-") as d:
        journal = os.path.join(d, "events.jsonl")
        with open(journal, "w") as f:
            gen_journal.generate(f, events=args.events)
        with open(journal, "rb") as f:
            lines = sum(1 for line in f if line.strip())
        text_out, json_out = os.path.join(d, "report.txt"), os.path.join(d, "report.json")

        rc, text_kib = run([args.sockwarden, "report", journal], subprocess.DEVNULL, text_out)
        with open(text_out) as f:
            head = f.readline()
        if rc != 0 or (" %d events from " % lines) not in head:
            failed.append("text report: exit %d, first line %r" % (rc, head[:200]))

        cat = subprocess.Popen(["cat", journal], stdout=subprocess.PIPE)
        rc, json_kib = run([args.sockwarden, "report", "--json"], cat.stdout, json_out)
        cat.stdout.close()
        cat.wait()
        try:
            with open(json_out) as f:
                model = json.load(f)
            if rc != 0 or model["events"] != lines or model["skipped_lines"] != 0:
                failed.append("--json report: exit %d, %s events of %d" %
                              (rc, model.get("events"), lines))
        except ValueError as e:
            failed.append("--json report: exit %d, not JSON: %s" % (rc, e))

        limit_kib = args.limit_mib * 1024
        for what, kib in (("text, from the file", text_kib), ("--json, from a pipe", json_kib)):
            print("report memory: %d events, %s: peak RSS %.1f MiB (limit %g MiB)" %
                  (lines, what, kib / 1024, args.limit_mib))
            if kib >= limit_kib:
                failed.append("%s: peak RSS %.1f MiB, not under %g MiB" %
                              (what, kib / 1024, args.limit_mib))
    for f in failed:
        print("report memory: FAIL: " + f, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
