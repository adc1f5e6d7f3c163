#!/bin/bash
# SPDX-License-Identifier: MIT
# ssh: migrations through a real sshd (tests/integ/ssh.sh) when only its port
# is open: `serve --listen unix:PATH` behind it, clients with --to ssh://.
#  1. `migrate --to ssh://... --connections 4` of a 256 MiB guest that keeps
#     dirtying pages; the destination's RAM must equal the source's;
#  2. `forward --to ssh://...` with QEMU's own multifd (2 channels, the
#     libvirt path): QEMU migrates to forward's socket, serve's unix: target
#     hands the 3 streams to the destination QEMU in order; RAM compared.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/migrelay.sh"

e2e_init test_migrelay_ssh
e2e_accel
t0=$(e2e_now)

# The private sshd of the integration tests, with e2e's process handling.
T=$E2E_TMP
MR_PIDS=()
fail() { e2e_fail "$*"; }
mr_free_port() { e2e_free_port; }
mr_wait_port() {
	local i
	for ((i = 0; i < 100; i++)); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	e2e_fail "nothing listens on port $1"
}
. "$(dirname "${BASH_SOURCE[0]}")/../integ/ssh.sh"
if [ ! -x "$SSHD_BIN" ]; then
	e2e_skip "openssh-server (sshd) is not installed (scripts/deps)"
fi
ssh_fixture
for p in "${MR_PIDS[@]}"; do e2e_on_exit "kill $p 2>/dev/null"; done
unset SSH_AUTH_SOCK
SSHARGS=(--ssh-key "$SSH_KEY" --ssh-known-hosts "$SSH_KH" --ssh-no-agent)

# serve_unix NAME SOCK ARGS...: serve listening on unix socket SOCK only.
serve_unix() {
	local name=$1 sock=$2 i
	shift 2
	e2e_spawn "$name" "$MIGRELAY" serve --listen "unix:$sock" "$@"
	for ((i = 0; i < 100; i++)); do
		grep -q "listening on" "$E2E_TMP/$name.log" 2>/dev/null && return 0
		e2e_alive "$name" || break
		sleep 0.1
	done
	e2e_fail "migrelay serve $name did not start"
}

# 1. migrate over 4 SSH connections
e2e_start_dst dst 256 dirty
serve_unix gw1 "$E2E_TMP/gw1.sock" --target "vm=qmp:$(e2e_qmp_sock dst),log=$E2E_TMP/dst.log"
e2e_start_src src 256 dirty
m0=$(e2e_now)
rc=0
"$MIGRELAY" migrate --qmp "$(e2e_qmp_sock src)" --to "$(ssh_url "$SSH_PORT" "$E2E_TMP/gw1.sock")" --target vm \
	--connections 4 --progress --suspend "${SSHARGS[@]}" >"$E2E_TMP/src-migrate.out" 2>"$E2E_TMP/src-migrate.log" || rc=$?
e2e_log "migrate --to ssh:// --connections 4 -> exit $rc in $(e2e_since "$m0") s: $(tail -n 2 "$E2E_TMP/src-migrate.log" | tr '\n' ' ')"
[ "$rc" = 0 ] || e2e_fail "migrelay migrate over ssh:// failed"
grep -q "completed and verified" "$E2E_TMP/src-migrate.log" || e2e_fail "no verified report"
grep -q "UID=$(id -un)" "$E2E_TMP/gw1.log" || e2e_fail "serve did not name the peer UID=$(id -un)"
[ "$(grep -c "Accepted publickey" "$T/sshd-main.log")" -ge 4 ] || e2e_fail "sshd did not see 4 SSH connections"
e2e_ram_check src dst data
e2e_stop src dst gw1

# 2. forward with QEMU multifd (2 channels) over 2 SSH connections
e2e_start_dst dst2 256 dirty
e2e_qmp dst2 migrate-set-capabilities '{"capabilities": [{"capability": "multifd", "state": true}]}' >/dev/null ||
	e2e_fail "multifd on dst2"
e2e_qmp dst2 migrate-set-parameters '{"multifd-channels": 2}' >/dev/null || e2e_fail "multifd-channels on dst2"
e2e_qmp dst2 migrate-incoming "{\"uri\": \"unix:$E2E_TMP/dst2.in\"}" >/dev/null || e2e_fail "migrate-incoming on dst2"
serve_unix gw2 "$E2E_TMP/gw2.sock" --target "mig=unix:$E2E_TMP/dst2.in"
e2e_spawn fwd "$MIGRELAY" forward --listen "unix:$E2E_TMP/fwd.sock" --to "$(ssh_url "$SSH_PORT" "$E2E_TMP/gw2.sock")" \
	--target mig --connections 2 "${SSHARGS[@]}"
e2e_wait_until 10 test -S "$E2E_TMP/fwd.sock" || e2e_fail "forward did not create its socket"
e2e_start_src src2 256 dirty
e2e_qmp src2 migrate-set-capabilities '{"capabilities": [{"capability": "multifd", "state": true}]}' >/dev/null ||
	e2e_fail "multifd on src2"
e2e_qmp src2 migrate-set-parameters '{"multifd-channels": 2, "max-bandwidth": 1099511627776}' >/dev/null ||
	e2e_fail "parameters on src2"
m0=$(e2e_now)
e2e_qmp src2 migrate "{\"uri\": \"unix:$E2E_TMP/fwd.sock\"}" >/dev/null || e2e_fail "migrate src2"
e2e_wait_migration src2 300 || e2e_fail "multifd migration through forward over ssh:// did not complete"
[ "$(e2e_migrate_info src2 ram.multifd-bytes)" -gt 0 ] || e2e_fail "multifd carried nothing"
e2e_log "forward over ssh://, multifd 2: completed in $(e2e_since "$m0") s (QEMU: total $(e2e_migrate_info src2 total-time) ms)"
e2e_ram_check src2 dst2 data
# The streams end when both QEMUs close their sockets, the session when forward stops:
# serve must then report all 3 (main + 2 multifd channels) verified.
e2e_stop src2 dst2 fwd
e2e_wait_until 20 grep -qE "done: 3 stream\(s\), .*all verified" "$E2E_TMP/gw2.log" ||
	{ cat "$E2E_TMP/gw2.log" "$E2E_TMP/fwd.log" >&2; e2e_fail "serve did not verify 3 streams (main + 2 multifd channels)"; }
e2e_stop gw2
e2e_log "passed in $(e2e_since "$t0") s"
