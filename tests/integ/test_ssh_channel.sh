#!/usr/bin/env bash
# crypto/ssh.c against a real sshd (tests/integ/ssh.sh): 4 SSH connections,
# each a direct-streamlocal channel to a unix echo server, carry 64 MiB each
# concurrently (one thread sends, another receives and checks every byte),
# also across sshd's key re-exchanges and through stream/conn.h;
# host keys from plain, hashed and [host]:port known_hosts lines; and each
# refusal with its errno and sentence: unknown host key, changed or revoked
# host key, a plain-host line for another port, a key not in
# authorized_keys, a passphrase-protected key, a missing socket,
# AllowStreamLocalForwarding no.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ssh.sh"
: "${SSHPEER:?SSHPEER must point at mr_sshpeer}"
mr_setup
ssh_fixture
unset SSH_AUTH_SOCK
mr_echo_server "$T/echo.sock"
URL=$(ssh_url "$SSH_PORT" "$T/echo.sock")

# peer_expect CODE REGEX ARGS...: mr_sshpeer must exit with CODE and say REGEX.
peer_expect() {
	local want=$1 re=$2 rc=0
	shift 2
	timeout 60 "$SSHPEER" "$@" >"$T/peer.out" 2>&1 || rc=$?
	[ "$rc" -eq "$want" ] || { cat "$T/peer.out" >&2; fail "mr_sshpeer $1: exit $rc, want $want"; }
	grep -qiE "$re" "$T/peer.out" || { cat "$T/peer.out" >&2; fail "mr_sshpeer $1: no /$re/ in its output"; }
}

ENOKEY=126 EKEYREJECTED=129 EACCES=13 ENXIO=6 EINVAL=22

# The cheapest cipher and MAC of ours that sshd shares (crypto/ssh.c).
peer_expect 0 "cipher aes128-ctr/aes128-ctr, mac hmac-sha2-256" open "$URL" --known-hosts "$SSH_KH" --key "$SSH_KEY"
ok "connected: $(head -1 "$T/peer.out")"

# Byte-exact, 4 connections x 64 MiB, full duplex.
peer_expect 0 "^echo: 4 connection" echo "$URL" -n 4 -b $((64 << 20)) --known-hosts "$SSH_KH" --key "$SSH_KEY"
ok "$(tail -1 "$T/peer.out")"

# Key re-exchanges mid-stream (sshd starts one every 4 MiB here), while both
# threads use the session: still byte-exact.
ssh_sshd rekey "RekeyLimit 4M" "LogLevel DEBUG1"
peer_expect 0 "^echo: 2 connection" echo "$(ssh_url "$SSHD_PORT" "$T/echo.sock")" -n 2 -b $((32 << 20)) \
	--known-hosts "$SSH_KH" --key "$SSH_KEY"
sleep 0.3
REKEYS=$(grep -c "SSH2_MSG_NEWKEYS received" "$T/sshd-rekey.log" || true)
[ "$REKEYS" -ge 6 ] || fail "only $REKEYS key exchanges seen by sshd"
ok "$REKEYS key exchanges during the stream: $(tail -1 "$T/peer.out")"

# The same through stream/conn.h (crypto/ssh_conn.c), as the session will use it.
peer_expect 0 "^echo: 2 connection" echo "$URL" --conn -n 2 -b $((16 << 20)) --known-hosts "$SSH_KH" --key "$SSH_KEY"
ok "connection interface: $(tail -1 "$T/peer.out")"
# ... whose fd keeps a socket's meaning: SO_RCVTIMEO and shutdown(SHUT_RDWR).
python3 - "$T/silent.sock" <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(4)
held = []
while True:
    held.append(s.accept()[0])
PY
MR_PIDS+=($!)
mr_wait_file "$T/silent.sock" 10 || fail "silent server did not start"
peer_expect 0 "blocked recv ended with -ECONNRESET" conn-abort "$(ssh_url "$SSH_PORT" "$T/silent.sock")" \
	--known-hosts "$SSH_KH" --key "$SSH_KEY"
