#!/bin/bash
# SPDX-License-Identifier: MIT
# The destination's guest after a migration, as libvirt leaves it: a guest
# that was running is resumed on the destination by default (the destination
# gateway's `cont` once the client said BYE), and there it goes on checking
# its own RAM ("check" guest: every page against what it must hold); with
# --suspend it stays paused (and its RAM equals the source's); a guest that
# was paused on the source stays paused on the destination. With post-copy
# the guest is resumed on the destination at the switch, and checks its own
# RAM there while pages still arrive.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/migrelay.sh"

e2e_init test_migrelay_resume
e2e_accel
mr_e2e_pki
t0=$(e2e_now)
status() { e2e_qmp "$1" query-status | python3 -c 'import json, sys; print(json.load(sys.stdin)["status"])'; }

# 1. Default: resumed on the destination, where the guest's own check keeps passing.
port=$(e2e_free_port)
e2e_start_dst dst1 128 "check rate=8"
mr_e2e_serve gw1 "$port" --target "vm=qmp:$(e2e_qmp_sock dst1),log=$E2E_TMP/dst1.log"
e2e_start_src src1 128 "check rate=8"
e2e_wait_until 60 grep -aq "check pass 1 ok" "$E2E_TMP/src1.serial" || e2e_fail "the source guest's check did not pass"
MR_E2E_RESUME=1 mr_e2e_migrate src1 "$port" vm || e2e_fail "migration failed"
grep -q "the destination gateway resumes the guest now" "$E2E_TMP/src1-migrate.log" || e2e_fail "no resume line in the report"
e2e_qmp dst1 --wait-status running 20 || e2e_fail "the destination guest was not resumed: $(status dst1)"
grep -qE "session [0-9a-f]{16}: resumed the guest on the destination QEMU" "$E2E_TMP/gw1.log" || e2e_fail "serve did not log the resume"
[ "$(status src1)" = postmigrate ] || e2e_fail "the source is $(status src1), not postmigrate"
# The guest runs on: new lines on the destination's console, none a mismatch.
passes() { grep -ac "check pass" "$E2E_TMP/dst1.serial" || true; }
more_passes() { [ "$(passes)" -ge $(($1 + 2)) ]; }
e2e_wait_until 60 more_passes "$(passes)" ||
	e2e_fail "the resumed guest does not check its RAM on the destination"
! grep -aq MISMATCH "$E2E_TMP/dst1.serial" || e2e_fail "the resumed guest found a page it did not write: $(grep -a -m3 MISMATCH "$E2E_TMP/dst1.serial")"
e2e_log "resumed on the destination: $(grep -a "check pass" "$E2E_TMP/dst1.serial" | tail -n 1 | tr -d '\r')"
e2e_stop src1 dst1 gw1

# 2. --suspend: paused on the destination, RAM equal to the source's.
port=$(e2e_free_port)
e2e_start_dst dst2 128 dirty
mr_e2e_serve gw2 "$port" --target "vm=qmp:$(e2e_qmp_sock dst2),log=$E2E_TMP/dst2.log"
e2e_start_src src2 128 dirty
MR_E2E_RESUME=1 mr_e2e_migrate src2 "$port" vm --suspend || e2e_fail "migration with --suspend failed"
grep -q "stays paused on the destination (--suspend)" "$E2E_TMP/src2-migrate.log" || e2e_fail "no --suspend line in the report"
sleep 2
[ "$(status dst2)" = paused ] || e2e_fail "with --suspend the destination is $(status dst2)"
e2e_ram_check src2 dst2 data
e2e_stop src2 dst2 gw2

# 3. A guest paused on the source stays paused on the destination.
port=$(e2e_free_port)
e2e_start_dst dst3 128 dirty
mr_e2e_serve gw3 "$port" --target "vm=qmp:$(e2e_qmp_sock dst3),log=$E2E_TMP/dst3.log"
e2e_start_src src3 128 dirty
e2e_qmp src3 stop >/dev/null || e2e_fail "stop"
MR_E2E_RESUME=1 mr_e2e_migrate src3 "$port" vm --json || e2e_fail "migration of a paused guest failed"
grep -q '"destination_resume":false' "$E2E_TMP/src3-migrate.out" || e2e_fail "the JSON report does not say the destination stays paused"
sleep 2
[ "$(status dst3)" = paused ] || e2e_fail "a guest paused on the source is $(status dst3) on the destination"
e2e_stop src3 dst3 gw3

# 4. Post-copy: the guest runs on the destination from the switch on (its pages arriving on demand and in
# the background, 4 MiB/s), and checks its own RAM there while the rest is still on its way.
port=$(e2e_free_port)
# (rate=16: see test_migrelay_postcopy for the guest that does not converge; here the point is where the
# guest runs.)
e2e_start_dst dst4 128 "check rate=16"
mr_e2e_serve gw4 "$port" --target "vm=qmp:$(e2e_qmp_sock dst4),log=$E2E_TMP/dst4.log"
e2e_start_src src4 128 "check rate=16"
MR_E2E_RESUME=1 mr_e2e_migrate src4 "$port" vm --bandwidth 16M --postcopy-after-precopy --postcopy-bandwidth 4M \
	--timeout 120 || e2e_fail "post-copy migration with resume failed"
grep -qE "session [0-9a-f]{16}: resumed the guest on the destination QEMU at the switch to post-copy" "$E2E_TMP/gw4.log" ||
	e2e_fail "serve did not resume the guest at the switch"
# It ran during post-copy: the resume came before the destination QEMU had loaded everything.
r=$(grep -n "at the switch to post-copy" "$E2E_TMP/gw4.log" | cut -d: -f1)
l=$(grep -n "destination QEMU loaded the migration" "$E2E_TMP/gw4.log" | cut -d: -f1)
[ -n "$r" ] && [ -n "$l" ] && [ "$r" -lt "$l" ] || e2e_fail "the guest was not resumed during post-copy (lines $r, $l)"
pc=$(grep -c "postcopy-active" "$E2E_TMP/src4-migrate.log" || true)
[ "${pc:-0}" -ge 3 ] || e2e_fail "post-copy lasted only $pc progress lines"
e2e_qmp dst4 --wait-status running 10 || e2e_fail "the destination guest is not running after post-copy"
passes4() { grep -ac "check pass" "$E2E_TMP/dst4.serial" || true; }
more4() { [ "$(passes4)" -ge $(($1 + 2)) ]; }
e2e_wait_until 60 more4 "$(passes4)" ||
	e2e_fail "the guest does not check its RAM on the destination after post-copy; its serial ends:
$(tail -n 5 "$E2E_TMP/dst4.serial" 2>/dev/null)
destination query-migrate: $(e2e_qmp dst4 query-migrate 2>&1 | head -c 600)
return path: $(grep -h "done: received" "$E2E_TMP/gw4.log")"
! grep -aq MISMATCH "$E2E_TMP/dst4.serial" || e2e_fail "post-copy: the guest found a wrong page: $(grep -a -m3 MISMATCH "$E2E_TMP/dst4.serial")"
e2e_log "post-copy: resumed at the switch, $pc progress lines in post-copy, guest checks pass on the destination"
e2e_log "passed in $(e2e_since "$t0") s"
