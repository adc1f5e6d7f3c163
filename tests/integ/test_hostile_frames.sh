#!/usr/bin/env bash
# Hostile frames from an authenticated peer (SECURITY.md, PROTOCOL.md §5.4,
# §5.6, §5.7): a PING flood from a peer that never reads is dropped with
# the daemon's memory bounded while a bystander's transfer goes on; ERROR
# for streams never opened creates nothing; a second END that disagrees is
# refused.
. "$(dirname "$0")/lib.sh"
mr_setup
mr_pki
: "${RAWPEER:?RAWPEER must point at the mr_rawpeer test tool}"

port=$(mr_free_port)
mr_serve "$port" --tls-dir "$T/srv" --target "f=file:$T/out.bin" --target "g=file:$T/by.bin" \
	--allow "CN=client1,*" --reconnect-timeout 2
rp() { "$RAWPEER" --to "127.0.0.1:$port" --tls-dir "$T/cli" "$@"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$SERVE_PID/status"; }

# Growth the daemon may show during the flood: the control queue is bounded
# at 64 KiB per connection (stream/stripe.h), so what grows is the socket
# buffers' worth of PONG records and allocator slack. Under AddressSanitizer
# freed memory sits in its quarantine (256 MiB by default), so allow that.
bound_kib=$((64 * 1024))
if grep -q __asan_init "$MIGRELAY" 2>/dev/null; then
	bound_kib=$((320 * 1024))
fi

head -c $((32 << 20)) /dev/urandom >"$T/in"
base=$(rss_kib)
rp --target f --case ping-flood >"$T/flood.out" 2>&1 &
flood=$!
MR_PIDS+=($flood)
peak=$base
for _ in $(seq 1 400); do
	kill -0 "$flood" 2>/dev/null || break
	r=$(rss_kib)
	[ "$r" -gt "$peak" ] && peak=$r
	sleep 0.05
done
wait "$flood" || true
r=$(rss_kib)
[ "$r" -gt "$peak" ] && peak=$r
out=$(cat "$T/flood.out")
echo "$out" | grep -q "^DROPPED after" || fail "PING flood: the flooding peer was not dropped: $out"
mr_wait_log "$T/serve-$port.log" "does not read its control frames|send made no progress" 10 ||
	fail "PING flood: the daemon logged no reason for dropping the peer"
growth=$((peak - base))
[ "$growth" -lt "$bound_kib" ] || fail "PING flood: daemon RSS grew by $growth KiB (bound $bound_kib KiB)"
kill -0 "$SERVE_PID" || fail "daemon died during the PING flood"
ok "PING flood: $out; daemon RSS $base -> peak $peak KiB (+$growth KiB, bound $bound_kib)"
grep -iE "does not read its control frames|send made no progress" "$T/serve-$port.log" | head -n 1

# A bystander session moves its bytes while more floods come and go.
"$MIGRELAY" send --to "127.0.0.1:$port" --target g --tls-dir "$T/cli" --quiet -c 2 <"$T/in" \
	>/dev/null 2>"$T/err" &
by=$!
MR_PIDS+=($by)
n=0
while kill -0 "$by" 2>/dev/null && [ "$n" -lt 5 ]; do
	out=$(rp --target f --case ping-flood)
	echo "$out" | grep -q "^DROPPED after" || fail "PING flood $n beside the bystander: $out"
	n=$((n + 1))
done
wait "$by" || { cat "$T/err"; fail "bystander transfer during the PING floods failed"; }
cmp "$T/in" "$T/by.bin" || fail "bystander transfer during the PING floods differs"
[ "$n" -gt 0 ] || fail "no flood ran beside the bystander"
ok "bystander session byte-exact (32 MiB over 2 connections) while $n PING floods were dropped"

# ERROR for every stream id, none opened: ignored (no stream created or
# failed, none counts against max_streams), and stream 0 then works.
out=$(rp --target f --case error-unopened)
[ "$out" = VERIFIED ] || fail "ERROR for never-opened streams: $out"
mr_wait_log "$T/serve-$port.log" "session .*done: 1 stream" 10 || fail "ERROR for never-opened streams: the session did not end well"
cmp <(head -c $((100 << 10)) /dev/zero | tr '\0' '\245') "$T/out.bin" || fail "ERROR for never-opened streams: file differs"
rm -f "$T/out.bin"
ok "ERROR for 64 never-opened streams ignored; stream 0 then opened and verified"

# A second END with the same total but other bytes and digest: refused
# before it overwrites the first (PROTOCOL.md §5.4).
out=$(rp --target f --case end-conflict)
echo "$out" | grep -qi "^ERROR protocol error.*second END disagrees" || fail "conflicting second END: $out"
ok "conflicting second END: $out"
kill -0 "$SERVE_PID" || fail "daemon died"
