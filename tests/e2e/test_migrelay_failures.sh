#!/bin/bash
# SPDX-License-Identifier: MIT
# Failures through migrelay, each bounded in time:
#  1. the tunnel is killed mid-migration (the destination gateway gets
#     SIGKILL): migrate fails with "peer gone", the source QEMU reports the
#     failure and the guest keeps running on the source;
#  2. a destination that refuses (another RAM size, with --no-preflight so
#     that QEMU's load meets it: test_migrelay_preflight has the check):
#     migrate fails with QEMU's own reason, and the guest keeps running on
#     the source;
#  3. Ctrl-C (SIGINT) during the migration: migrate_cancel, exit 10, the
#     guest keeps running on the source.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/migrelay.sh"

e2e_init test_migrelay_failures
e2e_accel
mr_e2e_pki
t0=$(e2e_now)

# 1. tunnel killed
port=$(e2e_free_port)
e2e_start_dst dst1 256 dirty
mr_e2e_serve gw1 "$port" --target "vm=qmp:$(e2e_qmp_sock dst1),log=$E2E_TMP/dst1.log"
e2e_start_src src1 256 dirty
( sleep 2; kill -KILL "${E2E_PID[gw1]}" ) &
killer=$!
rc=0
timeout 120 "$MIGRELAY" migrate --qmp "$(e2e_qmp_sock src1)" --to "127.0.0.1:$port" --target vm \
	--tls-dir "$E2E_TMP/cli" --connections 2 --bandwidth 20M --reconnect-timeout 3 >/dev/null 2>"$E2E_TMP/m1.log" || rc=$?
wait "$killer" || true
e2e_log "tunnel killed: migrate exit $rc: $(grep -v '^ ' "$E2E_TMP/m1.log" | tail -n 2 | tr '\n' ' ')"
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || e2e_fail "migrate exit $rc after the tunnel died (expected a failure, not a hang)"
[ "$rc" = 7 ] || e2e_fail "expected exit 7 (peer gone), got $rc"
python3 "$E2E_DIR/qmp.py" "$(e2e_qmp_sock src1)" --wait-migration 30 >"$E2E_TMP/src1.mig" && e2e_fail "source QEMU says the migration completed"
grep -q '"status": "\(failed\|cancelled\)"' "$E2E_TMP/src1.mig" || e2e_fail "source QEMU status: $(cat "$E2E_TMP/src1.mig")"
e2e_qmp src1 --wait-status running 10 || e2e_fail "the guest is not running on the source"
e2e_stop src1 dst1

# 2. destination refuses: another RAM size
port=$(e2e_free_port)
e2e_start_dst dst2 128 dirty
mr_e2e_serve gw2 "$port" --target "vm=qmp:$(e2e_qmp_sock dst2),log=$E2E_TMP/dst2.log"
e2e_start_src src2 256 dirty
rc=0
timeout 120 "$MIGRELAY" migrate --qmp "$(e2e_qmp_sock src2)" --to "127.0.0.1:$port" --target vm \
	--tls-dir "$E2E_TMP/cli" --no-preflight >/dev/null 2>"$E2E_TMP/m2.log" || rc=$?
e2e_log "destination refuses: migrate exit $rc: $(grep -v '^ ' "$E2E_TMP/m2.log" | tail -n 3 | tr '\n' ' ')"
[ "$rc" = 9 ] || e2e_fail "expected exit 9 (QEMU refused), got $rc"
grep -qi "length mismatch\|ram\|size" "$E2E_TMP/m2.log" || e2e_fail "the error does not give QEMU's reason"
e2e_qmp src2 --wait-status running 10 || e2e_fail "the guest is not running on the source"
e2e_stop src2 dst2

# 3. cancelled by SIGINT
port=$(e2e_free_port)
e2e_start_dst dst3 256 dirty
mr_e2e_serve gw3 "$port" --target "vm=qmp:$(e2e_qmp_sock dst3),log=$E2E_TMP/dst3.log"
e2e_start_src src3 256 dirty
rc=0
"$MIGRELAY" migrate --qmp "$(e2e_qmp_sock src3)" --to "127.0.0.1:$port" --target vm --tls-dir "$E2E_TMP/cli" \
	--bandwidth 20M >/dev/null 2>"$E2E_TMP/m3.log" &
mpid=$!
sleep 2
kill -INT "$mpid"
timeout 60 tail --pid="$mpid" -f /dev/null || e2e_fail "migrate did not end within 60 s of SIGINT"
wait "$mpid" || rc=$?
e2e_log "cancelled: migrate exit $rc: $(grep -v '^ ' "$E2E_TMP/m3.log" | tail -n 1)"
[ "$rc" = 10 ] || e2e_fail "expected exit 10 (cancelled), got $rc"
python3 "$E2E_DIR/qmp.py" "$(e2e_qmp_sock src3)" --wait-migration 30 >"$E2E_TMP/src3.mig" && e2e_fail "source QEMU says the migration completed"
grep -q '"status": "cancelled"' "$E2E_TMP/src3.mig" || e2e_fail "source QEMU status: $(cat "$E2E_TMP/src3.mig")"
e2e_qmp src3 --wait-status running 10 || e2e_fail "the guest is not running on the source"
e2e_log "passed in $(e2e_since "$t0") s"
