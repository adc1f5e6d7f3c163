#!/usr/bin/env bash
# A stream cut before its END is never a success: killing the sender leaves
# no file at the destination; killing the destination makes the sender fail
# with "peer gone" (exit 7), not 0.
. "$(dirname "$0")/lib.sh"
mr_setup
mr_pki
port=$(mr_free_port)
# A short reconnect timeout: a session whose connections are all gone fails after 2 s.
mr_serve "$port" --tls-dir "$T/srv" --target "f=file:$T/out.bin" --reconnect-timeout 2

# Sender killed mid-stream: a slow producer, then SIGKILL.
( for i in $(seq 1 50); do head -c 1048576 /dev/urandom; sleep 0.05; done ) |
	"$MIGRELAY" send --to "127.0.0.1:$port" --target f --tls-dir "$T/cli" --connections 2 --quiet >/dev/null 2>&1 &
spid=$!
sleep 1
kill -KILL "$spid"
wait "$spid" 2>/dev/null || true
mr_wait_log "$T/serve-$port.log" "session .* failed" 10 || fail "server did not report the failed session"
[ ! -e "$T/out.bin" ] || fail "a file was delivered although the sender died"
! ls "$T" | grep -q 'out.bin.migrelay-' || fail "temporary file left after the sender died"

ok "sender killed: nothing delivered, server reports: $(grep -i fail "$T/serve-$port.log" | tail -1)"

# Destination killed mid-stream: the sender must not report success.
mkfifo "$T/fifo"
( for i in $(seq 1 50); do head -c 1048576 /dev/urandom; sleep 0.05; done ) >"$T/fifo" &
MR_PIDS+=($!)
rc=0
( sleep 1; kill -KILL "$SERVE_PID" ) &
"$MIGRELAY" send --to "127.0.0.1:$port" --target f --tls-dir "$T/cli" --connections 2 --quiet --reconnect-timeout 2 <"$T/fifo" >/dev/null 2>"$T/err" || rc=$?
[ "$rc" = 7 ] || { cat "$T/err"; fail "sender exit $rc after the destination died, expected 7"; }
ok "destination killed: sender exit 7: $(cat "$T/err")"
