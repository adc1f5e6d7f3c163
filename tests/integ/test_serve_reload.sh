#!/usr/bin/env bash
# Reload of a real `migrelay serve` (docs/OPERATIONS.md "Reload"):
# 1. during a running transfer (200 MiB through a throttled stdin, client1,
#    4 connections) the server certificate is rotated and client1 revoked
#    (ca-crl.pem), then SIGHUP: the transfer completes byte-exact; new
#    connections get the new certificate; client1's next session is refused,
#    client2's is not;
# 2. `migrelay status reload` with a broken server certificate is refused
#    (exit 1) with the reason, and the configuration in force keeps working;
#    `migrelay status` shows the failed reload; a fixed file reloads again.
source "$(dirname "$0")/lib.sh"
command -v certtool >/dev/null || { echo "skip: certtool (gnutls-bin) is not installed"; exit 77; }
mr_setup
mr_pki
"$MIGRELAY" pki issue client --ca "$T/ca" --out "$T/cli2" --cn client2 >/dev/null
PORT=$(mr_free_port)
SOCK=$T/ctl.sock
MP=$(mr_free_port)
mr_serve "$PORT" --tls-dir "$T/srv" --target f=file:"$T/out.bin" --target d=discard --control "unix:$SOCK" --metrics "127.0.0.1:$MP"
mr_wait_file "$SOCK" 10 || fail "no control socket"

# peer_cert: SHA-256 of the certificate the server presents now
peer_cert() {
	python3 - "$PORT" "$T/cli" <<'PY'
import hashlib, socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.set_alpn_protocols(["migrelay/1"])
ctx.load_cert_chain(sys.argv[2] + "/client-cert.pem", sys.argv[2] + "/client-key.pem")
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5) as s:
    with ctx.wrap_socket(s) as t:
        print(hashlib.sha256(t.getpeercert(True)).hexdigest())
PY
}
pem_sha() { python3 -c 'import hashlib,ssl,sys; print(hashlib.sha256(ssl.PEM_cert_to_DER_cert(open(sys.argv[1]).read())).hexdigest())' "$1"; }
OLD=$(peer_cert) || fail "no certificate from the server"
[ "$OLD" = "$(pem_sha "$T/srv/server-cert.pem")" ] || fail "the server presents another certificate than server-cert.pem"

# 1. 200 MiB at about 50 MiB/s: four seconds in which to reload; the writer notes the digest of what it wrote
python3 - "$T/in.sha" <<'PY' | "$MIGRELAY" send --to "127.0.0.1:$PORT" --target f --tls-dir "$T/cli" --connections 4 --quiet >/dev/null 2>"$T/send.log" &
import hashlib, os, sys, time
h = hashlib.sha256()
seed = os.urandom(1 << 20)
for i in range(200):
    b = i.to_bytes(4, "little") + seed[4:]
    h.update(b)
    sys.stdout.buffer.write(b); sys.stdout.flush(); time.sleep(0.02)
open(sys.argv[1], "w").write(h.hexdigest())
PY
SEND=$!
MR_PIDS+=("$SEND")
for _ in $(seq 1 50); do
	[ "$("$MIGRELAY" status --control "$SOCK" --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin).get("sessions",[])))')" = 1 ] && break
	sleep 0.1
done
"$MIGRELAY" status --control "$SOCK" | grep -q "CN=client1" || fail "the transfer's session is not in the status"

# rotate: a new server certificate in place, and client1 revoked
"$MIGRELAY" pki issue server --ca "$T/ca" --out "$T/srv.new" --cn server.test --dns localhost --ip 127.0.0.1 >/dev/null
cp "$T/srv.new/server-cert.pem" "$T/srv.new/server-key.pem" "$T/srv/"
printf 'crl_next_update = 30\ncrl_number = 1\n' >"$T/crl.tmpl"
certtool --generate-crl --load-ca-certificate "$T/ca/ca-cert.pem" --load-ca-privkey "$T/ca/ca-key.pem" \
	--load-certificate "$T/cli/client-cert.pem" --template "$T/crl.tmpl" --outfile "$T/srv/ca-crl.pem" >/dev/null 2>&1 ||
	fail "certtool --generate-crl"
