#!/usr/bin/env bash
# Command-line hygiene of the client commands (send, forward, migrate, bench,
# pki): ports 1..65535 and a port required in --to; numbers read whole or
# refused (a unit only where documented); usage errors exit 2; --json output
# on stdout, for success and failure; exit codes in every --help; the
# default --connections is the measured one (2).
. "$(dirname "$0")/lib.sh"
mr_setup
: >"$T/notadir" # a QMP path under a file is refused at once (ENOTDIR): no wait for a socket

# expect RC PATTERN ARGS...: exit RC, and stderr matches PATTERN.
expect() {
	local want=$1 pat=$2 rc=0
	shift 2
	"$MIGRELAY" "$@" </dev/null >"$T/out" 2>"$T/err" || rc=$?
	[ "$rc" = "$want" ] || { cat "$T/err"; fail "$*: exit $rc, expected $want"; }
	grep -qiE -- "$pat" "$T/err" || { cat "$T/err"; fail "$*: message does not match /$pat/"; }
}

# 1. Ports and HOST:PORT, for every command that takes --to.
for c in send forward bench; do
	extra=()
	[ "$c" = forward ] && extra=(--listen "unix:$T/f.sock")
	expect 2 "port.*1 to 65535|HOST:PORT" "$c" --to localhost --target x "${extra[@]}"
	expect 2 "1 to 65535" "$c" --to 127.0.0.1:99999 --target x "${extra[@]}"
	expect 2 "1 to 65535" "$c" --to 127.0.0.1:0 --target x "${extra[@]}"
	expect 2 "HOST:PORT" "$c" --to 127.0.0.1:https --target x "${extra[@]}"
	expect 2 "HOST:PORT" "$c" --to ::1:4433 --target x "${extra[@]}"
done
expect 2 "1 to 65535" migrate --qmp "$T/notadir/qmp.sock" --to 127.0.0.1:99999 --target x
expect 2 "HOST:PORT" migrate --qmp "$T/notadir/qmp.sock" --to localhost --target x
[ ! -e "$T/f.sock" ] || fail "forward created its socket before refusing the command line"
ok "--to: a port from 1 to 65535 is required (localhost, :99999, :0, service names and bare IPv6 refused, exit 2)"

# 2. Numbers: whole or refused, never read as a prefix.
expect 2 "1 to 64" send --to 127.0.0.1:1 --target x --connections 2x
expect 2 "1 to 64" send --to 127.0.0.1:1 --target x --connections 4294967298
expect 2 "keepalive" send --to 127.0.0.1:1 --target x --keepalive 5s
expect 2 "bandwidth" migrate --qmp q --to 127.0.0.1:1 --target x --bandwidth 1e9
expect 2 "bandwidth" migrate --qmp q --to 127.0.0.1:1 --target x --bandwidth -1G
expect 2 "multifd" migrate --qmp q --to 127.0.0.1:1 --target x --multifd 2x
expect 2 "downtime" migrate --qmp q --to 127.0.0.1:1 --target x --downtime 300x
expect 2 "timeout" migrate --qmp q --to 127.0.0.1:1 --target x --timeout 5x
expect 2 "timeout" migrate --qmp q --to 127.0.0.1:1 --target x --timeout 1.5s
expect 2 "size" bench --local --size 1Q
expect 2 "size" bench --local --size 0
expect 2 "days" pki init --dir "$T/ca" --days " 5"
expect 2 "days" pki init --dir "$T/ca" --days 5d
# Documented units are read as such: --timeout 5s, 2m; --downtime 2s. The
# command line passes, and the command goes on to the (missing) source QEMU.
for v in 5 5s 2m; do
	expect 9 "source QEMU" migrate --qmp "$T/notadir/qmp.sock" --to 127.0.0.1:1 --target x --timeout "$v"
done
expect 9 "source QEMU" migrate --qmp "$T/notadir/qmp.sock" --to 127.0.0.1:1 --target x --downtime 2s --bandwidth 1.5G
ok "numbers are strict: blanks, signs, exponents, trailing text refused; documented units (5s, 2m, 2s, 1.5G) accepted"

