# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# Library for the e2e tests: real QEMU guests migrated and compared.
#
#   . "$(dirname "$0")/lib.sh"
#   e2e_init NAME            temp dir, cleanup trap, guest image; skips (77) without QEMU
#   e2e_accel                kvm if a guest boots under it within E2E_KVM_PROBE_SECS, else tcg
#   e2e_start_src N MIB MODE [qemu args]   source QEMU named N; waits for the guest's line
#   e2e_start_dst N MIB MODE [qemu args]   destination QEMU (-incoming defer, -S)
#   e2e_qmp N CMD [JSON]     one QMP command, prints the return value
#   e2e_migrate_unix S D SECS [BW]         QEMU's own unix: migration (BW bytes/s)
#   e2e_wait_migration N SECS              until completed (0) or failed (1)
#   e2e_ram_check S D [whole]              dump both RAMs and compare (see ramcmp.py)
#   e2e_spawn N CMD...       any background process, killed at exit
#   e2e_stop N...            stop processes started here
#   e2e_on_exit CMD...       run CMD at exit, before processes are stopped
#   e2e_wait_until SECS CMD...  poll CMD until it succeeds
#   e2e_make_disk F MIB [empty]  qcow2 image with a known pattern; e2e_disk_args F gives
#                            the -blockdev/-device arguments (node "disk0")
#
# MODE is the guest's command line: "idle", "dirty" or "rate=N" (MiB/s).
# Environment: QEMU (binary), E2E_ACCEL (kvm|tcg: skip the probe),
# E2E_MACHINE (pc|q35, default pc), E2E_GUEST (guest.elf), E2E_PREALLOC=1
# (destinations with -mem-prealloc), E2E_KEEP=1 (keep the temp dir),
# E2E_BOOT_SECS (default 60), E2E_KVM_PROBE_SECS (default 5), E2E_ACCEL_CACHE
# (file keeping the probe's answer for an hour; default in the build tree),
# E2E_KVM_DEV (the device whose access decides whether KVM is probed at all;
# default /dev/kvm; tests point it elsewhere to exercise the probe).
#
# Only processes started through this library are ever signalled, by PID.

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_QEMU=${QEMU:-qemu-system-x86_64}
E2E_MACHINE=${E2E_MACHINE:-pc}
E2E_BOOT_SECS=${E2E_BOOT_SECS:-60}
E2E_KVM_PROBE_SECS=${E2E_KVM_PROBE_SECS:-5}
E2E_KVM_DEV=${E2E_KVM_DEV:-/dev/kvm}
E2E_NAME=e2e
E2E_TMP=
# the guest's line once it is whole (grep -E)
E2E_LINE='migrelay-guest: filled [0-9]+ MiB, end 0x[0-9a-f]{8}, (idle|dirty [0-9]+ MiB/s)'
declare -gA E2E_PID=()      # name -> pid
declare -gA E2E_QMPSOCK=()  # name -> QMP socket
declare -gA E2E_DATAEND=()  # name -> end of the guest's data region
declare -ga E2E_ORDER=()    # names in start order
declare -ga E2E_ATEXIT=()   # commands for e2e_cleanup

e2e_log() { printf '%s: %s\n' "$E2E_NAME" "$*" >&2; }
e2e_skip() { printf 'SKIP: %s: %s\n' "$E2E_NAME" "$*"; exit 77; }
e2e_fail() { printf 'FAIL: %s: %s\n' "$E2E_NAME" "$*" >&2; exit 1; }

e2e_now() { date +%s.%N; }
e2e_since() { awk -v a="$1" -v b="$(e2e_now)" 'BEGIN { printf "%.1f", b - a }'; }

