#!/bin/bash
# SPDX-License-Identifier: MIT
# Proves the e2e harness on its own, with QEMU's own unix: migration and no
# migrelay: a 256 MiB guest that keeps dirtying pages (its data region must
# match exactly), an idle guest (the whole RAM must match exactly), a
# dirtying guest over multifd with 4 channels, and a small checking guest
# migrated slowly whose whole RAM must match, its stack and counters too:
# under TCG, QEMU before 9.0 lost writes to those hot pages in every such
# migration until the guest emptied TCG's TLB after its writes (guest.c,
# tlb_flush_all); this case fails if that avoidance stops working.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init test_qemu_native
e2e_accel
t0=$(e2e_now)

e2e_start_src src1 256 dirty
e2e_start_dst dst1 256 dirty
e2e_migrate_unix src1 dst1 120
e2e_ram_check src1 dst1 data
e2e_stop src1 dst1

e2e_start_src src2 256 idle
e2e_start_dst dst2 256 idle
e2e_migrate_unix src2 dst2 120
e2e_ram_check src2 dst2 whole
e2e_stop src2 dst2

e2e_start_src src3 256 rate=16
e2e_start_dst dst3 256 rate=16
for n in src3 dst3; do
	e2e_qmp $n migrate-set-capabilities '{"capabilities": [{"capability": "multifd", "state": true}]}' >/dev/null ||
		e2e_fail "multifd capability on $n"
	e2e_qmp $n migrate-set-parameters '{"multifd-channels": 4}' >/dev/null || e2e_fail "multifd-channels on $n"
done
e2e_migrate_unix src3 dst3 120
[ "$(e2e_migrate_info src3 ram.multifd-bytes)" -gt 0 ] || e2e_fail "multifd carried nothing"
e2e_ram_check src3 dst3 data
e2e_stop src3 dst3

e2e_start_src src4 64 "check rate=16"
e2e_start_dst dst4 64 "check rate=16"
# 24 MiB/s against 16 MiB/s of writes: several passes, each ending in a dirty-bitmap sync
e2e_migrate_unix src4 dst4 120 25165824
e2e_log "src4 -> dst4: $(e2e_migrate_info src4 ram.dirty-sync-count) dirty-bitmap syncs"
e2e_ram_check src4 dst4 strict-low
e2e_stop src4 dst4

e2e_log "passed in $(e2e_since "$t0") s"