ok "connection interface: $(grep -h "timeout\|shutdown" "$T/peer.out" | tr '\n' ';')"

# Hashed known_hosts (ssh-keygen -H) match too.
cp "$SSH_KH" "$T/kh_hashed"
ssh-keygen -q -H -f "$T/kh_hashed" 2>/dev/null
grep -q '^|1|' "$T/kh_hashed" || fail "ssh-keygen -H did not hash"
peer_expect 0 "methods" open "$URL" --known-hosts "$T/kh_hashed" --key "$SSH_KEY"
ok "hashed known_hosts entry accepted"

# A host known by its ECDSA key only, that also has an ED25519 one: the
# known type is asked for first (as OpenSSH orders host key algorithms).
ssh-keygen -q -t ecdsa -b 256 -N '' -f "$SSH_DIR/host_ecdsa_key" || fail "ssh-keygen"
ssh_sshd twokeys "HostKey $SSH_HOSTKEY" "HostKey $SSH_DIR/host_ecdsa_key"
echo "[127.0.0.1]:$SSHD_PORT $(cut -d' ' -f1,2 "$SSH_DIR/host_ecdsa_key.pub")" >"$T/kh_ecdsa"
peer_expect 0 "hostkey ecdsa-sha2-nistp256" open "$(ssh_url "$SSHD_PORT" "$T/echo.sock")" --known-hosts "$T/kh_ecdsa" \
	--key "$SSH_KEY"
ok "host known by its ECDSA key: ecdsa-sha2-nistp256 negotiated"

# Authentication through ssh-agent (no key file), then the default ~/.ssh/id_* (no agent).
mkdir -p "$T/home-empty" "$T/home/.ssh"
ssh-agent -D -a "$T/agent.sock" >/dev/null 2>&1 &
MR_PIDS+=($!)
mr_wait_file "$T/agent.sock" 10 || fail "ssh-agent did not start"
SSH_AUTH_SOCK="$T/agent.sock" ssh-add -q "$SSH_KEY" 2>/dev/null || fail "ssh-add"
HOME="$T/home-empty" SSH_AUTH_SOCK="$T/agent.sock" peer_expect 0 "methods" open "$URL" --known-hosts "$SSH_KH"
ok "ssh-agent key accepted"
cp "$SSH_KEY" "$T/home/.ssh/id_ed25519"
HOME="$T/home" peer_expect 0 "methods" open "$URL" --known-hosts "$SSH_KH"
HOME="$T/home-empty" peer_expect $EACCES "no usable key file" open "$URL" --known-hosts "$SSH_KH"
ok "default key file ~/.ssh/id_ed25519 used; none, refused"

# Unknown host key: refused, with the fingerprint ssh-keygen shows.
FP=$(ssh-keygen -lf "$SSH_HOSTKEY.pub" | cut -d' ' -f2)
FP_RE=$(printf '%s' "$FP" | sed 's/[][+.\/^$*?(){}|]/\\&/g')
: >"$T/kh_empty"
peer_expect $ENOKEY "not known.*$FP_RE.*--ssh-accept-new" open "$URL" --known-hosts "$T/kh_empty" --key "$SSH_KEY"
ok "unknown host key refused ($FP)"
# OpenSSH files a non-22 port as [host]:port; a plain "127.0.0.1" line does not count.
echo "127.0.0.1 $(cut -d' ' -f1,2 "$SSH_HOSTKEY.pub")" >"$T/kh_noport"
peer_expect $ENOKEY "not known" open "$URL" --known-hosts "$T/kh_noport" --key "$SSH_KEY"
ok "a host line without the port does not vouch for port $SSH_PORT"

