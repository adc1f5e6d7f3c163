# SPDX-License-Identifier: MIT
"""bench/compare's report: the medians of the raw runs (CSV) per scenario and
transport into a Markdown page and a gnuplot bar chart.

    python3 bench/report.py RESULTS.csv META.json RESULTS.md results.png

META (written by bench/compare): title, command, chart_title, mib, rounds,
machine [[key, value]...], scenarios [{id, title, network, wire_where}...],
transports [{id, class, desc}...], notes [...], and floor_csv when
bench_floor ran (scenario, round, mode, src_s_per_gb, dst_s_per_gb per row;
a file without the scenario column holds one floor for every scenario).
"""
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile

MiB = 1 << 20


def num(r, k):
    return float(r[k]) if r.get(k) not in (None, "") else None


def stat(vals):
    vals = [x for x in vals if x is not None]
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals)


def rng(s, fmt, scale=1.0):
    if not s:
        return "–"
    m, lo, hi = (x * scale for x in s)
    if lo == hi:
        return fmt % m
    return (fmt + " (" + fmt + "–" + fmt + ")") % (m, lo, hi)


def summarise(meta, rows):
    """Per transport of one scenario's rows: counts and (median, min, max) of each figure."""
    res = {}
    gib = meta["mib"] / 1024
    for t in meta["transports"]:
        tid = t["id"]
        runs = [r for r in rows if r["transport"] == tid]
        ok = [r for r in runs if r["status"] == "ok"]
        good = [r for r in ok if r["integrity"] == "pass"]

        def cpu(r, k):
            v = num(r, k)
            return v / gib if v is not None else None

        def both(r):
            s, d = num(r, "src_cpu_s"), num(r, "dst_cpu_s")
            return (s + d) / gib if s is not None and d is not None else None

        def tail(r):
            e, t = num(r, "e2e_ms"), num(r, "total_ms")
            return e - t if e is not None and t is not None else None

        res[tid] = {
            "runs": len(runs), "ok": len(ok), "pass": len(good),
            "total": stat([num(r, "total_ms") for r in ok]),
            "down": stat([num(r, "downtime_ms") for r in ok]),
            "wall": stat([num(r, "wall_s") for r in ok]),
            "qbytes": stat([num(r, "qemu_bytes") for r in ok]),
            "wire": stat([num(r, "wire_bytes") for r in ok]),
            "bps": stat([num(r, "qemu_bytes") / (num(r, "total_ms") / 1000) for r in ok
                         if num(r, "qemu_bytes") and num(r, "total_ms")]),
            "thr": stat([meta["mib"] / (num(r, "total_ms") / 1000) for r in ok if num(r, "total_ms")]),
            "cpu_src": stat([cpu(r, "src_cpu_s") for r in ok]),
            "cpu_dst": stat([cpu(r, "dst_cpu_s") for r in ok]),
            "cpu_both": stat([both(r) for r in ok]),
            "e2e": stat([num(r, "e2e_ms") for r in ok]),
            "tail": stat([tail(r) for r in ok]),
            "notes": sorted({r["note"] for r in runs if r.get("note")}),
            "errors": [r["error"] for r in runs if r["error"]],
        }
    return res


def med(res, tid, k="total"):
    s = res.get(tid, {}).get(k)
    return s[0] if s else None


def results_section(w, meta, sc, res, heading):
    base = med(res, "qemu-tcp")
    peers = [(med(res, t["id"]), t["id"]) for t in meta["transports"] if t["class"] == "peer" and med(res, t["id"])]
    best_peer = min(peers) if peers else None
    w(heading)
    w("")
    w("Network: %s." % sc["network"])
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
      % (meta["rounds"], sc["wire_where"], best_peer[1] if best_peer else "none measured"))
    w("")
    w("| transport | what | runs ok | total ms | downtime ms | wall s | RAM/total MiB/s | stream/total MiB/s "
      "| QEMU stream MiB | wire MiB | vs tcp | vs best peer | integrity |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for t in meta["transports"]:
        tid, desc = t["id"], t["desc"]
        if t["class"] == "na":
            w("| %s | %s | not available | – | – | – | – | – | – | – | – | – | – |" % (tid, desc))
            continue
        r = res[tid]
        if r["notes"]:
            desc += " [" + "; ".join(r["notes"]) + "]"
        if r["runs"] == 0:
            w("| %s | %s | not run | – | – | – | – | – | – | – | – | – | – |" % (tid, desc))
            continue
        m = med(res, tid)
        vt = "%.2f" % (m / base) if m and base else "–"
        vp = "%.2f" % (m / best_peer[0]) if m and best_peer else "–"
        integ = "%d/%d pass" % (r["pass"], r["ok"]) if r["ok"] else "–"
        if r["pass"] < r["ok"]:
            integ = "**" + integ + "**"
        w("| %s | %s | %d/%d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            tid, desc, r["ok"], r["runs"], rng(r["total"], "%.0f"), rng(r["down"], "%.0f"),
            rng(r["wall"], "%.2f"), rng(r["thr"], "%.0f"), rng(r["bps"], "%.0f", 1 / MiB),
            rng(r["qbytes"], "%.0f", 1 / MiB), rng(r["wire"], "%.0f", 1 / MiB), vt, vp, integ))
    w("")
    summary(w, meta, res, base, best_peer)


