#!/usr/bin/env bash
# --compress auto decides from measured cost. Over a slow link (a veth pair
# between two network namespaces, shaped with tbf) zstd gets a compressible
# stream out sooner than raw and auto compresses it; the stream arrives
# byte-exact. (Over loopback zstd's CPU time exceeds what it saves and auto
# sends raw: that is a speed figure, measured in bench/, not asserted here.)
. "$(dirname "$0")/lib.sh"
mr_setup
[ "$(id -u)" = 0 ] || { echo "skip: network namespaces need root"; exit 77; }
command -v tc >/dev/null || { echo "skip: tc (iproute2) not found"; exit 77; }
A=mrauto-$$-a
B=mrauto-$$-b
ns_cleanup() {
	mr_cleanup
	ip netns del "$A" 2>/dev/null || true
	ip netns del "$B" 2>/dev/null || true
}
trap ns_cleanup EXIT
# namespaces of an earlier run of this test that was killed before its trap ran (its PID is gone)
for ns in $(ip netns list 2>/dev/null | sed -n 's/^\(mrauto-\([0-9]*\)-[ab]\)\( .*\)\{0,1\}$/\1 \2/p' | awk '{print $1 ":" $2}'); do
	kill -0 "${ns#*:}" 2>/dev/null || ip netns del "${ns%:*}" 2>/dev/null || true
done
ip netns add "$A" 2>/dev/null || { echo "skip: cannot create a network namespace"; exit 77; }
ip netns add "$B"
ip -n "$A" link set lo up
ip -n "$B" link set lo up
ip -n "$A" link add va type veth peer name vb netns "$B"
ip -n "$A" addr add 198.18.7.1/24 dev va
ip -n "$B" addr add 198.18.7.2/24 dev vb
ip -n "$A" link set va up
ip -n "$B" link set vb up
tc -n "$A" qdisc add dev va root tbf rate 200mbit burst 256kb latency 20ms
tc -n "$B" qdisc add dev vb root tbf rate 200mbit burst 256kb latency 20ms

mr_pki
"$MIGRELAY" pki issue server --ca "$T/ca" --out "$T/srv2" --cn server.test --ip 198.18.7.2 >/dev/null
port=$(mr_free_port)
ip netns exec "$B" "$MIGRELAY" serve --listen "198.18.7.2:$port" --tls-dir "$T/srv2" \
	--target "f=file:$T/out.bin" >"$T/serve.log" 2>&1 &
MR_PIDS+=($!)
ok=0
for _ in $(seq 1 100); do
	if ip netns exec "$A" bash -c "exec 3<>/dev/tcp/198.18.7.2/$port" 2>/dev/null; then
		ok=1
		break
	fi
	sleep 0.1
done
[ "$ok" = 1 ] || fail "serve does not listen in its namespace"

# 160 MiB: 3 MiB of text-like pages for every 1 MiB of random ones
python3 - "$T/in.bin" <<'PY'
import os, sys
text = (b"guest page with a repeating pattern 0123456789\n" * 70000)[:3 << 20]
with open(sys.argv[1], "wb") as f:
    for _ in range(40):
        f.write(text)
        f.write(os.urandom(1 << 20))
PY
ip netns exec "$A" timeout 120 "$MIGRELAY" send --to "198.18.7.2:$port" --target f --tls-dir "$T/cli" \
	--connections 2 --compress auto --json <"$T/in.bin" >"$T/send.json" 2>"$T/send.log" ||
	{ cat "$T/send.log"; fail "send --compress auto over the shaped link"; }
cmp "$T/in.bin" "$T/out.bin" || fail "the stream arrived different"
report=$(grep '"event":"report"' "$T/send.json")
sent=$(echo "$report" | python3 -c 'import json,sys; print(json.load(sys.stdin)["sent"])')
wire=$(echo "$report" | python3 -c 'import json,sys; print(json.load(sys.stdin)["wire_sent"])')
# Raw would put all of it on the wire; once auto compresses, the text goes in
# a fraction of its size. The first two windows (64 MiB) measure raw.
[ "$wire" -lt $((sent * 3 / 4)) ] || fail "auto did not compress over a 200 Mbit/s link: $wire wire bytes for $sent"
ok "--compress auto over a 200 Mbit/s link: byte-exact, $sent bytes -> $wire on the wire"
