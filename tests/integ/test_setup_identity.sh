#!/usr/bin/env bash
# Identities longer than 511 bytes (SECURITY.md "Identities"): a client whose
# certificate DN is 649 characters long can open a session of several
# connections (each JOIN presents the whole DN), and a second certificate of
# the same CA whose DN is exactly the first 511 characters of that DN is
# refused when it JOINs the session with its token: identities are compared
# whole, never by prefix.
. "$(dirname "$0")/lib.sh"
mr_setup
mr_pki
: "${RAWPEER:?RAWPEER must point at the mr_rawpeer test tool}"
command -v openssl >/dev/null || { echo "skip: no openssl to issue certificates with long DNs"; exit 77; }

# long_cert DIR PRINTED_DN: a client certificate whose DN, as migrelay prints
# it (RFC 4514: the last RDN first), is PRINTED_DN ("CN=x,OU=y,...").
long_cert() {
	local dir=$1 subj
	mkdir -p "$dir"
	subj=$(python3 -c 'import sys; print("".join("/" + r for r in reversed(sys.argv[1].split(","))))' "$2")
	cp "$T/ca/ca-cert.pem" "$dir/"
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/client-key.pem" \
		-subj "$subj" -out "$dir/req.pem" 2>/dev/null || fail "openssl req"
	printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n' >"$dir/ext"
	openssl x509 -req -in "$dir/req.pem" -CA "$T/ca/ca-cert.pem" -CAkey "$T/ca/ca-key.pem" -CAcreateserial \
		-days 2 -extfile "$dir/ext" -out "$dir/client-cert.pem" 2>/dev/null || fail "openssl x509"
}

# CN=client, then ten OUs of 60 letters each: 9 + 10 x 64 = 649 characters.
long=$(python3 -c 'print(",".join(["CN=client"] + ["OU=" + chr(97 + i) * 60 for i in range(10)]))')
prefix=${long:0:511}
[ ${#long} -eq 649 ] && [ ${#prefix} -eq 511 ] || fail "test setup: DN lengths ${#long} ${#prefix}"
long_cert "$T/long" "$long"
long_cert "$T/prefix" "$prefix"

port=$(mr_free_port)
mr_serve "$port" --tls-dir "$T/srv" --target d=discard -v
head -c 2000000 /dev/urandom >"$T/in"

# 1. The long identity's own JOINs are the session's identity.
rc=0
timeout 60 "$MIGRELAY" send --to "127.0.0.1:$port" --target d --tls-dir "$T/long" --connections 3 --quiet \
	<"$T/in" >/dev/null 2>"$T/send.err" || rc=$?
[ $rc -eq 0 ] || { cat "$T/send.err"; fail "a client with a 649-character DN could not send over 3 connections (exit $rc)"; }
grep -q "OU=jjjj" "$T/serve-$port.log" && fail "the log printed an identity of 649 characters unbounded"
ok "649-character DN: send over 3 connections succeeded"

# 2. A DN equal to the first 511 characters is another identity.
out=$("$RAWPEER" --to "127.0.0.1:$port" --tls-dir "$T/long" --tls-dir2 "$T/prefix" --target d --case join-identity) || true
echo "$out" | grep -q "ERROR identity" || fail "JOIN with the 511-character prefix DN: expected ERROR identity, got: $out"
ok "JOIN by a certificate whose DN is the 511-character prefix: $out"
