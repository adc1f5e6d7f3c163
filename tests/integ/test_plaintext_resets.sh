#!/usr/bin/env bash
# Plaintext mode lends chunk memory to the kernel (vmsplice): a chunk
# re-sent after a lost connection may be acknowledged through its first
# copy while the second still waits in another socket, or (on loopback, as
# here) in the receive queue of that socket's peer after its TCP has
# acknowledged it; either must still carry the chunk's own bytes, not memory
# reused for a later one (which the peer reads as a bad frame header, or as
# wrong data). Four connections
# are reset one after another, ten times over: every transfer arrives
# byte-exact with no protocol error.
. "$(dirname "$0")/lib.sh"
mr_setup
mr_pki
: "${CUTPROXY:?CUTPROXY must point at tests/tools/cutproxy.py}"
port=$(mr_free_port)
mr_serve "$port" --tls-dir "$T/srv" --target "f=file:$T/out.bin" --insecure-plaintext
head -c $((32 << 20)) /dev/urandom >"$T/in"
size=$(stat -c %s "$T/in")
rounds=10
for i in $(seq 1 $rounds); do
	pport=$(mr_free_port)
	python3 "$CUTPROXY" --listen "$pport" --to "$port" --total "$size" --max-seconds 60 \
		--reset 0.2:1 --reset 0.35:2 --reset 0.5:3 --reset 0.65:0 >"$T/proxy.log" 2>&1 &
	proxy=$!
	MR_PIDS+=($proxy)
	mr_wait_port "$pport"
	rm -f "$T/out.bin"
	rc=0
	timeout 60 "$MIGRELAY" send --to "127.0.0.1:$pport" --target f --tls-dir "$T/cli" --quiet --connections 4 \
		--insecure-plaintext --reconnect-timeout 20 <"$T/in" >/dev/null 2>"$T/send.log" || rc=$?
	[ "$rc" = 0 ] || { cat "$T/send.log" "$T/proxy.log"; fail "round $i: send exited $rc"; }
	cmp -s "$T/in" "$T/out.bin" || fail "round $i: the file differs"
	grep -q "reset connection" "$T/proxy.log" || fail "round $i: the proxy reset nothing"
	kill "$proxy" 2>/dev/null || true
	wait "$proxy" 2>/dev/null || true
done
! grep -qi "protocol error" "$T/serve-$port.log" || { grep -i "protocol error" "$T/serve-$port.log"; fail "serve saw a protocol error"; }
ok "plaintext: $rounds transfers of 32 MiB with four connection resets each, byte-exact, no protocol error"
