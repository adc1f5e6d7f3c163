#!/usr/bin/env bash
# The control socket (`migrelay status`, reload) and the Prometheus metrics
# server, driven through tests/tools/ctlharness.c: a stand-in daemon that
# wires gateway/control.c, metrics.c and snapshot.c as serve does, over
# simulated sessions. Checks the socket's mode and owner-only access, the
# status JSON and table, exit codes, reload by the socket and by SIGHUP
# (accepted: new generation, sessions in flight keep theirs; refused: the
# old configuration stays and the reason is printed), and the scrape: the
# text format line by line, counters, escaping, 404/405/431, a stalled
# client that cannot hold the server.
source "$(dirname "$0")/lib.sh"
: "${CTLHARNESS:?CTLHARNESS must point at mr_ctlharness}"
mr_setup

SOCK=$T/run/ctl.sock
CONF=$T/serve.conf
printf 'target vm\ntarget we"ird\\name\nallow CN=*\n' >"$CONF"

# harness_start NAME: starts a harness on $SOCK under umask 000; its pid in HPID.
harness_start() {
	rm -f "$T/$1.ready"
	(umask 000; exec "$CTLHARNESS" --control "unix:$SOCK" --metrics 127.0.0.1:0 --config "$CONF" \
		--ready "$T/$1.ready") >"$T/$1.log" 2>&1 &
	HPID=$!
	MR_PIDS+=("$HPID")
	mr_wait_file "$T/$1.ready" 10 || fail "harness $1 did not start"
	METRICS=$(sed -n 's/^metrics=//p' "$T/$1.ready")
}

status_json() {
	"$MIGRELAY" status --control "unix:$SOCK" --json
}

# jq-free JSON checks: py EXPR evaluated with the status object as s; prints its value.
py() {
	python3 -c "import json,sys; s=json.load(sys.stdin); print($1)"
}

harness_start h1

# 1. the socket: 0600 under umask 000, in a directory it made 0700
[ "$(stat -c %a "$SOCK")" = 600 ] || fail "control socket mode $(stat -c %a "$SOCK"), want 600"
[ "$(stat -c %a "$T/run")" = 700 ] || fail "control directory mode $(stat -c %a "$T/run"), want 700"
ok "control socket is 0600 in a 0700 directory whatever the umask"

# 2. status --json: shape and content
J=$(status_json) || fail "status --json exited $?"
[ "$(py 'len(s["sessions"])' <<<"$J")" = 2 ] || fail "want 2 sessions: $J"
[ "$(py 's["daemon"]["config_generation"]' <<<"$J")" = 1 ] || fail "want generation 1"
py '[k for k in ("id","identity","target","state","age_s","bytes_in","bytes_out","rate_in","rate_out","compression_ratio","connections","rejoins","streams") if k not in s["sessions"][0]] or "complete"' <<<"$J" |
	grep -qx complete || fail "session fields missing: $J"
[ "$(py '[l["name"] for l in s["limits"]]' <<<"$J")" = "['sessions', 'pending']" ] || fail "limits: $J"
[ "$(py 'sorted(l["kind"] for l in s["listeners"])' <<<"$J")" = "['control', 'metrics']" ] || fail "listeners: $J"
sleep 1.5
J=$(status_json) || fail "status --json exited $?"
# the simulated sessions move 10 MiB/s in: the current rate (from samples a second apart) says about that
py 'all(2<<20 < x["rate_in"] < 30<<20 for x in s["sessions"])' <<<"$J" | grep -qx True ||
	fail "rates off: $(py '[x["rate_in"] for x in s["sessions"]]' <<<"$J")"
ok "status --json: sessions, limits, listeners, current rates"

OUT=$("$MIGRELAY" status --control "$SOCK") || fail "status exited $?"
grep -q '^SESSION ' <<<"$OUT" && grep -q '^0000000000001000 ' <<<"$OUT" && grep -q 'limits: sessions 2/16 (12%)' <<<"$OUT" ||
	fail "status table: $OUT"
ok "status prints a table"

# 3. exit codes
set +e
ERR=$("$MIGRELAY" status --control "$T/nothing.sock" 2>&1); rc=$?
set -e
[ $rc = 3 ] && grep -q "$T/nothing.sock" <<<"$ERR" && grep -q -- "--control" <<<"$ERR" ||
	fail "missing socket: rc $rc: $ERR"
