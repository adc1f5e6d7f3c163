#!/usr/bin/env bash
# The --insecure-plaintext mode (PROTOCOL.md §4.4): with both ends enabled,
# 256 MiB of random bytes arrive byte-exact over 1 and 4 connections, a
# marker in the data is visible to a relaying proxy (and is not in TLS
# mode), a connection reset mid-stream is rejoined in plaintext, and both
# ends log the warning. A server that does not offer it refuses a client
# that asks (exit 2, nothing delivered); a server that offers it still
# gives TLS to clients that do not ask. bench --local measures it.
. "$(dirname "$0")/lib.sh"
mr_setup
mr_pki
: "${CUTPROXY:?CUTPROXY must point at tests/tools/cutproxy.py}"

# A unix echo server: the target "e" sends everything back (the answer direction).
mr_echo_server "$T/echo.sock"

WARN='session [0-9a-f]{16}: INSECURE PLAINTEXT: data is neither encrypted nor authenticated by TLS after the handshake'
MARKER='MIGRELAY-PLAINTEXT-MARKER-7f3a9c'

port=$(mr_free_port)
# A tiny rekey threshold: plaintext connections must not be replaced for fresh keys.
MIGRELAY_REKEY_BYTES=1048576 mr_serve "$port" --tls-dir "$T/srv" --target "f=file:$T/out.bin" \
	--target "e=unix:$T/echo.sock" --insecure-plaintext
slog="$T/serve-$port.log"
mr_wait_log "$slog" "warning: INSECURE PLAINTEXT offered" || fail "serve does not warn that it offers plaintext"
ok "serve --insecure-plaintext warns at start"

# send_to PORT LOG ARGS...: sends $T/in to target f, exit code in $rc.
send_to() {
	local p=$1 log=$2
	shift 2
	rc=0
	MIGRELAY_REKEY_BYTES=1048576 "$MIGRELAY" send --to "127.0.0.1:$p" --target f --tls-dir "$T/cli" --quiet "$@" \
		<"$T/in" >"$log.json" 2>"$log" || rc=$? # --json reports go to stdout
}

# session_id LOG: the id of the session a client log names.
session_id() {
	grep -oE 'session [0-9a-f]{16}' "$1" | head -n 1 | cut -d' ' -f2
}

head -c $((256 << 20)) /dev/urandom >"$T/in"
for n in 1 4; do
	rm -f "$T/out.bin"
	send_to "$port" "$T/send.log" --insecure-plaintext --connections "$n" --json
	[ "$rc" = 0 ] || { cat "$T/send.log"; fail "plaintext send over $n connection(s): exit $rc"; }
	cmp "$T/in" "$T/out.bin" || fail "plaintext, $n connection(s): the file differs"
	grep -qE "warning: $WARN" "$T/send.log" || { cat "$T/send.log"; fail "client did not warn"; }
	grep -q '"insecure_plaintext":true' "$T/send.log.json" || fail "the JSON report does not say plaintext"
	id=$(session_id "$T/send.log")
	[ -n "$id" ] || fail "no session id in the client's warning"
	mr_wait_log "$slog" "warning: session $id: INSECURE PLAINTEXT: data is neither encrypted" ||
		fail "server did not warn for session $id"
	mr_wait_log "$slog" "session $id .*done: .*all verified" || fail "server did not verify session $id"
	! grep -qi "fresh keys" "$T/send.log" "$slog" || fail "a plaintext connection was replaced for fresh keys"
	ok "plaintext: 256 MiB over $n connection(s) byte-exact, warning on both ends (session $id)"
done

# Server offers, client does not ask: TLS as usual, no warning.
rm -f "$T/out.bin"
send_to "$port" "$T/send.log" --connections 2 --json
[ "$rc" = 0 ] || { cat "$T/send.log"; fail "TLS send to a server offering plaintext: exit $rc"; }
cmp "$T/in" "$T/out.bin" || fail "TLS to a plaintext-offering server: the file differs"
! grep -q "INSECURE PLAINTEXT" "$T/send.log" || fail "a TLS client warned about plaintext"
grep -q '"insecure_plaintext":false' "$T/send.log.json" || fail "the JSON report does not say TLS"
last=$(grep -E 'session [0-9a-f]{16}: 127.0.0.1' "$slog" | tail -n 1)
! echo "$last" | grep -q "PLAINTEXT" || fail "server logged the TLS session as plaintext: $last"
ok "server offering plaintext serves a client that does not ask with TLS"

