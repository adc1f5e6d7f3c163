#!/bin/bash
# SPDX-License-Identifier: MIT
# fd: migration through two migrelay gateways: a 256 MiB guest that keeps
# dirtying pages, with 1 connection, then with 4 connections and zstd (the
# destination's RAM must equal the source's: data region exactly); then an
# idle guest with 2 connections, compress auto and JSON progress, whose whole
# RAM must be equal; then the dirtying guest again in the insecure plaintext
# mode (both gateways enabled), with the warnings and the report checked.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/migrelay.sh"

e2e_init test_migrelay_fd
e2e_accel
mr_e2e_pki
t0=$(e2e_now)

# run N MODE CHECK migrate-args...: MODE is the guest's (dirty, idle), CHECK data or whole;
# SERVE_ARGS: more options for `migrelay serve`
SERVE_ARGS=()
run() {
	local n=$1 mode=$2 check=$3 src=src$1 dst=dst$1 port
	shift 3
	port=$(e2e_free_port)
	e2e_start_dst "$dst" 256 "$mode"
	mr_e2e_serve "gw$n" "$port" --target "vm=qmp:$(e2e_qmp_sock "$dst"),log=$E2E_TMP/$dst.log" "${SERVE_ARGS[@]}"
	e2e_start_src "$src" 256 "$mode"
	mr_e2e_migrate "$src" "$port" vm "$@" || e2e_fail "migrelay migrate $* failed"
	grep -q "completed and verified" "$E2E_TMP/$src-migrate.log" ||
		grep -q '"status":"completed".*"verified":true' "$E2E_TMP/$src-migrate.out" || e2e_fail "no verified report"
	e2e_ram_check "$src" "$dst" "$check"
	e2e_stop "$src" "$dst" "gw$n"
}

run 1 dirty data --connections 1
run 2 dirty data --connections 4 --compress zstd
# An idle guest: the whole RAM, the first 2 MiB included, must be equal.
run 3 idle whole --connections 2 --compress auto --json
grep -q '"event":"progress"' "$E2E_TMP/src3-migrate.out" || e2e_fail "no JSON progress lines"
e2e_log "JSON report: $(grep '"event":"report"' "$E2E_TMP/src3-migrate.out")"
# QEMU's version and accelerator decide the TCG warning: QEMU 7.2 under TCG gets it, KVM or QEMU 9.0+ does not
ver=$("$E2E_QEMU" --version | sed -n '1s/.*version \([0-9]*\)\..*/\1/p')
if [ "$E2E_ACCEL" = tcg ] && [ -n "$ver" ] && [ "$ver" -lt 9 ]; then
	grep -q '"source_tcg_stale_risk":true' "$E2E_TMP/src3-migrate.out" || e2e_fail "the JSON report does not flag TCG"
	grep -q "warning: the source QEMU [0-9.]* runs its guest under TCG" "$E2E_TMP/src1-migrate.log" ||
		e2e_fail "migrate did not warn about TCG before QEMU 9.0"
	grep -q "ran TCG: its dirty tracking may have left pages unsent" "$E2E_TMP/src1-migrate.log" ||
		e2e_fail "migrate's report does not repeat the TCG caution"
else
	grep -q '"source_tcg_stale_risk":false' "$E2E_TMP/src3-migrate.out" || e2e_fail "the JSON report flags TCG ($E2E_ACCEL, QEMU $ver)"
	! grep -q "runs its guest under TCG" "$E2E_TMP/src1-migrate.log" || e2e_fail "a TCG warning with $E2E_ACCEL, QEMU $ver"
fi

SERVE_ARGS=(--insecure-plaintext)
run 4 dirty data --connections 4 --insecure-plaintext
grep -q "INSECURE PLAINTEXT: the migration travelled unencrypted" "$E2E_TMP/src4-migrate.log" ||
	e2e_fail "migrate's report does not say plaintext"
grep -qE "session [0-9a-f]{16}: INSECURE PLAINTEXT: data is neither encrypted" "$E2E_TMP/src4-migrate.log" ||
	e2e_fail "migrate did not warn about plaintext"
grep -qE "warning: session [0-9a-f]{16}: INSECURE PLAINTEXT" "$E2E_TMP/gw4.log" || e2e_fail "serve did not warn about plaintext"
e2e_log "plaintext migration verified, warnings on both ends"
e2e_log "passed in $(e2e_since "$t0") s"
