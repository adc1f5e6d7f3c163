#!/bin/bash
# SPDX-License-Identifier: MIT
# libvirt through ONE long-lived `migrelay forward` serving three socket
# paths (--listen unix:PATH=TARGET for libvirt's migration socket, its disks
# socket and libvirtd), against a serve with default limits (--max-streams 8):
#   1. 15 back-to-back `virsh migrate --live --p2p --parallel
#      --parallel-connections 4` (5 streams each), so the 64 stream ids of
#      the forward's first session run out in the middle of one migration
#      (the 13th), and two more run in the next session. The migration that
#      crosses the rollover lasts more than 30 s (a forward used to close a
#      replaced session 30 s after its rollover, cutting what was still open
#      in it): a larger guest, --bandwidth 1, and after 32 s
#      `virsh migrate-setspeed` lets it finish (QEMU 7.2 applies the limit
#      per multifd channel, later versions to the sum);
#   2. --parallel-connections 16 (17 streams open at once, more than the
#      serve's --max-streams: the forward spreads them over sessions, each
#      opened only after the destination's OPENED of the previous session's
#      last stream, so the destination QEMU gets the channels in the source
#      QEMU's order, main channel first).
# Each guest must run on the destination and finish two clean sweeps of its
# own RAM check there. Both ends must log one outcome line per stream, the
# forward one line per migration, and neither an error.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/migrelay.sh"
. "$(dirname "${BASH_SOURCE[0]}")/libvirt.sh"

e2e_init test_libvirt_repeat
lv_init
e2e_accel
MIB=64
SLOW_MIB=256 # about 180 MiB to move: more than 30 s at 1 MiB/s per channel (5 channels)
SLOW_SECS=32
NMIG=15

"$MIGRELAY" pki init --dir "$E2E_TMP/ca" >/dev/null || e2e_fail "pki init"
"$MIGRELAY" pki issue server --ca "$E2E_TMP/ca" --out "$E2E_TMP/dst-tls" --cn dst.example --dns dst.example \
	--ip 198.18.0.2 >/dev/null || e2e_fail "pki issue server"
"$MIGRELAY" pki issue client --ca "$E2E_TMP/ca" --out "$E2E_TMP/src-tls" --cn src.example >/dev/null ||
	e2e_fail "pki issue client"

lv_host src 198.18.0.1
lv_host dst 198.18.0.2
S=$E2E_TMP/src
D=$E2E_TMP/dst

lv_spawn_in dst serve "$MIGRELAY" serve --listen 198.18.0.2:4433 --tls-dir "$E2E_TMP/dst-tls" \
	--target "lv-mig=unix:$D/mig/mig.sock" --target "lv-disks=unix:$D/mig/disks.sock" \
	--target "libvirtd=unix:$D/run/libvirt-sock" --allow 'CN=src.example'
e2e_wait_until 10 grep -q "listening on" "$E2E_TMP/serve.log" || e2e_fail "serve did not start"
lv_spawn_in src fwd "$MIGRELAY" forward --to 198.18.0.2:4433 --tls-dir "$E2E_TMP/src-tls" --connections 2 \
	--listen "unix:$S/mig/mig.sock=lv-mig" --listen "unix:$S/mig/disks.sock=lv-disks" \
	--listen "unix:$S/mig/libvirtd.sock=libvirtd"
for sock in mig disks libvirtd; do
	e2e_wait_until 10 test -S "$S/mig/$sock.sock" || e2e_fail "forward did not create $sock.sock"
done
DESTURI='qemu+unix:///system?socket=/run/migrelay/libvirtd.sock'

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

# fresh MIB CMDLINE: vm started on the source, gone from the destination.
fresh() {
	lv_virsh dst destroy vm >/dev/null 2>&1 || true
	lv_virsh src destroy vm >/dev/null 2>&1 || true
	lv_virsh src undefine vm >/dev/null 2>&1 || true
	rm -f "$(lv_serial src vm)" "$(lv_serial dst vm)"
	lv_define src vm "$1" "$2"
	e2e_wait_until 60 grep -aq 'check pass 1 ok' "$(lv_serial src vm)" || e2e_fail "guest did not come up on src"
}

