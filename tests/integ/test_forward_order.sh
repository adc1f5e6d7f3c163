#!/usr/bin/env bash
# `migrelay forward` keeps the destination's connection order equal to its
# own accept order across session rollovers, by the server's OPENED
# (PROTOCOL.md §5.1), even for streams that send nothing (a QEMU main
# migration channel waits for the destination before it says anything):
#   - serve --max-streams 2 forces a rollover every 2 connections; 9
#     connections are opened one after the other and stay silent until the
#     destination has accepted all 9; only then does each send its number
#     (in reverse order); the destination's accept order must be 0..8;
#   - each rollover is logged at info, and no warning is logged: the forward
#     never had to fall back to waiting for data;
#   - against a server of revision 1.1 (MIGRELAY_WIRE_REVISION=1.1, which
#     refuses the HELLO flag it does not know), the forward asks again
#     without OPEN acknowledgements and works as before: every stream
#     verified, the order best effort with its warnings;
#   - a previous stream that the destination cannot connect (its target's
#     backlog is full: it fails after 10 s) holds the next connection until
#     it has failed; then the forward says why and goes on.
. "$(dirname "$0")/lib.sh"
mr_setup
mr_pki

# silent_client SOCK N ACCEPTLOG: N connections to SOCK one after the other,
# all silent until ACCEPTLOG shows N accepts at the destination; then each
# sends "conn I" (the last first) and 64 KiB, and must get all of it back.
silent_client() {
	python3 - "$@" <<'PY'
import os, socket, sys, time
path, n, alog = sys.argv[1], int(sys.argv[2]), sys.argv[3]
conns = []
for i in range(n):
    s = socket.socket(socket.AF_UNIX); s.connect(path); s.settimeout(60)
    conns.append(s)
deadline = time.time() + 60
while time.time() < deadline:
    if sum(1 for l in open(alog) if l.startswith("accept ")) >= n:
        break
    time.sleep(0.05)
else:
    sys.exit("the destination accepted fewer than %d silent connections in 60 s" % n)
for i in reversed(range(n)):
    data = b"conn %d\n" % i + os.urandom(65536)
    s = conns[i]
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        b = s.recv(1 << 16)
        if not b:
            break
        got += b
    if got != data:
        sys.exit("conn %d: %d bytes came back, not the %d sent" % (i, len(got), len(data)))
    s.close()
PY
}

# 1. A server of this revision: OPENED keeps the order exact.
port=$(mr_free_port)
mr_order_echo "$T/ord.sock" "$T/ord.txt"
mr_serve "$port" --tls-dir "$T/srv" --target "ord=unix:$T/ord.sock" --max-streams 2
"$MIGRELAY" forward --listen "unix:$T/o.sock=ord" --to "127.0.0.1:$port" --tls-dir "$T/cli" --connections 2 \
	2>"$T/fwd.log" &
MR_PIDS+=($!)
FWD_PID=$!
mr_wait_file "$T/o.sock" 10 || { cat "$T/fwd.log"; fail "forward did not listen"; }
silent_client "$T/o.sock" 9 "$T/ord.txt" || fail "client"
got=$(grep -v '^accept' "$T/ord.txt" | sort -n | awk '{print $3}' | tr '\n' ' ')
[ "$got" = "$(seq 0 8 | tr '\n' ' ')" ] || fail "the destination accepted the connections in the order '$got'"
ok "9 silent connections over sessions of 2 streams: the destination accepted them in accept order"

n=$(grep -c "has 2 streams open, the server's --max-streams" "$T/fwd.log" || true)
[ "$n" = 4 ] || fail "$n rollovers for --max-streams logged, want 4"
n=$(grep -cE "info: .*connection [0-9]+ opens session [0-9a-f]+ after the destination connected stream 1 of session" \
	"$T/fwd.log" || true)
[ "$n" = 4 ] || fail "$n lines saying a new session waited for the previous stream's OPENED, want 4"
mr_wait_log "$T/fwd.log" "migration 1 \(target ord\): done: 9 stream\(s\)" 10 || fail "no migration line for the 9 streams"
! grep -Ei "error|warn" "$T/fwd.log" "$T/serve-$port.log" | grep -v "closed the connection during the TLS handshake" ||
	fail "an error or a warning was logged"
ok "4 rollovers logged at info, each after the previous stream's OPENED; no warning on either end"
kill -TERM "$FWD_PID"
wait "$FWD_PID" || fail "forward exited $? after SIGTERM"

