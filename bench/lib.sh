# SPDX-License-Identifier: MIT
# shellcheck shell=bash disable=SC2034
#
# Helpers for bench/compare, sourced after tests/e2e/lib.sh (whose QEMU start
# helpers, QMP client and RAM check they reuse).
#
#   bench_netns_up MODE [RATE]   private network namespaces: "loopback" (one
#                                namespace, both sides on its 127.0.0.1) or
#                                "link" (two namespaces joined by a veth pair,
#                                198.18.0.1 and 198.18.0.2, tbf RATE on both ends)
#   bench_in SIDE CMD...         runs CMD in the source (a) or destination (b) namespace
#   bench_spawn NAME SIDE CMD... e2e_spawn inside a namespace
#   bench_wait_port SIDE PORT SECS   until something listens on TCP PORT there
#   bench_wait_sock PATH SECS    until the unix socket PATH exists
#   bench_drive SPEC OUT         one timed migration (see the Python below)
#   bench_report ...             tables, CSV and chart from the raw results
#
# Only processes started here (through e2e_spawn) are ever signalled, by PID;
# the namespaces are removed at exit.

BENCH_NS_A=
BENCH_NS_B=
BENCH_DST_ADDR=127.0.0.1
BENCH_COUNTERS=() # files whose sum is "bytes on the wire", read inside namespace a

bench_log() { printf '%s [%s] %s\n' "$(date +%H:%M:%S)" "${BENCH_TAG:-bench}" "$*" >&2; }

bench_netns_up() {
	local mode=$1 rate=${2:-}
	BENCH_NS_A=mrbench-$$-a
	ip netns add "$BENCH_NS_A" || return 1
	e2e_on_exit "ip netns del $BENCH_NS_A 2>/dev/null"
	ip -n "$BENCH_NS_A" link set lo up || return 1
	if [ "$mode" = loopback ]; then
		BENCH_NS_B=$BENCH_NS_A
		BENCH_DST_ADDR=127.0.0.1
		BENCH_COUNTERS=(/sys/class/net/lo/statistics/tx_bytes)
		return 0
	fi
	BENCH_NS_B=mrbench-$$-b
	ip netns add "$BENCH_NS_B" || return 1
	e2e_on_exit "ip netns del $BENCH_NS_B 2>/dev/null"
	ip -n "$BENCH_NS_B" link set lo up || return 1
	ip -n "$BENCH_NS_A" link add va type veth peer name vb netns "$BENCH_NS_B" || return 1
	ip -n "$BENCH_NS_A" addr add 198.18.0.1/24 dev va || return 1
	ip -n "$BENCH_NS_B" addr add 198.18.0.2/24 dev vb || return 1
	ip -n "$BENCH_NS_A" link set va up || return 1
	ip -n "$BENCH_NS_B" link set vb up || return 1
	tc -n "$BENCH_NS_A" qdisc add dev va root tbf rate "$rate" burst 256kb latency 20ms || return 1
	tc -n "$BENCH_NS_B" qdisc add dev vb root tbf rate "$rate" burst 256kb latency 20ms || return 1
	BENCH_DST_ADDR=198.18.0.2
	BENCH_COUNTERS=(/sys/class/net/va/statistics/tx_bytes /sys/class/net/va/statistics/rx_bytes)
	# reachable: a connection to a closed port is refused (not timed out)
	ip netns exec "$BENCH_NS_A" python3 -c 'import socket
s = socket.socket()
s.settimeout(5)
try:
    s.connect(("198.18.0.2", 9))
except ConnectionRefusedError:
    pass' || return 1
}

bench_ns() { if [ "$1" = a ]; then echo "$BENCH_NS_A"; else echo "$BENCH_NS_B"; fi; }

bench_in() {
	local ns
	ns=$(bench_ns "$1")
	shift
	ip netns exec "$ns" "$@"
}

bench_spawn() {
	local name=$1 ns
	ns=$(bench_ns "$2")
	shift 2
	e2e_spawn "$name" ip netns exec "$ns" "$@"
}

bench_wait_port() {
	local side=$1 port=$2 secs=$3 i
	for ((i = 0; i < secs * 10; i++)); do
		[ -n "$(bench_in "$side" ss -Hltn "sport = :$port" 2>/dev/null)" ] && return 0
		sleep 0.1
	done
	return 1
}

