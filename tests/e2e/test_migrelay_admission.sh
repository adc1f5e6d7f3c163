#!/bin/bash
# SPDX-License-Identifier: MIT
# Admission before any change to the destination QEMU (SECURITY.md
# "Connection setup"): a migration refused because its multifd channels do
# not fit --max-streams, and one refused because --max-sessions is taken,
# leave the destination QEMU untouched (still waiting, no incoming migration
# started, no multifd capability set), so the next migration succeeds.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/migrelay.sh"

e2e_init test_migrelay_admission
e2e_accel
mr_e2e_pki
t0=$(e2e_now)
port=$(e2e_free_port)
e2e_start_dst dst 128 dirty
mr_e2e_serve gw "$port" --target "vm=qmp:$(e2e_qmp_sock dst),log=$E2E_TMP/dst.log" --target d=discard \
	--max-sessions 1 --max-streams 4
e2e_start_src src 128 dirty

# dst_untouched WHY: no incoming migration started, multifd still off.
dst_untouched() {
	local mig caps
	mig=$(e2e_qmp dst query-migrate) || e2e_fail "$1: query-migrate on the destination"
	caps=$(e2e_qmp dst query-migrate-capabilities) || e2e_fail "$1: query-migrate-capabilities"
	echo "$mig" | grep -q '"status"' && e2e_fail "$1: the destination QEMU has a migration: $mig"
	python3 -c 'import json, sys
caps = {c["capability"]: c["state"] for c in json.loads(sys.argv[1])}
sys.exit(1 if caps.get("multifd") else 0)' "$caps" || e2e_fail "$1: multifd was switched on at the destination"
	[ "$(e2e_qmp dst query-status | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')" = inmigrate ] ||
		e2e_fail "$1: the destination QEMU is no longer waiting for a migration"
}

# 1. multifd 4 needs 5 streams; --max-streams 4.
rc=0
mr_e2e_migrate src "$port" vm --multifd 4 || rc=$?
[ $rc -ne 0 ] || e2e_fail "a migration needing 5 streams was admitted with --max-streams 4"
grep -q "max-streams" "$E2E_TMP/src-migrate.log" || e2e_fail "the refusal does not name --max-streams"
dst_untouched "multifd 4 refused"
e2e_log "multifd 4 with --max-streams 4: refused (exit $rc), destination QEMU untouched"

# 2. The only session slot is held by another client.
mkfifo "$E2E_TMP/hold"
"$MIGRELAY" send --to "127.0.0.1:$port" --target d --tls-dir "$E2E_TMP/cli" --quiet <"$E2E_TMP/hold" \
	>/dev/null 2>"$E2E_TMP/hold.err" &
hold=$!
exec 7>"$E2E_TMP/hold"
for ((i = 0; i < 100; i++)); do
	grep -q "for target d" "$E2E_TMP/gw.log" && break
	sleep 0.1
done
rc=0
mr_e2e_migrate src "$port" vm --multifd 2 || rc=$?
[ $rc -ne 0 ] || e2e_fail "a migration was admitted past --max-sessions 1"
grep -q "server busy" "$E2E_TMP/src-migrate.log" || e2e_fail "the refusal does not say server busy"
dst_untouched "server busy"
e2e_log "--max-sessions 1 taken: refused (exit $rc), destination QEMU untouched"
exec 7>&-
wait "$hold" || e2e_fail "the session holding the slot failed: $(cat "$E2E_TMP/hold.err")"

# 3. The destination takes the next migration.
for ((i = 0; i < 50; i++)); do
	grep -q "session .* (.*, target d) done" "$E2E_TMP/gw.log" && break
	sleep 0.1
done
mr_e2e_migrate src "$port" vm --multifd 2 --connections 2 || e2e_fail "the migration after the refusals failed"
grep -q "completed and verified" "$E2E_TMP/src-migrate.log" || e2e_fail "no verified report"
e2e_ram_check src dst data
e2e_log "passed in $(e2e_since "$t0") s"