# e2e_reap PID: KILL (the process may have exited already) and collect its
# status. Never fails: callers run under set -e, and a process that exited by
# itself, or died from the KILL, is not an error of the caller.
e2e_reap() {
	kill -KILL "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# Kills what we started (TERM, then KILL after 5 s), shows logs on failure,
# removes the temp dir.
e2e_cleanup() {
	local rc=$? name pid i f
	trap - EXIT INT TERM
	for f in "${E2E_ATEXIT[@]}"; do
		eval "$f" || true
	done
	for name in "${E2E_ORDER[@]}"; do
		pid=${E2E_PID[$name]:-}
		[ -n "$pid" ] && { kill -TERM "$pid" 2>/dev/null || true; }
	done
	for name in "${E2E_ORDER[@]}"; do
		pid=${E2E_PID[$name]:-}
		[ -n "$pid" ] || continue
		for ((i = 0; i < 50; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		e2e_reap "$pid"
	done
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ] && [ -n "$E2E_TMP" ]; then
		for f in "$E2E_TMP"/*.log "$E2E_TMP"/*.serial; do
			[ -s "$f" ] || continue
			echo "--- ${f##*/} (last lines)" >&2
			tail -n 20 "$f" >&2
		done
	fi
	if [ -n "$E2E_TMP" ] && [ -d "$E2E_TMP" ]; then
		if [ "${E2E_KEEP:-0}" = 1 ]; then
			e2e_log "kept $E2E_TMP"
		else
			rm -rf -- "$E2E_TMP"
		fi
	fi
	exit "$rc"
}

# e2e_init NAME: checks tools, makes the temp dir, finds or builds the guest.
e2e_init() {
	E2E_NAME=${1:-e2e}
	command -v "$E2E_QEMU" >/dev/null 2>&1 || e2e_skip "$E2E_QEMU not found"
	command -v python3 >/dev/null 2>&1 || e2e_skip "python3 not found"
	E2E_TMP=$(mktemp -d "${TMPDIR:-/tmp}/mr-e2e.XXXXXX") || e2e_fail "mktemp"
	trap e2e_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	e2e_find_guest
}

# Uses E2E_GUEST, the build tree's guest, or builds one into the temp dir.
e2e_find_guest() {
	local g=$E2E_DIR/guest cc=${CC:-cc}
	local flags=(-m32 -march=i686 -ffreestanding -nostdlib -fno-pic -fno-pie -fno-stack-protector
		-fno-asynchronous-unwind-tables -mgeneral-regs-only -O2)
	if [ -n "${E2E_GUEST:-}" ] && [ -f "$E2E_GUEST" ]; then
		return 0
	fi
	if [ -n "${MR_BUILD:-}" ] && [ -f "$MR_BUILD/tests/e2e/guest.elf" ]; then
		E2E_GUEST=$MR_BUILD/tests/e2e/guest.elf
		return 0
	fi
	E2E_GUEST=$E2E_TMP/guest.elf
	if ! "$cc" "${flags[@]}" -c "$g/boot.S" -o "$E2E_TMP/boot.o" 2>"$E2E_TMP/guest-build.log" ||
		! "$cc" "${flags[@]}" -c "$g/guest.c" -o "$E2E_TMP/guest.o" 2>>"$E2E_TMP/guest-build.log" ||
		! ld -m elf_i386 -static -nostdlib --no-warn-rwx-segments -T "$g/guest.ld" \
			-o "$E2E_GUEST" "$E2E_TMP/boot.o" "$E2E_TMP/guest.o" 2>>"$E2E_TMP/guest-build.log"; then
		e2e_skip "cannot build the 32-bit test guest: $(head -n 3 "$E2E_TMP/guest-build.log")"
	fi
}

# e2e_spawn NAME CMD...: runs CMD in the background, output in NAME.log.
e2e_spawn() {
	local name=$1
	shift
	"$@" >"$E2E_TMP/$name.log" 2>&1 &
	E2E_PID[$name]=$!
	E2E_ORDER+=("$name")
}

# e2e_on_exit CMD...: one shell command for the exit path (runs in order).
e2e_on_exit() { E2E_ATEXIT+=("$*"); }

# e2e_stop NAME...: TERM (then KILL after 5 s) and reap.
e2e_stop() {
	local name pid i
	for name in "$@"; do
		pid=${E2E_PID[$name]:-}
		[ -n "$pid" ] || continue
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 50; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		e2e_reap "$pid"
		E2E_PID[$name]=
	done
}

e2e_alive() { [ -n "${E2E_PID[$1]:-}" ] && kill -0 "${E2E_PID[$1]}" 2>/dev/null; }

# e2e_wait_line NAME SECS: waits for the guest's line on NAME's serial port.
e2e_wait_line() {
	local name=$1 secs=$2 ser=$E2E_TMP/$1.serial i line
	for ((i = 0; i < secs * 10; i++)); do
		# The guest writes the line a byte at a time: only a whole one counts,
		# or a read in the middle of it would leave the data's end unknown
		# and the RAM check would judge the firmware's pages above it.
		if line=$(grep -a -m1 -E "$E2E_LINE" "$ser" 2>/dev/null); then
			E2E_DATAEND[$name]=$(sed -n 's/.*, end \(0x[0-9a-f]\{8\}\),.*/\1/p' <<<"$line")
			return 0
		fi
		grep -aq 'migrelay-guest: .*exception\|migrelay-guest: no ' "$ser" 2>/dev/null && return 1
		e2e_alive "$name" || return 1
		sleep 0.1
	done
	return 1
}

# Starts QEMU named NAME; the rest of the arguments go to QEMU.
e2e_qemu() {
	local name=$1 mib=$2 mode=$3
	shift 3
	E2E_QMPSOCK[$name]=$E2E_TMP/$name.qmp
	e2e_spawn "$name" "$E2E_QEMU" -name "$name,debug-threads=on" -machine "$E2E_MACHINE" -accel "${E2E_ACCEL:-tcg}" \
		-m "$mib" -nodefaults -no-user-config -display none \
		-kernel "$E2E_GUEST" -append "$mode" -serial "file:$E2E_TMP/$name.serial" \
		-qmp "unix:${E2E_QMPSOCK[$name]},server=on,wait=off" "$@"
}

# e2e_accel: decides kvm or tcg once per run (E2E_ACCEL, exported).
e2e_accel() {
	local cache=${E2E_ACCEL_CACHE:-${MR_BUILD:+$MR_BUILD/tests/e2e/accel.probe}}
	if [ -z "${E2E_ACCEL:-}" ] && [ -n "$cache" ] && [ -f "$cache" ] &&
		[ -n "$(find "$cache" -mmin -60 2>/dev/null)" ]; then
		E2E_ACCEL=$(cat "$cache")
	fi
	case ${E2E_ACCEL:-} in
	kvm | tcg) ;;
	*)
		E2E_ACCEL=tcg
		if [ -r "$E2E_KVM_DEV" ] && [ -w "$E2E_KVM_DEV" ]; then
			E2E_ACCEL=kvm
			e2e_qemu kvmprobe 64 idle
			e2e_wait_line kvmprobe "$E2E_KVM_PROBE_SECS" || E2E_ACCEL=tcg
			e2e_stop kvmprobe
		fi
		[ -n "$cache" ] && echo "$E2E_ACCEL" >"$cache" 2>/dev/null
		;;
	esac
	export E2E_ACCEL
	e2e_log "accelerator: $E2E_ACCEL"
}

