#!/bin/bash
# SPDX-License-Identifier: MIT
# Proves the storage-migration sequence that migrelay carries, with QEMU's
# own transports only: the destination exports its (empty) disk over NBD on
# a unix socket, the source mirrors into it, RAM follows over unix:, and the
# mirror is ended while the source is paused before switchover (what libvirt
# does for copy-storage-all). Disks and RAM must match.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init test_qemu_native_storage
for tool in qemu-img qemu-io; do
	command -v $tool >/dev/null || e2e_skip "$tool not found"
done
e2e_accel
t0=$(e2e_now)
T=$E2E_TMP

e2e_make_disk "$T/src.qcow2" 64
e2e_make_disk "$T/dst.qcow2" 64 empty
# shellcheck disable=SC2046
e2e_start_src src 128 dirty $(e2e_disk_args "$T/src.qcow2")
# shellcheck disable=SC2046
e2e_start_dst dst 128 dirty $(e2e_disk_args "$T/dst.qcow2")

# destination: NBD server and a writable export of the disk, then RAM
e2e_qmp dst nbd-server-start "{\"addr\": {\"type\": \"unix\", \"data\": {\"path\": \"$T/nbd.sock\"}}}" >/dev/null ||
	e2e_fail "nbd-server-start"
e2e_qmp dst block-export-add '{"type": "nbd", "id": "exp0", "node-name": "disk0", "name": "disk0", "writable": true}' \
	>/dev/null || e2e_fail "block-export-add"
e2e_qmp dst migrate-incoming "{\"uri\": \"unix:$T/mig.sock\"}" >/dev/null || e2e_fail "migrate-incoming"

# source: mirror into the export, wait until it is in sync
e2e_qmp src migrate-set-capabilities \
	'{"capabilities": [{"capability": "events", "state": true}, {"capability": "pause-before-switchover", "state": true}]}' \
	>/dev/null || e2e_fail "migrate-set-capabilities"
e2e_qmp src blockdev-add \
	"{\"driver\": \"nbd\", \"node-name\": \"nbd0\", \"server\": {\"type\": \"unix\", \"path\": \"$T/nbd.sock\"}, \"export\": \"disk0\"}" \
	>/dev/null || e2e_fail "blockdev-add nbd"
e2e_qmp src blockdev-mirror '{"job-id": "mirror0", "device": "disk0", "target": "nbd0", "sync": "full"}' >/dev/null ||
	e2e_fail "blockdev-mirror"
e2e_qmp src --wait-job mirror0 ready 60 || e2e_fail "mirror0 not ready"

# RAM; at pre-switchover the vCPUs are stopped: end the mirror, then let it finish
e2e_qmp src migrate-set-parameters '{"max-bandwidth": 1099511627776}' >/dev/null || e2e_fail "migrate-set-parameters"
e2e_qmp src migrate "{\"uri\": \"unix:$T/mig.sock\"}" >/dev/null || e2e_fail "migrate"
e2e_wait_migration src 120 pre-switchover || e2e_fail "no pre-switchover"
e2e_qmp src block-job-cancel '{"device": "mirror0"}' >/dev/null || e2e_fail "block-job-cancel"
e2e_qmp src --wait-job mirror0 gone 60 || e2e_fail "mirror0 did not end"
e2e_qmp src migrate-continue '{"state": "pre-switchover"}' >/dev/null || e2e_fail "migrate-continue"
e2e_wait_migration src 120 || e2e_fail "migration did not complete"
e2e_log "migration completed (QEMU: total $(e2e_migrate_info src total-time) ms)"
e2e_qmp src blockdev-del '{"node-name": "nbd0"}' >/dev/null || e2e_fail "blockdev-del"
e2e_qmp dst --wait-status paused 60 || e2e_fail "destination not paused"
e2e_qmp dst nbd-server-stop >/dev/null || e2e_fail "nbd-server-stop"

e2e_ram_check src dst data
e2e_stop src dst
qemu-img compare -q "$T/src.qcow2" "$T/dst.qcow2" || e2e_fail "disks differ"
e2e_log "disks identical; passed in $(e2e_since "$t0") s"
