#!/bin/bash
# SPDX-License-Identifier: MIT
# scripts/demo, the README's first command, must exit 0 exactly when it
# migrated and verified the guest, whatever /dev/kvm is. Runs the demo three
# times with a small guest through a QEMU wrapper that makes KVM:
#   fail   QEMU exits at once with -accel kvm (a /dev/kvm that cannot run guests;
#          the probe's QEMU has already exited when it is stopped)
#   hang   QEMU with -accel kvm never prints (a nested KVM that crawls; the probe
#          times out and stops a QEMU that is still running)
#   real   no wrapper: this machine's own answer (KVM or TCG)
# each with a fresh accelerator cache, so that the probe runs every time, and
# checks the exit status, the accelerator chosen and the verification lines.
# Then a demo whose migration cannot succeed (the destination QEMU is not
# there) must exit non-zero.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init test_demo
: "${MR_SRC:?MR_SRC must point at the source tree}"
: "${MR_BUILD:?MR_BUILD must point at the build tree}"
real_qemu=$(command -v "$E2E_QEMU")

# make_wrapper MODE: a qemu-system-x86_64 that misbehaves under -accel kvm.
make_wrapper() {
	local w=$E2E_TMP/qemu-$1
	cat >"$w" <<WRAP
#!/bin/bash
for a in "\$@"; do
	if [ "\$a" = kvm ]; then
		case $1 in
		fail) echo "qemu-system-x86_64: failed to initialize kvm: Operation not permitted" >&2; exit 1 ;;
		hang) exec sleep 600 ;;
		esac
	fi
done
exec "$real_qemu" "\$@"
WRAP
	chmod +x "$w"
	echo "$w"
}

# run_demo NAME [ENV=VALUE...]: the demo with a 64 MiB guest; output in NAME.out, exit status echoed.
run_demo() {
	local name=$1 rc=0
	shift
	env -u E2E_ACCEL -u E2E_GUEST E2E_ACCEL_CACHE="$E2E_TMP/$name.accel" DEMO_MIB=64 BUILD="$MR_BUILD" \
		E2E_KVM_DEV="$E2E_TMP/kvm" "$@" "$MR_SRC/scripts/demo" >"$E2E_TMP/$name.out" 2>&1 || rc=$?
	echo "$rc"
}

# A device file the probe may open: the probe runs on any machine, and the wrappers decide how KVM behaves.
: >"$E2E_TMP/kvm"

for mode in fail hang; do
	w=$(make_wrapper $mode)
	rc=$(run_demo "demo-$mode" QEMU="$w")
	out=$E2E_TMP/demo-$mode.out
	if [ "$rc" != 0 ]; then
		tail -n 30 "$out" >&2
		e2e_fail "demo with a KVM that ${mode}s exited $rc (want 0)"
	fi
	grep -q 'accelerator: tcg' "$out" || e2e_fail "demo ($mode): the probe did not fall back to TCG"
	grep -q 'RAM check (data) passed' "$out" || e2e_fail "demo ($mode): no RAM verification line"
	grep -q 'all verified\|verified' "$out" || e2e_fail "demo ($mode): migrelay did not report verification"
	e2e_log "demo with a KVM that ${mode}s: exit 0, TCG, RAM verified"
done

if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
	rc=$(run_demo demo-real E2E_KVM_DEV=/dev/kvm)
	[ "$rc" = 0 ] || { tail -n 30 "$E2E_TMP/demo-real.out" >&2; e2e_fail "demo with this machine's /dev/kvm exited $rc"; }
	e2e_log "demo with this machine's /dev/kvm: exit 0 ($(grep -o 'accelerator: [a-z]*' "$E2E_TMP/demo-real.out"))"
fi

# A demo that cannot migrate must fail: a QEMU that exits at once for every
# destination (-incoming) leaves nothing to migrate to.
w=$E2E_TMP/qemu-nodst
cat >"$w" <<WRAP
#!/bin/bash
for a in "\$@"; do
	[ "\$a" = -incoming ] && { echo "qemu-system-x86_64: cannot start the destination" >&2; exit 1; }
done
exec "$real_qemu" "\$@"
WRAP
chmod +x "$w"
rc=$(run_demo demo-nodst QEMU="$w" E2E_ACCEL=tcg)
[ "$rc" != 0 ] || e2e_fail "demo without a destination QEMU exited 0"
e2e_log "demo without a destination QEMU: exit $rc"
