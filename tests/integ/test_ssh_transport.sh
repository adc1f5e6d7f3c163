#!/usr/bin/env bash
# The SSH transport end to end, through a real sshd (tests/integ/ssh.sh):
# `serve --listen unix:PATH` behind sshd, `send --to ssh://...`:
#  1. 256 MiB over 4 SSH connections, byte-exact; the peer is UID=user;
#  2. a proxy in front of sshd resets 2 of the 4 SSH connections mid-stream:
#     they are rejoined (new SSH connections), byte-exact;
#  3. --ssh-accept-new with 4 connections writes the host key once;
#  4. refusals, each with its message and exit code and nothing delivered:
#     unknown host key (11), changed host key (11), a key not in
#     authorized_keys (4), sshd with AllowStreamLocalForwarding no (3), no
#     socket at the path (3), a uid not in serve's --allow (4);
#  5. the socket's mode and group (--socket-mode, --socket-group), a TLS
#     option with ssh:// (2), a socket in use not taken over;
#  6. one serve with a TCP (TLS) and a unix listener: both paths deliver.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ssh.sh"
: "${CUTPROXY:?CUTPROXY must point at tests/tools/cutproxy.py}"
mr_setup
ssh_fixture
unset SSH_AUTH_SOCK
ME=$(id -un)

# serve_unix NAME ARGS...: serve on unix socket $T/NAME.sock, target f writes $T/NAME.out.
serve_unix() {
	local name=$1
	shift
	"$MIGRELAY" serve --listen "unix:$T/$name.sock" --target "f=file:$T/$name.out" "$@" \
		>"$T/serve-$name.log" 2>&1 &
	MR_PIDS+=($!)
	mr_wait_file "$T/$name.sock" 10 || fail "serve $name did not create its socket"
}

# send_ssh PORT SOCK ARGS...: send stdin through sshd on PORT to serve's socket SOCK.
send_ssh() {
	local port=$1 sock=$2
	shift 2
	timeout 300 "$MIGRELAY" send --to "$(ssh_url "$port" "$sock")" --target f --quiet --ssh-no-agent "$@"
}

serve_unix a --reconnect-timeout 20 --keepalive 1 --target d=discard
[ "$(stat -c %a "$T/a.sock")" = 660 ] || fail "socket mode $(stat -c %a "$T/a.sock"), want 660 (the default)"

# 1. 256 MiB, 4 connections
head -c $((256 << 20)) /dev/urandom >"$T/in256"
t0=$(date +%s.%N)
send_ssh "$SSH_PORT" "$T/a.sock" --connections 4 --ssh-key "$SSH_KEY" --ssh-known-hosts "$SSH_KH" \
	<"$T/in256" >/dev/null 2>"$T/send1.log" || { cat "$T/send1.log"; fail "send of 256 MiB over ssh://"; }
t1=$(date +%s.%N)
cmp "$T/in256" "$T/a.out" || fail "256 MiB over ssh:// differs"
grep -q "UID=$ME" "$T/serve-a.log" || fail "serve did not name the peer UID=$ME"
ok "256 MiB over 4 SSH connections: byte-exact in $(echo "$t1 - $t0" | bc) s, peer UID=$ME"
rm -f "$T/a.out"

# 2. resets of 2 of the 4 SSH connections (TCP, in front of sshd)
pport=$(mr_free_port)
python3 "$CUTPROXY" --listen "$pport" --to "$SSH_PORT" --total $((256 << 20)) --max-seconds 300 \
	--reset 0.3:1 --reset 0.6:2 >"$T/proxy.log" 2>&1 &
MR_PIDS+=($!)
mr_wait_port "$pport"
echo "[127.0.0.1]:$pport $(cut -d' ' -f1,2 "$SSH_HOSTKEY.pub")" >>"$SSH_KH"
send_ssh "$pport" "$T/a.sock" --connections 4 --ssh-key "$SSH_KEY" --ssh-known-hosts "$SSH_KH" \
	<"$T/in256" >/dev/null 2>"$T/send2.log" || { cat "$T/send2.log" "$T/proxy.log"; fail "send through two resets"; }
