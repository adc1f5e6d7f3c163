#!/usr/bin/env bash
# What libssh2's ciphers cost here: bytes pushed through direct-streamlocal
# channels (crypto/ssh.c, tests/tools/sshpeer.c) into a unix-socket sink,
# with 1 and 4 SSH connections, next to `ssh -L` (OpenSSH with
# aes128-gcm@openssh.com) into the same sink through the same private sshd
# (tests/integ/ssh.sh). Each row moves the same total; it prints MB/s, the
# negotiated cipher/MAC, and CPU seconds per GiB on the client and on the
# server (sshd and its children). The last rows run the whole transport:
# `migrelay send --to ssh://` into `migrelay serve --listen unix:` (target
# discard), client = migrelay send, server = sshd + serve.
#
#   bench/ssh_channel.sh BUILD_DIR [TOTAL_BYTES]     (default 1 GiB)
set -euo pipefail
BUILD=${1:?usage: bench/ssh_channel.sh BUILD_DIR [TOTAL_BYTES]}
TOTAL=${2:-$((1 << 30))}
SRC=$(cd "$(dirname "$0")/.." && pwd)
SSHPEER=$(cd "$BUILD" && pwd)/tests/mr_sshpeer
MIGRELAY=$(cd "$BUILD" && pwd)/migrelay
source "$SRC/tests/integ/lib.sh"
source "$SRC/tests/integ/ssh.sh"
mr_setup
ssh_fixture
unset SSH_AUTH_SOCK
command -v socat >/dev/null || { echo "socat is needed for the sink"; exit 1; }
# The sink: reads each connection to its end, then closes it (the sender waits for that close).
socat -u -b 1048576 "UNIX-LISTEN:$T/sink.sock,fork" OPEN:/dev/null &
MR_PIDS+=($!)
mr_wait_file "$T/sink.sock" 10 || fail "sink did not start"
URL=$(ssh_url "$SSH_PORT" "$T/sink.sock")
TCK=$(getconf CLK_TCK)

# CPU seconds of process $1, its reaped children included (sshd reaps its per-connection processes).
cpu_of() {
	awk -v t="$TCK" '{ printf "%.3f", ($14 + $15 + $16 + $17) / t }' "/proc/$1/stat"
}

row() { # row LABEL CMD...: runs the sender, prints one line
	local label=$1 s0 s1 out
	shift
	s0=$(cpu_of "$SSHD_MAIN_PID")
	out=$("$@") || fail "$label: $out"
	sleep 0.3 # let sshd reap the connection's processes
	s1=$(cpu_of "$SSHD_MAIN_PID")
	awk -v l="$label" -v s0="$s0" -v s1="$s1" -v tot="$TOTAL" -v extra="${ROW_CLIENT_CPU:-}" '
		/^methods:/ { sub(/^methods: /, ""); m = $0 }
		/ MB\/s/ { for (i = 1; i <= NF; i++) { if ($i == "MB/s;") r = $(i - 1); if ($i == "s/GiB") c = $(i - 1) } }
		END {
			if (extra != "") c = sprintf("%.2f", extra / (tot / 1073741824))
			printf "%-44s %8s MB/s  client %6s s/GiB  server %6.2f s/GiB  %s\n", l, r, c,
				(s1 - s0) / (tot / 1073741824), m
		}' <<<"$out"
}

echo "# $(date -u +%F) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $(ssh -V 2>&1); libssh2 $(dpkg-query -W -f='${Version}' libssh2-1 2>/dev/null)"
echo "# $((TOTAL >> 20)) MiB per row into a unix-socket sink through sshd on 127.0.0.1"
for n in 1 4; do
	row "libssh2 default (strongest), $n conn" \
		"$SSHPEER" sink "$URL" -n $n -b $((TOTAL / n)) --known-hosts "$SSH_KH" --key "$SSH_KEY"
done
for n in 1 4; do
	row "libssh2 aes128-ctr+hmac-sha2-256, $n conn" \
		"$SSHPEER" sink "$URL" -n $n -b $((TOTAL / n)) --known-hosts "$SSH_KH" --key "$SSH_KEY" \
		--ciphers aes128-ctr --macs hmac-sha2-256
done

