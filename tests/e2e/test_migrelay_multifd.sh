#!/bin/bash
# SPDX-License-Identifier: MIT
# multifd with 2 channels over 2 connections through migrelay: the source
# gateway listens for QEMU's 3 connections (main first), the destination
# gateway opens them in the same order; RAM must match (data region).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/migrelay.sh"

e2e_init test_migrelay_multifd
e2e_accel
mr_e2e_pki
t0=$(e2e_now)
port=$(e2e_free_port)
e2e_start_dst dst 256 dirty
mr_e2e_serve gw "$port" --target "vm=qmp:$(e2e_qmp_sock dst),log=$E2E_TMP/dst.log"
e2e_start_src src 256 dirty
mr_e2e_migrate src "$port" vm --multifd 2 --connections 2 || e2e_fail "migrelay migrate --multifd 2 failed"
grep -q "completed and verified" "$E2E_TMP/src-migrate.log" || e2e_fail "no verified report"
e2e_qmp src query-migrate >"$E2E_TMP/src.migrate.json"
[ "$(e2e_migrate_info src ram.multifd-bytes)" -gt 0 ] || e2e_fail "multifd carried nothing"
grep -q "session .* done: 3 stream(s)" "$E2E_TMP/gw.log" || e2e_fail "the destination gateway did not see 3 verified streams"
e2e_ram_check src dst data
e2e_log "passed in $(e2e_since "$t0") s"
