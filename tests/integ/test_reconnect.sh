#!/usr/bin/env bash
# Connections that die do not lose or duplicate a byte (PROTOCOL.md §2.3):
#  1. 256 MiB over 4 connections; a proxy resets one connection at 30 % and
#     another at 60 %: the file arrives byte-exact, the connections rejoin;
#  2. every connection cut for 5 s at 40 %: the session rejoins and finishes;
#  3. cut for longer than the reconnect timeout: both ends fail with a clear
#     error, the sender exits 7, nothing is delivered;
#  4. connections frozen (half-open: no RST, no bytes): keepalive notices
#     within 3 intervals, the connections are dropped and rejoined;
#  5. fresh keys by reconnection: with MIGRELAY_REKEY_BYTES at 8 MiB, every
#     connection is replaced (new TLS handshake) about 15 times per 256 MiB;
#  6. the server's last VERIFIED is lost with every connection, after the
#     server has the whole stream but before the client's BYE: the server
#     keeps the session, the client rejoins, gets the VERIFIED, exits 0;
#  7. the client dies at that point instead: the server closes the session
#     after its reconnect timeout, with the stream verified on its side.
. "$(dirname "$0")/lib.sh"
: "${CUTPROXY:?CUTPROXY must point at tests/tools/cutproxy.py}"
mr_setup
mr_pki
port=$(mr_free_port)
mr_serve "$port" --tls-dir "$T/srv" --target "f=file:$T/out.bin" --reconnect-timeout 3 --keepalive 1

# proxy NAME TOTAL ARGS...: a cutproxy in front of the daemon; sets $pport
proxy() {
	local name=$1 total=$2
	shift 2
	pport=$(mr_free_port)
	python3 "$CUTPROXY" --listen "$pport" --to "$port" --total "$total" --max-seconds 300 "$@" >"$T/$name.log" 2>&1 &
	MR_PIDS+=($!)
	mr_wait_port "$pport"
}

send_via() {
	"$MIGRELAY" send --to "127.0.0.1:$pport" --target f --tls-dir "$T/cli" --server-name 127.0.0.1 --quiet "$@"
}

# 1. two resets
head -c $((256 << 20)) /dev/urandom >"$T/in256"
proxy p1 $((256 << 20)) --reset 0.3:1 --reset 0.6:2
send_via --connections 4 <"$T/in256" >/dev/null 2>"$T/send1.log" || { cat "$T/send1.log"; fail "send through two resets"; }
cmp "$T/in256" "$T/out.bin" || fail "256 MiB through two resets differs"
[ "$(grep -c '^.* reset connection' "$T/p1.log")" = 2 ] || { cat "$T/p1.log"; fail "the proxy did not reset two connections"; }
grep -q "rejoined" "$T/send1.log" || { cat "$T/send1.log"; fail "no connection rejoined"; }
ok "256 MiB over 4 connections, resets at 30 % and 60 %: byte-exact ($(grep 'reset connection' "$T/p1.log" | cut -d' ' -f2- | tr '\n' ';'))"
rm -f "$T/out.bin"

# 2. all cut for 5 s (the daemon waits 3 s here, so use a daemon with the default 30 s)
port2=$(mr_free_port)
oldport=$port
mr_serve "$port2" --tls-dir "$T/srv" --target "f=file:$T/out.bin" --keepalive 1
port=$port2
proxy p2 $((256 << 20)) --cut 0.4:5
t0=$(date +%s)
send_via --connections 4 <"$T/in256" >/dev/null 2>"$T/send2.log" || { cat "$T/send2.log"; fail "send through a 5 s cut"; }
cmp "$T/in256" "$T/out.bin" || fail "256 MiB through a 5 s cut differs"
grep -q "cut every connection" "$T/p2.log" || fail "the proxy did not cut"
ok "256 MiB, every connection cut for 5 s at 40 %: rejoined after $(($(date +%s) - t0)) s total, byte-exact"
rm -f "$T/out.bin"

# 3. cut for longer than the timeout (3 s on both ends)
port=$oldport
proxy p3 $((256 << 20)) --cut 0.4:8
rc=0
send_via --connections 2 --reconnect-timeout 3 <"$T/in256" >/dev/null 2>"$T/send3.log" || rc=$?
[ "$rc" = 7 ] || { cat "$T/send3.log"; fail "sender exit $rc after a cut longer than the timeout, expected 7"; }
grep -qi "reconnect timeout\|went away" "$T/send3.log" || { cat "$T/send3.log"; fail "the sender's error does not say why"; }
mr_wait_log "$T/serve-$port.log" "session .* failed: no connection came back" 10 || fail "the daemon did not fail the session"
[ ! -e "$T/out.bin" ] || fail "a file was delivered after the timeout"
# the daemon removes the partial file just after it logs the failure
mr_wait_log "$T/serve-$port.log" "removed the partial file" 10 || fail "the daemon did not remove the partial file"
! ls "$T" | grep -q 'out.bin.migrelay-' || fail "a temporary file was left"
ok "cut longer than the timeout: sender exit 7 ($(grep 'FAILED (' "$T/send3.log" | head -1)), daemon failed the session, nothing delivered"

