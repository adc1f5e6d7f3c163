#!/bin/bash
# SPDX-License-Identifier: MIT
# Convergence controls on a guest that pre-copy alone cannot move (128 MiB,
# dirtying 64 MiB/s against a 16 MiB/s --bandwidth cap; test_migrelay_postcopy
# shows that it does not converge and that --timeout's default action
# cancels): --auto-converge throttles it until it completes; --timeout-action
# suspend pauses it on the source after 6 s and it completes (with XBZRLE on);
# --timeout-action postcopy switches after 6 s and it completes. Each RAM
# compared page by page.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/migrelay.sh"

e2e_init test_migrelay_converge
e2e_accel
mr_e2e_pki
t0=$(e2e_now)
MODE=rate=64
CAP=(--bandwidth 16M)

# start N: src$N -> gw$N -> dst$N, ready to migrate; port in $port
start() {
	port=$(e2e_free_port)
	e2e_start_dst "dst$1" 128 "$MODE"
	mr_e2e_serve "gw$1" "$port" --target "vm=qmp:$(e2e_qmp_sock "dst$1"),log=$E2E_TMP/dst$1.log"
	e2e_start_src "src$1" 128 "$MODE"
}
# check N: the migration of src$N completed verified, RAM equal
check() {
	grep -q "completed and verified" "$E2E_TMP/src$1-migrate.log" || e2e_fail "no verified report"
	e2e_ram_check "src$1" "dst$1" data
	e2e_stop "src$1" "dst$1" "gw$1"
}
# run N MIGRATE_ARGS...
run() {
	local n=$1
	shift
	start "$n"
	mr_e2e_migrate "src$n" "$port" vm "${CAP[@]}" "$@" || e2e_fail "migrate $* failed"
	check "$n"
}

# 1. auto-converge, 60 s at most: QEMU throttles the vCPUs (its throttle shows in ctl info) until the rest fits.
start 1
mr_e2e_migrate src1 "$port" vm "${CAP[@]}" --auto-converge --auto-converge-initial 40 --auto-converge-increment 20 \
	--timeout 60 --control "$E2E_TMP/ctl1.sock" &
mig=$!
thr=0
for ((i = 0; i < 600; i++)); do
	t=$("$MIGRELAY" ctl "$E2E_TMP/ctl1.sock" info --json 2>/dev/null |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["cpu_throttle_pct"])' 2>/dev/null) || t=""
	[ -n "$t" ] && [ "$t" -gt "$thr" ] && thr=$t
	kill -0 "$mig" 2>/dev/null || break
	sleep 0.1
done
wait $mig || e2e_fail "auto-converge run failed"
[ "$thr" -ge 40 ] || e2e_fail "ctl info never showed a vCPU throttle (max $thr %)"
! grep -q "timeout" "$E2E_TMP/src1-migrate.log" || e2e_fail "auto-converge needed the timeout"
check 1
e2e_log "auto-converge: completed, vCPU throttle up to $thr %"

# 2. --timeout-action suspend, with XBZRLE: the guest is paused here after 6 s, then the rest goes over.
run 2 --timeout 6 --timeout-action suspend --xbzrle-cache 32M
grep -q "timeout: paused the guest here" "$E2E_TMP/src2-migrate.log" || e2e_fail "suspend: the guest was not paused by the timeout"
e2e_log "timeout-action suspend: completed after pausing the guest"

# 3. --timeout-action postcopy.
run 3 --postcopy --timeout 6 --timeout-action postcopy
grep -q "switching to post-copy (timeout)" "$E2E_TMP/src3-migrate.log" || e2e_fail "postcopy: no switch at the timeout"
e2e_log "timeout-action postcopy: completed after switching"

# Usage: postcopy as the timeout action needs --postcopy.
rc=0
"$MIGRELAY" migrate --qmp "$E2E_TMP/none.qmp" --to 127.0.0.1:1 --target vm --timeout 5 --timeout-action postcopy \
	2>"$E2E_TMP/usage.log" || rc=$?
[ "$rc" -eq 2 ] && grep -q "needs --postcopy" "$E2E_TMP/usage.log" || e2e_fail "--timeout-action postcopy without --postcopy: exit $rc"
e2e_log "passed in $(e2e_since "$t0") s"