touch "$T/plain-file"
set +e
"$MIGRELAY" status --control "$T/plain-file" 2>/dev/null; rc1=$?
"$MIGRELAY" status --bogus 2>/dev/null; rc2=$?
"$MIGRELAY" status --control "$SOCK" reload --json 2>/dev/null; rc3=$?
"$MIGRELAY" status --control "$SOCK" restart 2>/dev/null; rc4=$?
set -e
[ "$rc1 $rc2 $rc3 $rc4" = "3 2 2 2" ] || fail "exit codes: not a socket $rc1, bad option $rc2, reload --json $rc3, bad verb $rc4"
ok "exit codes: 3 unreachable, 2 usage"

# 4. another user: the socket's mode keeps it out; with the mode opened, the daemon's SO_PEERCRED check does
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null && setpriv --reuid=65534 --regid=65534 --clear-groups "$MIGRELAY" version >/dev/null 2>&1; then
	chmod 711 "$T" "$T/run"
	set +e
	ERR=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$MIGRELAY" status --control "$SOCK" 2>&1); rc=$?
	chmod 666 "$SOCK"
	ERR2=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$MIGRELAY" status --control "$SOCK" 2>&1); rc2=$?
	set -e
	chmod 600 "$SOCK"
	chmod 700 "$T/run" "$T"
	[ $rc = 3 ] && grep -qi "permission denied" <<<"$ERR" || fail "another user, mode 0600: rc $rc: $ERR"
	[ $rc2 = 3 ] && grep -qi "answers only" <<<"$ERR2" || fail "another user, mode opened: rc $rc2: $ERR2"
	ok "another user is refused by the socket's mode and by the daemon's peer check"
else
	echo "skip: another user (needs root and setpriv)"
fi

# 5. reload through the socket
printf 'target vm\ntarget beta\n' >"$CONF"
MSG=$("$MIGRELAY" status --control "$SOCK" reload) || fail "reload exited $?"
grep -q "generation 2" <<<"$MSG" || fail "reload said: $MSG"
kill -USR1 "$HPID" # a session that starts after the reload
for _ in $(seq 1 50); do
	[ "$(status_json | py 'len(s["sessions"])')" = 3 ] && break
	sleep 0.1
done
J=$(status_json)
[ "$(py '[x["identity"] for x in s["sessions"]]' <<<"$J")" = "['CN=sim,config=1', 'CN=sim,config=1', 'CN=sim,config=2']" ] ||
	fail "sessions in flight must keep their configuration, new ones take the new: $J"
ok "reload: generation 2; sessions in flight keep generation 1, a new one gets 2"

printf 'target vm\nlisten everywhere\n' >"$CONF"
set +e
ERR=$("$MIGRELAY" status --control "$SOCK" reload 2>&1); rc=$?
set -e
[ $rc = 1 ] && grep -q "serve.conf:2" <<<"$ERR" || fail "bad reload: rc $rc: $ERR"
J=$(status_json)
[ "$(py 's["daemon"]["config_generation"], s["daemon"]["last_reload"]["ok"]' <<<"$J")" = "2 False" ] ||
	fail "a refused reload must keep generation 2: $J"
ok "a refused reload exits 1 with the reason and keeps the configuration"

# 6. SIGHUP: the same reload
printf 'target vm\n' >"$CONF"
kill -HUP "$HPID"
for _ in $(seq 1 50); do
	[ "$(status_json | py 's["daemon"]["config_generation"]')" = 3 ] && break
	sleep 0.1
done
[ "$(status_json | py 's["daemon"]["config_generation"]')" = 3 ] || fail "SIGHUP did not reload"
printf 'nonsense\n' >"$CONF"
kill -HUP "$HPID"
mr_wait_log "$T/h1.log" "reload refused.*serve.conf:1" 5 || fail "a refused SIGHUP reload must say why"
[ "$(status_json | py 's["daemon"]["config_generation"]')" = 3 ] || fail "a refused SIGHUP reload changed the configuration"
kill -0 "$HPID" || fail "SIGHUP killed the daemon"
ok "SIGHUP reloads; a refused one is logged and changes nothing"

# 7. the scrape
python3 - "$METRICS" <<'PY' || fail "metrics scrape"
import re, socket, sys, time, urllib.request, urllib.error
addr = sys.argv[1]
host, port = addr.rsplit(":", 1)
url = "http://%s/metrics" % addr

def scrape():
    with urllib.request.urlopen(url, timeout=5) as r:
        assert r.status == 200, r.status
        ct = r.headers["Content-Type"]
        assert ct.startswith("text/plain; version=0.0.4"), ct
        return r.read().decode()

