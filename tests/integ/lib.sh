# shellcheck shell=bash
# Shared helpers for the integration tests: real gateways on loopback.
# Each test sources this, calls mr_setup, and gets $T (a temp dir) and a
# cleanup trap that ends only the processes the test started.
set -euo pipefail

: "${MIGRELAY:?MIGRELAY must point at the migrelay binary}"
MR_PIDS=()

mr_cleanup() {
	local p
	for p in "${MR_PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${MR_PIDS[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	[ -n "${T:-}" ] && rm -rf "$T"
}

mr_setup() {
	T=$(mktemp -d /tmp/migrelay-test.XXXXXX)
	trap mr_cleanup EXIT
}

fail() {
	local f
	echo "FAIL: $*" >&2
	for f in "${T:-/nonexistent}"/*.log; do
		[ -f "$f" ] && { echo "--- last lines of $(basename "$f"):" >&2; tail -n 8 "$f" >&2; }
	done
	exit 1
}

ok() {
	echo "ok: $*"
}

# A free TCP port on 127.0.0.1.
mr_free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# CA in $T/ca, server creds in $T/srv, client creds in $T/cli (QEMU layout).
mr_pki() {
	"$MIGRELAY" pki init --dir "$T/ca" --cn "migrelay test CA" >/dev/null
	"$MIGRELAY" pki issue server --ca "$T/ca" --out "$T/srv" --cn server.test --dns localhost --ip 127.0.0.1 >/dev/null
	"$MIGRELAY" pki issue client --ca "$T/ca" --out "$T/cli" --cn client1 --org "migrelay tests" >/dev/null
}

# Credentials that must be refused: $T/cli2 (CN=client2, same CA), $T/expired
# (CN=client1, expired), $T/foreign (CN=client1 from another CA; it trusts the
# right CA, so only its own certificate is wrong).
mr_pki_refused() {
	"$MIGRELAY" pki issue client --ca "$T/ca" --out "$T/cli2" --cn client2 >/dev/null
	"$MIGRELAY" pki issue client --ca "$T/ca" --out "$T/expired" --cn client1 --expired >/dev/null
	"$MIGRELAY" pki init --dir "$T/ca2" --cn "another CA" >/dev/null
	"$MIGRELAY" pki issue client --ca "$T/ca2" --out "$T/foreign" --cn client1 >/dev/null
	cp "$T/ca/ca-cert.pem" "$T/foreign/ca-cert.pem"
}

# Waits until something listens on 127.0.0.1:$1 (10 s at most).
mr_wait_port() {
	local i
	for i in $(seq 1 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	fail "nothing listens on port $1"
}

# mr_serve PORT ARGS... : starts a daemon with server creds, log in $T/serve-PORT.log.
mr_serve() {
	local port=$1
	shift
	"$MIGRELAY" serve --listen "127.0.0.1:$port" "$@" >"$T/serve-$port.log" 2>&1 &
	MR_PIDS+=($!)
	SERVE_PID=$!
	mr_wait_port "$port"
}

# mr_fake_qmp SOCKET LOG [fakeqmp.py options]: a QMP server answering like a
# QEMU started with -incoming defer (tests/tools/fakeqmp.py), logging every
# command to LOG, until the test ends.
mr_fake_qmp() {
	python3 "${MR_SRC:?MR_SRC must point at the source tree}/tests/tools/fakeqmp.py" "$@" &
	MR_PIDS+=($!)
	mr_wait_file "$1" 10 || fail "the fake QMP server did not start"
	: >"$2"
}

# mr_order_echo SOCK LOG: a unix-socket echo server that numbers connections
# in the order it accepts them: it writes "accept K" to LOG when it accepts
# connection K and "K FIRST_LINE" once that connection's first line arrived,
# then echoes until EOF (and closes its side), until the test ends.
mr_order_echo() {
	python3 - "$1" "$2" <<'PY' &
import socket, sys, threading
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1]); s.listen(128)
log = open(sys.argv[2], "a", buffering=1)
lock = threading.Lock()
def serve(c, k):
    first, rec = b"", False
    while True:
        b = c.recv(1 << 20)
        if not b:
            break
        if not rec:
            first += b
            if b"\n" in first:
                with lock:
                    log.write("%d %s\n" % (k, first.split(b"\n")[0].decode()))
                rec = True
        c.sendall(b)
    c.shutdown(socket.SHUT_WR)
    c.close()
k = 0
while True:
    c, _ = s.accept()
    with lock:
        log.write("accept %d\n" % k)
    threading.Thread(target=serve, args=(c, k), daemon=True).start()
    k += 1
PY
	MR_PIDS+=($!)
	mr_wait_file "$1" 10 || fail "the order echo server did not start on $1"
}

# Waits up to $2 seconds for file $1 to exist.
mr_wait_file() {
	local i
	for i in $(seq 1 $(($2 * 10))); do
		[ -e "$1" ] && return 0
		sleep 0.1
	done
	return 1
}

# mr_wait_log FILE REGEX [SECONDS]: waits until FILE has a line matching REGEX (case-insensitive).
mr_wait_log() {
	local i
	for i in $(seq 1 $((${3:-5} * 10))); do
		grep -qiE "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# mr_echo_server SOCKPATH: a unix-socket echo server (each connection gets
# back every byte it sends, then a FIN when it closes its side), run until
# the test ends.
mr_echo_server() {
	python3 - "$1" <<'PY' &
import socket, sys, threading
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1]); s.listen(16)
def serve(c):
    while True:
        b = c.recv(1 << 20)
        if not b:
            break
        c.sendall(b)
    c.shutdown(socket.SHUT_WR)
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
	MR_PIDS+=($!)
	mr_wait_file "$1" 10 || fail "echo server did not start on $1"
}

# mr_echo_rounds SOCKPATH N TEXT: N round trips through an echo at SOCKPATH
# (unix socket): each line "TEXT i" must come back unchanged while the
# socket stays open, then the echo must end after our FIN. Fails (exit 1)
# otherwise.
mr_echo_rounds() {
	python3 - "$1" "$2" "$3" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(10)
for i in range(int(sys.argv[2])):
    msg = b"%s %d\n" % (sys.argv[3].encode(), i)
    s.sendall(msg)
    got = b""
    while len(got) < len(msg):
        b = s.recv(100)
        assert b, "the echo ended early"
        got += b
    assert got == msg, (got, msg)
s.shutdown(socket.SHUT_WR)
assert s.recv(10) == b""
PY
}
