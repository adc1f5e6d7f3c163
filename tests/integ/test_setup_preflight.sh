#!/usr/bin/env bash
# Pre-flight (PROTOCOL.md §4.1, revision 1.2): a HELLO that carries the
# source QEMU's facts is checked against a qmp: target's QEMU before any
# command that changes it. A fake QMP server answers like a QEMU 7.2
# (128 MiB, pc-i440fx-7.2, qemu64 with apic, pni, svm) and records every
# command: a matching HELLO gets WELCOME; another RAM size, machine type,
# CPU model or feature set gets ERROR TARGET with the sentence naming it,
# and the QEMU got nothing but queries; a target that is not a QEMU skips
# the check; a HELLO without facts is not checked.
. "$(dirname "$0")/lib.sh"
mr_setup
mr_pki
: "${RAWPEER:?RAWPEER must point at the mr_rawpeer test tool}"

cat >"$T/answers.py" <<'PY'
cpu = "/machine/unattached/device[0]"
props = {"apic": True, "pni": True, "svm": True, "vmx": False, "family": 15, "model-id": "QEMU Virtual CPU"}
blocks = ("              Block Name    PSize              Offset               Used              Total\r\n"
          "                  pc.ram    4 KiB  0x0000000000000000 0x0000000008000000 0x0000000008000000\r\n"
          "    /rom@etc/acpi/tables    4 KiB  0x0000000008080000 0x0000000000020000 0x0000000000200000\r\n")
def answer(cmd, args):
    if cmd == "query-status":
        return {"status": "inmigrate", "running": False}
    if cmd == "query-memory-size-summary":
        return {"base-memory": 128 << 20, "plugged-memory": 0}
    if cmd == "query-cpus-fast":
        return [{"cpu-index": 0, "qom-path": cpu, "target": "x86_64"}]
    if cmd == "query-cpu-model-expansion":
        return {"model": {"name": "base", "props": props}}
    if cmd == "human-monitor-command":
        return blocks
    if cmd == "qom-get":
        p, prop = args.get("path"), args.get("property")
        if prop == "type":
            return "pc-i440fx-7.2-machine" if p == "/machine" else "qemu64-x86_64-cpu"
        return props.get(prop, False)
    return None
PY
mr_fake_qmp "$T/qmp.sock" "$T/qmp.log" --log-format json --answers "$T/answers.py"

port=$(mr_free_port)
mr_serve "$port" --tls-dir "$T/srv" --target "q=qmp:$T/qmp.sock" --target d=discard
same=(--pf-ram $((128 << 20)) --pf-machine pc-i440fx-7.2 --pf-cpu qemu64 --pf-features "apic pni svm")
peer() { "$RAWPEER" --to "127.0.0.1:$port" --tls-dir "$T/cli" --case hello "$@" || true; }
# Every command the refused HELLOs sent to the QEMU was a query.
only_queries() {
	local bad
	bad=$(python3 -c 'import json, sys
ok = {"qmp_capabilities", "query-status", "query-memory-size-summary", "qom-get", "query-cpus-fast",
      "query-cpu-model-expansion", "human-monitor-command"}
for l in open(sys.argv[1]):
    m = json.loads(l)
    if m["execute"] not in ok or (m["execute"] == "human-monitor-command" and
                                  m["arguments"].get("command-line") != "info ramblock"):
        print(m["execute"])' "$T/qmp.log")
	[ -z "$bad" ] || fail "a refused HELLO changed the QEMU: $bad"
}

: >"$T/qmp.log"
out=$(peer --target q "${same[@]}")
echo "$out" | grep -q "^WELCOME" || fail "matching facts: expected WELCOME, got: $out"
mr_wait_log "$T/serve-$port.log" "pre-flight: the destination QEMU matches the source's \\(pc-i440fx-7\\.2, qemu64 CPU, 3 CPU features, 0 RAM blocks\\)" 10 ||
	fail "serve did not log the match"
grep -q '"execute": "query-cpu-model-expansion", "arguments": {"type": "static", "model": {"name": "qemu64"}}' "$T/qmp.log" ||
	fail "the CPU model was not expanded: $(cat "$T/qmp.log")"
ok "matching facts: WELCOME"

expect_refusal() {
	local what=$1 want=$2 out
	shift 2
	: >"$T/qmp.log"
	out=$(peer --target q "$@")
	out=${out% after * ms} # rawpeer adds how long the answer took
	[ "$out" = "ERROR target failed pre-flight: $want" ] || fail "$what: expected the pre-flight refusal, got: $out"
	only_queries
	ok "$what: ERROR TARGET \"pre-flight: ${want:0:60}...\", only queries reached the QEMU"
}
expect_refusal "RAM size" "the source guest has 256 MiB of RAM and the destination QEMU 128 MiB; start the destination with -m 256M" \
	--pf-ram $((256 << 20)) --pf-machine pc-i440fx-7.2
expect_refusal "machine type" "the source guest's machine type is pc-q35-7.2 and the destination QEMU's pc-i440fx-7.2; start the destination with -machine pc-q35-7.2" \
	--pf-machine pc-q35-7.2 --pf-ram $((256 << 20))
expect_refusal "CPU model" "the source guest's CPU model is Nehalem and the destination QEMU's qemu64 (which lacks popcnt and has svm in addition); start the destination with -cpu Nehalem" \
	--pf-cpu Nehalem --pf-features "apic pni popcnt"
expect_refusal "CPU features" "the destination QEMU's CPU (qemu64) lacks avx2, pclmulqdq compared with the source guest's; start the destination with the source's -cpu options on a host that has its features" \
	--pf-cpu qemu64 --pf-features "apic avx2 pclmulqdq pni svm"

# A target that is not a QEMU has nothing to compare: the facts are not checked.
: >"$T/qmp.log"
out=$(peer --target d --pf-ram 1 --pf-machine other)
echo "$out" | grep -q "^WELCOME" || fail "facts to a discard target: expected WELCOME, got: $out"
[ ! -s "$T/qmp.log" ] || fail "a discard target's HELLO reached the QMP"
ok "facts to a discard target: WELCOME, no check"

# A HELLO without facts (--no-preflight, or a client before revision 1.2) is not checked.
: >"$T/qmp.log"
out=$(peer --target q)
echo "$out" | grep -q "^WELCOME" || fail "no facts: expected WELCOME, got: $out"
! grep -q "query-memory-size-summary\|query-cpu-model-expansion" "$T/qmp.log" || fail "a HELLO without facts was checked"
ok "no facts: WELCOME, no check"
