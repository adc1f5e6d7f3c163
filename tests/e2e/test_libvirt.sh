#!/bin/bash
# SPDX-License-Identifier: MIT
# libvirt through migrelay, as README's recipe has it: two libvirt daemons,
# each in its own network, mount and UTS namespaces (tests/e2e/libvirt.sh),
# joined by a veth pair on which only migrelay's port carries anything. On
# the destination one `migrelay serve` with three targets (libvirt's
# migration socket, its disks socket and libvirtd itself); on the source one
# `migrelay forward` per socket path. Then `virsh migrate --live --p2p` of a
# guest that checks its own RAM (the e2e guest in "check" mode):
#   1. RAM only;
#   2. --parallel --parallel-connections 4 (QEMU multifd over the forward);
#   3. --copy-storage-all with writes during the mirror, images compared
#      with qemu-img compare.
# After each, the guest must run on the destination and finish two whole
# sweeps of its RAM check there without a mismatch.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/migrelay.sh"
. "$(dirname "${BASH_SOURCE[0]}")/libvirt.sh"

e2e_init test_libvirt
lv_init
e2e_accel
MIB=128
DISK_MIB=64

# The guest's own RAM check must see what it is there to see: a guest told to
# corrupt one page and let another go stale reports both, each by its kind.
e2e_start_src selftest 64 "checkfault rate=16"
e2e_wait_until 60 grep -aq 'pages differ' "$E2E_TMP/selftest.serial" || e2e_fail "the guest's RAM check saw nothing wrong"
grep -aq 'the page is stale' "$E2E_TMP/selftest.serial" || e2e_fail "the guest's RAM check did not tell a stale page"
grep -aq 'pages differ: 2' "$E2E_TMP/selftest.serial" || e2e_fail "the guest's RAM check missed the corrupted page"
e2e_stop selftest

# certificates as README's quick start issues them
"$MIGRELAY" pki init --dir "$E2E_TMP/ca" >/dev/null || e2e_fail "pki init"
"$MIGRELAY" pki issue server --ca "$E2E_TMP/ca" --out "$E2E_TMP/dst-tls" --cn dst.example --dns dst.example \
	--ip 198.18.0.2 >/dev/null || e2e_fail "pki issue server"
"$MIGRELAY" pki issue client --ca "$E2E_TMP/ca" --out "$E2E_TMP/src-tls" --cn src.example >/dev/null ||
	e2e_fail "pki issue client"

lv_host src 198.18.0.1
lv_host dst 198.18.0.2
S=$E2E_TMP/src
D=$E2E_TMP/dst

if [ "${LV_RELAY:-migrelay}" = socat ]; then
	# Diagnosis only (LV_RELAY=socat): the same migrations through plain socat
	# bridges instead of migrelay, to tell a QEMU fault from a relay fault.
	for sock in mig disks libvirtd; do
		dst=$D/mig/$sock.sock
		[ $sock = libvirtd ] && dst=$D/run/libvirt-sock
		e2e_spawn "socat-$sock" socat "UNIX-LISTEN:$S/mig/$sock.sock,fork" "UNIX-CONNECT:$dst"
		e2e_wait_until 10 test -S "$S/mig/$sock.sock" || e2e_fail "socat for $sock did not start"
	done
	echo "listening on (socat)" >"$E2E_TMP/serve.log"
else
lv_spawn_in dst serve "$MIGRELAY" serve --listen 198.18.0.2:4433 --tls-dir "$E2E_TMP/dst-tls" \
	--target "lv-mig=unix:$D/mig/mig.sock" --target "lv-disks=unix:$D/mig/disks.sock" \
	--target "libvirtd=unix:$D/run/libvirt-sock" --allow 'CN=src.example' -v
e2e_wait_until 10 grep -q "listening on" "$E2E_TMP/serve.log" || e2e_fail "serve did not start"
for f in mig:lv-mig:4 disks:lv-disks:2 libvirtd:libvirtd:1; do
	IFS=: read -r sock target n <<<"$f"
	lv_spawn_in src "fwd-$sock" "$MIGRELAY" forward --listen "unix:$S/mig/$sock.sock" --to 198.18.0.2:4433 \
		--target "$target" --tls-dir "$E2E_TMP/src-tls" --connections "$n"
	e2e_wait_until 10 test -S "$S/mig/$sock.sock" || e2e_fail "forward for $sock did not start"
done
fi
DESTURI='qemu+unix:///system?socket=/run/migrelay/libvirtd.sock'

# clean_passes FILE: how many clean sweeps of the guest's RAM check FILE shows.
clean_passes() { grep -ac 'check pass .* ok' "$1" 2>/dev/null || true; }
passes_at_least() { [ "$(clean_passes "$1")" -ge "$2" ]; }