def summary(w, meta, res, base, best_peer):
    mr = [(med(res, t["id"]), t["id"]) for t in meta["transports"] if t["class"] == "migrelay" and med(res, t["id"])]
    if not mr:
        return
    m, tid = min(mr)
    w("Fastest encrypted migrelay variant: **%s**, median total %.0f ms%s%s." % (
        tid, m, ", %.2f× the time of qemu-tcp (%.2f× its throughput)" % (m / base, base / m) if base else "",
        ", %.2f× the time of the best encrypted peer, %s (%.2f× its throughput)" % (
            m / best_peer[0], best_peer[1], best_peer[0] / m) if best_peer else ""))
    w("")
    pl = med(res, "mr-plain")
    if pl and base:
        w("migrelay plaintext (mr-plain): median total %.0f ms, %.2f× the time of qemu-tcp (%.2f× its throughput)."
          % (pl, pl / base, base / pl))
        w("")
    nz = [(med(res, t), t) for t in ("mr-c1", "mr-c2", "mr-c4") if med(res, t)]
    au = med(res, "mr-auto")
    if au and nz:
        cnt = None
        for n in res["mr-auto"]["notes"]:
            if n.split()[0].isdigit():
                cnt = "mr-c" + n.split()[0]
        ref = (med(res, cnt), cnt) if cnt and med(res, cnt) else min(nz)
        w("Compression auto (mr-auto): median total %.0f ms, %.2f× the time of %s without compression (%.0f ms)."
          % (au, au / ref[0], ref[1], ref[0]))
        w("")


def cpu_section(w, meta, scens, results):
    rows = []
    for sc in scens:
        res = results[sc["id"]]
        for t in meta["transports"]:
            r = res.get(t["id"])
            if t["class"] == "na" or not r or not r["cpu_both"]:
                continue
            rows.append("| %s | %s | %s | %s | %s |" % (
                sc["short"], t["id"], rng(r["cpu_src"], "%.2f"), rng(r["cpu_dst"], "%.2f"),
                rng(r["cpu_both"], "%.2f")))
    if not rows:
        return
    w("## Gateway and tunnel CPU")
    w("")
    w("CPU time (user + system) of the processes that carry the migration outside QEMU, in seconds per "
      "GiB of guest RAM (%d MiB here), median (min–max). **Source end**: the stunnel, socat or ssh client, or "
      "`migrelay migrate`; **destination end**: the stunnel or socat server, sshd with its per-connection "
      "processes, or `migrelay serve` (for mr-ssh1 and mr-ssh4 the sshd in front of it too). Each is summed over "
      "the process, its threads and its children over its whole life (start-up and handshakes included; "
      "the tunnels' idle time until the run stops them costs next to nothing). QEMU's own transports have no such process (their TLS runs in QEMU's migration threads) and "
      "are not listed." % meta["mib"])
    w("")
    w("| scenario | transport | source end s/GiB | destination end s/GiB | both s/GiB |")
    w("|---|---|---|---|---|")
    for line in rows:
        w(line)
    w("")


# the migrelay transports whose whole work bench_floor's floors describe (no compression, TLS or plaintext)
FLOOR_MODE = {"mr-c1": "tls", "mr-c2": "tls", "mr-c4": "tls", "mr-posix": "tls", "mr-mfd2": "tls",
              "mr-plain": "plaintext"}


