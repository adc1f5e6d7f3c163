#!/bin/bash
# SPDX-License-Identifier: MIT
# `migrelay ctl` on a running migrate: a 128 MiB guest dirtying 64 MiB/s
# migrates under an 8 MiB/s cap; `ctl info --json` shows the job, `ctl
# set-speed 48M` mid-run raises the rate QEMU sends at (measured from data
# processed over two seconds before and after), `ctl set-downtime` is taken,
# `ctl postcopy` switches and the migration completes (RAM compared page by
# page). A second run is cancelled with `ctl cancel`: migrate ends as
# cancelled and the guest keeps running on the source.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/migrelay.sh"

e2e_init test_migrelay_ctl
e2e_accel
mr_e2e_pki
t0=$(e2e_now)
MODE=rate=64
CTL=$E2E_TMP/ctl.sock

ctl() { "$MIGRELAY" ctl "$CTL" "$@"; }
# processed: data processed so far, from ctl info --json
processed() { ctl info --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["data_processed"])'; }
# rate_over SECS: bytes/s processed over SECS seconds
rate_over() {
	local a b
	a=$(processed) || return 1
	sleep "$1"
	b=$(processed) || return 1
	echo $(((b - a) / $1))
}

port=$(e2e_free_port)
e2e_start_dst dst1 128 "$MODE"
mr_e2e_serve gw1 "$port" --target "vm=qmp:$(e2e_qmp_sock dst1),log=$E2E_TMP/dst1.log"
e2e_start_src src 128 "$MODE"
mr_e2e_migrate src "$port" vm --bandwidth 8M --postcopy --control "$CTL" --timeout 120 &
mig=$!
e2e_wait_until 20 test -S "$CTL" || e2e_fail "no control socket"
grep -q "control socket $CTL (migrelay ctl $CTL info)" "$E2E_TMP/src-migrate.log" || e2e_fail "migrate did not print its control socket"
e2e_wait_until 20 ctl info --json >/dev/null || e2e_fail "ctl info never answered"
sleep 1
ctl info >"$E2E_TMP/info.txt" || e2e_fail "ctl info failed"
for f in "Time elapsed:" "Data processed:" "Data remaining:" "Data total:" "Memory rate:" "Dirty rate:" \
	"Iteration:" "Expected downtime:" "Compression:" "Connections:        2 of 2 live (ok)" "Post-copy:          enabled"; do
	grep -q "^$f" "$E2E_TMP/info.txt" || e2e_fail "ctl info lacks \"$f\": $(cat "$E2E_TMP/info.txt")"
done
slow=$(rate_over 2) || e2e_fail "ctl info --json failed"
ctl set-speed 48M >"$E2E_TMP/speed.txt" || e2e_fail "ctl set-speed failed"
grep -q "bandwidth set to 48.0 MiB/s" "$E2E_TMP/speed.txt" || e2e_fail "set-speed said: $(cat "$E2E_TMP/speed.txt")"
sleep 1
fast=$(rate_over 2) || e2e_fail "ctl info --json failed after set-speed"
e2e_log "rate before set-speed $((slow >> 20)) MiB/s, after $((fast >> 20)) MiB/s"
[ "$slow" -lt $((12 << 20)) ] || e2e_fail "the 8 MiB/s cap did not hold: $slow B/s"
[ "$fast" -gt $((3 * slow)) ] || e2e_fail "set-speed did not raise the rate: $slow -> $fast B/s"
ctl set-downtime 250ms >/dev/null || e2e_fail "ctl set-downtime failed"
ctl info --json | grep -q '"downtime_limit_ms":250' || e2e_fail "downtime limit not shown as 250 ms"
rc=0
ctl set-speed 12x 2>/dev/null || rc=$?
[ "$rc" -eq 2 ] || e2e_fail "ctl set-speed 12x: exit $rc, expected 2"
ctl postcopy >"$E2E_TMP/pc.txt" || e2e_fail "ctl postcopy failed: $(cat "$E2E_TMP/pc.txt")"
wait $mig || e2e_fail "the migration failed after ctl postcopy"
grep -q "switching to post-copy (migrelay ctl)" "$E2E_TMP/src-migrate.log" || e2e_fail "no switch by ctl"
grep -q "completed and verified" "$E2E_TMP/src-migrate.log" || e2e_fail "no verified report"
[ ! -e "$CTL" ] || e2e_fail "the control socket outlived migrate"
rc=0
ctl info 2>/dev/null || rc=$?
[ "$rc" -eq 3 ] || e2e_fail "ctl on a finished migrate: exit $rc, expected 3"
e2e_ram_check src dst1 data
e2e_stop src dst1 gw1

# ctl cancel: migrate ends cancelled, the guest runs on the source.
port=$(e2e_free_port)
e2e_start_dst dst2 128 "$MODE"
mr_e2e_serve gw2 "$port" --target "vm=qmp:$(e2e_qmp_sock dst2),log=$E2E_TMP/dst2.log"
e2e_start_src src2 128 "$MODE"
mr_e2e_migrate src2 "$port" vm --bandwidth 8M --control "$CTL" --timeout 120 &
mig=$!
e2e_wait_until 20 ctl info --json >/dev/null || e2e_fail "ctl info never answered (second run)"
rc=0
ctl postcopy 2>"$E2E_TMP/pc2.txt" || rc=$?
[ "$rc" -eq 1 ] && grep -q "start migrate with --postcopy" "$E2E_TMP/pc2.txt" ||
	e2e_fail "ctl postcopy without --postcopy: exit $rc, $(cat "$E2E_TMP/pc2.txt")"
ctl cancel || e2e_fail "ctl cancel failed"
rc=0
wait $mig || rc=$?
[ "$rc" -eq 10 ] || e2e_fail "migrate after ctl cancel: exit $rc, expected 10"
e2e_qmp src2 --wait-status running 10 || e2e_fail "the guest does not run on the source after ctl cancel"
# the destination's gateway says the client cancelled (not: connections replaced for fresh keys)
e2e_wait_until 10 grep -q "the client cancelled" "$E2E_TMP/gw2.log" ||
	{ cat "$E2E_TMP/gw2.log" >&2; e2e_fail "serve does not log that the client cancelled"; }
! grep -q "replaced for fresh keys" "$E2E_TMP/gw2.log" || e2e_fail "serve took the cancel for a rekey"
e2e_log "passed in $(e2e_since "$t0") s"