# 2. A server of revision 1.1: no OPENED; the forward falls back to its best effort.
port2=$(mr_free_port)
mr_order_echo "$T/ord2.sock" "$T/ord2.txt"
MIGRELAY_WIRE_REVISION=1.1 mr_serve "$port2" --tls-dir "$T/srv" --target "ord=unix:$T/ord2.sock" --max-streams 2
"$MIGRELAY" forward --listen "unix:$T/o2.sock=ord" --to "127.0.0.1:$port2" --tls-dir "$T/cli" 2>"$T/fwd2.log" &
MR_PIDS+=($!)
FWD_PID=$!
mr_wait_file "$T/o2.sock" 10 || { cat "$T/fwd2.log"; fail "forward did not listen"; }
grep -q "does not acknowledge stream opens (a migrelay before protocol revision 1.2)" "$T/fwd2.log" ||
	fail "the forward did not say that the order is best effort with this server"
grep -q "refused: malformed HELLO" "$T/serve-$port2.log" || fail "the revision 1.1 server did not refuse the OPENED flag"
silent_client "$T/o2.sock" 3 "$T/ord2.txt" || fail "client against the revision 1.1 server"
grep -q "shows no sign of stream 1 of session [0-9a-f]* after 5 s; opening the next stream in a new session anyway" \
	"$T/fwd2.log" || fail "no best-effort warning for the silent stream"
mr_wait_log "$T/fwd2.log" "migration 1 \(target ord\): done: 3 stream\(s\)" 10 || fail "no migration line for the 3 streams"
! grep -i "error" "$T/fwd2.log" "$T/serve-$port2.log" || fail "an error was logged with the revision 1.1 server"
ok "revision 1.1 server: asked again without OPENED, 3 streams verified, best effort with its warning"
kill -TERM "$FWD_PID"
wait "$FWD_PID" || fail "forward exited $? after SIGTERM"

# 3. The previous stream fails before it is connected: the next one waits for
# that, then goes on, and the forward says why. The target's backlog is full
# (one connection pending, none accepted) until the test lets it accept.
port3=$(mr_free_port)
python3 - "$T/stall.sock" "$T/go" <<'PY' &
import os, socket, sys, threading, time
path, go = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX)
s.bind(path); s.listen(0)
hold = socket.socket(socket.AF_UNIX); hold.connect(path)  # fills the backlog
deadline = time.time() + 120
while not os.path.exists(go) and time.time() < deadline:
    time.sleep(0.05)
def echo(c):
    while True:
        b = c.recv(65536)
        if not b:
            break
        c.sendall(b)
    c.shutdown(socket.SHUT_WR)
while True:
    c, _ = s.accept()
    threading.Thread(target=echo, args=(c,), daemon=True).start()
PY
MR_PIDS+=($!)
mr_wait_file "$T/stall.sock" 10 || fail "stalled target did not start"
mr_serve "$port3" --tls-dir "$T/srv" --target "stall=unix:$T/stall.sock" --max-streams 1
"$MIGRELAY" forward --listen "unix:$T/o3.sock=stall" --to "127.0.0.1:$port3" --tls-dir "$T/cli" 2>"$T/fwd3.log" &
MR_PIDS+=($!)
FWD_PID=$!
mr_wait_file "$T/o3.sock" 10 || { cat "$T/fwd3.log"; fail "forward did not listen"; }
python3 - "$T/o3.sock" "$T/go" "$T/fwd3.log" <<'PY' || fail "client of the stalled target"
import os, re, socket, sys, time
path, go, log = sys.argv[1:4]
a = socket.socket(socket.AF_UNIX); a.connect(path); a.settimeout(60)
b = socket.socket(socket.AF_UNIX); b.connect(path); b.settimeout(60)
deadline = time.time() + 60
while time.time() < deadline and "ended before the destination connected it" not in open(log).read():
    time.sleep(0.05)
open(go, "w").close()
# a's stream failed: the forward closes it
if a.recv(1) != b"":
    sys.exit("the failed stream's connection got bytes")
b.sendall(b"after the failure\n")
b.shutdown(socket.SHUT_WR)
got = b""
while True:
    x = b.recv(65536)
    if not x:
        break
    got += x
if got != b"after the failure\n":
    sys.exit("the next stream echoed %r" % got)
PY
grep -qE "warning: .*stream 0 of session [0-9a-f]+ ended before the destination connected it \(.*target stall: cannot connect to its socket: it accepted no connection within 10 s\); connection 2 opens session" \
	"$T/fwd3.log" || fail "the forward did not say why it went on"
grep -qE "info: .*opens session .*after the destination connected" "$T/fwd3.log" &&
	fail "a stream that was never connected counted as connected"
ok "a previous stream that failed unconnected: the next one waited for the failure, went on, and the forward said why"
kill -TERM "$FWD_PID"
wait "$FWD_PID" || fail "forward exited $? after SIGTERM"
