#!/usr/bin/env python3
"""A TCP proxy for fault tests: relays 127.0.0.1:LISTEN to 127.0.0.1:TO and
breaks connections on cue, counting the bytes that flow client -> server.

  cutproxy.py --listen P --to Q [--total BYTES] [--reset FRACTION:N]... [--cut FRACTION:SECONDS]
              [--freeze FRACTION:SECONDS] [--swallow FRACTION:SECONDS] [--watch MARKER]

--reset 0.3:1   reset (RST both ways) the connection accepted as number N
                (0 is the first) once FRACTION of --total has passed
--cut 0.4:5     reset every connection at FRACTION, and for SECONDS reset
                every new connection as soon as it is accepted
--freeze 0.4:20 stop relaying (without closing) at FRACTION for SECONDS:
                the connections look alive to TCP but carry nothing
--swallow 0.99:2
                at FRACTION, drop every byte the server sends (the client
                never sees it) for SECONDS, then reset every connection:
                what the server sent last is lost with its connections
--watch TEXT    look for TEXT in the relayed bytes (also across reads): logs
                "marker seen upstream|downstream on connection N" the first
                time, and "connection N upstream|downstream: marker seen K
                times" when that direction ends (shows whether data is plaintext)
Events go to stdout, one line each. Runs until killed; bounded by --max-seconds.
"""
import argparse, socket, struct, sys, threading, time

ap = argparse.ArgumentParser()
ap.add_argument("--listen", type=int, required=True)
ap.add_argument("--to", type=int, required=True)
ap.add_argument("--total", type=int, default=1 << 62)
ap.add_argument("--reset", action="append", default=[])
ap.add_argument("--cut")
ap.add_argument("--freeze")
ap.add_argument("--swallow")
ap.add_argument("--max-seconds", type=float, default=600)
ap.add_argument("--watch")
a = ap.parse_args()

lock = threading.Lock()
passed = 0
conns = []           # [client_sock, server_sock, alive]
resets = sorted((float(f), int(n)) for f, n in (r.split(":") for r in a.reset))
cut = tuple(map(float, a.cut.split(":"))) if a.cut else None
freeze = tuple(map(float, a.freeze.split(":"))) if a.freeze else None
swallow = tuple(map(float, a.swallow.split(":"))) if a.swallow else None
swallow_until = 0.0
cut_until = 0.0
freeze_until = 0.0
done_cut = done_freeze = done_swallow = False


def log(msg):
    print("%.3f %s" % (time.time(), msg), flush=True)


def rst(s):
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    except OSError:
        pass


def kill(i):
    c = conns[i]
    if c[2]:
        c[2] = False
        rst(c[0]); rst(c[1])


def check():
    """Called with lock held after bytes passed."""
    global cut_until, done_cut, freeze_until, done_freeze, swallow_until, done_swallow
    while resets and passed >= resets[0][0] * a.total:
        f, n = resets.pop(0)
        if n < len(conns):
            kill(n)
            log("reset connection %d at %d bytes (%.0f%%)" % (n, passed, 100.0 * passed / a.total))
    if cut and not done_cut and passed >= cut[0] * a.total:
        done_cut = True
        cut_until = time.time() + cut[1]
        for i in range(len(conns)):
            kill(i)
        log("cut every connection at %d bytes for %.1f s" % (passed, cut[1]))
    if freeze and not done_freeze and passed >= freeze[0] * a.total:
        done_freeze = True
        freeze_until = time.time() + freeze[1]
        log("froze every connection at %d bytes for %.1f s" % (passed, freeze[1]))
    if swallow and not done_swallow and passed >= swallow[0] * a.total:
        done_swallow = True
        swallow_until = time.time() + swallow[1]
        log("swallowing what the server sends at %d bytes for %.1f s" % (passed, swallow[1]))
        threading.Thread(target=swallow_end, daemon=True).start()


def swallow_end():
    time.sleep(swallow[1])
    with lock:
        for i in range(len(conns)):
            kill(i)
    log("reset every connection after swallowing")


def pump(i, src, dst, upstream):
    global passed
    buf = bytearray(1 << 20)
    watch = a.watch.encode() if a.watch else None
    way = "upstream" if upstream else "downstream"
    tail = b""
    seen = 0
    while True:
        while time.time() < freeze_until:
            time.sleep(0.05)
        try:
            n = src.recv_into(buf)
        except OSError:
            n = 0
        if n <= 0:
            break
        if watch:
            data = tail + bytes(buf[:n])
            k = data.count(watch)
            if k and not seen:
                log("marker seen %s on connection %d" % (way, i))
            seen += k
            tail = data[len(data) - len(watch) + 1:]
        while time.time() < freeze_until:
            time.sleep(0.05)
        if not upstream and time.time() < swallow_until:
            continue
        try:
            dst.sendall(memoryview(buf)[:n])
        except OSError:
            break
        if upstream:
            with lock:
                passed += n
                check()
    if watch:
        log("connection %d %s: marker seen %d times" % (i, way, seen))
    with lock:
        if conns[i][2]:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass


ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", a.listen))
ls.listen(128)
ls.settimeout(0.5)
log("listening on %d, relaying to %d" % (a.listen, a.to))
start = time.time()
while time.time() - start < a.max_seconds:
    try:
        c, _ = ls.accept()
    except socket.timeout:
        continue
    if time.time() < cut_until:
        rst(c)
        log("refused a connection during the cut")
        continue
    try:
        s = socket.create_connection(("127.0.0.1", a.to))
    except OSError:
        rst(c)
        continue
    for x in (c, s):
        x.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with lock:
        i = len(conns)
        conns.append([c, s, True])
    log("connection %d accepted" % i)
    threading.Thread(target=pump, args=(i, c, s, True), daemon=True).start()
    threading.Thread(target=pump, args=(i, s, c, False), daemon=True).start()
