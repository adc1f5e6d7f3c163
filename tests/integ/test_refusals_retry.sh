#!/usr/bin/env bash
# Refusals hold when the refused peer keeps trying: 20 attempts each of a
# certificate from another CA, an expired certificate, a DN not allowed, a
# wrong PSK and a JOIN with a wrong token are all refused, nothing is ever
# delivered, and the daemon still serves an allowed peer afterwards.
. "$(dirname "$0")/lib.sh"
mr_setup
mr_pki
: "${RAWPEER:?RAWPEER must point at the mr_rawpeer test tool}"
mr_pki_refused
port=$(mr_free_port)
mr_serve "$port" --tls-dir "$T/srv" --target "f=file:$T/out.bin" --allow "CN=client1,*"
pport=$(mr_free_port)
printf 'client1:%s\n' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$T/keys.psk"
printf 'client1:%s\n' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$T/wrong.psk"
"$MIGRELAY" serve --listen "127.0.0.1:$pport" --psk-file "$T/keys.psk" --target "f=file:$T/outp.bin" >"$T/serve-psk.log" 2>&1 &
MR_PIDS+=($!)
mr_wait_port "$pport"
head -c 100000 /dev/urandom >"$T/in"

attempt() { # NAME WANT_EXIT ARGS...
	local name=$1 want=$2 rc=0
	shift 2
	"$MIGRELAY" send --target f --quiet --reconnect-timeout 0 "$@" <"$T/in" >/dev/null 2>"$T/err" || rc=$?
	[ "$rc" = "$want" ] || { cat "$T/err"; fail "$name: exit $rc, expected $want"; }
}
for i in $(seq 1 20); do
	attempt "another CA #$i" 4 --to "127.0.0.1:$port" --tls-dir "$T/foreign"
	attempt "expired #$i" 4 --to "127.0.0.1:$port" --tls-dir "$T/expired"
	attempt "DN not allowed #$i" 4 --to "127.0.0.1:$port" --tls-dir "$T/cli2"
	attempt "wrong PSK #$i" 4 --to "127.0.0.1:$pport" --psk-file "$T/wrong.psk"
	out=$("$RAWPEER" --to "127.0.0.1:$port" --tls-dir "$T/cli" --target f --case join-bad-token)
	echo "$out" | grep -qi "^ERROR.*token" || fail "JOIN with a wrong token #$i: $out"
done
[ ! -e "$T/out.bin" ] && [ ! -e "$T/outp.bin" ] || fail "something was delivered to a target"
! ls "$T" | grep -q 'migrelay-' || fail "a temporary file was left"
ok "100 refused attempts, nothing delivered"
"$MIGRELAY" send --to "127.0.0.1:$port" --target f --tls-dir "$T/cli" --quiet <"$T/in" >/dev/null 2>"$T/err" ||
	{ cat "$T/err"; fail "the allowed peer was refused after the retries"; }
cmp "$T/in" "$T/out.bin" || fail "allowed transfer differs"
"$MIGRELAY" send --to "127.0.0.1:$pport" --target f --psk-file "$T/keys.psk" --quiet <"$T/in" >/dev/null 2>"$T/err" ||
	{ cat "$T/err"; fail "the allowed PSK peer was refused after the retries"; }
cmp "$T/in" "$T/outp.bin" || fail "allowed PSK transfer differs"
ok "allowed peers still served, byte-exact"