# e2e_start_src NAME MIB MODE [qemu args]
e2e_start_src() {
	local name=$1 t0
	t0=$(e2e_now)
	e2e_qemu "$@"
	e2e_wait_line "$name" "$E2E_BOOT_SECS" || e2e_fail "guest $name did not come up"
	e2e_log "$name: $(grep -a -m1 -E "$E2E_LINE" "$E2E_TMP/$name.serial" | tr -d '\r') ($(e2e_since "$t0") s)"
}

# e2e_start_dst NAME MIB MODE [qemu args]: paused after the migration (-S).
e2e_start_dst() {
	local name=$1 mib=$2 mode=$3 pre=()
	shift 3
	[ "${E2E_PREALLOC:-0}" = 1 ] && pre=(-mem-prealloc)
	e2e_qemu "$name" "$mib" "$mode" -incoming defer -S "${pre[@]}" "$@"
	# a QEMU that refuses to start is reported at once, not after the monitor's timeout
	e2e_wait_until "$E2E_BOOT_SECS" e2e_qmp_or_gone "$name" ||
		e2e_fail "destination $name did not open its monitor within $E2E_BOOT_SECS s"
	e2e_alive "$name" ||
		e2e_fail "destination QEMU $name exited at start: $(tail -n 3 "$E2E_TMP/$name.log" | tr '\n' ' ')"
	e2e_qmp "$name" query-status >/dev/null || e2e_fail "destination $name has no monitor"
}

