#!/usr/bin/env bash
# Every refusal of the foundation: the expected error, a distinct exit code,
# and nothing delivered to the target (no file, no temporary file).
. "$(dirname "$0")/lib.sh"
mr_setup
mr_pki
: "${RAWPEER:?RAWPEER must point at the mr_rawpeer test tool}"
mr_pki_refused
mkdir -p "$T/nocert" && cp "$T/cli/ca-cert.pem" "$T/nocert/"

port=$(mr_free_port)
mr_serve "$port" --tls-dir "$T/srv" --target "f=file:$T/out.bin" --allow "CN=client1,*" --reconnect-timeout 1
head -c 300000 /dev/urandom >"$T/in"

nothing_delivered() {
	[ ! -e "$T/out.bin" ] || fail "$1: the target file exists"
	! ls "$T" | grep -q 'out.bin.migrelay-' || fail "$1: a temporary file was left"
}

# expect_send NAME EXIT_CODE PATTERN ARGS...
expect_send() {
	local name=$1 want=$2 pat=$3 rc=0
	shift 3
	"$MIGRELAY" send --to "127.0.0.1:$port" --target f --quiet "$@" <"$T/in" >/dev/null 2>"$T/err" || rc=$?
	[ "$rc" = "$want" ] || { cat "$T/err"; fail "$name: exit $rc, expected $want"; }
	grep -qiE "$pat" "$T/err" || { cat "$T/err"; fail "$name: message does not match /$pat/"; }
	nothing_delivered "$name"
	ok "$name: exit $rc: $(head -c 200 "$T/err" | tr '\n' ' ')"
}

expect_send "certificate from another CA" 4 "unknown ca|not signed|rejected" --tls-dir "$T/foreign"
mr_wait_log "$T/serve-$port.log" "unknown ca|not signed" || fail "server log does not name the unknown CA"
expect_send "expired certificate" 4 "expired" --tls-dir "$T/expired"
expect_send "DN not allowed" 4 "not allowed" --tls-dir "$T/cli2"
expect_send "unknown target" 5 "no target" --tls-dir "$T/cli" --target nosuch
expect_send "client without a certificate (config)" 2 "client-cert.pem" --tls-dir "$T/nocert"

# A TLS client that presents no certificate at all.
if command -v gnutls-cli >/dev/null; then
	rc=0
	timeout 20 gnutls-cli --x509cafile "$T/ca/ca-cert.pem" --alpn migrelay/1 --port "$port" 127.0.0.1 \
		</dev/null >"$T/gc.out" 2>&1 || rc=$?
	[ "$rc" != 0 ] || grep -qi "alert\|fail\|closed" "$T/gc.out" || fail "no-certificate client was not refused"
	mr_wait_log "$T/serve-$port.log" "no certificate|did not send|without a certificate|certificate required" ||
		{ cat "$T/serve-$port.log"; fail "server log does not say the client sent no certificate"; }
	nothing_delivered "no client certificate"
	ok "client presenting no certificate refused"
fi

