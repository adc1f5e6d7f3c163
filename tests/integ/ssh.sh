# shellcheck shell=bash
# A private sshd for the SSH transport tests (source after lib.sh and
# mr_setup). Everything lives in $T/ssh: host key, client keys,
# authorized_keys, sshd_config, and a known_hosts for the client; the
# user's own ~/.ssh is never read or written (the client gets explicit
# --known-hosts/--key paths and no agent).
#
#   ssh_fixture                      keys + one sshd: $SSH_PORT, $SSHD_PID
#   ssh_sshd NAME [CONFIG_LINE...]   one more sshd (its own config), port in $SSHD_PORT
#   ssh_url PORT PATH                ssh://USER@127.0.0.1:PORT/PATH
# Sets $SSH_DIR, $SSH_USER, $SSH_KEY (accepted key), $SSH_KEY2 (a key not in
# authorized_keys), $SSH_KH (known_hosts naming the host key for
# [127.0.0.1]:port lines of every sshd started), $SSH_HOSTKEY.

SSHD_BIN=${SSHD_BIN:-/usr/sbin/sshd}

ssh_fixture() {
	if [ ! -x "$SSHD_BIN" ] || ! command -v ssh-keygen >/dev/null; then
		echo "skip: openssh-server (sshd) or ssh-keygen is not installed (scripts/deps)"
		exit 77
	fi
	SSH_DIR=$T/ssh
	mkdir -p "$SSH_DIR"
	chmod 700 "$SSH_DIR"
	SSH_USER=$(id -un)
	SSH_HOSTKEY=$SSH_DIR/host_ed25519_key
	SSH_KEY=$SSH_DIR/id_ed25519
	SSH_KEY2=$SSH_DIR/other_ed25519
	SSH_KH=$SSH_DIR/known_hosts
	ssh-keygen -q -t ed25519 -N '' -C "migrelay test host" -f "$SSH_HOSTKEY" || fail "ssh-keygen (host key)"
	ssh-keygen -q -t ed25519 -N '' -C "migrelay test client" -f "$SSH_KEY" || fail "ssh-keygen (client key)"
	ssh-keygen -q -t ed25519 -N '' -C "not authorized" -f "$SSH_KEY2" || fail "ssh-keygen (other key)"
	cp "$SSH_KEY.pub" "$SSH_DIR/authorized_keys"
	: >"$SSH_KH"
	# sshd running as root insists on its privilege separation directory.
	if [ "$(id -u)" -eq 0 ] && [ ! -d /run/sshd ]; then
		mkdir -p /run/sshd
		chmod 755 /run/sshd
	fi
	ssh_sshd main
	SSH_PORT=$SSHD_PORT
	SSHD_MAIN_PID=$SSHD_PID
}

# ssh_sshd NAME [CONFIG_LINE...]: starts sshd on a free port of 127.0.0.1;
# later lines override the defaults (sshd takes the first value of a
# keyword, so they go first). Log in $T/sshd-NAME.log.
ssh_sshd() {
	local name=$1 cfg i
	shift
	SSHD_PORT=$(mr_free_port)
	cfg=$SSH_DIR/sshd_config.$name
	{
		for i in "$@"; do echo "$i"; done
		cat <<EOF
ListenAddress 127.0.0.1:$SSHD_PORT
HostKey $SSH_HOSTKEY
PidFile none
AuthorizedKeysFile $SSH_DIR/authorized_keys
StrictModes no
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowStreamLocalForwarding yes
AllowTcpForwarding yes
X11Forwarding no
LogLevel VERBOSE
EOF
	} >"$cfg"
	"$SSHD_BIN" -t -f "$cfg" 2>"$T/sshd-$name.log" || fail "sshd rejects its config $cfg"
	"$SSHD_BIN" -D -e -f "$cfg" >>"$T/sshd-$name.log" 2>&1 &
	SSHD_PID=$!
	MR_PIDS+=("$SSHD_PID")
	mr_wait_port "$SSHD_PORT"
	echo "[127.0.0.1]:$SSHD_PORT $(cut -d' ' -f1,2 "$SSH_HOSTKEY.pub")" >>"$SSH_KH"
}

ssh_url() {
	echo "ssh://$SSH_USER@127.0.0.1:$1$2"
}