kill -HUP "$SERVE_PID"
mr_wait_log "$T/serve-$PORT.log" "reloaded: configuration generation 2" 5 || fail "SIGHUP did not reload"
kill -0 "$SEND" 2>/dev/null || fail "the transfer ended before the reload: $(cat "$T/send.log")"
NEW=$(peer_cert) || true
[ "$NEW" = "$(pem_sha "$T/srv.new/server-cert.pem")" ] || fail "after the reload the server still presents the old certificate"
ok "SIGHUP during the transfer: new connections get the rotated certificate"

wait "$SEND" || fail "the transfer failed across the reload: $(tail -n 3 "$T/send.log")"
[ "$(sha256sum <"$T/out.bin" | cut -d' ' -f1)" = "$(cat "$T/in.sha")" ] || fail "the file differs from what was sent"
ok "the transfer in flight (revoked client, old certificate) completed byte-exact"

rc=0
head -c 100000 /dev/urandom | "$MIGRELAY" send --to "127.0.0.1:$PORT" --target d --tls-dir "$T/cli" --quiet >/dev/null 2>"$T/revoked.log" || rc=$?
[ "$rc" != 0 ] || fail "the revoked client1 was let in"
grep -qi "revoked\|certificate" "$T/revoked.log" || fail "the revoked client's refusal does not say why: $(cat "$T/revoked.log")"
head -c 100000 /dev/urandom | "$MIGRELAY" send --to "127.0.0.1:$PORT" --target d --tls-dir "$T/cli2" --quiet >/dev/null 2>"$T/cli2.log" ||
	fail "client2 refused after the reload: $(cat "$T/cli2.log")"
ok "after the reload: revoked client1 refused (exit $rc), client2 served"

# 2. A broken certificate: the reload is refused with the reason; the old settings keep working
cp "$T/srv/server-cert.pem" "$T/good-cert.pem"
echo "not a certificate" >"$T/srv/server-cert.pem"
rc=0
"$MIGRELAY" status --control "$SOCK" reload >"$T/reload.out" 2>"$T/reload.err" || rc=$?
[ "$rc" = 1 ] || fail "a broken reload: exit $rc, want 1 ($(cat "$T/reload.out" "$T/reload.err"))"
grep -q "server-cert.pem" "$T/reload.out" "$T/reload.err" || fail "the refusal does not name the file: $(cat "$T/reload.out" "$T/reload.err")"
"$MIGRELAY" status --control "$SOCK" --json | python3 -c '
import json, sys
d = json.load(sys.stdin)["daemon"]
assert d["config_generation"] == 2, d
assert d["last_reload"]["ok"] is False and "server-cert.pem" in d["last_reload"]["message"], d' ||
	fail "status after the broken reload"
kill -HUP "$SERVE_PID"
mr_wait_log "$T/serve-$PORT.log" "reload refused.*server-cert.pem" 5 || fail "SIGHUP with a broken file: no refusal logged"
head -c 100000 /dev/urandom | "$MIGRELAY" send --to "127.0.0.1:$PORT" --target d --tls-dir "$T/cli2" --quiet >/dev/null 2>"$T/cli2.log" ||
	fail "the configuration in force stopped working after a refused reload: $(cat "$T/cli2.log")"
[ "$(peer_cert)" = "$NEW" ] || fail "a refused reload changed the certificate"
cp "$T/good-cert.pem" "$T/srv/server-cert.pem"
"$MIGRELAY" status --control "$SOCK" reload >"$T/reload.out" 2>&1 || fail "reload of the fixed file: $(cat "$T/reload.out")"
grep -q "generation 3" "$T/reload.out" || fail "reload of the fixed file: $(cat "$T/reload.out")"
python3 - "$MP" <<'PY' || fail "reloads in the metrics"
import sys, urllib.request
m = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5).read().decode()
assert 'migrelay_reloads_total{result="ok"} 2\n' in m and 'migrelay_reloads_total{result="failed"} 2\n' in m, \
    [l for l in m.splitlines() if "reloads" in l]
PY
ok "a broken certificate: reload refused with the reason (exit 1), old settings kept; fixed, it reloads; reloads counted"
