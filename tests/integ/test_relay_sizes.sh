#!/usr/bin/env bash
# Streams of 0 B, 1 B, 1 MiB + 1 B and 1 GiB of random bytes arrive byte-exact
# in a file: target with 1, 2, 4 and 8 connections; the answer path (what the
# target sends back) is checked too, with a unix echo target.
. "$(dirname "$0")/lib.sh"
mr_setup
mr_pki
port=$(mr_free_port)
mr_serve "$port" --tls-dir "$T/srv" --target "f=file:$T/out.bin"

head -c 0 /dev/zero >"$T/in-0"
head -c 1 /dev/urandom >"$T/in-1"
head -c $((1048576 + 1)) /dev/urandom >"$T/in-1M1"
head -c $((1 << 30)) /dev/urandom >"$T/in-1G"

for size in 0 1 1M1 1G; do
	for n in 1 2 4 8; do
		rm -f "$T/out.bin"
		"$MIGRELAY" send --to "127.0.0.1:$port" --target f --tls-dir "$T/cli" --connections "$n" --quiet \
			<"$T/in-$size" >"$T/answer" 2>"$T/send.log" || { cat "$T/send.log"; fail "send $size over $n connections"; }
		cmp "$T/in-$size" "$T/out.bin" || fail "$size over $n connections: the file differs"
		[ ! -s "$T/answer" ] || fail "file target answered something"
		ls "$T" | grep -q 'out.bin.migrelay-' && fail "temporary file left behind"
		ok "$size bytes over $n connection(s) byte-exact"
	done
done
