#!/usr/bin/env bash
# `serve --control` and `serve --metrics` on a real daemon: during a real
# relay (a throttled `migrelay send` of 160 MiB over 4 connections),
# `migrelay status --json` shows the session (identity, target, bytes
# growing, connections) and a scrape shows it active with its bytes
# growing; afterwards it is counted as verified. When serve reloads on
# SIGHUP, a SIGHUP leaves it running and the relay unharmed.
source "$(dirname "$0")/lib.sh"
if ! "$MIGRELAY" serve --help | grep -q -- "--metrics"; then
	echo "skip: this serve has no --control/--metrics yet"
	exit 77
fi
mr_setup
mr_pki
PORT=$(mr_free_port)
SOCK=$T/ctl.sock
mr_serve "$PORT" --tls-dir "$T/srv" --target sink=discard --control "unix:$SOCK" --metrics 127.0.0.1:0
mr_wait_file "$SOCK" 10 || fail "no control socket"
METRICS=$("$MIGRELAY" status --control "$SOCK" --json |
	python3 -c 'import json,sys; print([l["address"] for l in json.load(sys.stdin)["listeners"] if l["kind"]=="metrics"][0])')

metric() { # metric SERIES: its value in a fresh scrape
	python3 - "$METRICS" "$1" <<'PY'
import sys, urllib.request
for l in urllib.request.urlopen("http://%s/metrics" % sys.argv[1], timeout=5).read().decode().splitlines():
    if l.startswith(sys.argv[2] + " "):
        print(l.split(" ")[1]); break
else:
    print("absent")
PY
}

# 160 MiB at about 40 MiB/s: four seconds to look at
python3 -c '
import sys, time
b = b"\x5a" * (1 << 20)
for i in range(160):
    sys.stdout.buffer.write(b); sys.stdout.flush(); time.sleep(0.025)
' | "$MIGRELAY" send --to "127.0.0.1:$PORT" --target sink --tls-dir "$T/cli" --connections 4 >/dev/null 2>"$T/send.log" &
SEND=$!
MR_PIDS+=("$SEND")

for _ in $(seq 1 50); do
	[ "$("$MIGRELAY" status --control "$SOCK" --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin).get("sessions",[])))')" = 1 ] && break
	sleep 0.1
done
J1=$("$MIGRELAY" status --control "$SOCK" --json) || fail "status --json"
B1=$(metric 'migrelay_stream_bytes_received_total{target="sink"}')
[ "$(metric 'migrelay_sessions_active{target="sink"}')" = 1 ] || fail "the scrape must show the session active"
sleep 1.5
J2=$("$MIGRELAY" status --control "$SOCK" --json) || fail "status --json"
B2=$(metric 'migrelay_stream_bytes_received_total{target="sink"}')
python3 - "$J1" "$J2" <<'PY' || fail "status during the relay"
import json, sys
a, b = (json.loads(x)["sessions"][0] for x in sys.argv[1:3])
assert a["identity"].startswith("CN=client1"), a["identity"]
assert a["target"] == "sink" and a["state"] == "running", a
assert a["connections_expected"] == 4 and len(a["connections"]) == 4, a
assert b["bytes_in"] > a["bytes_in"], (a["bytes_in"], b["bytes_in"])
assert b["rate_in"] > 1 << 20, b["rate_in"]
PY
[ "$B1" != absent ] && [ "$B2" -gt "$B1" ] || fail "scraped bytes must grow during the relay: $B1 then $B2"
ok "during the relay: status shows the session, the scrape its bytes growing"

if "$MIGRELAY" serve --help | grep -q SIGHUP; then
	kill -HUP "$SERVE_PID"
	sleep 0.5
	kill -0 "$SERVE_PID" || fail "SIGHUP ended serve"
	ok "SIGHUP during the relay leaves serve running"
fi

wait "$SEND" || fail "send failed: $(tail -n 3 "$T/send.log")"
for _ in $(seq 1 50); do
	[ "$(metric 'migrelay_sessions_verified_total{target="sink"}')" = 1 ] && break
	sleep 0.1
done
[ "$(metric 'migrelay_sessions_verified_total{target="sink"}')" = 1 ] || fail "the session must count as verified"
[ "$(metric 'migrelay_sessions_active{target="sink"}')" = 0 ] || fail "no session may stay active"
[ "$(metric 'migrelay_stream_bytes_received_total{target="sink"}')" = $((160 << 20)) ] || fail "every byte counted once"
ok "afterwards: verified, none active, every byte counted once"
