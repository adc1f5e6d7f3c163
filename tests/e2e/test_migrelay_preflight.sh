#!/bin/bash
# SPDX-License-Identifier: MIT
# Pre-flight (PROTOCOL.md §4.1, revision 1.2): before anything is migrated,
# the destination gateway compares its QEMU with the source's facts and
# refuses with one sentence naming the difference:
#  1. another RAM size (-m): both sizes and the -m to use;
#  2. another machine type (pc vs q35): both machine types;
#  3. another CPU model (qemu64 vs Nehalem): both models and the features
#     the destination's lacks; and the same model with a feature turned off
#     on the destination (-cpu qemu64,-lahf-lm): that feature;
# each time the source guest keeps running and the destination QEMU never
# started loading (no migrate-incoming: query-migrate is empty there).
#  4. a matching pair migrates, and its RAM is equal on both sides;
#  5. --no-preflight skips the check (QEMU itself then refuses the
#     different RAM size, as test_migrelay_failures shows);
#  6. a destination gateway of revision 1.1 refuses the facts: migrate says
#     to upgrade it or pass --no-preflight, and with it the pair migrates.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/migrelay.sh"

e2e_init test_migrelay_preflight
e2e_accel
mr_e2e_pki
t0=$(e2e_now)

# refused N DST_ARGS... -- SRC_ARGS...: expects migrate to be refused at setup; its log is srcN-migrate.log.
refused() {
	local n=$1 dst=() rc=0
	shift
	while [ "$1" != -- ]; do dst+=("$1"); shift; done
	shift
	port=$(e2e_free_port)
	e2e_start_dst "dst$n" "${dst[@]}"
	mr_e2e_serve "gw$n" "$port" --target "vm=qmp:$(e2e_qmp_sock "dst$n"),log=$E2E_TMP/dst$n.log"
	e2e_start_src "src$n" "$@"
	mr_e2e_migrate "src$n" "$port" vm || rc=$?
	[ "$rc" = 5 ] || e2e_fail "case $n: expected exit 5 (the target refused), got $rc: $(cat "$E2E_TMP/src$n-migrate.log")"
	[ "$(grep -c "pre-flight:" "$E2E_TMP/src$n-migrate.log")" = 1 ] ||
		e2e_fail "case $n: not one pre-flight sentence: $(cat "$E2E_TMP/src$n-migrate.log")"
	e2e_qmp "src$n" --wait-status running 10 || e2e_fail "case $n: the guest is not running on the source"
	[ "$(e2e_qmp "src$n" query-migrate)" = "{}" ] || e2e_fail "case $n: the source QEMU started a migration"
	[ "$(e2e_qmp "dst$n" query-migrate)" = "{}" ] || e2e_fail "case $n: the destination QEMU started loading"
	grep -q "refused: pre-flight:" "$E2E_TMP/gw$n.log" || e2e_fail "case $n: serve did not log the refusal"
	e2e_stop "src$n" "dst$n" "gw$n"
}
msg() { grep "pre-flight:" "$E2E_TMP/src$1-migrate.log"; }

# 1. RAM size
refused 1 64 idle -- 96 idle
msg 1 | grep -q "the source guest has 96 MiB of RAM and the destination QEMU 64 MiB; start the destination with -m 96M" ||
	e2e_fail "RAM: $(msg 1)"
e2e_log "RAM size refused: $(msg 1)"

# 2. machine type (the library's -machine comes first; a later one overrides it)
refused 2 64 idle -machine q35 -- 64 idle -machine pc
msg 2 | grep -qE "machine type is pc-i440fx-[0-9.]+ and the destination QEMU's pc-q35-[0-9.]+; start the destination with -machine pc-i440fx-" ||
	e2e_fail "machine: $(msg 2)"
e2e_log "machine type refused: $(msg 2)"

# 3. CPU model: Nehalem has no svm, which qemu64 has (TCG gives both what they name)
refused 3 64 idle -cpu Nehalem -- 64 idle -cpu qemu64
msg 3 | grep -q "CPU model is qemu64 and the destination QEMU's Nehalem (which lacks svm" ||
	e2e_fail "CPU: $(msg 3)"
