#!/usr/bin/env python3
"""A QMP server for setup tests: answers like a QEMU started with -incoming
defer and appends every command it gets to a log, so a test can tell what
reached "the QEMU".

  fakeqmp.py SOCKET LOG [--version MAJOR.MINOR] [--log-format names|json] [--answers FILE]

--log-format names  one command name a line (default)
--log-format json   {"execute": ..., "arguments": ...} a line
--answers FILE      a Python file defining answer(cmd, args): the value to
                    return, or None for the default (query-status says
                    "inmigrate", everything else returns {}); an Error(DESC)
                    (defined for that file) is answered as a QMP error
Runs until killed.
"""
import argparse, json, socket, threading

ap = argparse.ArgumentParser()
ap.add_argument("socket")
ap.add_argument("log")
ap.add_argument("--version", default="7.2")
ap.add_argument("--log-format", choices=("names", "json"), default="names")
ap.add_argument("--answers")
a = ap.parse_args()


class Error:
    """What answer() returns for a QMP error reply."""

    def __init__(self, desc, cls="GenericError"):
        self.desc, self.cls = desc, cls


custom = None
if a.answers:
    scope = {"Error": Error}
    with open(a.answers) as f:
        exec(compile(f.read(), a.answers, "exec"), scope)
    custom = scope["answer"]
major, minor = (int(x) for x in a.version.split("."))
greeting = {"QMP": {"version": {"qemu": {"major": major, "minor": minor, "micro": 0}}, "capabilities": []}}
log_lock = threading.Lock()


def answer(cmd, args):
    if custom:
        r = custom(cmd, args)
        if r is not None:
            return r
    return {"status": "inmigrate", "running": False} if cmd == "query-status" else {}


def serve(c):
    c.sendall((json.dumps(greeting) + "\r\n").encode())
    buf, dec = "", json.JSONDecoder()
    while True:
        b = c.recv(65536)
        if not b:
            return
        buf += b.decode(errors="replace")
        while True:
            buf = buf.lstrip()
            try:
                msg, n = dec.raw_decode(buf)
            except ValueError:
                break
            buf = buf[n:]
            cmd, args = msg.get("execute", "?"), msg.get("arguments")
            line = cmd if a.log_format == "names" else json.dumps({"execute": cmd, "arguments": args})
            with log_lock, open(a.log, "a") as f:
                f.write(line + "\n")
            r = answer(cmd, args or {})
            reply = {"error": {"class": r.cls, "desc": r.desc}} if isinstance(r, Error) else {"return": r}
            if "id" in msg:
                reply["id"] = msg["id"]
            c.sendall((json.dumps(reply) + "\r\n").encode())


s = socket.socket(socket.AF_UNIX)
s.bind(a.socket)
s.listen(16)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
