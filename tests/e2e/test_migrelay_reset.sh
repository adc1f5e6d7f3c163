#!/bin/bash
# SPDX-License-Identifier: MIT
# A QEMU guest migrating through migrelay with 4 connections survives the
# reset of one of them: a proxy between the gateways resets a connection
# a third of the way in; the chunks it carried are sent again on the others,
# it rejoins, and the destination's RAM equals the source's.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/migrelay.sh"

e2e_init test_migrelay_reset
e2e_accel
mr_e2e_pki
t0=$(e2e_now)
port=$(e2e_free_port)
pport=$(e2e_free_port)
e2e_start_dst dst 256 dirty
mr_e2e_serve gw "$port" --target "vm=qmp:$(e2e_qmp_sock dst),log=$E2E_TMP/dst.log"
# A 256 MiB guest sends about 190 MiB: reset the second connection at ~60 MiB.
e2e_spawn proxy python3 "$MR_SRC/tests/tools/cutproxy.py" --listen "$pport" --to "$port" \
	--total $((200 << 20)) --reset 0.3:1 --max-seconds 300
for ((i = 0; i < 50; i++)); do grep -q listening "$E2E_TMP/proxy.log" && break; sleep 0.1; done
e2e_start_src src 256 dirty
mr_e2e_migrate src "$pport" vm --connections 4 || e2e_fail "migration did not survive the reset"
grep -q "reset connection 1" "$E2E_TMP/proxy.log" || e2e_fail "the proxy did not reset a connection: $(cat "$E2E_TMP/proxy.log")"
grep -q "completed and verified" "$E2E_TMP/src-migrate.log" || e2e_fail "no verified report"
e2e_log "proxy: $(grep 'reset connection' "$E2E_TMP/proxy.log" | cut -d' ' -f2-)"
e2e_ram_check src dst data
e2e_log "passed in $(e2e_since "$t0") s"