# accept-new adds an unknown key once; then it is known.
: >"$T/kh_new"
peer_expect 0 "methods" open "$URL" --known-hosts "$T/kh_new" --key "$SSH_KEY" --accept-new
grep -q "^\[127.0.0.1\]:$SSH_PORT ssh-ed25519 " "$T/kh_new" || fail "accept-new wrote no line"
peer_expect 0 "methods" open "$URL" --known-hosts "$T/kh_new" --key "$SSH_KEY"
ok "accept-new added the key"

# Changed host key: refused even with accept-new.
ssh-keygen -q -t ed25519 -N '' -f "$T/otherhost" || fail "ssh-keygen"
echo "[127.0.0.1]:$SSH_PORT $(cut -d' ' -f1,2 "$T/otherhost.pub")" >"$T/kh_changed"
peer_expect $EKEYREJECTED "CHANGED.*$FP_RE.*ssh-keygen -R" open "$URL" --known-hosts "$T/kh_changed" --key "$SSH_KEY" \
	--accept-new
[ "$(wc -l <"$T/kh_changed")" -eq 1 ] || fail "accept-new touched known_hosts for a changed key"
ok "changed host key refused"
# ... and a revoked one.
echo "@revoked [127.0.0.1]:$SSH_PORT $(cut -d' ' -f1,2 "$SSH_HOSTKEY.pub")" >"$T/kh_revoked"
cat "$SSH_KH" >>"$T/kh_revoked"
peer_expect $EKEYREJECTED "revoked" open "$URL" --known-hosts "$T/kh_revoked" --key "$SSH_KEY"
ok "revoked host key refused"

# A key sshd does not know.
peer_expect $EACCES "refused our authentication.*$SSH_KEY2" open "$URL" --known-hosts "$SSH_KH" --key "$SSH_KEY2"
ok "key not in authorized_keys refused"
# An RSA key, even an authorized one: libssh2 1.10 signs it with SHA-1, which sshd 8.8+ refuses; the sentence says so.
ssh-keygen -q -t rsa -b 2048 -N '' -f "$T/rsa_key" || fail "ssh-keygen"
cat "$T/rsa_key.pub" >>"$SSH_DIR/authorized_keys"
peer_expect $EACCES "SHA-1 only.*ED25519 or ECDSA" open "$URL" --known-hosts "$SSH_KH" --key "$T/rsa_key"
ok "RSA key: refused, with the reason"
# A passphrase-protected key: not tried, the agent is named.
ssh-keygen -q -t ed25519 -N 'secret words' -f "$T/enc_key" || fail "ssh-keygen"
peer_expect $EACCES "passphrase-protected.*ssh-add" open "$URL" --known-hosts "$SSH_KH" --key "$T/enc_key"
ok "encrypted key named"

# Socket missing on the server.
peer_expect $ENXIO "could not open the unix socket $T/missing.sock: either nothing listens" open "$(ssh_url "$SSH_PORT" "$T/missing.sock")" \
	--known-hosts "$SSH_KH" --key "$SSH_KEY"
ok "missing socket refused"

# sshd that forbids unix-socket forwarding. OpenSSH answers this exactly as
# it answers a missing socket (channel open failure "connect failed", see
# crypto/ssh.c), so the refusal is ENXIO with a sentence naming both causes;
# the server log tells them apart.
ssh_sshd noforward "AllowStreamLocalForwarding no"
peer_expect $ENXIO "sshd forbids unix-socket forwarding \\(AllowStreamLocalForwarding" open "$(ssh_url "$SSHD_PORT" "$T/echo.sock")" \
	--known-hosts "$SSH_KH" --key "$SSH_KEY"
mr_wait_log "$T/sshd-noforward.log" "refused streamlocal port forward" 5 || fail "sshd did not log its refusal"
ok "AllowStreamLocalForwarding no refused"

# Bad addresses never reach the network.
peer_expect $EINVAL "bad port" open "ssh://127.0.0.1:99999/x.sock"
ok "all refusals"