# Compression works as in TLS mode.
yes "a compressible line of guest memory" | head -c $((64 << 20)) >"$T/comp" || true
rm -f "$T/out.bin"
rc=0
"$MIGRELAY" send --to "127.0.0.1:$port" --target f --tls-dir "$T/cli" --quiet --connections 2 --compress zstd \
	--insecure-plaintext --json <"$T/comp" >"$T/send-z.json" 2>"$T/send-z.log" || rc=$?
[ "$rc" = 0 ] || { cat "$T/send-z.log"; fail "plaintext with zstd: exit $rc"; }
cmp "$T/comp" "$T/out.bin" || fail "plaintext with zstd: the file differs"
wire=$(grep -oE '"wire_sent":[0-9]+' "$T/send-z.json" | cut -d: -f2)
[ -n "$wire" ] && [ "$wire" -lt $((8 << 20)) ] || { cat "$T/send-z.log"; fail "plaintext with zstd: $wire bytes on the wire"; }
ok "plaintext with --compress zstd: 64 MiB byte-exact, $wire bytes on the wire"

# What a proxy in the path sees: a marker in the data every 64 KiB.
python3 - "$T/marked" "$MARKER" <<'EOF'
import os, sys
with open(sys.argv[1], "wb") as f:
    for _ in range(512):                       # 32 MiB
        f.write(sys.argv[2].encode() + os.urandom(65536 - len(sys.argv[2])))
EOF
cp "$T/marked" "$T/in"
size=$(stat -c %s "$T/in")
# proxy_run NAME ARGS...: send through a watching proxy; its log is $T/proxy-NAME.out.
proxy_run() {
	local name=$1 pport
	shift
	pport=$(mr_free_port)
	python3 "$CUTPROXY" --listen "$pport" --to "$port" --total "$size" --watch "$MARKER" --max-seconds 120 \
		"${PROXY_ARGS[@]}" >"$T/proxy-$name.out" 2>&1 &
	MR_PIDS+=($!)
	mr_wait_port "$pport"
	rm -f "$T/out.bin"
	send_to "$pport" "$T/send-$name.log" "$@"
	[ "$rc" = 0 ] || { cat "$T/send-$name.log" "$T/proxy-$name.out"; fail "$name through the proxy: exit $rc"; }
	cmp "$T/in" "$T/out.bin" || fail "$name through the proxy: the file differs"
	sleep 0.5 # the proxy logs the marker counts when the connections end
}

PROXY_ARGS=()
proxy_run tls --connections 4
grep -q "marker seen upstream" "$T/proxy-tls.out" && { cat "$T/proxy-tls.out"; fail "TLS mode: the marker is visible on the wire"; }
[ "$(grep -c 'upstream: marker seen 0 times' "$T/proxy-tls.out")" -ge 4 ] ||
	{ cat "$T/proxy-tls.out"; fail "TLS mode: the proxy did not watch the 4 connections"; }
ok "TLS mode: the marker is not visible on the wire"

proxy_run plain --connections 4 --insecure-plaintext
nseen=$(grep -c "marker seen upstream on connection" "$T/proxy-plain.out" || true)
total=$(grep -oE 'upstream: marker seen [0-9]+' "$T/proxy-plain.out" | awk '{s += $4} END {print s + 0}')
[ "$nseen" -ge 1 ] && [ "$total" -ge 512 ] ||
	{ cat "$T/proxy-plain.out"; fail "plaintext mode: the 512 markers are not all visible on the wire"; }
ok "plaintext mode: all $total markers visible on the wire, on $nseen of 4 connections"

