#!/bin/bash
# SPDX-License-Identifier: MIT
# --copy-storage-synchronous-writes through migrelay: as test_migrelay_storage,
# with the mirror in QEMU's write-blocking copy mode. The writer on the source
# reads each write back on the destination as soon as it completed, while the
# mirror runs: in write-blocking mode a write completes only once it is on
# the destination, so every read must match. Disks and RAM must match after.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/migrelay.sh"

e2e_init test_migrelay_storage_sync
command -v qemu-img >/dev/null && command -v qemu-io >/dev/null || e2e_skip "qemu-img or qemu-io not found"
e2e_accel
mr_e2e_pki
t0=$(e2e_now)
T=$E2E_TMP
port=$(e2e_free_port)
e2e_make_disk "$T/src.qcow2" 64
e2e_make_disk "$T/dst.qcow2" 64 empty
# Second monitors for the writer and its reads: migrelay and the gateway use the first ones.
# shellcheck disable=SC2046
e2e_start_dst dst 128 dirty $(e2e_disk_args "$T/dst.qcow2") -qmp "unix:$T/dst-reader.qmp,server=on,wait=off"
mr_e2e_serve gw "$port" --target "vm=qmp:$(e2e_qmp_sock dst),log=$E2E_TMP/dst.log"
# shellcheck disable=SC2046
e2e_start_src src 128 dirty $(e2e_disk_args "$T/src.qcow2") -qmp "unix:$T/src-writer.qmp,server=on,wait=off"
python3 "$E2E_DIR/diskwriter.py" --check-dst "$T/dst-reader.qmp" disk0 "$T/dst.log" \
	"$T/src-writer.qmp" vd0/virtio-backend "$T/src.log" "$T/migrated" "$T/writes" &
writer=$!
for ((i = 0; i < 300; i++)); do [ -e "$T/writes.started" ] && break; sleep 0.1; done
[ -e "$T/writes.started" ] || e2e_fail "the disk writer did not start"
# A bandwidth cap keeps RAM moving for a few seconds while the writer goes on.
mr_e2e_migrate src "$port" vm --copy-storage disk0 --copy-storage-synchronous-writes --connections 2 --bandwidth 40M ||
	e2e_fail "migrelay migrate --copy-storage-synchronous-writes failed"
touch "$T/migrated"
wait "$writer" || e2e_fail "the disk writer failed"
read -r writes werrs checked mismatches wlast <"$T/writes"
[ "$writes" -ge 5 ] && [ "$werrs" = 0 ] ||
	e2e_fail "$writes disk writes during the migration, $werrs failed: $wlast"
[ "$mismatches" = 0 ] || e2e_fail "$mismatches completed writes were not on the destination yet: $wlast"
[ "$checked" -ge 5 ] || e2e_fail "only $checked writes were read back on the destination during the mirror"
e2e_log "$writes disk writes on the source during the migration, $checked read back on the destination at once"
grep -q "completed and verified" "$E2E_TMP/src-migrate.log" || e2e_fail "no verified report"
grep -q "guest writes synchronous" "$E2E_TMP/src-migrate.log" || e2e_fail "the mirror did not say it was write-blocking"
e2e_ram_check src dst data
e2e_stop src dst
qemu-img compare "$T/src.qcow2" "$T/dst.qcow2" || e2e_fail "disks differ"
e2e_log "disks identical; passed in $(e2e_since "$t0") s"
