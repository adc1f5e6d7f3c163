#!/usr/bin/env bash
# Revoked clients and per-file credentials (issue 14 item 12):
# 1. libvirt's PKI layout used in place through --ca/--cert/--key/--crl:
#    client1 is served, client2 (listed in the CRL) is refused;
# 2. the same CRL as ca-crl.pem in --tls-dir (QEMU's layout) refuses client2;
#    the scrape counts it as a TLS handshake failure; a session asking for
#    more connections than --max-connections counts as refused by that limit;
# 3. --ca without --cert/--key, or with --tls-dir, is a usage error (exit 2).
source "$(dirname "$0")/lib.sh"
command -v certtool >/dev/null || { echo "skip: certtool (gnutls-bin) is not installed"; exit 77; }
mr_setup
mr_pki
"$MIGRELAY" pki issue client --ca "$T/ca" --out "$T/cli2" --cn client2 >/dev/null
printf 'crl_next_update = 30\ncrl_number = 1\n' >"$T/crl.tmpl"
certtool --generate-crl --load-ca-certificate "$T/ca/ca-cert.pem" --load-ca-privkey "$T/ca/ca-key.pem" \
	--load-certificate "$T/cli2/client-cert.pem" --template "$T/crl.tmpl" --outfile "$T/crl.pem" >/dev/null 2>&1 ||
	fail "certtool --generate-crl"

# sends PORT CLIENTDIR: 0 when a small relay goes through
sends() {
	head -c 200000 /dev/urandom | "$MIGRELAY" send --to "127.0.0.1:$1" --target d --tls-dir "$2" --quiet >/dev/null 2>"$T/send.log"
}

# 1. libvirt's layout
L=$T/pki
mkdir -p "$L/CA" "$L/libvirt/private"
cp "$T/ca/ca-cert.pem" "$L/CA/cacert.pem"
cp "$T/srv/server-cert.pem" "$L/libvirt/servercert.pem"
cp "$T/srv/server-key.pem" "$L/libvirt/private/serverkey.pem"
cp "$T/crl.pem" "$L/CA/cacrl.pem"
P1=$(mr_free_port)
mr_serve "$P1" --ca "$L/CA/cacert.pem" --cert "$L/libvirt/servercert.pem" --key "$L/libvirt/private/serverkey.pem" \
	--crl "$L/CA/cacrl.pem" --target d=discard --control none
sends "$P1" "$T/cli" || fail "client1 refused with --ca/--cert/--key/--crl: $(cat "$T/send.log")"
rc=0
sends "$P1" "$T/cli2" || rc=$?
[ "$rc" != 0 ] || fail "client2, revoked by --crl, was let in"
mr_wait_log "$T/serve-$P1.log" "revoked" 5 || fail "serve does not say the certificate is revoked"
ok "--ca/--cert/--key/--crl (libvirt's layout in place): client1 served, revoked client2 refused (exit $rc)"

# 2. ca-crl.pem in --tls-dir
cp -r "$T/srv" "$T/srvcrl"
cp "$T/crl.pem" "$T/srvcrl/ca-crl.pem"
P2=$(mr_free_port)
MP=$(mr_free_port)
mr_serve "$P2" --tls-dir "$T/srvcrl" --target d=discard --control none --metrics "127.0.0.1:$MP" --max-connections 2
sends "$P2" "$T/cli" || fail "client1 refused with ca-crl.pem: $(cat "$T/send.log")"
rc=0
sends "$P2" "$T/cli2" || rc=$?
[ "$rc" != 0 ] || fail "client2, revoked by ca-crl.pem, was let in"
rc2=0
head -c 1000 /dev/urandom | "$MIGRELAY" send --to "127.0.0.1:$P2" --target d --tls-dir "$T/cli" --connections 4 --quiet >/dev/null 2>&1 || rc2=$?
[ "$rc2" != 0 ] || fail "4 connections let in with --max-connections 2"
python3 - "$MP" <<'PY' || fail "metrics after the refusals"
import sys, time, urllib.request
want = {'migrelay_handshake_failures_total{reason="tls"}': 1, 'migrelay_refused_total{limit="max_connections"}': 1,
        'migrelay_sessions_verified_total{target="d"}': 1}
for _ in range(50):
    got = {}
    for l in urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5).read().decode().splitlines():
        if not l.startswith("#"):
            k, v = l.rsplit(" ", 1)
            got[k] = float(v)
    if all(got.get(k, 0) >= v for k, v in want.items()):
        sys.exit(0)
    time.sleep(0.1)
sys.exit("metrics: %s" % {k: got.get(k) for k in want})
PY
ok "ca-crl.pem in --tls-dir: client1 served, revoked client2 refused (exit $rc); scraped as a TLS handshake failure, and --max-connections as a refusal by its limit"

# 3. usage errors
for args in "--ca $L/CA/cacert.pem" "--ca $L/CA/cacert.pem --cert $L/libvirt/servercert.pem --key $L/libvirt/private/serverkey.pem --tls-dir $T/srv"; do
	rc=0
	# shellcheck disable=SC2086
	"$MIGRELAY" serve --listen 127.0.0.1:1 --target d=discard --control none $args >/dev/null 2>"$T/usage.err" || rc=$?
	[ "$rc" = 2 ] && grep -q -- "--ca" "$T/usage.err" || fail "serve $args: exit $rc, $(cat "$T/usage.err")"
done
ok "--ca without --cert/--key, and --ca with --tls-dir: usage errors naming --ca"
