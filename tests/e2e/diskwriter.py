#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes to a running guest's disk while it is mirrored (e2e tests).

  diskwriter.py [--check-dst SOCKET NODE LOG] SRC_SOCKET QDEV SRC_LOG STOP OUT

Through the source QEMU's second monitor SRC_SOCKET, writes 64 KiB with a
changing pattern at 1 MiB .. 60 MiB of the disk of device QDEV (`qemu-io -d`,
through the device's own block backend as the guest's writes go: a write
straight to the node would be refused, the device does not share writing),
every 10 ms while the guest runs, until the file STOP exists, the guest stops
running (the switch-over: nothing may write behind the mirror then), or 60 s
pass. OUT.started is created after the third write.

With --check-dst: once a mirror job of migrelay's is listed on the source,
each write is read back at once on the destination QEMU's node NODE (its
second monitor SOCKET). With write-blocking mirrors a write completes only
once it is on the destination, so every such read must match.

QEMU 7.2 prints qemu-io's results on its standard output, not in the
monitor's reply: they are read from SRC_LOG and LOG (QEMU's output files),
and from the reply where a QEMU puts them there.

OUT gets one line: "WRITES ERRORS CHECKED MISMATCHES LAST_PROBLEM".
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qmp import QMP  # noqa: E402


def qemu_io(q, log, line):
    """One qemu-io command through the monitor; returns its reply and what QEMU printed meanwhile."""
    size = os.path.getsize(log)
    text = q.cmd("human-monitor-command", {"command-line": line}) or ""
    with open(log, "rb") as f:
        f.seek(size)
        return text + f.read().decode("latin-1")


def our_mirror(q):
    return any(j.get("device", "").startswith("migrelay-") for j in q.cmd("query-block-jobs"))


def main(argv):
    dst = node = dlog = None
    if argv[:1] == ["--check-dst"]:
        dst, node, dlog, argv = argv[1], argv[2], argv[3], argv[4:]
    src_path, qdev, slog, stop, out = argv
    src = QMP(src_path, 30)
    qd = QMP(dst, 30) if dst else None
    writes = errs = checked = bad = 0
    last = ""
    mirroring = False
    deadline = time.monotonic() + 60
    i = 0
    while not os.path.exists(stop) and time.monotonic() < deadline and errs < 20:
        if src.cmd("query-status").get("status") != "running":
            break
        if qd and not mirroring:
            mirroring = our_mirror(src)
        i += 1
        pat, off = 32 + i % 200, 1 + i % 60
        text = qemu_io(src, slog, 'qemu-io -d %s "write -P %d %dM 64k"' % (qdev, pat, off))
        if "wrote 65536/65536 bytes at offset %d" % (off << 20) not in text:
            errs += 1
            last = "write: " + text.strip()
            time.sleep(0.01)
            continue
        writes += 1
        if writes == 3:
            open(out + ".started", "w").close()
        if mirroring:
            text = qemu_io(qd, dlog, 'qemu-io %s "read -P %d %dM 64k"' % (node, pat, off))
            if "read 65536/65536 bytes at offset %d" % (off << 20) in text and "fail" not in text:
                checked += 1
            elif src.cmd("query-status").get("status") == "running":
                bad += 1
                last = "destination at %dM: %s" % (off, text.strip()[:120])
        time.sleep(0.01)
    with open(out, "w") as f:
        f.write("%d %d %d %d %s\n" % (writes, errs, checked, bad, last[:200].replace("\n", " ")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