# file: targets: the directory is checked at start, not at the first stream.
expect 2 "cannot write files in .*/missing: no such file" serve --listen 127.0.0.1:0 --target "x=file:$T/missing/out.bin"
expect 2 "cannot write files in .*/notadir: not a directory" serve --listen 127.0.0.1:0 --target "x=file:$T/notadir/out.bin"
ok "serve refuses a file: target whose directory is missing or not a directory (exit 2)"
expect 2 "port from 1 to 65535" serve --listen 127.0.0.1:99999 --target x=discard
expect 2 "port from 1 to 65535" serve --listen 127.0.0.1:http --target x=discard
ok "serve refuses a --listen port outside 1..65535 instead of wrapping it (exit 2)"

# 3. Exit codes in every --help; the default --connections and why.
for c in send forward migrate bench; do
	"$MIGRELAY" "$c" --help >"$T/help"
	grep -q "^Exit codes:" "$T/help" || fail "$c --help lists no exit codes"
	for code in 0 1 2 3 4 5 6 7 8 9 10 11; do
		grep -qE "^ +$code  " "$T/help" || fail "$c --help does not list exit code $code"
	done
	grep -q "default 2: on loopback" "$T/help" || fail "$c --help does not say why --connections defaults to 2"
done
for c in "pki" "pki init" "pki issue"; do
	# shellcheck disable=SC2086
	"$MIGRELAY" $c --help | grep -q "^Exit codes:" || fail "$c --help lists no exit codes"
done
"$MIGRELAY" --help | grep -q "^Exit codes:" || fail "migrelay --help lists no exit codes"
ok "--help of send, forward, migrate, bench, pki and migrelay lists the exit codes"

# 4. --json on stdout: failure reports too, and nothing JSON on stderr.
json_check() { # FILE STATUS [EXIT]: one report line on FILE with that status (and exit code)
	python3 - "$@" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
reps = [l for l in lines if l.get("event") == "report"]
assert len(reps) == 1, "%d report lines in %s" % (len(reps), sys.argv[1])
assert reps[0]["status"] == sys.argv[2], reps[0]
if len(sys.argv) > 3:
    assert reps[0]["exit"] == int(sys.argv[3]), reps[0]
PY
}
port=$(mr_free_port)
rc=0
"$MIGRELAY" send --to "127.0.0.1:$port" --target x --tls-dir "$T/nonexistent" --json </dev/null >"$T/out" 2>"$T/err" ||
	rc=$?
[ "$rc" = 2 ] || { cat "$T/err"; fail "send with unreadable credentials: exit $rc, expected 2"; }
json_check "$T/out" failed 2 || fail "send --json: no failure report on stdout"
rc=0
"$MIGRELAY" migrate --qmp "$T/notadir/qmp.sock" --to "127.0.0.1:$port" --target x --json >"$T/out" 2>"$T/err" || rc=$?
[ "$rc" = 9 ] || { cat "$T/err"; fail "migrate without a source QEMU: exit $rc, expected 9"; }
json_check "$T/out" failed 9 || fail "migrate --json: no failure report on stdout"
! grep -q '^{' "$T/err" || fail "migrate --json wrote JSON on stderr"

mr_pki
mr_serve "$port" --tls-dir "$T/srv" --target "f=file:$T/got.bin"
head -c $((8 << 20)) /dev/urandom >"$T/in"
"$MIGRELAY" send --to "127.0.0.1:$port" --target f --tls-dir "$T/cli" --json <"$T/in" >"$T/out" 2>"$T/err" ||
	{ cat "$T/err"; fail "send --json"; }
cmp "$T/in" "$T/got.bin" || fail "send --json: the file differs"
json_check "$T/out" verified || { cat "$T/out"; fail "send --json: no verified report on stdout"; }
! grep -q '^{' "$T/err" || { cat "$T/err"; fail "send --json wrote JSON on stderr"; }
python3 -c 'import json,sys
r=[json.loads(l) for l in open(sys.argv[1])][-1]
assert r["connections"] == 2, r
assert r["sent"] == 8 << 20, r' "$T/out" || fail "send --json: report without 2 connections or the byte count"
ok "--json: reports (verified and failed) are one JSON line on stdout, none on stderr; default 2 connections"