def floor_section(w, meta, scens, results):
    path = meta.get("floor_csv")
    if not path or not os.path.exists(path):
        return
    rows = list(csv.DictReader(open(path)))
    floor = {}  # (scenario id, mode) -> (source stat, destination stat, rounds)
    for sc in scens:
        for mode in ("tls", "plaintext"):
            mr = [r for r in rows if r["mode"] == mode and r.get("scenario", sc["id"]) == sc["id"]]
            if mr:
                floor[(sc["id"], mode)] = (stat([num(r, "src_s_per_gb") for r in mr]),
                                           stat([num(r, "dst_s_per_gb") for r in mr]), len(mr))
    if not floor:
        return
    w("## The floor: what no data path can leave out")
    w("")
    w("`bench_floor` (bench/floor.c) ran after every round, in each host layout: one thread per gateway side "
      "doing only the work every design of this data path must do, with stand-in QEMUs that are not counted. "
      "Source: read QEMU's stream from a unix socket into 256 KiB chunks, XXH3-128, seal 16 KiB TLS 1.3 records "
      "with AES-128-GCM, send them over TCP; destination: receive, open, XXH3-128, write to QEMU's unix socket. "
      "Plaintext leaves the records out. The two sides run as two processes placed as the gateways are: both on "
      "the loopback of one namespace in 1x2 (whose receiving TCP half runs on the sender's CPU), or in the two "
      "namespaces across the veth pair, each on its side's CPU, in 2x1. CPU seconds per GB (10^9 bytes) of "
      "migration stream, median (min–max) of the rounds:")
    w("")
    w("| scenario | floor | source s/GB | destination s/GB | rounds |")
    w("|---|---|---|---|---|")
    for (sid, mode), (fs, fd, n) in floor.items():
        short = next(sc["short"] for sc in scens if sc["id"] == sid)
        w("| %s | %s | %s | %s | %d |" % (short, "TLS (AES-128-GCM)" if mode == "tls" else "plaintext",
                                          rng(fs, "%.3f"), rng(fd, "%.3f"), n))
    w("")
    out = []
    gib = meta["mib"] / 1024
    for sc in scens:
        res = results[sc["id"]]
        for tid, mode in FLOOR_MODE.items():
            r = res.get(tid)
            f = floor.get((sc["id"], mode))
            if not f or not r or not r["cpu_src"] or not r["qbytes"]:
                continue
            per_gib = r["qbytes"][0] / 1e9 / gib  # GB of stream per GiB of guest RAM
            fs, fd = f[0][0] * per_gib, f[1][0] * per_gib
            out.append("| %s | %s | %.2f | %.2f | %.2f× | %.2f | %.2f | %.2f× |" % (
                sc["short"], tid, r["cpu_src"][0], fs, r["cpu_src"][0] / fs, r["cpu_dst"][0], fd,
                r["cpu_dst"][0] / fd))
    if out:
        w("Each migrelay transport's gateway CPU (medians, from the table above) against the floor of its mode in "
          "the same layout, both per GiB of guest RAM: the floor per GB times the GB of stream the transport's "
          "runs moved per GiB of guest (median). The gateways' figures include their start-up and handshakes.")
        w("")
        w("| scenario | transport | source s/GiB | floor | source/floor | destination s/GiB | floor | destination/floor |")
        w("|---|---|---|---|---|---|---|---|")
        for line in out:
            w(line)
        w("")


def e2e_section(w, meta, scens, results):
    rows = []
    for sc in scens:
        res = results[sc["id"]]
        for t in meta["transports"]:
            r = res.get(t["id"])
            if t["class"] == "na" or not r or not r["tail"]:
                continue
            rows.append("| %s | %s | %s | %s | %s |" % (sc["short"], t["id"], rng(r["e2e"], "%.0f"),
                                                        rng(r["total"], "%.0f"), rng(r["tail"], "%.0f")))
    if not rows:
        return
    w("## migrelay end to end")
    w("")
    w("The time `migrelay migrate` reports (from its start, handshakes included, until the destination "
      "gateway has verified every stream's bytes and digest and the destination QEMU has completed) against "
      "QEMU's total time; the difference is taken run by run. ms, median (min–max).")
    w("")
    w("| scenario | transport | migrate end to end | QEMU total | difference |")
    w("|---|---|---|---|---|")
    for line in rows:
        w(line)
    w("")


