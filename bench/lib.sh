# SPDX-License-Identifier: MIT
# shellcheck shell=bash disable=SC2034
#
# Helpers for bench/compare, sourced after tests/e2e/lib.sh (whose QEMU start
# helpers, QMP client and RAM check they reuse).
#
#   bench_scenario_up SCEN       the private network namespaces of a scenario:
#                                "loopback" (one namespace, both sides on its
#                                127.0.0.1), "hosts-2x1" (two namespaces joined by
#                                a veth pair, 198.18.0.1 and 198.18.0.2, side a
#                                pinned to CPU 0 and side b to CPU 1) or
#                                "link-RATE" (the veth pair with tbf RATE on both ends)
#   bench_use SCEN               the scenario the helpers below work in
#   bench_in SIDE CMD...         runs CMD in the source (a) or destination (b) namespace (and CPU)
#   bench_spawn NAME SIDE CMD... e2e_spawn inside a namespace (and on its CPU)
#   bench_wait_port SIDE PORT SECS   until something listens on TCP PORT there
#   bench_wait_sock PATH SECS    until the unix socket PATH exists
#   bench_drive SPEC OUT         one timed migration (see the Python below)
#   bench_spawn_cpu NAME SIDE CMD...  bench_spawn through bench/cpuwrap.py: when it has
#                                ended, bench_cpu_file NAME gives the CPU seconds of CMD
#                                and every descendant (processes that end by themselves)
#   bench_cpu_tree NAME          CPU seconds so far of a living process started here and its children
#   bench_report ...             tables and chart from the raw results (bench/report.py)
#
# Only processes started here (through e2e_spawn) are ever signalled, by PID;
# the namespaces are removed at exit, whichever way the script ends (e2e_on_exit).

BENCH_SCEN=
BENCH_NS_A=
BENCH_NS_B=
BENCH_DST_ADDR=127.0.0.1
BENCH_COUNTERS=() # files whose sum is "bytes on the wire", read inside namespace a
BENCH_CPU_A=      # CPUs of side a and b ("" for any), given to taskset -c
BENCH_CPU_B=
declare -gA BENCH_SC_NSA=() BENCH_SC_NSB=() BENCH_SC_DST=() BENCH_SC_COUNTERS=() BENCH_SC_CPUA=() BENCH_SC_CPUB=()

bench_log() { printf '%s [%s] %s\n' "$(date +%H:%M:%S)" "${BENCH_TAG:-bench}" "$*" >&2; }

# bench_netns_new TAG: a namespace mrbench-PID-TAG with its loopback up, removed at exit.
bench_netns_new() {
	local ns=mrbench-$$-$1
	ip netns add "$ns" || return 1
	e2e_on_exit "ip netns del $ns 2>/dev/null"
	ip -n "$ns" link set lo up
}

bench_scenario_up() {
	local sc=$1 a b rate=
	case $sc in
	loopback)
		bench_netns_new l || return 1
		BENCH_SC_NSA[$sc]=mrbench-$$-l
		BENCH_SC_NSB[$sc]=mrbench-$$-l
		BENCH_SC_DST[$sc]=127.0.0.1
		BENCH_SC_COUNTERS[$sc]=/sys/class/net/lo/statistics/tx_bytes
		return 0 ;;
	hosts-2x1)
		# two CPUs at least: taskset refuses a CPU that is not there
		taskset -c 1 true 2>/dev/null || { bench_log "hosts-2x1 needs CPUs 0 and 1"; return 1; }
		BENCH_SC_CPUA[$sc]=0
		BENCH_SC_CPUB[$sc]=1 ;;
	link-*) rate=${sc#link-} ;;
	*) return 1 ;;
	esac
	a=mrbench-$$-${sc:0:1}a
	b=mrbench-$$-${sc:0:1}b
	bench_netns_new "${sc:0:1}a" && bench_netns_new "${sc:0:1}b" || return 1
	ip -n "$a" link add va type veth peer name vb netns "$b" || return 1
	ip -n "$a" addr add 198.18.0.1/24 dev va || return 1
	ip -n "$b" addr add 198.18.0.2/24 dev vb || return 1
	ip -n "$a" link set va up || return 1
	ip -n "$b" link set vb up || return 1
	if [ -n "$rate" ]; then
		tc -n "$a" qdisc add dev va root tbf rate "$rate" burst 256kb latency 20ms || return 1
		tc -n "$b" qdisc add dev vb root tbf rate "$rate" burst 256kb latency 20ms || return 1
	fi
	BENCH_SC_NSA[$sc]=$a
	BENCH_SC_NSB[$sc]=$b
	BENCH_SC_DST[$sc]=198.18.0.2
	BENCH_SC_COUNTERS[$sc]="/sys/class/net/va/statistics/tx_bytes /sys/class/net/va/statistics/rx_bytes"
	# reachable: a connection to a closed port is refused (not timed out)
	ip netns exec "$a" python3 -c 'import socket
