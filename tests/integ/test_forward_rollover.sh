#!/usr/bin/env bash
# `migrelay forward` as a long-lived service, without QEMU: one forward with
# two socket paths (--listen unix:PATH=TARGET twice), each to its own echo
# server behind a default serve (--max-streams 8).
#   - long-lived connections opened first keep echoing byte-exact while more
#     than 64 further connections go through the same path: the session's
#     stream ids run out, the path rolls over to a new session, and the old
#     one closes only when the long-lived streams end, more than 30 s later;
#   - a burst of 24 connections open at once (3 x --max-streams) spreads over
#     new sessions, and the destination accepts them in the order the forward
#     accepted them;
#   - the other path carries its own streams to its own target meanwhile;
#   - the sockets are 0600 under umask 000, or --socket-mode;
#   - every stream has an outcome line on both ends, no error anywhere.
. "$(dirname "$0")/lib.sh"
mr_setup
mr_pki
port=$(mr_free_port)

mr_order_echo "$T/echo-a.sock" "$T/order-a.txt"
mr_order_echo "$T/echo-b.sock" "$T/order-b.txt"
mr_serve "$port" --tls-dir "$T/srv" --target "ea=unix:$T/echo-a.sock" --target "eb=unix:$T/echo-b.sock" -v
(umask 000 && exec "$MIGRELAY" forward --listen "unix:$T/a.sock=ea" --listen "unix:$T/b.sock=eb" \
	--to "127.0.0.1:$port" --tls-dir "$T/cli" --connections 2 2>"$T/fwd.log") &
MR_PIDS+=($!)
FWD_PID=$!
mr_wait_file "$T/a.sock" 10 && mr_wait_file "$T/b.sock" 10 || { cat "$T/fwd.log"; fail "forward did not listen"; }
for s in a b; do
	m=$(stat -c %a "$T/$s.sock")
	[ "$m" = 600 ] || fail "$s.sock has mode $m under umask 000, not 600"
done
ok "two socket paths, both 0600 under umask 000"

# The client side, in one program: long-lived streams first, then SHORT
# sequential streams, then a BURST of streams open at once; every stream
# sends "TAG INDEX" as its first line and random bytes, and must get back
# exactly what it sent. Writes "burst TAG I" lines in connect order to stdout.
python3 - "$T/a.sock" "$T/b.sock" >"$T/client.txt" 2>"$T/client.err" <<'PY' || { cat "$T/client.err"; fail "client"; }
import os, socket, sys, threading, time
A, B = sys.argv[1], sys.argv[2]
deadline = time.time() + 180
errors = []

def conn(path, first):
    s = socket.socket(socket.AF_UNIX); s.connect(path); s.settimeout(60)
    s.sendall(first.encode() + b"\n")
    got = b""
    while len(got) < len(first) + 1:
        b = s.recv(65536)
        if not b:
            raise RuntimeError("%s: closed before its first line came back" % first)
        got += b
    if got != first.encode() + b"\n":
        raise RuntimeError("%s: first line came back as %r" % (first, got[:80]))
    return s

def roundtrip(s, data):
    s.sendall(data)
    got = b""
    while len(got) < len(data):
        b = s.recv(1 << 20)
        if not b:
            raise RuntimeError("closed in the middle of an echo")
        got += b
    if got != data:
        raise RuntimeError("echo differs")

def finish(s):
    s.shutdown(socket.SHUT_WR)
    if s.recv(1) != b"":
        raise RuntimeError("bytes after the echo")
    s.close()

# Long-lived: a round trip every 0.2 s until told to stop, then a clean close.
stop = threading.Event()
def long_lived(i):
    try:
        s = conn(A, "long %d" % i)
        n = 0
        while not stop.is_set() and time.time() < deadline:
            roundtrip(s, os.urandom(4096 + i * 100))
            n += 1
            time.sleep(0.2)
        finish(s)
        print("long %d: %d round trips" % (i, n), file=sys.stderr)
    except Exception as e:
        errors.append("long %d: %s" % (i, e))
longs = [threading.Thread(target=long_lived, args=(i,)) for i in range(3)]
for t in longs:
    t.start()
time.sleep(0.5)

# 70 short streams one after the other: with the 3 long ones, more than 64 ids.
for i in range(70):
    try:
        s = conn(A, "short %d" % i)
        roundtrip(s, os.urandom(65536))
        finish(s)
    except Exception as e:
        errors.append("short %d: %s" % (i, e))
        break

# The other path meanwhile, and a burst of 24 on path A all open at once.
def other_path():
    for i in range(10):
        try:
            s = conn(B, "b %d" % i)
            roundtrip(s, os.urandom(200000))
            finish(s)
        except Exception as e:
            errors.append("b %d: %s" % (i, e))
            return
ob = threading.Thread(target=other_path); ob.start()
burst = []
for i in range(24):
    s = socket.socket(socket.AF_UNIX); s.connect(A); s.settimeout(60)
    s.sendall(b"burst %d\n" % i)
    burst.append(s)
    print("burst %d" % i)
for i, s in enumerate(burst):
    try:
        got = b""
        while len(got) < len(b"burst %d\n" % i):
            got += s.recv(65536)
        roundtrip(s, os.urandom(100000))
        finish(s)
    except Exception as e:
        errors.append("burst %d: %s" % (i, e))
ob.join()

# Long-lived streams outlive the rollovers by more than the 30 s after which
# a forward used to close a replaced session, echoing all along.
time.sleep(32)
stop.set()
for t in longs:
    t.join()
if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
PY
ok "3 long-lived streams, 70 short, a burst of 24 and 10 on the other path: all byte-exact"

