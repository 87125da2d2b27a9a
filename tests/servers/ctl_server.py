#!/usr/bin/env python3
"""A server that speaks the control protocol itself (docs/protocol.md), written
independently of libsockwarden so the tests check the agent against the spec,
and so it can misbehave on purpose.

    ctl_server.py PATH [--heal fd|notify|none] [--on-rebind adopt|exit|ignore|selfbind]
                       [--register-path P] [--send-fd none|listening|unbound|two]
                       [--control ADDR] [--no-listen] [--user U:G] [--file-owner U:G] [--drop U:G]

It binds and listens on PATH, echoes every connection on every listener it
holds, registers PATH, and reports what it receives on stdout, one JSON object
per line: {"got": <message>} for every agent message, {"ready": pid} once the
registration is answered, {"adopted": seq} after answering a rebind.
Commands on stdin, one per line: "unregister", "close" (the control fd only),
"exit", "raw <json>" (sends
the bytes as they are).
"""
import argparse
import json
import os
import selectors
import socket
import sys


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--heal", default="fd")
    ap.add_argument("--on-rebind", default="adopt")
    ap.add_argument("--register-path")
    ap.add_argument("--send-fd", default="listening")
    ap.add_argument("--control", default="\0sockwarden")
    ap.add_argument("--no-listen", action="store_true")
    ap.add_argument("--user", help="UID:GID to run as from the start")
    ap.add_argument("--file-owner", help="UID:GID to chown the socket file to")
    ap.add_argument("--drop", help="UID:GID to become after binding")
    a = ap.parse_args()

    def become(ug):
        uid, gid = (int(x) for x in ug.split(":"))
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)

    if a.user:
        become(a.user)

    lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lst.bind(a.path)
    if not a.no_listen:
        lst.listen(64)
    lst.setblocking(False)
    if a.file_owner:
        os.chown(a.path, *(int(x) for x in a.file_owner.split(":")))
    if a.drop:
        become(a.drop)

    ctl = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ctl.connect(a.control)

    sel = selectors.DefaultSelector()
    if not a.no_listen:
        sel.register(lst, selectors.EVENT_READ, "listener")
    sel.register(ctl, selectors.EVENT_READ, "control")
    sel.register(sys.stdin, selectors.EVENT_READ, "stdin")

    def send(msg, fds=()):
        data = json.dumps(msg).encode() if not isinstance(msg, bytes) else msg
        if fds:
            socket.send_fds(ctl, [data], list(fds))
        else:
            ctl.send(data)

    reg = {"op": "register", "path": a.register_path or a.path, "heal": a.heal}
    if a.send_fd == "listening":
        send(reg, [lst.fileno()])
    elif a.send_fd == "two":
        send(reg, [lst.fileno(), lst.fileno()])
    elif a.send_fd == "unbound":
        u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        send(reg, [u.fileno()])
        u.close()
    else:
        send(reg)

    while True:
        for key, _ in sel.select():
            what = key.data
            if what == "listener":
                try:
                    c, _ = key.fileobj.accept()
                except BlockingIOError:
                    continue
                c.setblocking(False)
                sel.register(c, selectors.EVENT_READ, "conn")
            elif what == "conn":
                try:
                    data = key.fileobj.recv(4096)
                except ConnectionError:
                    data = b""
                if not data:
                    sel.unregister(key.fileobj)
                    key.fileobj.close()
                else:
                    key.fileobj.sendall(data)
            elif what == "stdin":
                line = sys.stdin.readline()
                if not line or line.strip() == "exit":
                    os._exit(0)
                cmd = line.strip()
                if cmd == "unregister":
                    send({"op": "unregister", "path": a.path})
                elif cmd == "close":
                    sel.unregister(ctl)
                    ctl.close()
                    out({"closed": True})
                elif cmd.startswith("raw "):
                    send(cmd[4:].encode())
            elif what == "control":
                try:
                    data, fds, _, _ = socket.recv_fds(ctl, 8192, 4)
                except ConnectionError:
                    data, fds = b"", []
                if not data:
                    out({"control_closed": True})
                    sel.unregister(ctl)
                    continue
                msg = json.loads(data)
                out({"got": msg, "fds": len(fds)})
                op = msg.get("op")
                if op == "registered":
                    out({"ready": os.getpid()})
                elif op == "rebind":
                    if a.on_rebind == "exit":
                        os._exit(3)
                    if a.on_rebind == "ignore":
                        for fd in fds:
                            os.close(fd)
                        continue
                    if a.on_rebind == "selfbind":
                        # binds the path by itself and never answers
                        for fd in fds:
                            os.close(fd)
                        try:
                            os.unlink(a.path)
                        except FileNotFoundError:
                            pass
                        n = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                        n.bind(a.path)
                        n.listen(64)
                        n.setblocking(False)
                        sel.register(n, selectors.EVENT_READ, "listener")
                        out({"selfbound": True})
                        continue
                    if fds:
                        n = socket.socket(fileno=fds[0])
                        for fd in fds[1:]:
                            os.close(fd)
                    else:
                        n = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                        n.bind(a.path)
                    n.listen(64)
                    n.setblocking(False)
                    sel.register(n, selectors.EVENT_READ, "listener")
                    send({"op": "adopted", "path": msg["path"], "seq": msg["seq"]})
                    out({"adopted": msg["seq"]})
                else:
                    for fd in fds:
                        os.close(fd)


if __name__ == "__main__":
    main()