s = socket.socket()
s.settimeout(5)
try:
    s.connect(("198.18.0.2", 9))
except ConnectionRefusedError:
    pass' || return 1
}

bench_use() {
	BENCH_SCEN=$1
	BENCH_NS_A=${BENCH_SC_NSA[$1]}
	BENCH_NS_B=${BENCH_SC_NSB[$1]}
	BENCH_DST_ADDR=${BENCH_SC_DST[$1]}
	read -r -a BENCH_COUNTERS <<<"${BENCH_SC_COUNTERS[$1]}"
	BENCH_CPU_A=${BENCH_SC_CPUA[$1]:-}
	BENCH_CPU_B=${BENCH_SC_CPUB[$1]:-}
}

bench_ns() { if [ "$1" = a ]; then echo "$BENCH_NS_A"; else echo "$BENCH_NS_B"; fi; }
bench_cpu() { if [ "$1" = a ]; then echo "$BENCH_CPU_A"; else echo "$BENCH_CPU_B"; fi; }

# bench_prefix SIDE: the command words that run a command in that side's namespace, on its CPU
# (both exec: the PID stays the command's own).
bench_prefix() {
	local cpu
	cpu=$(bench_cpu "$1")
	[ -n "$cpu" ] && printf '%s\n' taskset -c "$cpu"
	printf '%s\n' ip netns exec "$(bench_ns "$1")"
}

bench_in() {
	local pre
	mapfile -t pre < <(bench_prefix "$1")
	shift
	"${pre[@]}" "$@"
}

bench_spawn() {
	local name=$1 pre
	mapfile -t pre < <(bench_prefix "$2")
	shift 2
	e2e_spawn "$name" "${pre[@]}" "$@"
}

bench_spawn_cpu() {
	local name=$1 side=$2
	shift 2
	rm -f -- "$E2E_TMP/$name.cpu"
	bench_spawn "$name" "$side" python3 "$(dirname "${BASH_SOURCE[0]}")/cpuwrap.py" "$E2E_TMP/$name.cpu" "$@"
}

# bench_cpu_file NAME: what bench/cpuwrap.py wrote for NAME once it ended, or nothing.
bench_cpu_file() {
	[ -s "$E2E_TMP/$1.cpu" ] && cat "$E2E_TMP/$1.cpu"
	return 0
}

# bench_cpu_sum A B: A + B, or nothing when either is missing.
bench_cpu_sum() {
	[ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a + b }'
	return 0
}