# guest_checked HOST VM: the guest runs on HOST and finishes two sweeps of its RAM check there.
guest_checked() {
	local host=$1 vm=$2 ser state n0
	ser=$(lv_serial "$host" "$vm")
	state=$(lv_virsh "$host" domstate "$vm" 2>&1 | head -n 1)
	[ "$state" = running ] || e2e_fail "$vm on $host is '$state', not running"
	n0=$(clean_passes "$ser")
	e2e_wait_until 120 passes_at_least "$ser" $((n0 + 2)) ||
		{ tail -n 5 "$ser" >&2; e2e_fail "$vm on $host did not finish two clean RAM checks"; }
	if grep -aq 'MISMATCH\|FAILED' "$ser"; then
		grep -a 'MISMATCH\|FAILED' "$ser" | head -n 5 >&2
		e2e_fail "$vm on $host found its RAM changed by the migration"
	fi
}

# migrate NAME VIRSH_ARGS...: one `virsh migrate --live --p2p` of vm from src to dst.
migrate() {
	local name=$1 t0 rc=0
	shift
	t0=$(e2e_now)
	lv_virsh src migrate --live --p2p vm "$DESTURI" --migrateuri unix:///run/migrelay/mig.sock "$@" \
		>"$E2E_TMP/virsh-$name.log" 2>&1 || rc=$?
	[ $rc = 0 ] || { cat "$E2E_TMP/virsh-$name.log" >&2; e2e_fail "virsh migrate ($name) failed"; }
	e2e_log "$name: virsh migrate $* completed in $(e2e_since "$t0") s"
}

# fresh NAME CMDLINE [DISK]: vm started on the source, gone from the destination.
fresh() {
	lv_virsh dst destroy vm >/dev/null 2>&1 || true
	lv_virsh src undefine vm >/dev/null 2>&1 || true
	rm -f "$(lv_serial src vm)" "$(lv_serial dst vm)"
	lv_define src vm "$MIB" "$@"
	e2e_wait_until 60 grep -aq 'check pass 1 ok' "$(lv_serial src vm)" || e2e_fail "guest did not come up on src"
}

fresh "check rate=8"
migrate ram
guest_checked dst vm

fresh "check rate=8"
migrate parallel --parallel --parallel-connections 4
guest_checked dst vm

qemu-img create -q -f qcow2 "$S/lib/images/vm.qcow2" "${DISK_MIB}M" || e2e_fail "qemu-img create"
qemu-io -f qcow2 -c "write -P 0xab 0 4M" -c "write -P 0x5c $((DISK_MIB / 2))M 4M" "$S/lib/images/vm.qcow2" \
	>/dev/null || e2e_fail "qemu-io"
qemu-img create -q -f qcow2 "$D/lib/images/vm.qcow2" "${DISK_MIB}M" || e2e_fail "qemu-img create (dst)"
fresh "check rate=8" vm.qcow2
# writes during the mirror, from the source QEMU's own block layer, all within
# the first 2 s: the RAM phase (capped by --bandwidth) lasts longer, and a write
# after the switch-over would hit the inactivated image (QEMU asserts on that)
(
	for i in $(seq 1 10); do
		lv_virsh src qemu-monitor-command vm --hmp "qemu-io -d /machine/peripheral/virtio-disk0/virtio-backend \"write -P $((i + 16)) $((i * 2))M 1M\"" \
			>/dev/null 2>&1 || true
		sleep 0.15
	done
) &
writer=$!
migrate storage --copy-storage-all --disks-uri unix:///run/migrelay/disks.sock --bandwidth 24
wait $writer || true
guest_checked dst vm
lv_virsh dst destroy vm >/dev/null || e2e_fail "destroy on dst"
qemu-img compare -q "$S/lib/images/vm.qcow2" "$D/lib/images/vm.qcow2" ||
	e2e_fail "the disk images differ after --copy-storage-all"
# the first write went through the source QEMU while the mirror ran, so the copy carries it
out=$(qemu-io -r -f qcow2 -c "read -P 17 2M 1M" "$D/lib/images/vm.qcow2" 2>&1)
grep -q 'read 1048576/1048576' <<<"$out" && ! grep -qi 'fail' <<<"$out" ||
	e2e_fail "the write made during the mirror is not on the destination image: $out"
e2e_log "storage: images identical, writes made during the mirror included"

grep -E 'error' "$E2E_TMP/serve.log" | head -n 5 >&2 || true
e2e_log "all libvirt migrations through migrelay completed, guests intact"