cmp "$T/in256" "$T/a.out" || fail "256 MiB through two SSH connection resets differs"
[ "$(grep -c 'reset connection' "$T/proxy.log")" = 2 ] || { cat "$T/proxy.log"; fail "the proxy did not reset two connections"; }
grep -q "rejoined" "$T/send2.log" || { cat "$T/send2.log"; fail "no connection rejoined"; }
ok "2 of 4 SSH connections reset mid-stream: rejoined, byte-exact ($(grep -c rejoined "$T/send2.log") rejoin(s))"
rm -f "$T/a.out"

# 3. --ssh-accept-new: the key is written once for 4 connections
head -c $((4 << 20)) /dev/urandom >"$T/in4"
: >"$T/kh-new"
MIGRELAY_DEBUG=1 send_ssh "$SSH_PORT" "$T/a.sock" --connections 4 --ssh-key "$SSH_KEY" --ssh-known-hosts "$T/kh-new" \
	--ssh-accept-new <"$T/in4" >/dev/null 2>"$T/send3.log" || { cat "$T/send3.log"; fail "send with --ssh-accept-new"; }
[ "$(grep -c "SSH connection to 127.0.0.1:$SSH_PORT: kex .*cipher .*mac " "$T/send3.log")" = 4 ] ||
	{ cat "$T/send3.log"; fail "the negotiated methods of the 4 connections are not logged at debug level"; }
cmp "$T/in4" "$T/a.out" || fail "4 MiB with --ssh-accept-new differs"
[ "$(grep -c . "$T/kh-new")" = 1 ] || { cat "$T/kh-new"; fail "accept-new wrote $(grep -c . "$T/kh-new") lines, want 1"; }
ok "--ssh-accept-new, 4 connections: the host key written once; $(grep -m1 -o "cipher .*" "$T/send3.log")"
rm -f "$T/a.out"

# bench through the same path, into a discard target
timeout 120 "$MIGRELAY" bench --to "$(ssh_url "$SSH_PORT" "$T/a.sock")" --target d --size 64M --connections 2 --json \
	--ssh-no-agent --ssh-key "$SSH_KEY" --ssh-known-hosts "$SSH_KH" >"$T/bench.out" 2>"$T/bench.log" ||
	{ cat "$T/bench.log"; fail "bench --to ssh://"; }
grep -q '"event":"report","status":"verified".*"bytes":67108864' "$T/bench.out" ||
	{ cat "$T/bench.out"; fail "bench --to ssh:// reported no success"; }
ok "bench --to ssh://, 64 MiB over 2 connections"

# 4. refusals: expect_refusal NAME CODE REGEX OUTFILE ARGS... (send_ssh's arguments)
expect_refusal() {
	local name=$1 want=$2 re=$3 out=$4 rc=0
	shift 4
	send_ssh "$@" <"$T/in4" >/dev/null 2>"$T/ref-$name.log" || rc=$?
	[ "$rc" = "$want" ] || { cat "$T/ref-$name.log"; fail "$name: exit $rc, want $want"; }
	grep -qiE "$re" "$T/ref-$name.log" || { cat "$T/ref-$name.log"; fail "$name: no /$re/ in the message"; }
	sleep 0.2
	[ ! -e "$out" ] || fail "$name: something was delivered to the target"
	ok "$name: exit $rc: $(grep -v '^$' "$T/ref-$name.log" | head -1 | cut -c1-150)"
}
: >"$T/kh-empty"
expect_refusal "unknown host key" 11 "not known.*SHA256:.*--ssh-accept-new" "$T/a.out" \
	"$SSH_PORT" "$T/a.sock" --connections 4 --ssh-key "$SSH_KEY" --ssh-known-hosts "$T/kh-empty"
ssh-keygen -q -t ed25519 -N '' -f "$T/other_host" >/dev/null
echo "[127.0.0.1]:$SSH_PORT $(cut -d' ' -f1,2 "$T/other_host.pub")" >"$T/kh-changed"
expect_refusal "changed host key" 11 "changed|differ|attack" "$T/a.out" \
	"$SSH_PORT" "$T/a.sock" --ssh-key "$SSH_KEY" --ssh-known-hosts "$T/kh-changed"