msg 3 | grep -q "start the destination with -cpu qemu64" || e2e_fail "CPU: no fix named: $(msg 3)"
e2e_log "CPU model refused: $(msg 3)"

# 3b. the same CPU model, one feature turned off on the destination (lahf-lm, which the CPUID words carry)
refused 3b 64 idle -cpu qemu64,-lahf-lm -- 64 idle -cpu qemu64
msg 3b | grep -q "the destination QEMU's CPU (qemu64) lacks lahf-lm compared with the source guest's" ||
	e2e_fail "CPU feature: $(msg 3b)"
e2e_log "CPU feature refused: $(msg 3b)"

# 4. a matching pair (same -m, machine and CPU) passes the check and migrates
port=$(e2e_free_port)
e2e_start_dst dst4 64 dirty -cpu qemu64
mr_e2e_serve gw4 "$port" --target "vm=qmp:$(e2e_qmp_sock dst4),log=$E2E_TMP/dst4.log"
e2e_start_src src4 64 dirty -cpu qemu64
mr_e2e_migrate src4 "$port" vm || e2e_fail "the matching pair did not migrate: $(cat "$E2E_TMP/src4-migrate.log")"
grep -qE "pre-flight: the destination QEMU matches the source's \(pc-i440fx-[0-9.]+, qemu64 CPU, [1-9][0-9]* CPU features, [1-9][0-9]* RAM blocks\)" \
	"$E2E_TMP/gw4.log" || e2e_fail "serve did not log the pre-flight match: $(grep pre-flight "$E2E_TMP/gw4.log")"
e2e_ram_check src4 dst4 data
e2e_stop src4 dst4 gw4

# 5. --no-preflight: no check; QEMU's own load refuses the other RAM size
port=$(e2e_free_port)
e2e_start_dst dst5 64 idle
mr_e2e_serve gw5 "$port" --target "vm=qmp:$(e2e_qmp_sock dst5),log=$E2E_TMP/dst5.log"
e2e_start_src src5 96 idle
rc=0
mr_e2e_migrate src5 "$port" vm --no-preflight || rc=$?
[ "$rc" = 9 ] || e2e_fail "--no-preflight: expected exit 9 (QEMU refused), got $rc"
! grep -q "pre-flight" "$E2E_TMP/src5-migrate.log" "$E2E_TMP/gw5.log" || e2e_fail "--no-preflight still checked"
e2e_qmp src5 --wait-status running 10 || e2e_fail "--no-preflight: the guest is not running on the source"
e2e_stop src5 dst5 gw5

# 6. a destination gateway of revision 1.1 knows no pre-flight facts: migrate says so and names the
#    choice; with --no-preflight the same pair migrates
port=$(e2e_free_port)
e2e_start_dst dst6 64 idle
MIGRELAY_WIRE_REVISION=1.1 mr_e2e_serve gw6 "$port" --target "vm=qmp:$(e2e_qmp_sock dst6),log=$E2E_TMP/dst6.log"
e2e_start_src src6 64 idle
rc=0
mr_e2e_migrate src6 "$port" vm || rc=$?
[ "$rc" != 0 ] || e2e_fail "a revision 1.1 gateway took the pre-flight facts"
grep -q "older than protocol revision 1.2 does not know the pre-flight check: upgrade it, or pass --no-preflight" \
	"$E2E_TMP/src6-migrate.log" || e2e_fail "revision 1.1: no clear message: $(cat "$E2E_TMP/src6-migrate.log")"
[ "$(e2e_qmp src6 query-migrate)" = "{}" ] || e2e_fail "revision 1.1: the source QEMU started a migration"
mr_e2e_migrate src6 "$port" vm --no-preflight || e2e_fail "revision 1.1 with --no-preflight: $(cat "$E2E_TMP/src6-migrate.log")"
e2e_ram_check src6 dst6 data
e2e_stop src6 dst6 gw6
e2e_log "revision 1.1 gateway: refused with the upgrade-or---no-preflight message, then migrated with --no-preflight"

e2e_log "PASS in $(e2e_since "$t0") s"
