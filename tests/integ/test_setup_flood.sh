#!/usr/bin/env bash
# Pre-authentication flood (SECURITY.md "Pending connections"): while an
# attacker on the same address as the client (loopback) holds 1,100 idle
# TCP connections and keeps opening new ones, or holds 100 authenticated
# connections that trickle their HELLO, an allowed client's send succeeds:
# at every cap the oldest pending connection is evicted, never the newest
# refused. Run with the per-address cap in play (defaults) and without it
# (--max-pending-per-address at its maximum), where only eviction by
# --max-pending lets the client through.
. "$(dirname "$0")/lib.sh"
mr_setup
mr_pki
mr_pki_refused
[ "$(ulimit -n)" -ge 2600 ] || ulimit -n 4096 2>/dev/null || { echo "skip: needs 2,600 file descriptors"; exit 77; }

head -c 300000 /dev/urandom >"$T/in"

# flood PORT MODE N RATE [OPEN_RATE]: opens N connections (idle: plain TCP;
# tls: TLS as CN=client2, then a HELLO header a byte per second), at most
# OPEN_RATE per second if given, then replaces the oldest at RATE per second,
# until killed. Writes $T/flood.ready once N are open.
flood() {
	python3 - "$1" "$2" "$3" "$4" "$T/cli2" "$T/flood.ready" "${5:-0}" <<'PY' &
import collections, socket, ssl, sys, time
port, mode, n, rate, d, ready = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5], sys.argv[6]
open_rate = float(sys.argv[7])
ctx = None
if mode == "tls":
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(d + "/ca-cert.pem")
    ctx.load_cert_chain(d + "/client-cert.pem", d + "/client-key.pem")
    ctx.check_hostname = False
    ctx.set_alpn_protocols(["migrelay/1"])
def one():
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        if ctx:
            s = ctx.wrap_socket(s)
            s.setblocking(False)
        return s
    except OSError:
        return None
held = collections.deque()
t_open = time.monotonic()
while len(held) < n:
    if open_rate > 0:
        time.sleep(max(0.0, t_open + len(held) / open_rate - time.monotonic()))
    s = one()
    if s:
        held.append(s)
open(ready, "w").close()
t0 = time.monotonic()
sent = 0
end = t0 + 120
while time.monotonic() < end:
    if mode == "tls" and int(time.monotonic() - t0) > sent and sent < 15:
        sent += 1
        for s in held:
            try:
                s.send(b"\x01" if sent == 1 else b"\x00")
            except (OSError, ssl.SSLError):
                pass
    if rate > 0:
        old = held.popleft()
        old.close()
        s = one()
        if s:
            held.append(s)
        time.sleep(1.0 / rate)
    else:
        time.sleep(0.2)
PY
	FLOOD_PID=$!
	MR_PIDS+=($FLOOD_PID)
	mr_wait_file "$T/flood.ready" 60 || fail "the flood did not open its connections"
}

# scenario NAME SERVE_ARGS... -- FLOOD_ARGS...: a daemon, a flood, then a real send.
scenario() {
	local name=$1 port rc=0 t0 t1 sargs=() fargs=()
	shift
	while [ "$1" != "--" ]; do sargs+=("$1"); shift; done
	shift
	fargs=("$@")
	port=$(mr_free_port)
	rm -f "$T/flood.ready"
	mr_serve "$port" --tls-dir "$T/srv" --target d=discard --allow "CN=client1,*" "${sargs[@]}"
	flood "$port" "${fargs[@]}"
	t0=$(date +%s%N)
	timeout 60 "$MIGRELAY" send --to "127.0.0.1:$port" --target d --tls-dir "$T/cli" --connections 2 --quiet \
		<"$T/in" >/dev/null 2>"$T/send.err" || rc=$?
	t1=$(date +%s%N)
	kill "$FLOOD_PID" 2>/dev/null || true
	wait "$FLOOD_PID" 2>/dev/null || true
	[ $rc -eq 0 ] || { cat "$T/send.err"; fail "$name: the allowed client's send failed (exit $rc)"; }
	grep -q "the oldest makes room" "$T/serve-$port.log" || fail "$name: the server evicted nothing"
	ok "$name: send succeeded in $(((t1 - t0) / 1000000)) ms; $(grep -c 'the oldest makes room' "$T/serve-$port.log") eviction line(s) logged (rate-limited)"
	kill "$SERVE_PID"
	wait "$SERVE_PID" 2>/dev/null || true
}

# Opened at the default --connect-rate (200/s), so that every connection is
# admitted and the per-address cap, not the rate limit, is what they meet.
# Faster, the rate limit closes the excess at once, and a client on the same
# address that connects while the server still works through them is closed
# too (SECURITY.md "Connect rate"): that is the rate limit's documented cost.
scenario "1,100 idle connections at 200/s, defaults" -- idle 1100 0 200
scenario "1,100 idle connections reopened at 100/s, no per-address cap" \
	--max-pending-per-address 65536 --connect-rate 1000000 -- idle 1100 100
scenario "100 authenticated connections trickling HELLO" -- tls 100 0