expect_refusal "key not in authorized_keys" 4 "authenticat" "$T/a.out" \
	"$SSH_PORT" "$T/a.sock" --ssh-key "$SSH_KEY2" --ssh-known-hosts "$SSH_KH"
ssh_sshd nofwd "AllowStreamLocalForwarding no"
expect_refusal "AllowStreamLocalForwarding no" 3 "AllowStreamLocalForwarding" "$T/a.out" \
	"$SSHD_PORT" "$T/a.sock" --ssh-key "$SSH_KEY" --ssh-known-hosts "$SSH_KH"
expect_refusal "no socket at the path" 3 "$T/missing.sock" "$T/a.out" \
	"$SSH_PORT" "$T/missing.sock" --ssh-key "$SSH_KEY" --ssh-known-hosts "$SSH_KH"
serve_unix b --allow "UID=nobody-such-user"
expect_refusal "uid not in --allow" 4 "UID=$ME.* not allowed" "$T/b.out" \
	"$SSH_PORT" "$T/b.sock" --ssh-key "$SSH_KEY" --ssh-known-hosts "$SSH_KH"
grep -q "refused: identity \"UID=$ME\"" "$T/serve-b.log" || fail "serve b did not log the refusal"

# 5. socket mode and option checks
serve_unix c --socket-mode 0600
[ "$(stat -c %a "$T/c.sock")" = 600 ] || fail "--socket-mode 0600 gave $(stat -c %a "$T/c.sock")"
rc=0
"$MIGRELAY" send --to "$(ssh_url "$SSH_PORT" "$T/c.sock")" --target f --tls-dir /nonexistent </dev/null 2>"$T/opt.log" || rc=$?
[ "$rc" = 2 ] && grep -q "SSH secures" "$T/opt.log" || { cat "$T/opt.log"; fail "--tls-dir with ssh://: exit $rc"; }
rc=0
"$MIGRELAY" serve --listen "unix:$T/c.sock" --target d=discard 2>"$T/busy.log" || rc=$?
[ "$rc" = 2 ] && grep -q "another server" "$T/busy.log" || { cat "$T/busy.log"; fail "a second serve on a used socket: exit $rc"; }
GRP=$(getent group daemon >/dev/null && echo daemon || id -gn)
serve_unix g --socket-group "$GRP"
[ "$(stat -c %G "$T/g.sock")" = "$GRP" ] || fail "--socket-group $GRP gave group $(stat -c %G "$T/g.sock")"
ok "--socket-mode 0600, --socket-group $GRP; --tls-dir with ssh:// is a usage error; a socket in use is not taken over"

# 6. TCP (TLS) and unix listeners in one serve
mr_pki
port=$(mr_free_port)
"$MIGRELAY" serve --listen "127.0.0.1:$port" --tls-dir "$T/srv" --listen "unix:$T/m.sock" --target "f=file:$T/m.out" \
	>"$T/serve-m.log" 2>&1 &
MR_PIDS+=($!)
mr_wait_port "$port"
mr_wait_file "$T/m.sock" 10 || fail "serve m did not create its socket"
timeout 60 "$MIGRELAY" send --to "127.0.0.1:$port" --target f --tls-dir "$T/cli" --quiet <"$T/in4" >/dev/null 2>"$T/m1.log" ||
	{ cat "$T/m1.log"; fail "send over TLS to a serve with two listeners"; }
cmp "$T/in4" "$T/m.out" || fail "TLS path of a two-listener serve differs"
rm -f "$T/m.out"
send_ssh "$SSH_PORT" "$T/m.sock" --connections 2 --ssh-key "$SSH_KEY" --ssh-known-hosts "$SSH_KH" <"$T/in4" >/dev/null \
	2>"$T/m2.log" || { cat "$T/m2.log"; fail "send over ssh:// to a serve with two listeners"; }
cmp "$T/in4" "$T/m.out" || fail "SSH path of a two-listener serve differs"
grep -q "(CN=client1" "$T/serve-m.log" && grep -q "(UID=$ME)" "$T/serve-m.log" ||
	fail "serve m did not name both peers (CN=client1..., UID=$ME)"
ok "one serve, TCP and unix listeners: both deliver (identities CN=client1,... and UID=$ME)"
