#!/usr/bin/env bash
# A failed session releases everything within a stated time, whatever the
# peer does (SECURITY.md, Limits): a peer fails its session while the
# server still has data for it and never reads again, holding its socket
# open. The session must be gone (its slot free again under
# --max-sessions 1, closing sessions counting against it) within
# GW_DRAIN_MS (2 s) of its failure plus the supervisor's pace, not when
# the peer decides to close.
. "$(dirname "$0")/lib.sh"
mr_setup
mr_pki
: "${RAWPEER:?RAWPEER must point at the mr_rawpeer test tool}"

mr_echo_server "$T/echo.sock"
port=$(mr_free_port)
mr_serve "$port" --tls-dir "$T/srv" --target "e=unix:$T/echo.sock" --target "f=file:$T/out.bin" --max-sessions 1
"$RAWPEER" --to "127.0.0.1:$port" --tls-dir "$T/cli" --target e --case fail-unread >"$T/rp.out" 2>&1 &
rp=$!
MR_PIDS+=($rp)
for _ in $(seq 100); do grep -q HELD "$T/rp.out" && break; sleep 0.1; done
grep -q HELD "$T/rp.out" || { cat "$T/rp.out"; fail "the peer did not get its session to fail"; }
mr_wait_log "$T/serve-$port.log" "session [0-9a-f]+ .*failed" 5 || { cat "$T/serve-$port.log"; fail "serve did not fail the session"; }
t0=$(date +%s.%N)
# the slot comes back although the peer still holds its socket, unread
head -c 1000000 /dev/urandom >"$T/in"
ok=0
for _ in $(seq 60); do
	if "$MIGRELAY" send --to "127.0.0.1:$port" --target f --tls-dir "$T/cli" --quiet <"$T/in" >/dev/null 2>"$T/err"; then
		ok=1
		break
	fi
	sleep 0.1
done
dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
[ "$ok" = 1 ] || { cat "$T/err" "$T/serve-$port.log"; fail "the failed session still held its slot after $dt s"; }
kill -0 "$rp" 2>/dev/null || fail "the peer let go of its socket first: the test proved nothing"
awk -v d="$dt" 'BEGIN { exit !(d <= 6) }' || fail "releasing the failed session took $dt s (bound: 2 s drain + margin)"
cmp "$T/in" "$T/out.bin" || fail "the next session's file differs"
ok "a failed session with an unread socket released its slot in $dt s while the peer still held it"
