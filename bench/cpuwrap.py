# SPDX-License-Identifier: MIT
"""Runs a command and writes the CPU seconds (user + system) it and all its
descendants used to a file when it ends: bench/compare's measure of a tunnel
end (stunnel, socat, ssh, sshd with its per-connection processes).

    python3 bench/cpuwrap.py OUT_FILE CMD [ARG...]

The wrapper makes itself the child subreaper, so descendants that outlive
their parent (sshd's session processes when the listener ends first) are
reaped here and counted too. SIGTERM and SIGINT are passed on to CMD. Once
CMD has ended, descendants still running get 2 s, then SIGKILL (by PID; they
are this wrapper's own). Exit status: CMD's, or 128 + its signal.
"""
import ctypes
import os
import resource
import signal
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def main():
    out, cmd = sys.argv[1], sys.argv[2:]
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(cmd[0], cmd)
        finally:
            os._exit(127)

    def forward(sig, _frame):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    while True:  # until CMD itself has ended
        try:
            p, st = os.wait()
        except ChildProcessError:
            break
        if p == pid:
            status = os.waitstatus_to_exitcode(st)
            break
    deadline = time.monotonic() + 2
    while True:  # the descendants it left, 2 s at most
        try:
            p, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if p:
            continue
        if time.monotonic() > deadline:
            for d in descendants():
                try:
                    os.kill(d, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            deadline = float("inf")
        time.sleep(0.05)
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out, "w") as fh:
        fh.write("%.3f\n" % (ru.ru_utime + ru.ru_stime))
    sys.exit(status if status >= 0 else 128 - status)


def descendants():
    """PIDs whose parent is this process (orphans reparented here included)."""
    me, found = os.getpid(), []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            stat = open("/proc/%s/stat" % p).read()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2:].split()[1]) == me:
            found.append(int(p))
    return found


if __name__ == "__main__":
    main()