# e2e_qmp_or_gone NAME: NAME's monitor socket exists, or its QEMU has exited.
e2e_qmp_or_gone() { [ -S "${E2E_QMPSOCK[$1]}" ] || ! e2e_alive "$1"; }

# e2e_qmp NAME CMD [JSON_ARGS]: prints the return value; non-zero with QEMU's error.
e2e_qmp() {
	local name=$1
	shift
	python3 "$E2E_DIR/qmp.py" --timeout 60 "${E2E_QMPSOCK[$name]}" "$@"
}

# e2e_qmp_sock NAME: the QMP socket path, for tools that talk QMP themselves.
e2e_qmp_sock() { echo "${E2E_QMPSOCK[$1]}"; }

# e2e_wait_migration NAME SECS [STATUS]: 0 completed (or STATUS), 1 failed, 2 still running.
e2e_wait_migration() {
	python3 "$E2E_DIR/qmp.py" --timeout 60 "${E2E_QMPSOCK[$1]}" --wait-migration "$2" ${3:+"$3"} \
		>"$E2E_TMP/$1.migrate.json"
}

# e2e_migrate_info NAME FIELD: a field of the last e2e_wait_migration result (e.g. total-time, ram.transferred).
e2e_migrate_info() {
	python3 -c 'import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    v = v.get(k, {}) if isinstance(v, dict) else {}
print(v if v != {} else "")' "$E2E_TMP/$1.migrate.json" "$2"
}

# e2e_migrate_unix SRC DST SECS [BYTES_PER_S]: QEMU's own unix: transport, bandwidth unthrottled unless given.
e2e_migrate_unix() {
	local src=$1 dst=$2 secs=$3 bw=${4:-1099511627776} uri t0
	uri="unix:$E2E_TMP/$src-$dst.mig"
	t0=$(e2e_now)
	e2e_qmp "$dst" migrate-incoming "{\"uri\": \"$uri\"}" >/dev/null || e2e_fail "migrate-incoming"
	e2e_qmp "$src" migrate-set-parameters "{\"max-bandwidth\": $bw}" >/dev/null ||
		e2e_fail "migrate-set-parameters"
	e2e_qmp "$src" migrate "{\"uri\": \"$uri\"}" >/dev/null || e2e_fail "migrate"
	e2e_wait_migration "$src" "$secs" || e2e_fail "migration $src -> $dst did not complete"
	e2e_log "$src -> $dst: completed in $(e2e_since "$t0") s (QEMU: total $(e2e_migrate_info "$src" total-time) ms, downtime $(e2e_migrate_info "$src" downtime) ms)"
}

