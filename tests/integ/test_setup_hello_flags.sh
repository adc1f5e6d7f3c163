#!/usr/bin/env bash
# The HELLO flags of protocol revisions 1.1 and 1.2 (PROTOCOL.md §4.1, §8): POSTCOPY
# and RESUME are refused with ERROR UNSUPPORTED for a target that is not a
# QEMU (before anything is done for the session); for a qmp: target,
# POSTCOPY makes the gateway enable postcopy-ram on the QEMU before it takes
# the migration (a fake QMP server records every command with its arguments);
# OPENED is granted in the WELCOME, and refused by a server of revision 1.1.
. "$(dirname "$0")/lib.sh"
mr_setup
mr_pki
: "${RAWPEER:?RAWPEER must point at the mr_rawpeer test tool}"

# A QMP server that answers like a QEMU started with -incoming defer and
# appends each command, as JSON, to $T/qmp.log.
mr_fake_qmp "$T/qmp.sock" "$T/qmp.log" --log-format json

port=$(mr_free_port)
mr_serve "$port" --tls-dir "$T/srv" --target "q=qmp:$T/qmp.sock" --target d=discard

for flags in 0x4 0x8 0xc; do
	out=$("$RAWPEER" --to "127.0.0.1:$port" --tls-dir "$T/cli" --target d --hello-flags "$flags" --case hello) || true
	echo "$out" | grep -q "^ERROR not supported target d is not a QEMU target: no post-copy or resume" ||
		fail "flags $flags to a discard target: expected ERROR not supported, got: $out"
done
ok "POSTCOPY, RESUME and both to a discard target: ERROR not supported"
[ ! -s "$T/qmp.log" ] || fail "refused HELLOs reached the QMP: $(cat "$T/qmp.log")"

out=$("$RAWPEER" --to "127.0.0.1:$port" --tls-dir "$T/cli" --target q --hello-flags 0x4 --case hello) || true
echo "$out" | grep -q "^WELCOME" || fail "POSTCOPY to a qmp: target: expected WELCOME, got: $out"
grep -q '"execute": "migrate-set-capabilities", "arguments": {"capabilities": \[{"capability": "postcopy-ram", "state": true}\]}' \
	"$T/qmp.log" || fail "the qmp: target's QEMU did not get postcopy-ram: $(cat "$T/qmp.log")"
mr_wait_log "$T/serve-$port.log" "postcopy-ram enabled" 10 || fail "serve did not log postcopy-ram"
ok "POSTCOPY to a qmp: target: WELCOME, and the QEMU got postcopy-ram"

# Revision 1.2: OPENED (0x10) is granted in the WELCOME's header flags, for
# any target, and only when asked; a server speaking revision 1.1 refuses
# OPENED like any flag it does not know (the client then asks again without
# it, PROTOCOL.md §8).
out=$("$RAWPEER" --to "127.0.0.1:$port" --tls-dir "$T/cli" --target d --hello-flags 0x10 --case hello) || true
echo "$out" | grep -q "^WELCOME (flags 0x02)" || fail "OPENED: expected WELCOME with flag OPENED, got: $out"
out=$("$RAWPEER" --to "127.0.0.1:$port" --tls-dir "$T/cli" --target d --case hello) || true
echo "$out" | grep -q "^WELCOME after" || fail "no flags: expected a WELCOME without flags, got: $out"
port2=$(mr_free_port)
MIGRELAY_WIRE_REVISION=1.1 mr_serve "$port2" --tls-dir "$T/srv" --target d=discard
out=$("$RAWPEER" --to "127.0.0.1:$port2" --tls-dir "$T/cli" --target d --hello-flags 0x10 --case hello) || true
echo "$out" | grep -q "^ERROR protocol error malformed HELLO" || fail "OPENED to a 1.1 server: expected ERROR protocol, got: $out"
ok "OPENED: granted in WELCOME (flags 0x02), only when asked; a revision 1.1 server refuses it"