# 4. half-open: frozen for 6 s, keepalive 1 s
# (on the daemon with the default 30 s reconnect timeout: a rejoin may take
# more than 3 s on a loaded machine or under a sanitizer)
port=$port2
proxy p4 $((256 << 20)) --freeze 0.4:6
send_via --connections 2 --keepalive 1 <"$T/in256" >/dev/null 2>"$T/send4.log" || { cat "$T/send4.log"; fail "send through a freeze"; }
cmp "$T/in256" "$T/out.bin" || fail "256 MiB through a freeze differs"
grep -q "nothing received" "$T/send4.log" "$T/serve-$port.log" || fail "keepalive did not notice the frozen connections"
ok "half-open connections frozen for 6 s: keepalive dropped them, byte-exact"

# 5. rekey by reconnection
rm -f "$T/out.bin"
MIGRELAY_REKEY_BYTES=$((8 << 20)) "$MIGRELAY" send --to "127.0.0.1:$port" --target f --tls-dir "$T/cli" --connections 2 \
	--quiet <"$T/in256" >/dev/null 2>"$T/send5.log" || { cat "$T/send5.log"; fail "send with rekeying"; }
cmp "$T/in256" "$T/out.bin" || fail "256 MiB with rekeying differs"
n=$(grep -c "reconnecting for fresh keys" "$T/send5.log")
[ "$n" -ge 10 ] || { cat "$T/send5.log"; fail "only $n rekeys"; }
ok "$n connection replacements for fresh keys in 256 MiB: byte-exact"

# 6. the last VERIFIED lost with the only connection
rm -f "$T/out.bin"
head -c $((64 << 20)) /dev/urandom >"$T/in64"
proxy p6 $((64 << 20)) --swallow 0.99:2
send_via --connections 1 <"$T/in64" >/dev/null 2>"$T/send6.log" || { cat "$T/send6.log" "$T/p6.log"; fail "send whose last VERIFIED was lost"; }
cmp "$T/in64" "$T/out.bin" || fail "64 MiB with the last VERIFIED lost differs"
grep -q "reset every connection after swallowing" "$T/p6.log" || { cat "$T/p6.log"; fail "the proxy did not swallow and reset"; }
grep -q "rejoined" "$T/send6.log" || { cat "$T/send6.log"; fail "the client did not rejoin"; }
! grep -q "JOIN refused" "$T/serve-$port.log" || fail "the server refused the rejoin of a session whose client had no VERIFIED yet"
ok "the last VERIFIED lost with every connection: the session waited, the client rejoined and verified"

# 7. the client gone for good between the server's last VERIFIED and its BYE.
# A window of 64 MiB for 32 MiB of data: the client needs no ACK (all
# swallowed here) for credit, so the whole stream reaches the server.
port=$(mr_free_port)
mr_serve "$port" --tls-dir "$T/srv" --target "f=file:$T/out.bin" --reconnect-timeout 3 --window $((64 << 20))
rm -f "$T/out.bin"
head -c $((32 << 20)) "$T/in64" >"$T/in32"
proxy p7 $((32 << 20)) --swallow 0.99:120
send_via --connections 1 <"$T/in32" >/dev/null 2>"$T/send7.log" &
spid=$!
MR_PIDS+=($spid)
mr_wait_log "$T/serve-$port.log" "stream 0: verified" 60 || fail "the daemon did not verify the stream"
kill -KILL "$spid"
wait "$spid" 2>/dev/null || true
mr_wait_log "$T/serve-$port.log" "the client went without BYE and did not come back within 3 s" 20 ||
	{ tail -n 5 "$T/serve-$port.log"; fail "the daemon did not close the session after its reconnect timeout"; }
mr_wait_log "$T/serve-$port.log" "done: 1 stream\(s\), received 32.0 MiB.*all verified" 10 ||
	{ tail -n 5 "$T/serve-$port.log"; fail "the daemon did not report the session verified"; }
cmp "$T/in32" "$T/out.bin" || fail "32 MiB whose client died before BYE differs"
ok "client killed after the server's last VERIFIED: the daemon waited 3 s for it, then closed the session, verified"