# bench_cpu_tree NAME...: user + system seconds of the processes started here as NAME, their threads
# and their children (living ones from /proc, ended ones through the parent's cutime and cstime).
bench_cpu_tree() {
	local name pids=()
	for name in "$@"; do
		[ -n "${E2E_PID[$name]:-}" ] && pids+=("${E2E_PID[$name]}")
	done
	[ ${#pids[@]} -gt 0 ] || return 0
	python3 - "${pids[@]}" <<'PY'
import os, sys
hz = os.sysconf("SC_CLK_TCK")
kids, ticks = {}, {}
for p in os.listdir("/proc"):
    if not p.isdigit():
        continue
    try:
        f = open("/proc/%s/stat" % p).read()
    except OSError:
        continue
    v = f[f.rindex(")") + 2:].split()  # fields from 3 (state) on
    kids.setdefault(int(v[1]), []).append(int(p))
    ticks[int(p)] = sum(int(x) for x in v[11:15])  # utime stime cutime cstime
total, todo, seen = 0, [int(x) for x in sys.argv[1:]], set()
while todo and len(seen) < 100000:
    p = todo.pop()
    if p in seen or p not in ticks:
        continue
    seen.add(p)
    total += ticks[p]
    todo += kids.get(p, [])
print("%.2f" % (total / hz))
PY
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

# bench_qemu_wrapper SIDE: a QEMU binary that runs in that side's namespace and on its CPU
# (e2e_qemu takes the binary from $E2E_QEMU; the PID stays QEMU's own).
bench_qemu_wrapper() {
	local side=$1 w=$E2E_TMP/qemu-$BENCH_SCEN-$1 real pre
	if [ ! -x "$w" ]; then
		real=$(command -v "${QEMU:-qemu-system-x86_64}")
		mapfile -t pre < <(bench_prefix "$side")
		printf '#!/bin/sh\nexec %s %q "$@"\n' "$(printf '%q ' "${pre[@]}")" "$real" >"$w"
		chmod +x "$w"
	fi
	echo "$w"
}

# bench_drive SPEC_JSON OUT_JSON: one timed migration, run in namespace a.
# SPEC: {"src": QMP, "dst": QMP, "timeout": S, "counters": [files],
#        either "incoming": URI, "uri": URI, "caps": {"src": [..], "dst": [..]},
#               "params": {"src": {..}, "dst": {..}}   (QEMU drives the migration)
#        or     "cmd": [argv], "cmd_log": FILE       (a tool such as migrelay migrate does)}
# OUT: {"ok", "error", "wall", "wire", "rc", "report", "migrate" (source's query-migrate),
#       "cpu" (the tool's user + system seconds, children included)}.
# Wall time: from migrate-incoming on the destination (or the tool's start)
# until the source reports completed (or the tool has exited).
bench_drive() {
	bench_in a python3 - "$E2E_DIR" "$1" "$2" <<'PY'
import json, resource, subprocess, sys, time
e2e_dir, spec_path, out_path = sys.argv[1:4]
sys.path.insert(0, e2e_dir)
from qmp import QMP  # noqa: E402

spec = json.load(open(spec_path))
res = {"ok": False, "error": "", "wall": None, "wire": None, "rc": None, "report": None, "migrate": {}, "cpu": None}


def child_cpu():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


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
            u0 = child_cpu()
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
        res["cpu"] = child_cpu() - u0
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
        # QEMU says completed a moment before its migration thread has set total-time and downtime
        # (both 0 until then): ask again, 0.5 s at most
        for _ in range(100):
            if mig.get("status") != "completed" or mig.get("total-time"):
                break
            time.sleep(0.005)
            mig = src.cmd("query-migrate")
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

# bench_result_row OUT_JSON: "status,total_ms,downtime_ms,setup_ms,wall_s,qemu_bytes,wire_bytes,passes,e2e_ms,tool_cpu_s,error"
# (e2e_ms: the end-to-end seconds of the tool's own report; tool_cpu_s: its CPU seconds)
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
rep = r.get("report") or {}
e2e = "" if rep.get("seconds") is None else "%.0f" % (rep["seconds"] * 1000)
cpu = "" if r.get("cpu") is None else "%.2f" % r["cpu"]
print(",".join(["ok" if r.get("ok") else "failed", v(m.get("total-time")), v(m.get("downtime")),
                v(m.get("setup-time")), wall, v(ram.get("transferred")), v(r.get("wire")),
                v(ram.get("dirty-sync-count")), e2e, cpu, err]))
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

# bench_best_count CSV LIST SCENARIO: the connection count (of transports mr-cN in LIST)
# with the lowest median total time so far in that scenario; empty if none succeeded yet.
bench_best_count() {
	python3 - "$1" "$2" "$3" <<'PY'
import csv, statistics, sys
best = None
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["scenario"] == sys.argv[3]]
for t in sys.argv[2].split(","):
    v = [float(r["total_ms"]) for r in rows if r["transport"] == t and r["status"] == "ok" and r["total_ms"]]
    if v and (best is None or statistics.median(v) < best[0]):
        best = (statistics.median(v), t[4:])
print(best[1] if best else "")
PY
}

# bench_report CSV META_JSON MD PNG: medians per scenario and transport into a
# Markdown report and a gnuplot bar chart (bench/report.py).
bench_report() {
	python3 "$(dirname "${BASH_SOURCE[0]}")/report.py" "$@"
}