grep -q "used all its 64 stream ids" "$T/fwd.log" || fail "no rollover for used-up stream ids logged"
grep -q "streams open, the server's --max-streams" "$T/fwd.log" || fail "no rollover for --max-streams logged"
mr_wait_log "$T/fwd.log" "session [0-9a-f]+ retired after 6[0-9] stream" 10 || fail "the first session did not retire"
n=$(grep -c "retired after" "$T/fwd.log" || true)
ok "rolled over for stream ids and for --max-streams; $n session(s) retired once their streams ended"

# Destination accept order of the burst = the forward's accept order.
want=$(grep '^burst' "$T/client.txt" | awk '{print $2}' | tr '\n' ' ')
got=$(grep ' burst ' "$T/order-a.txt" | sort -n | awk '{print $3}' | tr '\n' ' ')
[ "$want" = "$got" ] || fail "burst accepted at the destination in the order '$got', sent in '$want'"
got=$(grep ' short ' "$T/order-a.txt" | sort -n | awk '{print $3}' | tr '\n' ' ')
[ "$got" = "$(seq 0 69 | tr '\n' ' ')" ] || fail "short streams out of order at the destination: $got"
[ "$(grep -c ' b ' "$T/order-b.txt")" = 10 ] || fail "path b's target did not see its 10 streams"
grep -q ' b ' "$T/order-a.txt" && fail "a stream of path b reached path a's target"
ok "destination order equals accept order across sessions; each path reached its own target"

# Outcome lines: every stream on the forward side; one migration line per burst of overlapping streams.
n=$(grep -c "(target ea): done: sent .*both directions verified" "$T/fwd.log" || true)
[ "$n" = $((3 + 70 + 24)) ] || fail "$n stream outcome lines for path a, want 97"
n=$(grep -c "(target eb): done: sent" "$T/fwd.log" || true)
[ "$n" = 10 ] || fail "$n stream outcome lines for path b, want 10"
grep -q "a.sock: migration 1 (target ea): done: 97 stream(s)" "$T/fwd.log" ||
	fail "no migration line for the overlapping streams of path a"
ok "forward: an outcome line per stream and per group of overlapping streams"

kill -TERM "$FWD_PID"
wait "$FWD_PID" || fail "forward exited $? after SIGTERM"
[ ! -e "$T/a.sock" ] && [ ! -e "$T/b.sock" ] || fail "sockets left behind"
serve_done() { grep -c "stream [0-9]* (target e[ab]): done: received .*both directions verified" "$T/serve-$port.log" || true; }
for i in $(seq 1 100); do
	[ "$(serve_done)" -ge 107 ] && break
	sleep 0.1
done
[ "$(serve_done)" = 107 ] || fail "serve: $(serve_done) stream outcome lines, want 107"
! grep -E "error|warning" "$T/fwd.log" "$T/serve-$port.log" | grep -v "closed the connection during the TLS handshake" ||
	fail "an error or warning was logged"
ok "serve: 107 verified stream lines; no error or warning on either end"

# --socket-mode and --socket-group; bad values are refused.
"$MIGRELAY" forward --listen "unix:$T/c.sock" --to "127.0.0.1:$port" --target ea --tls-dir "$T/cli" \
	--socket-mode 0660 --socket-group "$(id -gn)" 2>"$T/fwd-c.log" &
MR_PIDS+=($!)
pid=$!
mr_wait_file "$T/c.sock" 10 || fail "forward with --socket-mode did not listen"
[ "$(stat -c %a:%G "$T/c.sock")" = "660:$(id -gn)" ] || fail "c.sock is $(stat -c %a:%G "$T/c.sock")"
kill -TERM "$pid"
wait "$pid" || true
for bad in 0700 0644x 0400 abc; do
	r=0
	"$MIGRELAY" forward --listen "unix:$T/d.sock" --to "127.0.0.1:$port" --target ea --tls-dir "$T/cli" \
		--socket-mode "$bad" 2>/dev/null || r=$?
	[ "$r" = 2 ] || fail "--socket-mode $bad: exit $r, want 2"
done
ok "--socket-mode 0660 --socket-group; bad modes refused"

# A session the server closes for --idle-timeout: serve logs it as done, not
# as an error; the forward drops it and opens a new one for the next connection.
port3=$(mr_free_port)
mr_serve "$port3" --tls-dir "$T/srv" --target "ea=unix:$T/echo-a.sock" --idle-timeout 2
"$MIGRELAY" forward --listen "unix:$T/e.sock=ea" --to "127.0.0.1:$port3" --tls-dir "$T/cli" 2>"$T/fwd-e.log" &
MR_PIDS+=($!)
pid=$!
mr_wait_file "$T/e.sock" 10 || fail "forward for the idle test did not listen"
mr_echo_rounds "$T/e.sock" 3 "before" || fail "echo before the idle timeout"
mr_wait_log "$T/serve-$port3.log" "done \(session idle for 2 s.*1 stream\(s\).*all verified" 10 ||
	fail "serve did not log the idle session as done"
mr_wait_log "$T/fwd-e.log" "ended with no stream open \(.*session idle" 5 || fail "the forward did not drop the idle session"
mr_echo_rounds "$T/e.sock" 3 "after" || fail "echo after the idle timeout"
kill -TERM "$pid"
wait "$pid" || fail "forward exited $? after SIGTERM"
! grep -E "error|warning" "$T/fwd-e.log" "$T/serve-$port3.log" | grep -v "closed the connection during the TLS handshake" ||
	fail "an idle timeout logged an error or a warning"
ok "a session closed for --idle-timeout is done on serve's side; the forward opens a new one"
