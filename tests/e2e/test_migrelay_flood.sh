#!/bin/bash
# SPDX-License-Identifier: MIT
# The daemon under a flood: 500 idle TCP connections held open and 200 failed
# handshakes (a client certificate from another CA), then an allowed
# migration of a 256 MiB guest must start and complete (RAM equal), and the
# daemon's peak memory must stay within its documented bound (SECURITY.md:
# 64 MiB per session plus 64 KiB per pending handshake) above its idle size.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/migrelay.sh"

e2e_init test_migrelay_flood
e2e_accel
mr_e2e_pki
t0=$(e2e_now)
"$MIGRELAY" pki init --dir "$E2E_TMP/ca2" >/dev/null
"$MIGRELAY" pki issue client --ca "$E2E_TMP/ca2" --out "$E2E_TMP/foreign" --cn intruder >/dev/null
cp "$E2E_TMP/ca/ca-cert.pem" "$E2E_TMP/foreign/ca-cert.pem"
port=$(e2e_free_port)
e2e_start_dst dst 256 dirty
mr_e2e_serve gw "$port" --target "vm=qmp:$(e2e_qmp_sock dst),log=$E2E_TMP/dst.log" --handshake-timeout 60
gwpid=${E2E_PID[gw]}
rss() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }
idle_kb=$(rss "$gwpid" VmRSS)

# 500 idle connections, held for up to 120 s by a helper that exits when told.
e2e_spawn idlers python3 -c '
import socket, sys, time, os
port, n, stop = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
socks = []
for i in range(n):
    s = socket.socket(); s.connect(("127.0.0.1", port)); socks.append(s)
print("holding", len(socks), flush=True)
t = time.time()
while not os.path.exists(stop) and time.time() - t < 120:
    time.sleep(0.2)
' "$port" 500 "$E2E_TMP/stop-idlers"
for ((i = 0; i < 100; i++)); do grep -q holding "$E2E_TMP/idlers.log" && break; sleep 0.1; done
grep -q "holding 500" "$E2E_TMP/idlers.log" || e2e_fail "could not open 500 idle connections: $(cat "$E2E_TMP/idlers.log")"

# 200 failed handshakes, 4 at a time.
fails=0
for ((i = 0; i < 50; i++)); do
	pids=()
	for k in 1 2 3 4; do
		"$MIGRELAY" send --to "127.0.0.1:$port" --target vm --tls-dir "$E2E_TMP/foreign" --quiet </dev/null >/dev/null 2>&1 &
		pids+=($!)
	done
	for p in "${pids[@]}"; do
		wait "$p" && e2e_fail "a client from another CA was let in" || fails=$((fails + 1))
	done
done
[ "$fails" = 200 ] || e2e_fail "$fails of 200 handshakes failed"
e2e_log "500 idle connections held, 200 handshakes refused; daemon RSS idle ${idle_kb} KiB, now $(rss "$gwpid" VmRSS) KiB"

# The allowed migration, with the idle connections still open.
e2e_start_src src 256 dirty
mr_e2e_migrate src "$port" vm --connections 4 || e2e_fail "the allowed migration failed under the flood"
grep -q "completed and verified" "$E2E_TMP/src-migrate.log" || e2e_fail "no verified report"
peak_kb=$(rss "$gwpid" VmHWM)
touch "$E2E_TMP/stop-idlers"
bound_kb=$((64 * 1024 + 500 * 64))
e2e_log "daemon memory: idle ${idle_kb} KiB, peak ${peak_kb} KiB, growth $((peak_kb - idle_kb)) KiB (bound ${bound_kb} KiB)"
[ $((peak_kb - idle_kb)) -le "$bound_kb" ] || e2e_fail "daemon grew by $((peak_kb - idle_kb)) KiB, over the ${bound_kb} KiB bound"
e2e_ram_check src dst data
e2e_log "passed in $(e2e_since "$t0") s"
