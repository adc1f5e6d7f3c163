#!/usr/bin/env bash
# A unix: target that stopped accepting (its listen backlog full) must not
# hold a session's reader thread for ever: the connect gives up after 10 s,
# the stream fails with a message that says so, nothing is delivered, and
# the daemon goes on serving other sessions meanwhile.
. "$(dirname "$0")/lib.sh"
mr_setup
mr_pki

# A listener that never accepts, its backlog filled by two idle clients.
python3 - "$T/stuck.sock" >"$T/stuck.log" 2>&1 <<'PY' &
import os, socket, sys, time
path = sys.argv[1]
l = socket.socket(socket.AF_UNIX)
l.bind(path)
l.listen(0)
fill = []
for _ in range(8):
    c = socket.socket(socket.AF_UNIX)
    c.setblocking(False)
    try:
        c.connect(path)
    except (BlockingIOError, OSError):
        break
    fill.append(c)
print("full after", len(fill), flush=True)
time.sleep(120)
PY
MR_PIDS+=($!)
for _ in $(seq 50); do grep -q "full after" "$T/stuck.log" 2>/dev/null && break; sleep 0.1; done
grep -q "full after" "$T/stuck.log" || fail "the stuck listener did not start: $(cat "$T/stuck.log")"

port=$(mr_free_port)
mr_serve "$port" --tls-dir "$T/srv" --target "stuck=unix:$T/stuck.sock" --target "d=file:$T/out.bin"
head -c 1000000 /dev/urandom >"$T/in"
t0=$SECONDS
rc=0
"$MIGRELAY" send --to "127.0.0.1:$port" --target stuck --tls-dir "$T/cli" --quiet <"$T/in" >/dev/null 2>"$T/err" &
spid=$!
# meanwhile another session is served
"$MIGRELAY" send --to "127.0.0.1:$port" --target d --tls-dir "$T/cli" --quiet <"$T/in" >/dev/null 2>"$T/err2" ||
	{ cat "$T/err2"; fail "a second session was not served while a target connect hung"; }
cmp "$T/in" "$T/out.bin" || fail "the second session's file differs"
wait $spid || rc=$?
dt=$((SECONDS - t0))
[ "$rc" = 5 ] || { cat "$T/err"; fail "send to a stuck target: exit $rc, expected 5 (target)"; }
grep -q "accepted no connection within 10 s" "$T/err" || { cat "$T/err"; fail "the message does not say why"; }
[ "$dt" -le 40 ] || fail "the stuck target held the session $dt s"
ok "a target that stopped accepting fails its stream after 10 s (exit 5 in $dt s), other sessions served meanwhile"