# Raw protocol misbehaviour after a valid handshake.
rp() { "$RAWPEER" --to "127.0.0.1:$port" --tls-dir "$T/cli" --target f "$@"; }
out=$(rp --case join-bad-token) ; echo "$out" | grep -qi "^ERROR.*token" || fail "JOIN with a wrong token: $out"
ok "JOIN with a wrong token: $out"
out=$(rp --case join-identity --tls-dir2 "$T/cli2") ; echo "$out" | grep -qi "^ERROR.*identity" || fail "JOIN with another identity: $out"
ok "JOIN with another identity: $out"
# A JOIN for an index whose connection lives: refused after the server's 1 s
# grace for a close it has not read yet (PROTOCOL.md §2.3), and the living
# connection goes on (it answers a PING).
out=$(rp --case join-live)
echo "$out" | grep -qiE "^ERROR protocol.* already there.* after [0-9]+ ms; connection 0 alive$" || fail "JOIN for a live index: $out"
ms=$(echo "$out" | sed -E 's/.* after ([0-9]+) ms.*/\1/')
[ "$ms" -ge 900 ] || fail "JOIN for a live index refused after $ms ms, before the 1 s grace: $out"
ok "JOIN for a live index: $out"
out=$(rp --case oversize) ; echo "$out" | grep -qi "^ERROR.*protocol" || fail "oversize frame: $out"
ok "oversize frame: $out"
out=$(rp --case unknown-type) ; echo "$out" | grep -qi "^ERROR.*protocol" || fail "unknown frame type: $out"
ok "unknown frame type: $out"
out=$(rp --case window) ; echo "$out" | grep -qi "^ERROR.*window" || fail "window overrun: $out"
ok "window overrun: $out"
# The daemon reports a session's end after closing it (and removing a partial file).
mr_wait_log "$T/serve-$port.log" "session .* failed: protocol error: stream 0: peer sent chunk" 10 ||
	fail "the daemon did not end the session that overran its window"
nothing_delivered "protocol errors"
rp --case truncate --expect SENT-TRUNCATED >/dev/null || fail "truncate case did not run"
mr_wait_log "$T/serve-$port.log" "failed: no connection came back" 10 || fail "server did not report the cut stream"
nothing_delivered "stream cut before END"
ok "stream cut before END: nothing delivered, server reports failure"

# Plain garbage instead of TLS: refused, and the daemon still serves.
head -c 4096 /dev/urandom >"/dev/tcp/127.0.0.1/$port" 2>/dev/null || true
printf 'GET / HTTP/1.0\r\n\r\n' >"/dev/tcp/127.0.0.1/$port" 2>/dev/null || true
sleep 0.5
"$MIGRELAY" send --to "127.0.0.1:$port" --target f --tls-dir "$T/cli" --quiet <"$T/in" >/dev/null 2>"$T/err" ||
	{ cat "$T/err"; fail "daemon did not survive garbage"; }
cmp "$T/in" "$T/out.bin" || fail "after garbage: file differs"
rm -f "$T/out.bin"
ok "garbage instead of TLS refused; the daemon still serves"
kill -0 "$SERVE_PID" || fail "daemon died"

# Wrong PSK.
pport=$(mr_free_port)
printf 'client1:%s\n' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$T/keys.psk"
printf 'client1:%s\n' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$T/wrong.psk"
mr_serve "$pport" --psk-file "$T/keys.psk" --target "f=file:$T/out.bin"
port=$pport
expect_send "wrong PSK" 4 "psk|rejected|decrypt|handshake" --psk-file "$T/wrong.psk"
"$MIGRELAY" send --to "127.0.0.1:$port" --target f --psk-file "$T/keys.psk" --quiet <"$T/in" >/dev/null 2>"$T/err" ||
	{ cat "$T/err"; fail "right PSK refused"; }
cmp "$T/in" "$T/out.bin" || fail "PSK transfer differs"
ok "right PSK accepted, byte-exact"

# --allow-for replaces --allow for its target: a global pattern does not open a target restricted by its own list.
aport=$(mr_free_port)
mr_serve "$aport" --tls-dir "$T/srv" --target "open=file:$T/open.bin" --target "f=file:$T/out.bin" \
	--allow "CN=client1,*" --allow-for "f=CN=client2"
rm -f "$T/out.bin"
rc=0
"$MIGRELAY" send --to "127.0.0.1:$aport" --target f --tls-dir "$T/cli" --quiet <"$T/in" >/dev/null 2>"$T/err" || rc=$?
[ "$rc" = 4 ] && grep -q "not allowed" "$T/err" || { cat "$T/err"; fail "--allow opened a target restricted by --allow-for (exit $rc)"; }
nothing_delivered "--allow against a target with --allow-for"
"$MIGRELAY" send --to "127.0.0.1:$aport" --target f --tls-dir "$T/cli2" --quiet <"$T/in" >/dev/null 2>"$T/err" ||
	{ cat "$T/err"; fail "--allow-for did not admit its own pattern"; }
