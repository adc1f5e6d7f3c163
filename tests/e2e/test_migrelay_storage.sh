#!/bin/bash
# SPDX-License-Identifier: MIT
# --copy-storage through migrelay: a guest with a qcow2 disk holding known
# content, mirrored over an NBD stream of the same session while the guest
# keeps running, then RAM; the disks must compare equal and so must RAM.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/migrelay.sh"

e2e_init test_migrelay_storage
command -v qemu-img >/dev/null && command -v qemu-io >/dev/null || e2e_skip "qemu-img or qemu-io not found"
e2e_accel
mr_e2e_pki
t0=$(e2e_now)
T=$E2E_TMP
port=$(e2e_free_port)
e2e_make_disk "$T/src.qcow2" 64
e2e_make_disk "$T/dst.qcow2" 64 empty
# shellcheck disable=SC2046
e2e_start_dst dst 128 dirty $(e2e_disk_args "$T/dst.qcow2")
mr_e2e_serve gw "$port" --target "vm=qmp:$(e2e_qmp_sock dst),log=$E2E_TMP/dst.log"
# A second monitor for the writer: migrelay holds the first during the migration.
# shellcheck disable=SC2046
e2e_start_src src 128 dirty $(e2e_disk_args "$T/src.qcow2") -qmp "unix:$T/src-writer.qmp,server=on,wait=off"
# The disk keeps changing while it is mirrored and while RAM moves: a writer
# on the source (qemu-io through the guest's device, second monitor), until
# the migration ends.
python3 "$E2E_DIR/diskwriter.py" "$T/src-writer.qmp" vd0/virtio-backend "$T/src.log" "$T/migrated" "$T/writes" &
writer=$!
for ((i = 0; i < 300; i++)); do [ -e "$T/writes.started" ] && break; sleep 0.1; done
[ -e "$T/writes.started" ] || e2e_fail "the disk writer did not start"
# A bandwidth cap keeps RAM moving for a few seconds while the writer goes on.
mr_e2e_migrate src "$port" vm --copy-storage disk0 --connections 2 --bandwidth 40M ||
	e2e_fail "migrelay migrate --copy-storage failed"
touch "$T/migrated"
wait "$writer" || e2e_fail "the disk writer failed"
read -r writes werrs _ _ wlast <"$T/writes"
[ "$writes" -ge 5 ] && [ "$werrs" = 0 ] ||
	e2e_fail "$writes disk writes during the migration, $werrs failed: $wlast"
e2e_log "$writes disk writes on the source during the migration"
grep -q "completed and verified" "$E2E_TMP/src-migrate.log" || e2e_fail "no verified report"
e2e_ram_check src dst data
e2e_stop src dst
qemu-img compare "$T/src.qcow2" "$T/dst.qcow2" || e2e_fail "disks differ"
e2e_log "disks identical; passed in $(e2e_since "$t0") s"
