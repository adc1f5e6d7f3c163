#!/usr/bin/env bash
# bench_floor (bench/floor.c), which bench/compare runs after every round:
# every step of both sides is reported, the records it seals open again on
# the other side (else it fails), in one process and in two (one side
# each), and bad options are refused by name.
. "$(dirname "$0")/lib.sh"
mr_setup
FLOOR=${MR_BUILD:?}/bench_floor
[ -x "$FLOOR" ] || fail "no $FLOOR: it is built with the project"
for mode in tls plaintext; do
	args=(--mib 16 --runs 2)
	[ $mode = plaintext ] && args+=(--plaintext)
	out=$("$FLOOR" "${args[@]}" 2>"$T/err") ||
		{ cat "$T/err"; fail "bench_floor $mode failed"; }
	echo "$out" | python3 -c '
import re, sys
mode, out = sys.argv[1], sys.stdin.read()
steps = dict((m.group(1).strip(), float(m.group(2))) for m in re.finditer(r"^    (.+?)\s+([0-9.]+)$", out, re.M))
want = ["read QEMU'"'"'s stream (unix socket)", "XXH3-128", "TCP send", "TCP receive", "write to QEMU (unix socket)"]
if mode == "tls":
    want += ["AES-128-GCM seal", "AES-128-GCM open"]
else:
    assert not any(k.startswith("AES") for k in steps), steps
for k in want:
    assert k in steps and steps[k] > 0, (k, steps)
m = re.search(r"^floor (\S+) src ([0-9.]+) dst ([0-9.]+)$", out, re.M)
assert m and m.group(1) == mode, out
src, dst = float(m.group(2)), float(m.group(3))
assert src > 0 and dst > 0, out
' "$mode" || fail "bench_floor $mode: unexpected report: $out"
	ok "bench_floor $mode: $(echo "$out" | tail -n 1)"
done
# one side per process, as bench/compare runs it in each host layout
"$FLOOR" --mib 16 --runs 2 --listen 127.0.0.1:0 >"$T/dst.out" 2>"$T/dst.err" &
dpid=$!
port=
for _ in $(seq 50); do
	port=$(awk '$1 == "listening" { print $2; exit }' "$T/dst.out")
	[ -n "$port" ] && break
	sleep 0.1
done
[ -n "$port" ] || { kill "$dpid" 2>/dev/null; fail "bench_floor --listen printed no port: $(cat "$T/dst.err")"; }
src=$("$FLOOR" --mib 16 --runs 2 --connect "127.0.0.1:$port" 2>"$T/src.err") || { cat "$T/src.err"; fail "bench_floor --connect failed"; }
wait "$dpid" || { cat "$T/dst.err"; fail "bench_floor --listen failed"; }
echo "$src" | grep -Eq '^floor tls src [0-9.]+$' || fail "bench_floor --connect: unexpected report: $src"
echo "$src" | grep -q 'destination side' && fail "bench_floor --connect reported the destination side too"
grep -Eq '^floor tls dst [0-9.]+$' "$T/dst.out" || fail "bench_floor --listen: unexpected report: $(cat "$T/dst.out")"
grep -q 'AES-128-GCM open' "$T/dst.out" || fail "bench_floor --listen: no open step"
ok "bench_floor in two processes: $(tail -n 1 <<<"$src"), $(tail -n 1 "$T/dst.out")"
"$FLOOR" --help | grep -q -- '--plaintext' || fail "bench_floor --help does not list --plaintext"
for bad in "--mib 8" "--runs 0" "--mib x" "extra" "--listen 127.0.0.1" "--connect nohost:1" \
	"--listen 127.0.0.1:0 --connect 127.0.0.1:1"; do
	# shellcheck disable=SC2086
	if "$FLOOR" $bad >/dev/null 2>"$T/err"; then fail "bench_floor $bad was accepted"; fi
	[ -s "$T/err" ] || fail "bench_floor $bad: no message"
	ok "bench_floor $bad refused: $(head -n 1 "$T/err")"
done