def mem_section(w, meta, scens, rows_by_sc):
    out = []
    for sc in scens:
        for t in meta["transports"]:
            ok = [r for r in rows_by_sc[sc["id"]] if r["transport"] == t["id"] and r["status"] == "ok"
                  and r.get("dst_gw_peak_kib")]
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
            out.append("| %s | %s | %s | %s | %s | %s |" % (sc["short"], t["id"], rng(srcp, "%.1f"),
                                                             rng(src, "%.1f"), rng(dstp, "%.1f"), rng(dst, "%.1f")))
    if not out:
        return
    w("## Gateway memory")
    w("")
    w("Peak resident memory of each gateway during the migration (VmHWM) and its growth over the gateway's "
      "size before the migration: the source's `migrelay migrate` after its handshakes, the destination's "
      "`migrelay serve` once it listened. MiB, median (min–max).")
    w("")
    w("| scenario | transport | source peak | source growth | destination peak | destination growth |")
    w("|---|---|---|---|---|---|")
    for line in out:
        w(line)
    w("")


def chart(meta, scens, results, png_path):
    """Median total time per transport, one bar per scenario side by side, min-max as error bars."""
    colors = {"plain": "#8c8c8c", "peer": "#e08a2c", "migrelay": "#2c6fb0", "mrplain": "#7fa7cf"}
    shown = [t for t in meta["transports"] if t["class"] != "na"
             and any(results[sc["id"]][t["id"]]["total"] for sc in scens)]
    if not shown:
        return
    k = len(scens)
    width = 0.8 / k
    files, clauses = [], []
    for j, sc in enumerate(scens):
        data = []
        for i, t in enumerate(shown):
            s = results[sc["id"]][t["id"]]["total"]
            if not s:
                continue
            m, lo, hi = (x / 1000 for x in s)
            x = i + (j - (k - 1) / 2) * width
            data.append("%.3f \"%s\" %.3f %.3f %.3f 0x%s" % (x, t["id"], m, lo, hi, colors[t["class"]][1:]))
        with tempfile.NamedTemporaryFile("w", suffix=".dat", delete=False) as fh:
            fh.write("\n".join(data) + "\n")
            files.append(fh.name)
        fill = "fill solid 0.85 border -1" if j == 0 else "fill pattern %d border -1" % (j + 1)
        clauses.append("'%s' using 1:3:(%.3f):6 with boxes %s lc rgb variable title '%s'"
                       % (fh.name, width * 0.9, fill, sc["short"] if k > 1 else ""))
        clauses.append("'%s' using 1:3:4:5 with yerrorbars lc rgb 'black' pt 0 notitle" % fh.name)
    tics = ", ".join('"%s" %d' % (t["id"], i) for i, t in enumerate(shown))
    gp = """set terminal pngcairo size 1100,560 font 'sans,10'
set output '%s'
set title "%s" noenhanced
set ylabel 'QEMU total time, s (median; bars: min-max)'
set yrange [0:*]
set xrange [-0.6:%d]
set grid ytics
set xtics rotate by -35 noenhanced (%s)
set key %s
plot %s
""" % (png_path, meta["chart_title"], len(shown), tics, "top left" if k > 1 else "off", ", ".join(clauses))
    try:
        subprocess.run(["gnuplot"], input=gp.encode(), check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        sys.stderr.write("gnuplot failed: %s\n" % e)
    for f in files:
        os.unlink(f)


def main():
    csv_path, meta_path, md_path, png_path = sys.argv[1:5]
    meta = json.load(open(meta_path))
    rows = list(csv.DictReader(open(csv_path)))
    scens = meta["scenarios"]
    rows_by_sc = {sc["id"]: [r for r in rows if r["scenario"] == sc["id"]] for sc in scens}
    results = {sc["id"]: summarise(meta, rows_by_sc[sc["id"]]) for sc in scens}
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
    for key, v in meta["machine"]:
        w("- %s: %s" % (key, v))
    w("")
    for sc in scens:
        results_section(w, meta, sc, results[sc["id"]],
                        "## Results: %s" % sc["title"] if len(scens) > 1 else "## Results")
    e2e_section(w, meta, scens, results)
    cpu_section(w, meta, scens, results)
    floor_section(w, meta, scens, results)
    mem_section(w, meta, scens, rows_by_sc)
    fails = [(sc["short"], t["id"], e) for sc in scens for t in meta["transports"] if t["class"] != "na"
             for e in results[sc["id"]][t["id"]]["errors"]]
    if fails:
        w("## Failures")
        w("")
        for s, tid, e in fails:
            w("- %s%s: %s" % (s + ", " if len(scens) > 1 else "", tid, e))
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
    chart(meta, scens, results, png_path)


if __name__ == "__main__":
    main()
