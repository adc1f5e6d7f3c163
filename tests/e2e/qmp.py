#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A small QMP client for the e2e tests (standard library only).

  qmp.py SOCKET COMMAND [JSON_ARGS]
      Runs one command and prints its "return" value as JSON. Exits 1 with
      QEMU's "Class: description" on stderr when QEMU refuses it.
  qmp.py SOCKET --wait-migration SECONDS [STATUS]
      Polls query-migrate until the status is completed or STATUS (exit 0),
      failed or cancelled (exit 1; the error-desc is printed), or SECONDS
      pass (exit 2). Prints the last query-migrate reply.
  qmp.py SOCKET --wait-job JOB ready|gone SECONDS
      Polls query-block-jobs until block job JOB is ready, or no longer
      listed (exit 0), or SECONDS pass (exit 2).
  qmp.py SOCKET --wait-status STATUS SECONDS
      Polls query-status until the run state is STATUS (exit 0) or SECONDS
      pass (exit 2).

Options before SOCKET: --timeout SECONDS (connect and each reply, default 60).
Exit 3 means the monitor could not be reached or broke the protocol.
"""

import json
import socket
import sys
import time

MAX_MSG = 16 << 20  # bytes of one message from QEMU


class QMPError(Exception):
    """QEMU refused a command."""


class ProtocolError(Exception):
    """The monitor is gone or sent something that is not QMP."""


class QMP:
    def __init__(self, path, timeout):
        self.timeout = timeout
        self.buf = b""
        self.next_id = 1
        self.dec = json.JSONDecoder()
        deadline = time.monotonic() + timeout
        while True:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self.sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                self.sock.close()
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)
        greeting = self._read(deadline)
        if "QMP" not in greeting:
            raise ProtocolError("the socket does not greet like QMP")
        self.cmd("qmp_capabilities")

    def _read(self, deadline):
        """Returns the next JSON object from the monitor."""
        while True:
            # QEMU escapes everything beyond ASCII, so latin-1 keeps offsets in bytes
            text = self.buf.lstrip().decode("latin-1")
            if text:
                try:
                    obj, end = self.dec.raw_decode(text)
                except ValueError:
                    obj = None
                if obj is not None:
                    self.buf = text[end:].encode("latin-1")
                    if not isinstance(obj, dict):
                        raise ProtocolError("QEMU sent a non-object")
                    return obj
            if len(self.buf) > MAX_MSG:
                raise ProtocolError("message from QEMU exceeds %d bytes" % MAX_MSG)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no reply from QEMU in time")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ProtocolError("QEMU closed the monitor")
            self.buf += chunk

    def cmd(self, name, args=None):
        """Runs one command; returns its "return" value or raises QMPError with QEMU's text."""
        msg = {"execute": name, "id": self.next_id}
        self.next_id += 1
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode("utf-8"))
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read(deadline)
            if "event" in reply:
                continue
            if reply.get("id", msg["id"]) != msg["id"]:
                continue
            if "error" in reply:
                e = reply["error"]
                raise QMPError("%s: %s" % (e.get("class", "Error"), e.get("desc", "")))
            return reply.get("return")


def main(argv):
    timeout = 60.0
    while argv and argv[0].startswith("--"):
        if argv[0] == "--timeout" and len(argv) > 1:
            timeout = float(argv[1])
            argv = argv[2:]
        else:
            break
    if len(argv) < 2:
        sys.stderr.write(__doc__)
        return 3
    path, what = argv[0], argv[1]
    try:
        q = QMP(path, timeout)
        if what == "--wait-migration":
            deadline = time.monotonic() + float(argv[2])
            want = argv[3] if len(argv) > 3 else "completed"
            while True:
                r = q.cmd("query-migrate")
                st = r.get("status", "none")
                if st == want:
                    print(json.dumps(r))
                    return 0
                if st in ("completed", "failed", "cancelled"):
                    print(json.dumps(r))
                    if st != "completed":
                        sys.stderr.write("migration %s: %s\n" % (st, r.get("error-desc", "")))
                        return 1
                    return 0
                if time.monotonic() >= deadline:
                    print(json.dumps(r))
                    sys.stderr.write("migration still %s after %s s\n" % (st, argv[2]))
                    return 2
                time.sleep(0.1)
        if what == "--wait-job":
            job, want, deadline = argv[2], argv[3], time.monotonic() + float(argv[4])
            while True:
                jobs = [j for j in q.cmd("query-block-jobs") if j.get("device") == job]
                if want == "gone" and not jobs:
                    return 0
                if want == "ready" and jobs and jobs[0].get("ready"):
                    return 0
                if jobs and jobs[0].get("error"):
                    sys.stderr.write("block job %s: %s\n" % (job, jobs[0]["error"]))
                    return 1
                if time.monotonic() >= deadline:
                    sys.stderr.write("block job %s not %s after %s s: %s\n" % (job, want, argv[4], jobs))
                    return 2
                time.sleep(0.1)
        if what == "--wait-status":
            want, deadline = argv[2], time.monotonic() + float(argv[3])
            while True:
                st = q.cmd("query-status").get("status")
                if st == want:
                    return 0
                if time.monotonic() >= deadline:
                    sys.stderr.write("run state still %s, not %s\n" % (st, want))
                    return 2
                time.sleep(0.1)
        args = json.loads(argv[2]) if len(argv) > 2 else None
        print(json.dumps(q.cmd(what, args)))
        return 0
    except QMPError as e:
        sys.stderr.write("%s\n" % e)
        return 1
    except (ProtocolError, OSError, TimeoutError, ValueError) as e:
        sys.stderr.write("qmp %s: %s\n" % (path, e))
        return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