# ssh -L: one OpenSSH connection, the same sink, aes128-gcm.
LPORT=$(mr_free_port)
ssh -N -o BatchMode=yes -o Ciphers=aes128-gcm@openssh.com -o UserKnownHostsFile="$SSH_KH" \
	-o GlobalKnownHostsFile=/dev/null -o IdentitiesOnly=yes -o IdentityAgent=none -i "$SSH_KEY" \
	-p "$SSH_PORT" -L "127.0.0.1:$LPORT:$T/sink.sock" "$SSH_USER@127.0.0.1" 2>"$T/ssh-L.log" &
SSH_L_PID=$!
MR_PIDS+=("$SSH_L_PID")
mr_wait_port "$LPORT"
for n in 1 4; do
	c0=$(cpu_of "$SSH_L_PID")
	out=$("$SSHPEER" tcp "127.0.0.1:$LPORT" -n $n -b $((TOTAL / n))) || fail "ssh -L: $out"
	c1=$(cpu_of "$SSH_L_PID")
	pids=$(pgrep -P "$SSHD_MAIN_PID" | tr '\n' ' ')
	ROW_CLIENT_CPU=$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.3f", b - a }')
	echo "$out" | awk -v l="ssh -L aes128-gcm@openssh.com, $n TCP conn" -v cc="$ROW_CLIENT_CPU" -v tot="$TOTAL" '
		/ MB\/s/ { for (i = 1; i <= NF; i++) if ($i == "MB/s;") r = $(i - 1) }
		END { printf "%-44s %8s MB/s  client %6.2f s/GiB  (ssh process; sender not counted)\n", l, r, cc / (tot / 1073741824) }'
done
# sshd's process for the ssh -L connection is still alive (not reaped): read it and its children directly.
srv=0
for p in $pids; do
	for q in $p $(pgrep -P "$p"); do
		srv=$(awk -v a="$srv" -v b="$(cpu_of "$q")" 'BEGIN { printf "%.3f", a + b }')
	done
done
echo "# ssh -L rows, server side: sshd $srv s for both rows = $(awk -v s="$srv" -v t="$TOTAL" 'BEGIN { printf "%.2f", s / (2 * t / 1073741824) }') s/GiB"

# The whole SSH transport: migrelay send -> sshd -> serve's unix socket -> discard.
"$MIGRELAY" serve --listen "unix:$T/serve.sock" --target d=discard >"$T/serve.log" 2>&1 &
SERVE_PID=$!
MR_PIDS+=("$SERVE_PID")
mr_wait_file "$T/serve.sock" 10 || fail "serve did not start"
# random bytes: migrelay sends all-zero chunks as a length only
head -c "$TOTAL" /dev/urandom >"$T/payload"
for n in 1 4; do
	s0=$(cpu_of "$SSHD_MAIN_PID")
	g0=$(cpu_of "$SERVE_PID")
	t0=$(date +%s.%N)
	/usr/bin/time -f "%U %S" -o "$T/time" "$MIGRELAY" send <"$T/payload" \
		--to "$(ssh_url "$SSH_PORT" "$T/serve.sock")" --target d --connections $n --quiet \
		--ssh-no-agent --ssh-key "$SSH_KEY" --ssh-known-hosts "$SSH_KH" >/dev/null 2>"$T/send.log" ||
		fail "migrelay send over ssh://: $(cat "$T/send.log")"
	t1=$(date +%s.%N)
	sleep 0.3
	s1=$(cpu_of "$SSHD_MAIN_PID")
	g1=$(cpu_of "$SERVE_PID")
	awk -v n="$n" -v t0="$t0" -v t1="$t1" \
		-v ct="$(awk '{ print $1 + $2 }' "$T/time")" -v sshd="$(awk -v a="$s0" -v b="$s1" 'BEGIN { print b - a }')" \
		-v gw="$(awk -v a="$g0" -v b="$g1" 'BEGIN { print b - a }')" -v tot="$TOTAL" 'BEGIN {
		g = tot / 1073741824
		printf "%-44s %8.0f MB/s  client %6.2f s/GiB  server %6.2f s/GiB (sshd %.2f + serve %.2f)\n",
			"migrelay send --to ssh://, " n " conn", tot / 1e6 / (t1 - t0), ct / g, (sshd + gw) / g, sshd / g, gw / g
	}'
done