# migrate NAME [slow] VIRSH_ARGS...: one migration; its duration in $SECS.
# "slow": at --bandwidth 1 for SLOW_SECS, then at full speed.
migrate() {
	local name=$1 t0 rc=0 slow=0 pid
	shift
	[ "$1" = slow ] && { slow=1; shift; set -- "$@" --bandwidth 1; }
	t0=$(e2e_now)
	lv_virsh src migrate --live --p2p vm "$DESTURI" --migrateuri unix:///run/migrelay/mig.sock "$@" \
		>"$E2E_TMP/virsh-$name.log" 2>&1 &
	pid=$!
	if [ $slow = 1 ]; then
		e2e_wait_until "$SLOW_SECS" bash -c "! kill -0 $pid 2>/dev/null" || true
		lv_virsh src migrate-setspeed vm 100000 >/dev/null 2>&1 || true
	fi
	wait $pid || rc=$?
	SECS=$(e2e_since "$t0")
	[ $rc = 0 ] || {
		cat "$E2E_TMP/virsh-$name.log" >&2
		grep -a "migration\|session" "$E2E_TMP/fwd.log" | tail -n 8 >&2
		e2e_fail "virsh migrate ($name) failed"
	}
	e2e_log "$name: virsh migrate $* completed in $SECS s"
}

# Streams the forward has finished on the migration path (all of them: migrations run one at a time).
mig_streams() { grep -c "(target lv-mig): done: sent" "$E2E_TMP/fwd.log" || true; }

t_all=$(e2e_now)
slow_straddle=""
for i in $(seq 1 $NMIG); do
	n=$(mig_streams)
	# the migration whose 5 streams cross the first session's 64 ids: past 30 s
	if [ $((n % 64 + 5)) -gt 64 ] && [ -z "$slow_straddle" ]; then
		slow_straddle=$i
		# a guest that dirties nothing converges at any bandwidth; it still checks its RAM
		fresh "$SLOW_MIB" "check rate=0"
		migrate "m$i" slow --parallel --parallel-connections 4
		awk -v s="$SECS" 'BEGIN { exit !(s > 30) }' || e2e_fail "m$i should have lasted past 30 s, took $SECS s"
	else
		fresh "$MIB" "check rate=1"
		migrate "m$i" --parallel --parallel-connections 4
	fi
	guest_checked dst vm
done
[ -n "$slow_straddle" ] || e2e_fail "no migration crossed the first session's 64 stream ids"
grep -q "used all its 64 stream ids" "$E2E_TMP/fwd.log" || e2e_fail "the forward logged no rollover"
e2e_wait_until 10 grep -q "retired after 64 stream" "$E2E_TMP/fwd.log" ||
	e2e_fail "the first session did not retire after its streams ended"
e2e_log "$NMIG migrations through one forward in $(e2e_since "$t_all") s; m$slow_straddle crossed the rollover and took more than 30 s"

# 17 streams against --max-streams 8: the forward spreads them over sessions
fresh "$MIB" "check rate=1"
migrate p16 --parallel --parallel-connections 16
guest_checked dst vm
grep -q "has 8 streams open, the server's --max-streams" "$E2E_TMP/fwd.log" ||
	e2e_fail "17 streams went through without a --max-streams rollover?"
lv_virsh dst destroy vm >/dev/null 2>&1 || true

# Outcome lines: the forward, per stream and per migration; serve, per stream.
nmig=$((NMIG * 5 + 17))
[ "$(mig_streams)" = $nmig ] || e2e_fail "forward: $(mig_streams) verified stream lines on the migration path, want $nmig"
n=$(grep -c "mig.sock: migration [0-9]* (target lv-mig): done: 5 stream(s)" "$E2E_TMP/fwd.log" || true)
[ "$n" = "$NMIG" ] || e2e_fail "forward: $n per-migration lines for 5 streams, want $NMIG"
grep -q "mig.sock: migration $((NMIG + 1)) (target lv-mig): done: 17 stream(s)" "$E2E_TMP/fwd.log" ||
	e2e_fail "forward: no per-migration line for the 17 streams"
n=$(grep -c "(target lv-mig): received .*, verified" "$E2E_TMP/serve.log" || true)
[ "$n" = $nmig ] || e2e_fail "serve: $n verified stream lines for lv-mig, want $nmig"
e2e_stop fwd
# 16 channels over sessions of 8 streams: each new session waited for the
# destination's OPENED of the previous session's last stream, so QEMU got its
# channels in the order the source QEMU made them, and nothing was logged.
grep -q "opens session [0-9a-f]* after the destination connected stream" "$E2E_TMP/fwd.log" ||
	e2e_fail "no new session waited for the previous stream's OPENED"
! grep -E "error|warning" "$E2E_TMP/fwd.log" "$E2E_TMP/serve.log" |
	grep -v "closed the connection during the TLS handshake" >&2 || e2e_fail "an error or a warning was logged"
e2e_log "one line per stream on both ends, one per migration on the forward, no error"