# e2e_ram_check SRC DST [data|whole|strict-low]: the source stopped (postmigrate), the
# destination paused and never continued; dumps guest-physical RAM 0..size
# of both with pmemsave and compares them page by page (ramcmp.py).
e2e_ram_check() {
	local src=$1 dst=$2 how=${3:-data} size end opts=() t0 rc out p1 p2
	t0=$(e2e_now)
	e2e_qmp "$dst" --wait-status paused 60 || e2e_fail "destination $dst is not paused"
	e2e_qmp "$src" --wait-status postmigrate 60 || e2e_fail "source $src is not in postmigrate"
	size=$(e2e_qmp "$src" query-memory-size-summary | python3 -c 'import json, sys; print(json.load(sys.stdin)["base-memory"])') ||
		e2e_fail "query-memory-size-summary"
	# both dumps at once; each QEMU writes its own file
	e2e_qmp "$src" pmemsave "{\"val\": 0, \"size\": $size, \"filename\": \"$E2E_TMP/$src.ram\"}" >/dev/null &
	p1=$!
	e2e_qmp "$dst" pmemsave "{\"val\": 0, \"size\": $size, \"filename\": \"$E2E_TMP/$dst.ram\"}" >/dev/null &
	p2=$!
	wait $p1 || e2e_fail "pmemsave on $src"
	wait $p2 || e2e_fail "pmemsave on $dst"
	[ "$how" = whole ] && opts+=(--whole)
	[ "$how" = strict-low ] && opts+=(--strict-low)
	end=${E2E_DATAEND[$src]:-}
	# without it the pages above the guest's data (firmware tables) would be judged as data
	[ -n "$end" ] || e2e_fail "the end of $src's data region is unknown: its guest's \"filled\" line was not read"
	opts+=(--data-end "$end")
	# for investigations only (no test sets it): let N stale pages pass (ramcmp.py --stale-ok)
	[ -n "${E2E_RAM_STALE_OK:-}" ] && opts+=(--stale-ok "$E2E_RAM_STALE_OK")
	if python3 "$E2E_DIR/ramcmp.py" "${opts[@]}" "$E2E_TMP/$src.ram" "$E2E_TMP/$dst.ram" >"$E2E_TMP/$src-$dst.ramcmp"; then
		rc=0
	else
		rc=$?
	fi
	out=$E2E_TMP/$src-$dst.ramcmp
	if [ "$(wc -l <"$out")" -gt 50 ]; then
		head -n 40 "$out" >&2
		echo "... ($(wc -l <"$out") lines)" >&2
		tail -n 1 "$out" >&2
	else
		cat "$out" >&2
	fi
	# both dumps stay when they differ (with E2E_KEEP=1 beyond the test), to tell from a page what happened
	[ $rc -eq 0 ] || e2e_fail "RAM of $src and $dst differ ($how check); dumps: $E2E_TMP/$src.ram $E2E_TMP/$dst.ram"
	rm -f -- "$E2E_TMP/$src.ram" "$E2E_TMP/$dst.ram"
	e2e_log "RAM check ($how) passed in $(e2e_since "$t0") s"
}

# e2e_wait_until SECS CMD...: polls CMD every 0.1 s until it succeeds (0) or SECS pass (1).
e2e_wait_until() {
	local secs=$1 i
	shift
	for ((i = 0; i < secs * 10; i++)); do
		"$@" && return 0
		sleep 0.1
	done
	return 1
}

# e2e_free_port: a TCP port on 127.0.0.1 that was free a moment ago.
e2e_free_port() {
	python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# e2e_make_disk FILE MIB [empty]: a qcow2 image with data at the start, the
# middle and the end, and holes between (or nothing but holes).
e2e_make_disk() {
	local f=$1 mib=$2
	qemu-img create -q -f qcow2 "$f" "${mib}M" || e2e_fail "qemu-img create $f"
	[ -n "${3:-}" ] && return 0
	qemu-io -f qcow2 -c "write -P 0xab 0 1M" -c "write -P 0x5c $((mib / 2))M 1M" \
		-c "write -P 0x11 $((mib - 1))M 1M" "$f" >/dev/null || e2e_fail "qemu-io $f"
}

# e2e_disk_args FILE: QEMU arguments for a virtio disk on FILE, node "disk0".
e2e_disk_args() {
	echo "-blockdev driver=file,filename=$1,node-name=file0" \
		"-blockdev driver=qcow2,file=file0,node-name=disk0" \
		"-device virtio-blk-pci,drive=disk0,id=vd0"
}