# Both directions: through an echo target the marker also comes back in the clear.
pport=$(mr_free_port)
python3 "$CUTPROXY" --listen "$pport" --to "$port" --watch "$MARKER" --max-seconds 120 >"$T/proxy-echo.out" 2>&1 &
MR_PIDS+=($!)
mr_wait_port "$pport"
rc=0
"$MIGRELAY" send --to "127.0.0.1:$pport" --target e --tls-dir "$T/cli" --quiet --connections 2 --insecure-plaintext \
	<"$T/in" >"$T/answer" 2>"$T/send-echo.log" || rc=$?
[ "$rc" = 0 ] || { cat "$T/send-echo.log"; fail "plaintext echo: exit $rc"; }
cmp "$T/in" "$T/answer" || fail "plaintext echo: the answer differs"
sleep 0.5
grep -q "marker seen downstream" "$T/proxy-echo.out" ||
	{ cat "$T/proxy-echo.out"; fail "plaintext echo: the answer's markers are not visible on the wire"; }
ok "plaintext both ways: 32 MiB echoed byte-exact, markers visible in the answer direction too"

# forward: connections to its unix socket are streams of a plaintext session.
"$MIGRELAY" forward --listen "unix:$T/fwd.sock" --to "127.0.0.1:$port" --target e --tls-dir "$T/cli" \
	--connections 2 --insecure-plaintext 2>"$T/fwd.log" &
MR_PIDS+=($!)
mr_wait_file "$T/fwd.sock" 10 || { cat "$T/fwd.log"; fail "forward did not listen"; }
mr_echo_rounds "$T/fwd.sock" 10 "through forward in plaintext" ||
	{ cat "$T/fwd.log"; fail "echo through forward --insecure-plaintext"; }
mr_wait_log "$T/fwd.log" "warning: $WARN" || { cat "$T/fwd.log"; fail "forward did not warn"; }
ok "forward --insecure-plaintext: 10 round trips through an echo target, warning logged"

# A connection reset in the middle: its chunks are re-sent, it rejoins in plaintext.
PROXY_ARGS=(--reset 0.4:1)
proxy_run reset --connections 4 --insecure-plaintext --reconnect-timeout 20
grep -q "reset connection 1" "$T/proxy-reset.out" || fail "the proxy did not reset connection 1"
grep -q "connection 4 accepted" "$T/proxy-reset.out" || { cat "$T/proxy-reset.out"; fail "no rejoin after the reset"; }
grep -q "rejoined the session" "$T/send-reset.log" || { cat "$T/send-reset.log"; fail "the client did not rejoin"; }
ok "plaintext: a reset connection rejoined and the stream still arrived byte-exact"

# A server that does not offer it: refused, exit 2, nothing delivered.
port2=$(mr_free_port)
mr_serve "$port2" --tls-dir "$T/srv" --target "f=file:$T/out2.bin"
send_to "$port2" "$T/refused.log" --insecure-plaintext
[ "$rc" = 2 ] || { cat "$T/refused.log"; fail "plaintext asked, not offered: exit $rc, expected 2"; }
grep -qE "does not offer the plaintext mode.*--insecure-plaintext" "$T/refused.log" ||
	{ cat "$T/refused.log"; fail "the refusal does not name the fix"; }
[ ! -e "$T/out2.bin" ] && ! ls "$T" | grep -q 'out2.bin.migrelay-' || fail "something was delivered after the refusal"
mr_wait_log "$T/serve-$port2.log" "refused: this server does not offer the plaintext mode" ||
	fail "the server did not log the refusal"
ok "plaintext asked but not offered: exit 2: $(head -n 1 "$T/refused.log")"

# bench --local --insecure-plaintext: its own server offers the mode.
out=$("$MIGRELAY" bench --local --insecure-plaintext --size 64M --connections 2 --json 2>"$T/bench.err") ||
	{ cat "$T/bench.err"; fail "bench --local --insecure-plaintext"; }
echo "$out" | grep -q '"insecure_plaintext":true' || fail "bench report does not say plaintext: $out"
grep -qE "warning: $WARN" "$T/bench.err" || { cat "$T/bench.err"; fail "bench did not warn"; }
ok "bench --local --insecure-plaintext: $out"
