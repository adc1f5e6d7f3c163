#!/usr/bin/env bash
# One deadline for the whole setup (SECURITY.md "Setup deadline"): a peer
# that completes its TLS handshake and then sends its HELLO one byte per
# second (a certificate not in --allow, as an attacker holding a slot would)
# is dropped at --handshake-timeout after its connect, not kept alive by
# every byte; so is a peer that trickles its ClientHello, and one that
# sends nothing within 3 s of its connect.
. "$(dirname "$0")/lib.sh"
mr_setup
mr_pki
mr_pki_refused

port=$(mr_free_port)
mr_serve "$port" --tls-dir "$T/srv" --target d=discard --allow "CN=client1,*" --handshake-timeout 3

# trickle MODE: prints the seconds from connect to the server's close.
#   hello: TLS handshake (as CN=client2), then a HELLO header one byte per second
#   tls:   a TLS ClientHello one byte per second
#   idle:  nothing at all
trickle() {
	python3 - "$port" "$T/cli2" "$1" <<'PY'
import socket, ssl, sys, time
port, d, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
raw = socket.create_connection(("127.0.0.1", port))
t0 = time.monotonic()
def closed(s):
    try:
        s.settimeout(0.05)
        return s.recv(1) == b""
    except socket.timeout:
        return False
    except (OSError, ssl.SSLError):
        return True
s = raw
if mode == "hello":
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(d + "/ca-cert.pem")
    ctx.load_cert_chain(d + "/client-cert.pem", d + "/client-key.pem")
    ctx.check_hostname = False
    ctx.set_alpn_protocols(["migrelay/1"])
    s = ctx.wrap_socket(raw)
    data = bytes([1]) + bytes(15)  # a HELLO header, sent a byte at a time
elif mode == "tls":
    data = bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]) + bytes(64)
else:
    data = b""
i = 0
while time.monotonic() - t0 < 30:
    if i < len(data) and mode != "idle":
        try:
            s.send(data[i:i + 1])
        except (OSError, ssl.SSLError):
            break
        i += 1
    end = time.monotonic() + 1.0
    gone = False
    while time.monotonic() < end:
        if closed(s):
            gone = True
            break
    if gone:
        break
print("%.1f" % (time.monotonic() - t0))
PY
}

t=$(trickle hello)
python3 -c "import sys; sys.exit(0 if 2.5 <= $t <= 5.5 else 1)" || fail "a HELLO sent a byte per second was dropped after ${t} s, expected about 3 s"
mr_wait_log "$T/serve-$port.log" "handshake-timeout" 2 || fail "the server did not log the setup deadline"
ok "HELLO trickled a byte per second after the TLS handshake: dropped after ${t} s (--handshake-timeout 3)"

t=$(trickle tls)
python3 -c "import sys; sys.exit(0 if $t <= 5.5 else 1)" || fail "a ClientHello sent a byte per second was dropped after ${t} s"
ok "ClientHello trickled a byte per second: dropped after ${t} s"

t=$(trickle idle)
python3 -c "import sys; sys.exit(0 if 2.5 <= $t <= 4.5 else 1)" || fail "an idle connection was dropped after ${t} s, expected about 3 s"
ok "idle connection: dropped after ${t} s (no ClientHello within 3 s)"

# A legitimate client still gets through.
head -c 100000 /dev/urandom | "$MIGRELAY" send --to "127.0.0.1:$port" --target d --tls-dir "$T/cli" --quiet >/dev/null ||
	fail "a legitimate send failed"
ok "a legitimate send still succeeds"
