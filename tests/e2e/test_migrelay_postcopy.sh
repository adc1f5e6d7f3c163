#!/bin/bash
# SPDX-License-Identifier: MIT
# Post-copy through migrelay. A 128 MiB guest dirties 64 MiB/s against a
# 16 MiB/s --bandwidth cap: pre-copy alone does not converge (a 15 s timeout
# cancels it after several passes and the guest keeps running); the same guest
# with --postcopy-after-precopy completes (RAM compared page by page). Then
# post-copy with connection resets after the switch completes with RAM
# intact; and losing every connection past the reconnect timeout after the
# switch ends with the sentence saying where the guest is and what QEMU
# offers to recover.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/migrelay.sh"

e2e_init test_migrelay_postcopy
e2e_accel
mr_e2e_pki
t0=$(e2e_now)
MODE=rate=64
# A guest writing 64 MiB/s under TCG. Every page must match: QEMU 7.2's
# dirty-tracking bug, which once left a noise page one sweep behind after the
# switch (with every relayed byte digest-verified), is kept out by the guest
# itself (guest.c, tlb_flush_all).
CAP=(--bandwidth 16M)

# passes SRC: the highest pass number migrate's progress lines show
passes() { sed -n 's/.* pass \([0-9]*\).*/\1/p' "$E2E_TMP/$1-migrate.log" | sort -n | tail -n 1; }

# 1. Pre-copy alone: no convergence within 15 s, several passes; the guest keeps running here.
port=$(e2e_free_port)
e2e_start_dst dst1 128 "$MODE"
mr_e2e_serve gw1 "$port" --target "vm=qmp:$(e2e_qmp_sock dst1),log=$E2E_TMP/dst1.log"
e2e_start_src src 128 "$MODE"
rc=0
mr_e2e_migrate src "$port" vm "${CAP[@]}" --timeout 15 || rc=$?
[ "$rc" -eq 10 ] || e2e_fail "pre-copy alone: exit $rc, expected 10 (cancelled by the timeout)"
grep -q "timeout; migration cancelled" "$E2E_TMP/src-migrate.log" || e2e_fail "no timeout message"
p=$(passes src)
[ "${p:-0}" -ge 3 ] || e2e_fail "pre-copy alone made only ${p:-0} passes in 15 s"
e2e_qmp src --wait-status running 10 || e2e_fail "the source guest is not running after the cancel"
e2e_log "pre-copy alone: $p passes in 15 s without converging; cancelled, guest running"
e2e_stop dst1 gw1

# 2. --postcopy-after-precopy: the same guest completes.
port=$(e2e_free_port)
e2e_start_dst dst2 128 "$MODE"
mr_e2e_serve gw2 "$port" --target "vm=qmp:$(e2e_qmp_sock dst2),log=$E2E_TMP/dst2.log"
mr_e2e_migrate src "$port" vm "${CAP[@]}" --postcopy-after-precopy --timeout 120 ||
	e2e_fail "post-copy migration failed"
grep -q "switching to post-copy (the first pass is complete)" "$E2E_TMP/src-migrate.log" || e2e_fail "no switch to post-copy"
grep -q "postcopy-ram enabled" "$E2E_TMP/gw2.log" || e2e_fail "the destination gateway did not enable postcopy-ram"
grep -q "completed and verified" "$E2E_TMP/src-migrate.log" || e2e_fail "no verified report"
e2e_ram_check src dst2 data
e2e_stop src dst2 gw2

# run_proxied N PROXY_ARGS -- MIGRATE_ARGS: src$N -> proxy -> gw$N -> dst$N, post-copy capped at
# 4 MiB/s so that it lasts several seconds. About 126 MiB cross; the first pass ends near 92 MiB (73%).
run_proxied() {
	local n=$1 port pport pargs=()
	shift
	while [ "$1" != -- ]; do pargs+=("$1"); shift; done
	shift
	port=$(e2e_free_port)
	pport=$(e2e_free_port)
	e2e_start_dst "dst$n" 128 "$MODE"
	mr_e2e_serve "gw$n" "$port" --target "vm=qmp:$(e2e_qmp_sock "dst$n"),log=$E2E_TMP/dst$n.log"
	e2e_spawn "proxy$n" python3 "$MR_SRC/tests/tools/cutproxy.py" --listen "$pport" --to "$port" \
		--total $((128 << 20)) --max-seconds 300 "${pargs[@]}"
	e2e_wait_until 5 grep -q listening "$E2E_TMP/proxy$n.log" || e2e_fail "proxy$n did not start"
	e2e_start_src "src$n" 128 "$MODE"
	mr_e2e_migrate "src$n" "$pport" vm "${CAP[@]}" --connections 3 --postcopy-after-precopy \
		--postcopy-bandwidth 4M --timeout 120 "$@"
}

# 3. Connections reset after the switch rejoin; the guest completes on the destination, RAM intact.
run_proxied 3 --reset 0.82:1 --reset 0.9:0 -- || e2e_fail "post-copy did not survive the resets"
grep -q "reset connection 1" "$E2E_TMP/proxy3.log" && grep -q "reset connection 0" "$E2E_TMP/proxy3.log" ||
	e2e_fail "the proxy did not reset both connections: $(cat "$E2E_TMP/proxy3.log")"
# The progress lines show where the resets fell: after the switch, while QEMU was in post-copy.
sw=$(grep -n "switching to post-copy" "$E2E_TMP/src3-migrate.log" | cut -d: -f1)
pc=$(grep -c "postcopy-active" "$E2E_TMP/src3-migrate.log" || true)
[ -n "$sw" ] && [ "${pc:-0}" -ge 3 ] || e2e_fail "post-copy did not run for several seconds (switch at line ${sw:-none}, $pc post-copy lines)"
first_reset=$(sed -n 's/^\([0-9.]*\) reset connection.*/\1/p' "$E2E_TMP/proxy3.log" | head -n 1)
e2e_log "resets at $first_reset; $pc progress lines in post-copy"
grep -q "completed and verified" "$E2E_TMP/src3-migrate.log" || e2e_fail "no verified report"
e2e_ram_check src3 dst3 data
e2e_stop src3 dst3 gw3 proxy3

# 4. Every connection lost past the reconnect timeout after the switch: the guest is stranded
# between the two QEMUs; migrate says so and names QEMU's recovery.
rc=0
run_proxied 4 --cut 0.82:60 -- --reconnect-timeout 3 || rc=$?
[ "$rc" -ne 0 ] || e2e_fail "the migration completed although every connection was cut"
grep -q "switching to post-copy" "$E2E_TMP/src4-migrate.log" || e2e_fail "the cut came before the switch"
grep -q "the guest is paused on the destination" "$E2E_TMP/src4-migrate.log" &&
	grep -q "migrate-recover" "$E2E_TMP/src4-migrate.log" || e2e_fail "no post-copy recovery message"
st=$(e2e_qmp src4 query-status | python3 -c 'import json, sys; print(json.load(sys.stdin)["status"])')
[ "$st" != running ] || e2e_fail "the source guest runs again after the switch"
e2e_log "all connections lost in post-copy: exit $rc, source $st: $(grep -o 'FAILED.*' "$E2E_TMP/src4-migrate.log" | cut -c1-160)"
e2e_stop src4 dst4 gw4 proxy4

e2e_log "passed in $(e2e_since "$t0") s"
