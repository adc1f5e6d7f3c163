#!/usr/bin/env bash
# The per-key record limit of the TLS record layer (crypto/record.h), lowered
# with MIGRELAY_TLS_RECORD_LIMIT: a connection whose key is used up ends, the
# client rejoins it with a new handshake (fresh keys), and the stream arrives
# byte-exact. Also: both record layers (in-place and GnuTLS's) interoperate.
. "$(dirname "$0")/lib.sh"
mr_setup
mr_pki
port=$(mr_free_port)
mr_serve "$port" --tls-dir "$T/srv" --target "f=file:$T/out.bin"
head -c $((64 << 20)) /dev/urandom >"$T/in"

# 64 MiB over 2 connections is about 2000 records each: a limit of 600 ends each connection a few times
MIGRELAY_TLS_RECORD_LIMIT=600 "$MIGRELAY" send --to "127.0.0.1:$port" --target f --tls-dir "$T/cli" \
	--connections 2 <"$T/in" >/dev/null 2>"$T/send.log" || { cat "$T/send.log"; fail "send with a record limit"; }
cmp "$T/in" "$T/out.bin" || fail "the file differs after connections were replaced for fresh keys"
grep -qi "rejoined" "$T/send.log" || fail "no connection was replaced (the record limit had no effect)"
ok "record limit: connections replaced by new handshakes, stream byte-exact"

rm -f "$T/out.bin"
MIGRELAY_TLS_RECORDS=gnutls "$MIGRELAY" send --to "127.0.0.1:$port" --target f --tls-dir "$T/cli" \
	--connections 2 --quiet <"$T/in" >/dev/null 2>"$T/send.log" || { cat "$T/send.log"; fail "GnuTLS records to in-place records"; }
cmp "$T/in" "$T/out.bin" || fail "GnuTLS records to in-place records: the file differs"
ok "a client on GnuTLS's record layer and a server on in-place records agree"
