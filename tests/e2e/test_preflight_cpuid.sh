#!/bin/bash
# SPDX-License-Identifier: MIT
# Pre-flight takes most x86 CPU features from the vCPU's CPUID feature
# words through the table in gateway/pf_cpuid.c (one qom-get) instead of a
# qom-get each. For CPU models with and without +/- options, the features
# gathered that way must equal those read one by one from the same QEMU
# (mr_pffacts --by-name), whatever the accelerator filters out. This is
# also the check that the generated table fits the QEMU the tests run.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init test_preflight_cpuid
e2e_accel
tool=${MR_BUILD:-$E2E_DIR/../../build}/tests/mr_pffacts
[ -x "$tool" ] || e2e_skip "mr_pffacts not built ($tool)"

cpus=(qemu64 "qemu64,+avx,-sse2,-svm" base max Nehalem "Skylake-Client" EPYC "Cascadelake-Server,+vmx,-pcid")
[ "$E2E_ACCEL" = kvm ] && cpus+=(host)
n=0
for cpu in "${cpus[@]}"; do
	n=$((n + 1))
	sock=$E2E_TMP/q$n.qmp
	e2e_spawn "q$n" "$E2E_QEMU" -machine "$E2E_MACHINE" -accel "${E2E_ACCEL:-tcg}" -cpu "$cpu" -m 64 \
		-nodefaults -no-user-config -display none -S -qmp "unix:$sock,server=on,wait=off"
	e2e_wait_until 20 eval "[ -S '$sock' ] || ! e2e_alive q$n" || e2e_fail "-cpu $cpu: no monitor"
	if ! e2e_alive "q$n"; then
		e2e_log "-cpu $cpu: QEMU refused it here, skipped: $(tail -n 1 "$E2E_TMP/q$n.log")"
		continue
	fi
	"$tool" "$sock" >"$E2E_TMP/words$n.txt" 2>"$E2E_TMP/words$n.err" ||
		e2e_fail "-cpu $cpu: $(cat "$E2E_TMP/words$n.err")"
	"$tool" "$sock" --by-name >"$E2E_TMP/names$n.txt" 2>"$E2E_TMP/names$n.err" ||
		e2e_fail "-cpu $cpu: $(cat "$E2E_TMP/names$n.err")"
	[ "$cpu" = base ] || grep -q '^features: [a-z0-9]' "$E2E_TMP/names$n.txt" || e2e_fail "-cpu $cpu: no features: $(cat "$E2E_TMP/names$n.txt")"
	if ! diff -u "$E2E_TMP/names$n.txt" "$E2E_TMP/words$n.txt" >"$E2E_TMP/diff$n.txt"; then
		e2e_fail "-cpu $cpu: the features from the CPUID words differ from those read by name:
$(python3 -c 'import sys
a = set(open(sys.argv[1]).read().split("features: ")[1].split("\n")[0].split())
b = set(open(sys.argv[2]).read().split("features: ")[1].split("\n")[0].split())
print("by name only:", " ".join(sorted(a - b)) or "-", "; from the words only:", " ".join(sorted(b - a)) or "-")' \
			"$E2E_TMP/names$n.txt" "$E2E_TMP/words$n.txt")"
	fi
	e2e_log "-cpu $cpu ($E2E_ACCEL): $(sed -n 's/^nfeatures: //p' "$E2E_TMP/words$n.txt") features equal;" \
		"$(sed 's/^mr_pffacts: //' "$E2E_TMP/words$n.err"), $(sed 's/^mr_pffacts: //' "$E2E_TMP/names$n.err")"
	e2e_stop "q$n"
done
echo "PASS: $E2E_NAME"
