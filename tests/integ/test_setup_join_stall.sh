#!/usr/bin/env bash
# A JOIN that waits does not hold up anyone else (SECURITY.md "Connection
# setup", session registry): 32 peers each JOIN the live connection 0 of
# their own session, which the server makes wait up to 1 s for that
# connection to go; then one peer sends 32 such JOINs of one session at
# once, which take their turns up to the setup deadline. While those JOINs
# are pending, HELLOs of another client are answered within 100 ms, and a
# real send succeeds.
. "$(dirname "$0")/lib.sh"
mr_setup
mr_pki
: "${RAWPEER:?RAWPEER must point at the mr_rawpeer test tool}"

port=$(mr_free_port)
mr_serve "$port" --tls-dir "$T/srv" --target t=discard --max-sessions 64 --handshake-timeout 4

for round in 1 2; do
	pids=()
	for i in $(seq 1 32); do
		"$RAWPEER" --to "127.0.0.1:$port" --tls-dir "$T/cli" --target t --case join-live >"$T/join-$i.out" 2>&1 &
		pids+=($!)
		MR_PIDS+=($!)
	done
	# Until every JOIN has gone out (the server logs nothing for a JOIN still waiting: count the sessions).
	for _ in $(seq 1 50); do
		n=$(grep -c "session [0-9a-f]*: 127.0.0.1" "$T/serve-$port.log" || true)
		[ "$n" -ge $((round * 32)) ] && break
		sleep 0.1
	done
	sleep 0.2
	worst=0
	for k in 1 2 3 4 5; do
		out=$("$RAWPEER" --to "127.0.0.1:$port" --tls-dir "$T/cli" --target t --case hello) || true
		ms=$(echo "$out" | sed -n 's/^WELCOME after \([0-9]*\) ms.*/\1/p')
		[ -n "$ms" ] || fail "round $round: HELLO while JOINs wait: $out"
		[ "$ms" -gt "$worst" ] && worst=$ms
	done
	pending=0
	for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && pending=$((pending + 1)); done
	[ "$worst" -lt 100 ] || fail "round $round: a HELLO took $worst ms while $pending JOINs were pending"
	ok "round $round: 5 HELLOs answered in at most $worst ms while $pending of 32 JOINs were still pending"
	head -c 200000 /dev/urandom | timeout 30 "$MIGRELAY" send --to "127.0.0.1:$port" --target t --tls-dir "$T/cli" \
		--connections 2 --quiet >/dev/null || fail "round $round: a send failed while JOINs were pending"
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	grep -q "already there" "$T"/join-1.out || fail "round $round: the JOIN of a live connection was not refused: $(cat "$T/join-1.out")"
done
ok "every JOIN of a live connection was refused ($(head -c 120 "$T/join-1.out"))"

# One session, 32 JOINs of its live connection 0 at once.
n0=$(grep -c "session [0-9a-f]*: 127.0.0.1" "$T/serve-$port.log" || true)
"$RAWPEER" --to "127.0.0.1:$port" --tls-dir "$T/cli" --target t --case join-live --joins 32 >"$T/joins.out" 2>&1 &
jp=$!
MR_PIDS+=($jp)
for _ in $(seq 1 50); do
	n=$(grep -c "session [0-9a-f]*: 127.0.0.1" "$T/serve-$port.log" || true)
	[ "$n" -gt "$n0" ] && break
	sleep 0.1
done
sleep 0.5
worst=0
for k in 1 2 3 4 5; do
	out=$("$RAWPEER" --to "127.0.0.1:$port" --tls-dir "$T/cli" --target t --case hello) || true
	ms=$(echo "$out" | sed -n 's/^WELCOME after \([0-9]*\) ms.*/\1/p')
	[ -n "$ms" ] || fail "HELLO while 32 JOINs of one session wait: $out"
	[ "$ms" -gt "$worst" ] && worst=$ms
done
kill -0 "$jp" 2>/dev/null || fail "the 32 JOINs were over before the HELLOs were measured: $(cat "$T/joins.out")"
[ "$worst" -lt 100 ] || fail "a HELLO took $worst ms while 32 JOINs of one session waited"
ok "5 HELLOs answered in at most $worst ms while 32 JOINs of one session took turns"
head -c 200000 /dev/urandom | timeout 30 "$MIGRELAY" send --to "127.0.0.1:$port" --target t --tls-dir "$T/cli" \
	--connections 2 --quiet >/dev/null || fail "a send failed while 32 JOINs of one session waited"
wait "$jp" || true
grep -qE "^(ERROR|CLOSED)" "$T/joins.out" || fail "the slowest of 32 JOINs was not refused: $(cat "$T/joins.out")"
ok "the 32 JOINs were refused, the slowest: $(head -c 160 "$T/joins.out")"
