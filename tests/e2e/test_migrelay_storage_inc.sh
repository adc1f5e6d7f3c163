#!/bin/bash
# SPDX-License-Identifier: MIT
# --copy-storage-inc through migrelay: the source disk is an overlay over a
# backing image with known content, written to before boot and while it is
# mirrored; the destination's disk is an empty overlay over a copy of the
# same backing image. Only the top image travels: afterwards both chains
# read the same, RAM matches, and the destination's overlay holds only what
# the source's overlay held (the backing image's data was not copied).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/migrelay.sh"

e2e_init test_migrelay_storage_inc
command -v qemu-img >/dev/null && command -v qemu-io >/dev/null || e2e_skip "qemu-img or qemu-io not found"
e2e_accel
mr_e2e_pki
t0=$(e2e_now)
T=$E2E_TMP
port=$(e2e_free_port)
# The backing image: data at 0, 32M and 63M (1 MiB each). The destination
# gets its own copy of it, as a host with the same base image would have.
e2e_make_disk "$T/base.qcow2" 64
cp "$T/base.qcow2" "$T/dst-base.qcow2"
qemu-img create -q -f qcow2 -b "$T/base.qcow2" -F qcow2 "$T/src.qcow2" || e2e_fail "qemu-img create src overlay"
qemu-img create -q -f qcow2 -b "$T/dst-base.qcow2" -F qcow2 "$T/dst.qcow2" || e2e_fail "qemu-img create dst overlay"
# The source's own data: a new region, and part of the backing's 32M region overwritten.
qemu-io -f qcow2 -c "write -P 0x77 8M 1M" -c "write -P 0x66 32M 256k" "$T/src.qcow2" >/dev/null ||
	e2e_fail "qemu-io on the source overlay"
# shellcheck disable=SC2046
e2e_start_dst dst 128 dirty $(e2e_disk_args "$T/dst.qcow2")
mr_e2e_serve gw "$port" --target "vm=qmp:$(e2e_qmp_sock dst),log=$E2E_TMP/dst.log"
# A second monitor for the writer: migrelay holds the first during the migration.
# shellcheck disable=SC2046
e2e_start_src src 128 dirty $(e2e_disk_args "$T/src.qcow2") -qmp "unix:$T/src-writer.qmp,server=on,wait=off"
python3 "$E2E_DIR/diskwriter.py" "$T/src-writer.qmp" vd0/virtio-backend "$T/src.log" "$T/migrated" "$T/writes" &
writer=$!
for ((i = 0; i < 300; i++)); do [ -e "$T/writes.started" ] && break; sleep 0.1; done
[ -e "$T/writes.started" ] || e2e_fail "the disk writer did not start"
# A bandwidth cap keeps RAM moving for a few seconds while the writer goes on.
mr_e2e_migrate src "$port" vm --copy-storage-inc disk0 --connections 2 --bandwidth 40M ||
	e2e_fail "migrelay migrate --copy-storage-inc failed"
touch "$T/migrated"
wait "$writer" || e2e_fail "the disk writer failed"
read -r writes werrs _ _ wlast <"$T/writes"
[ "$writes" -ge 5 ] && [ "$werrs" = 0 ] ||
	e2e_fail "$writes disk writes during the migration, $werrs failed: $wlast"
e2e_log "$writes disk writes on the source during the migration"
grep -q "completed and verified" "$E2E_TMP/src-migrate.log" || e2e_fail "no verified report"
grep -q "0 whole, 1 top image only" "$E2E_TMP/src-migrate.log" || e2e_fail "the disk was not mirrored as a top image"
e2e_ram_check src dst data
e2e_stop src dst
qemu-img compare "$T/src.qcow2" "$T/dst.qcow2" || e2e_fail "the disks (backing chains included) differ"
# What the destination's overlay holds: per 64 KiB cluster, allocated in the
# top image (depth 0) or read from the backing image.
python3 - "$T/src.qcow2" "$T/dst.qcow2" <<'PY' || e2e_fail "the destination's overlay is not what the source's top image held"
import json, subprocess, sys
def top(f):
    m = json.loads(subprocess.check_output(["qemu-img", "map", "--output=json", f]))
    return {c for e in m if e["depth"] == 0 for c in range(e["start"] >> 16, (e["start"] + e["length"] + 65535) >> 16)}
src, dst = top(sys.argv[1]), top(sys.argv[2])
mib = 16  # clusters per MiB
problems = []
if dst - src:
    problems.append("%d clusters allocated on the destination that the source's overlay does not hold" % len(dst - src))
for name, start in (("0M (backing only)", 0), ("63M (backing only)", 63 * mib)):
    if set(range(start, start + mib)) & dst:
        problems.append("the backing's data at %s was copied into the overlay" % name)
for name, start, n in (("8M", 8 * mib, mib), ("32M", 32 * mib, 4)):
    if not set(range(start, start + n)) <= dst:
        problems.append("the source's own data at %s is not in the destination's overlay" % name)
print("top image: source %.2f MiB, destination %.2f MiB allocated of 64 MiB" % (len(src) / mib, len(dst) / mib), file=sys.stderr)
for p in problems:
    print(p, file=sys.stderr)
sys.exit(1 if problems else 0)
PY
e2e_log "chains identical, only the top image copied; passed in $(e2e_since "$t0") s"