def samples(text):
    # the exposition format, line by line: HELP and TYPE before each family, then its samples
    out, fam = {}, None
    lines = text.split("\n")
    assert lines[-1] == "", "must end with a newline"
    for i, l in enumerate(lines[:-1]):
        if l.startswith("# HELP "):
            fam = l.split(" ")[2]
            assert lines[i + 1].startswith("# TYPE %s " % fam), lines[i + 1]
            assert lines[i + 1].split(" ")[3] in ("counter", "gauge")
            continue
        if l.startswith("# TYPE "):
            continue
        m = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*\})? ([0-9]+)', l)
        assert m, "not a sample line: %r" % l
        assert m.group(1) == fam, (l, fam)
        out[m.group(1) + (m.group(2) or "")] = int(m.group(3))
    return out

a = samples(scrape())
assert a['migrelay_sessions_active{target="vm"}'] == 3, a
assert a['migrelay_sessions_started_total{target="vm"}'] == 3, a
assert a['migrelay_sessions_active{target="we\\"ird\\\\name"}'] == 0, a
assert 'migrelay_sessions_active{target="beta"}' in a, "targets added by a reload appear"
assert a['migrelay_sessions_failed_total{target="(other)",reason="digest"}'] == 1, a
assert a['migrelay_handshake_failures_total{reason="tls"}'] == 1, a
assert a['migrelay_handshake_failures_total{reason="not_allowed"}'] == 1, a
assert a['migrelay_refused_total{limit="max_pending"}'] == 1, a
assert a['migrelay_rejoins_total{target="vm"}'] == 1, a
assert a['migrelay_reloads_total{result="ok"}'] == 2, a
assert a['migrelay_reloads_total{result="failed"}'] == 2, a
time.sleep(0.5)
b = samples(scrape())
assert b['migrelay_stream_bytes_received_total{target="vm"}'] > a['migrelay_stream_bytes_received_total{target="vm"}'] > 0

for path, method, want in (("/", "GET", 404), ("/metrics", "POST", 405), ("/metrics/x", "GET", 404)):
    try:
        urllib.request.urlopen(urllib.request.Request("http://%s%s" % (addr, path), method=method, data=b"" if method == "POST" else None), timeout=5)
        raise AssertionError("%s %s answered 200" % (method, path))
    except urllib.error.HTTPError as e:
        assert e.code == want, (path, method, e.code)

# an oversized head: 431, and the connection closes
s = socket.create_connection((host, int(port)), timeout=5)
s.sendall(b"GET /metrics HTTP/1.0\r\nX: " + b"a" * 5000)
r = s.recv(100)
assert r.startswith(b"HTTP/1.0 431 "), r
s.close()

# a client that sends nothing holds the one-at-a-time server for its deadline (2 s) at most
t0 = time.monotonic()
stall = socket.create_connection((host, int(port)), timeout=5)
time.sleep(0.2)
scrape()
took = time.monotonic() - t0
assert took < 4.5, "a stalled client held the scrape for %.1f s" % took
assert stall.recv(10) == b"", "the stalled client is closed without an answer"
stall.close()
print("scrape ok (waited %.1f s behind a stalled client)" % took)
PY
ok "metrics: exposition format, counters, escaping, 404/405/431, a stalled client"

# 8. one daemon per socket; a stale one is replaced; a clean stop removes it
printf 'target vm\n' >"$CONF"
set +e
(umask 000; exec "$CTLHARNESS" --control "unix:$SOCK" --metrics 127.0.0.1:0 --config "$CONF" --ready "$T/h2.ready") >"$T/h2.log" 2>&1
rc=$?
set -e
[ $rc != 0 ] && grep -q "another daemon answers" "$T/h2.log" || fail "a second daemon on a live socket: rc $rc"
kill -KILL "$HPID"
wait "$HPID" 2>/dev/null || true # "Killed": on purpose, to leave a stale socket
[ -S "$SOCK" ] || fail "expected a stale socket after SIGKILL"
harness_start h3
"$MIGRELAY" status --control "$SOCK" >/dev/null || fail "status after replacing a stale socket"
kill -TERM "$HPID"
rc=0
wait "$HPID" 2>/dev/null || rc=$?
[ $rc = 0 ] || fail "the harness exited $rc on SIGTERM (a sanitizer report?)"
[ ! -e "$SOCK" ] || fail "the socket must go with its daemon"
ok "a live socket is refused, a stale one replaced, a stopped daemon removes its own"