cmp "$T/in" "$T/out.bin" || fail "--allow-for transfer differs"
rc=0
"$MIGRELAY" send --to "127.0.0.1:$aport" --target open --tls-dir "$T/cli2" --quiet <"$T/in" >/dev/null 2>"$T/err" || rc=$?
[ "$rc" = 4 ] || { cat "$T/err"; fail "a --allow-for pattern opened another target (exit $rc)"; }
[ -e "$T/open.bin" ] && fail "a refused send left $T/open.bin"
"$MIGRELAY" send --to "127.0.0.1:$aport" --target open --tls-dir "$T/cli" --quiet <"$T/in" >/dev/null 2>"$T/err" ||
	{ cat "$T/err"; fail "--allow did not admit its pattern to a target without --allow-for"; }
ok "--allow-for replaces --allow for its target; --allow holds for the others"

# --max-sessions-per-identity: one peer cannot take every slot; another identity still gets one.
qport=$(mr_free_port)
mr_serve "$qport" --tls-dir "$T/srv" --target "d=discard" --target "q=file:$T/q.bin" --max-sessions 4 \
	--max-sessions-per-identity 1
(sleep 4 | "$MIGRELAY" send --to "127.0.0.1:$qport" --target d --tls-dir "$T/cli" --quiet >/dev/null 2>"$T/hold.err") &
hold=$!
mr_wait_log "$T/serve-$qport.log" "for target d" || fail "the first session did not start"
rc=0
"$MIGRELAY" send --to "127.0.0.1:$qport" --target q --tls-dir "$T/cli" --quiet <"$T/in" >/dev/null 2>"$T/err" || rc=$?
[ "$rc" = 2 ] && grep -q "already holds 1 session" "$T/err" || { cat "$T/err"; fail "a second session of one identity: exit $rc"; }
[ ! -e "$T/q.bin" ] || fail "a refused session delivered $T/q.bin"
"$MIGRELAY" send --to "127.0.0.1:$qport" --target q --tls-dir "$T/cli2" --quiet <"$T/in" >/dev/null 2>"$T/err" ||
	{ cat "$T/err"; fail "another identity was kept out by the first one's quota"; }
cmp "$T/in" "$T/q.bin" || fail "the other identity's transfer differs"
wait $hold || { cat "$T/hold.err"; fail "the session holding the quota failed"; }
ok "--max-sessions-per-identity refuses one identity's second session (exit 2), not another identity's"

# A serve killed mid-stream leaves a file: target's temporary file; the next serve removes it (and only it).
mkdir -p "$T/stale"
printf 'partial' >"$T/stale/img.migrelay-Ab12Cd"
printf 'keep' >"$T/stale/img.migrelay-keep"
printf 'keep' >"$T/stale/other.migrelay-Ab12Cd"
sport=$(mr_free_port)
mr_serve "$sport" --tls-dir "$T/srv" --target "s=file:$T/stale/img"
[ ! -e "$T/stale/img.migrelay-Ab12Cd" ] || fail "the stale temporary file of a file: target was not removed"
[ -e "$T/stale/img.migrelay-keep" ] && [ -e "$T/stale/other.migrelay-Ab12Cd" ] || fail "serve removed files that are not its temporaries"
grep -q "removed .*img.migrelay-Ab12Cd" "$T/serve-$sport.log" || fail "serve did not say what it removed"
ok "a killed serve's partial file: target file is removed at the next start, nothing else"

# Cannot connect.
rc=0
"$MIGRELAY" send --to "127.0.0.1:1" --target f --tls-dir "$T/cli" --quiet </dev/null >/dev/null 2>"$T/err" || rc=$?
[ "$rc" = 3 ] || { cat "$T/err"; fail "cannot connect: exit $rc"; }
ok "cannot connect: exit 3: $(cat "$T/err")"