bench_wait_sock() {
	local path=$1 secs=$2 i
	for ((i = 0; i < secs * 10; i++)); do
		[ -S "$path" ] && return 0
		sleep 0.1
	done
	return 1
}

# bench_qemu_wrapper SIDE: a QEMU binary that runs in that side's namespace
# (e2e_qemu takes the binary from $E2E_QEMU; the PID stays QEMU's own).
bench_qemu_wrapper() {
	local side=$1 w=$E2E_TMP/qemu-$1 real
	if [ ! -x "$w" ]; then
		real=$(command -v "${QEMU:-qemu-system-x86_64}")
		printf '#!/bin/sh\nexec ip netns exec %q %q "$@"\n' "$(bench_ns "$side")" "$real" >"$w"
		chmod +x "$w"
	fi
	echo "$w"
}

# bench_drive SPEC_JSON OUT_JSON: one timed migration, run in namespace a.
# SPEC: {"src": QMP, "dst": QMP, "timeout": S, "counters": [files],
#        either "incoming": URI, "uri": URI, "caps": {"src": [..], "dst": [..]},
#               "params": {"src": {..}, "dst": {..}}   (QEMU drives the migration)
#        or     "cmd": [argv], "cmd_log": FILE       (a tool such as migrelay migrate does)}
# OUT: {"ok", "error", "wall", "wire", "rc", "report", "migrate" (source's query-migrate)}.
# Wall time: from migrate-incoming on the destination (or the tool's start)
# until the source reports completed (or the tool has exited).
bench_drive() {
	bench_in a python3 - "$E2E_DIR" "$1" "$2" <<'PY'
import json, subprocess, sys, time
e2e_dir, spec_path, out_path = sys.argv[1:4]
sys.path.insert(0, e2e_dir)
from qmp import QMP  # noqa: E402

spec = json.load(open(spec_path))
res = {"ok": False, "error": "", "wall": None, "wire": None, "rc": None, "report": None, "migrate": {}}


def counters():
    total = 0
    for f in spec.get("counters", []):
        with open(f) as fh:
            total += int(fh.read())
    return total


try:
    timeout = float(spec.get("timeout", 600))
    if spec.get("cmd"):
        with open(spec["cmd_log"], "w") as log:
            c0 = counters()
            t0 = time.monotonic()
            p = subprocess.Popen(spec["cmd"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
            try:
                out, _ = p.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.terminate()
                out, _ = p.communicate(timeout=60)
                res["error"] = "timeout after %.0f s" % timeout
            t1 = time.monotonic()
            c1 = counters()
        res["rc"] = p.returncode
        for line in out.decode("utf-8", "replace").splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and obj.get("event") == "report":
                res["report"] = obj
        q = QMP(spec["src"], 60)
        mig = q.cmd("query-migrate")
        if p.returncode != 0 and not res["error"]:
            res["error"] = "exit %d" % p.returncode
    else:
        src = QMP(spec["src"], 60)
        dst = QMP(spec["dst"], 60)
        for side, q in (("src", src), ("dst", dst)):
            caps = spec.get("caps", {}).get(side)
            if caps:
                q.cmd("migrate-set-capabilities",
                      {"capabilities": [{"capability": c, "state": True} for c in caps]})
            params = spec.get("params", {}).get(side)
            if params:
                q.cmd("migrate-set-parameters", params)
        c0 = counters()
        t0 = time.monotonic()
        dst.cmd("migrate-incoming", {"uri": spec["incoming"]})
        src.cmd("migrate", {"uri": spec["uri"]})
        while True:
            mig = src.cmd("query-migrate")
            if mig.get("status") in ("completed", "failed", "cancelled"):
                break
            if time.monotonic() - t0 > timeout:
                src.cmd("migrate_cancel")
                res["error"] = "timeout after %.0f s" % timeout
                break
            time.sleep(0.05)
        t1 = time.monotonic()
        c1 = counters()
    res["wall"] = t1 - t0
    res["wire"] = c1 - c0
    res["migrate"] = mig
    st = mig.get("status")
    if st != "completed" and not res["error"]:
        res["error"] = "migration %s: %s" % (st, mig.get("error-desc", ""))
    res["ok"] = st == "completed" and not res["error"]
except Exception as e:  # noqa: BLE001 - everything ends up in the result
    res["error"] = "%s: %s" % (type(e).__name__, e)
json.dump(res, open(out_path, "w"))
sys.exit(0 if res["ok"] else 1)
PY
}

# bench_result_row OUT_JSON: "status,total_ms,downtime_ms,setup_ms,wall_s,qemu_bytes,wire_bytes,passes,error"
bench_result_row() {
	python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
m = r.get("migrate") or {}
ram = m.get("ram") or {}
def v(x):
    return "" if x is None else str(x)
err = (r.get("error") or "").replace(",", ";").replace("\n", " ")[:200]
wall = "" if r.get("wall") is None else "%.3f" % r["wall"]
print(",".join(["ok" if r.get("ok") else "failed", v(m.get("total-time")), v(m.get("downtime")),
                v(m.get("setup-time")), wall, v(ram.get("transferred")), v(r.get("wire")),
                v(ram.get("dirty-sync-count")), err]))
PY
}

# bench_report_mem OUT_JSON: "rss_start_kib,rss_peak_kib" of `migrelay migrate`'s report, or ","
bench_report_mem() {
	python3 - "$1" <<'PY'
import json, sys
rep = (json.load(open(sys.argv[1])).get("report") or {})
print("%s,%s" % (rep.get("rss_start_kib", ""), rep.get("rss_peak_kib", "")))
PY
}

# bench_best_count CSV LIST: the connection count (of transports mr-cN in LIST)
# with the lowest median total time so far; empty if none succeeded yet.
bench_best_count() {
	python3 - "$1" "$2" <<'PY'
import csv, statistics, sys
best = None
rows = list(csv.DictReader(open(sys.argv[1])))
for t in sys.argv[2].split(","):
    v = [float(r["total_ms"]) for r in rows if r["transport"] == t and r["status"] == "ok" and r["total_ms"]]
    if v and (best is None or statistics.median(v) < best[0]):
        best = (statistics.median(v), t[4:])
print(best[1] if best else "")
PY
}

# bench_report CSV META_JSON MD PNG: medians per transport into a Markdown
# report and a gnuplot bar chart.
bench_report() {
	python3 - "$@" <<'PY'
import csv, json, os, statistics, subprocess, sys, tempfile
csv_path, meta_path, md_path, png_path = sys.argv[1:5]
meta = json.load(open(meta_path))
rows = list(csv.DictReader(open(csv_path)))
MiB = 1 << 20


def num(r, k):
    return float(r[k]) if r.get(k) not in (None, "") else None


def stat(vals):
    vals = [x for x in vals if x is not None]
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals)


res = {}
for t in meta["transports"]:
    tid = t["id"]
    runs = [r for r in rows if r["transport"] == tid]
    ok = [r for r in runs if r["status"] == "ok"]
    good = [r for r in ok if r["integrity"] == "pass"]
    res[tid] = {
        "runs": len(runs), "ok": len(ok), "pass": len(good),
        "total": stat([num(r, "total_ms") for r in ok]),
        "down": stat([num(r, "downtime_ms") for r in ok]),
        "wall": stat([num(r, "wall_s") for r in ok]),
        "qbytes": stat([num(r, "qemu_bytes") for r in ok]),
        "wire": stat([num(r, "wire_bytes") for r in ok]),
        "bps": stat([num(r, "qemu_bytes") / (num(r, "total_ms") / 1000) for r in ok
                     if num(r, "qemu_bytes") and num(r, "total_ms")]),
        "notes": sorted({r["note"] for r in runs if r.get("note")}),
        "errors": [r["error"] for r in runs if r["error"]],
    }


def med(tid, k="total"):
    s = res.get(tid, {}).get(k)
    return s[0] if s else None


base = med("qemu-tcp")
peers = [(med(t["id"]), t["id"]) for t in meta["transports"] if t["class"] == "peer" and med(t["id"])]
best_peer = min(peers) if peers else None
mib = meta["mib"]


def rng(s, fmt, scale=1.0):
    if not s:
        return "–"
    m, lo, hi = (x * scale for x in s)
    if lo == hi:
        return fmt % m
    return (fmt + " (" + fmt + "–" + fmt + ")") % (m, lo, hi)


out = []
w = out.append
w("# %s" % meta["title"])
w("")
w("Generated by `bench/compare`; do not edit by hand. Command:")
w("")
w("```")
w(meta["command"])
w("```")
w("")
w("## Machine and guest")
w("")
for k, v in meta["machine"]:
    w("- %s: %s" % (k, v))
w("")
w("## Results")
w("")
w("Median of %d round(s) (min–max in brackets). Every run migrates a freshly started guest. "
  "**Total** and **downtime** are QEMU's own figures from `query-migrate` on the source "
  "after completion; **wall** runs from `migrate-incoming`/`migrate` (or the start of "
  "`migrelay migrate`, which includes its handshakes and the end-to-end digest check) "
  "until completion. **RAM/total** is the guest size divided by the total time; "
  "**stream/total** is QEMU's `ram.transferred` divided by the total time. **Wire** is what "
  "the network device of the private namespace carried in both directions, TCP/IP headers "
  "included (%s). **vs tcp** and **vs best peer** divide the total time by that of "
  "`qemu-tcp` and by that of the fastest encrypted non-migrelay transport (%s): below 1 is faster. "
  "**Integrity**: completed runs whose destination RAM (the guest's data region) equals the source's."
  % (meta["rounds"], meta["wire_where"], best_peer[1] if best_peer else "none measured"))
w("")
w("| transport | what | runs ok | total ms | downtime ms | wall s | RAM/total MiB/s | stream/total MiB/s "
  "| QEMU stream MiB | wire MiB | vs tcp | vs best peer | integrity |")
w("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for t in meta["transports"]:
    tid = t["id"]
    desc = t["desc"]
    if t["class"] == "na":
        w("| %s | %s | not available | – | – | – | – | – | – | – | – | – | – |" % (tid, desc))
        continue
    r = res[tid]
    if r["notes"]:
        desc += " [" + "; ".join(r["notes"]) + "]"
    if r["runs"] == 0:
        w("| %s | %s | not run | – | – | – | – | – | – | – | – | – | – |" % (tid, desc))
        continue
    m = med(tid)
    thr = stat([mib / (num(x, "total_ms") / 1000) for x in rows if x["transport"] == tid
                and x["status"] == "ok" and num(x, "total_ms")])
    vt = "%.2f" % (m / base) if m and base else "–"
    vp = "%.2f" % (m / best_peer[0]) if m and best_peer else "–"
    integ = "%d/%d pass" % (r["pass"], r["ok"]) if r["ok"] else "–"
    if r["pass"] < r["ok"]:
        integ = "**" + integ + "**"
    w("| %s | %s | %d/%d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        tid, desc, r["ok"], r["runs"], rng(r["total"], "%.0f"), rng(r["down"], "%.0f"),
        rng(r["wall"], "%.2f"), rng(thr, "%.0f"), rng(r["bps"], "%.0f", 1 / MiB),
        rng(r["qbytes"], "%.0f", 1 / MiB), rng(r["wire"], "%.0f", 1 / MiB), vt, vp, integ))
w("")
mr = [(med(t["id"]), t["id"]) for t in meta["transports"] if t["class"] == "migrelay" and med(t["id"])]
if mr:
    m, tid = min(mr)
    w("Fastest encrypted migrelay variant: **%s**, median total %.0f ms%s%s." % (
        tid, m, ", %.2f× the time of qemu-tcp (%.2f× its throughput)" % (m / base, base / m) if base else "",
        ", %.2f× the time of the best encrypted peer, %s (%.2f× its throughput)" % (
            m / best_peer[0], best_peer[1], best_peer[0] / m) if best_peer else ""))
    w("")
    pl = med("mr-plain")
    if pl and base:
        w("migrelay plaintext (mr-plain): median total %.0f ms, %.2f× the time of qemu-tcp (%.2f× its throughput)."
          % (pl, pl / base, base / pl))
        w("")
    nz = [(med(t), t) for t in ("mr-c1", "mr-c2", "mr-c4") if med(t)]
    au = med("mr-auto")
    if au and nz:
        notes = res["mr-auto"]["notes"]
        cnt = None
        for n in notes:
            if n.split()[0].isdigit():
                cnt = "mr-c" + n.split()[0]
        ref = (med(cnt), cnt) if cnt and med(cnt) else min(nz)
        w("Compression auto (mr-auto): median total %.0f ms, %.2f× the time of %s without compression (%.0f ms)."
          % (au, au / ref[0], ref[1], ref[0]))
        w("")
mem = []
for t in meta["transports"]:
    tid = t["id"]
    ok = [r for r in rows if r["transport"] == tid and r["status"] == "ok" and r.get("dst_gw_peak_kib")]
    if not ok:
        continue
    def growth(r, a, b):
        if r.get(a) and r.get(b):
            return (float(r[b]) - float(r[a])) / 1024
        return None
    src = stat([growth(r, "src_gw_start_kib", "src_gw_peak_kib") for r in ok])
    dst = stat([growth(r, "dst_gw_idle_kib", "dst_gw_peak_kib") for r in ok])
    srcp = stat([float(r["src_gw_peak_kib"]) / 1024 for r in ok if r.get("src_gw_peak_kib")])
    dstp = stat([float(r["dst_gw_peak_kib"]) / 1024 for r in ok if r.get("dst_gw_peak_kib")])
    mem.append((tid, src, srcp, dst, dstp))
if mem:
    w("## Gateway memory")
    w("")
    w("Peak resident memory of each gateway during the migration (VmHWM) and its growth over the gateway's "
      "size before the migration: the source's `migrelay migrate` after its handshakes, the destination's "
      "`migrelay serve` once it listened. MiB, median (min–max).")
    w("")
    w("| transport | source peak | source growth | destination peak | destination growth |")
    w("|---|---|---|---|---|")
    for tid, src, srcp, dst, dstp in mem:
        w("| %s | %s | %s | %s | %s |" % (tid, rng(srcp, "%.1f"), rng(src, "%.1f"), rng(dstp, "%.1f"), rng(dst, "%.1f")))
    w("")
fails = [(t["id"], e) for t in meta["transports"] if t["class"] != "na" for e in res[t["id"]]["errors"]]
if fails:
    w("## Failures")
    w("")
    for tid, e in fails:
        w("- %s: %s" % (tid, e))
    w("")
w("## Transports")
w("")
for line in meta["notes"]:
    w("- " + line)
w("")
w("Raw per-run figures: `%s`. Chart: `%s`." % (os.path.basename(csv_path), os.path.basename(png_path)))
w("")
with open(md_path, "w") as fh:
    fh.write("\n".join(out))

# chart: median total time per transport, min-max as error bars
colors = {"plain": "#8c8c8c", "peer": "#e08a2c", "migrelay": "#2c6fb0", "mrplain": "#7fa7cf"}
data = []
for i, t in enumerate([t for t in meta["transports"] if t["class"] != "na" and res[t["id"]]["total"]]):
    m, lo, hi = (x / 1000 for x in res[t["id"]]["total"])
    data.append("%d \"%s\" %.3f %.3f %.3f 0x%s" % (i, t["id"], m, lo, hi, colors[t["class"]][1:]))
if data:
    with tempfile.NamedTemporaryFile("w", suffix=".dat", delete=False) as fh:
        fh.write("\n".join(data) + "\n")
        dat = fh.name
    gp = """set terminal pngcairo size 1100,560 font 'sans,10'
set output '%s'
set title "%s" noenhanced
set ylabel 'QEMU total time, s (median; bars: min-max)'
set style fill solid 0.85 border -1
set boxwidth 0.7
set yrange [0:*]
set grid ytics
set xtics rotate by -35 noenhanced
set key off
plot '%s' using 1:3:6:xtic(2) with boxes lc rgb variable, '' using 1:3:4:5 with yerrorbars lc rgb 'black' pt 0
""" % (png_path, meta["chart_title"], dat)
    try:
        subprocess.run(["gnuplot"], input=gp.encode(), check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        sys.stderr.write("gnuplot failed: %s\n" % e)
    os.unlink(dat)
PY
}
