#!/usr/bin/env bash
# Admission before side effects (SECURITY.md "Admission order"): a HELLO
# refused for "server busy" (--max-sessions) or for asking more multifd
# channels than --max-streams allows never reaches the qmp: target's QEMU
# (here a fake QMP server that records every command); an admitted HELLO
# does, which shows the recorder works.
. "$(dirname "$0")/lib.sh"
mr_setup
mr_pki
: "${RAWPEER:?RAWPEER must point at the mr_rawpeer test tool}"

# A QMP server that answers like a QEMU started with -incoming defer and
# appends each command's name to $T/qmp.log.
mr_fake_qmp "$T/qmp.sock" "$T/qmp.log" --version 9.0

port=$(mr_free_port)
mr_serve "$port" --tls-dir "$T/srv" --target "q=qmp:$T/qmp.sock" --target d=discard --max-sessions 1 --max-streams 8

untouched() {
	[ ! -s "$T/qmp.log" ] || fail "$1: the target's QMP got commands: $(tr '\n' ' ' <"$T/qmp.log")"
}

# 1. multifd 63 with --max-streams 8: refused, QEMU untouched.
out=$("$RAWPEER" --to "127.0.0.1:$port" --tls-dir "$T/cli" --target q --multifd 63 --case hello) || true
echo "$out" | grep -q "^ERROR limit.*max-streams" || fail "multifd 63: expected ERROR limit naming --max-streams, got: $out"
untouched "multifd 63"
ok "multifd 63 with --max-streams 8: $out; QMP untouched"

# 2. The only session slot is taken: "server busy", QEMU untouched.
mkfifo "$T/hold"
"$MIGRELAY" send --to "127.0.0.1:$port" --target d --tls-dir "$T/cli" --quiet <"$T/hold" >/dev/null 2>"$T/hold.err" &
hold_pid=$!
MR_PIDS+=($hold_pid)
exec 7>"$T/hold"
mr_wait_log "$T/serve-$port.log" "for target d" 10 || fail "the first session did not start"
out=$("$RAWPEER" --to "127.0.0.1:$port" --tls-dir "$T/cli" --target q --multifd 2 --case hello) || true
echo "$out" | grep -q "^ERROR limit.*server busy" || fail "second session: expected ERROR limit server busy, got: $out"
untouched "server busy"
ok "--max-sessions 1 taken: $out; QMP untouched"
exec 7>&-
wait "$hold_pid" || fail "the session that held the slot failed: $(cat "$T/hold.err")"

# 3. Control: an admitted HELLO does reach the QMP (the recorder works).
for _ in $(seq 1 50); do
	out=$("$RAWPEER" --to "127.0.0.1:$port" --tls-dir "$T/cli" --target q --multifd 2 --case hello) || true
	echo "$out" | grep -q "server busy" || break
	sleep 0.1
done
echo "$out" | grep -q "^WELCOME" || fail "admitted HELLO: expected WELCOME, got: $out"
grep -q "migrate-incoming" "$T/qmp.log" || fail "admitted HELLO: QMP did not see migrate-incoming: $(tr '\n' ' ' <"$T/qmp.log")"
ok "admitted HELLO with multifd 2: QMP got $(tr '\n' ' ' <"$T/qmp.log")"
