#!/usr/bin/env bash
# Pre-flight's CPU features (PROTOCOL.md §4.1.1) from the vCPU's CPUID
# feature words, and from each feature by name when the words cannot be
# used. A fake QMP server answers like an x86 QEMU whose vCPU differs from
# its model (svm filtered out, lahf-lm added, one feature newer than
# migrelay's table); its "feature-words" reply is well formed, then
# malformed in every way that matters, then refused. Each time the list
# gathered (mr_pffacts) is the vCPU's own, the same as read name by name,
# and only a well-formed reply spares the per-name reads.
. "$(dirname "$0")/lib.sh"
mr_setup
: "${PFFACTS:?PFFACTS must point at the mr_pffacts test tool}"

cat >"$T/answers.py" <<PY
import json
mode_file = "$T/mode"
cpu = "/machine/unattached/device[0]"
model = {"apic": True, "pni": True, "svm": True, "vmx": False, "vmx-ept": False, "lahf-lm": False,
         "zz-newer": True, "family": 15}
vcpu = {"apic": True, "pni": True, "svm": False, "vmx": False, "vmx-ept": False, "lahf-lm": True,
        "zz-newer": True}
def word(eax, reg, features, ecx=None):
    w = {"cpuid-input-eax": eax, "cpuid-register": reg, "features": features}
    if ecx is not None:
        w["cpuid-input-ecx"] = ecx
    return w
words = [word(1, "EDX", 1 << 9), word(1, "ECX", 1 << 0), word(7, "EBX", 0, 0), word(0x80000001, "EDX", 0),
         word(0x80000001, "ECX", 1 << 0), word(0x40000001, "EAX", 0), word(0x40000001, "EDX", 0)]
def feature_words():
    mode = open(mode_file).read().strip()
    bad = [dict(w) for w in words]
    if mode == "good":
        return words
    if mode == "string":
        bad[0]["features"] = "512"
    elif mode == "noreg":
        del bad[1]["cpuid-register"]
    elif mode == "badreg":
        bad[1]["cpuid-register"] = "EQX"
    elif mode == "negecx":
        bad[2]["cpuid-input-ecx"] = -1
    elif mode == "toolarge":
        bad[4]["features"] = 1 << 33
    elif mode == "notword":
        bad[3] = "ECX"
    elif mode == "many":
        bad = words * 10
    elif mode == "object":
        return {"words": words}
    elif mode == "empty":
        return []
    elif mode == "refused":
        return Error("Property '.feature-words' not found")
    return bad
def answer(cmd, args):
    if cmd == "query-memory-size-summary":
        return {"base-memory": 128 << 20, "plugged-memory": 0}
    if cmd == "query-cpus-fast":
        return [{"cpu-index": 0, "qom-path": cpu, "target": "x86_64"}]
    if cmd == "query-cpu-model-expansion":
        return {"model": {"name": "base", "props": model}}
    if cmd == "human-monitor-command":
        return ""
    if cmd == "qom-get":
        p, prop = args.get("path"), args.get("property")
        if prop == "type":
            return "pc-i440fx-7.2-machine" if p == "/machine" else "qemu64-x86_64-cpu"
        if prop == "feature-words":
            return feature_words()
        return vcpu.get(prop, False)
    return None
PY
mr_fake_qmp "$T/qmp.sock" "$T/qmp.log" --log-format json --answers "$T/answers.py"

want="features: apic lahf-lm pni zz-newer"
# read_by_name PROPERTY: whether the last run asked for PROPERTY with its own qom-get
read_by_name() { grep -q "\"property\": \"$1\"" "$T/qmp.log"; }
facts() {
	local out
	: >"$T/qmp.log"
	out=$("$PFFACTS" "$T/qmp.sock" "$@" 2>"$T/pffacts.err") || fail "mr_pffacts $*: $(cat "$T/pffacts.err")"
	grep "^features: " <<<"$out"
}

echo good >"$T/mode"
got=$(facts --by-name)
[ "$got" = "$want" ] || fail "by name: expected '$want', got '$got'"
ok "by name: the vCPU's own features ($got)"

got=$(facts)
[ "$got" = "$want" ] || fail "well-formed words: expected '$want', got '$got'"
for p in apic pni svm vmx vmx-ept lahf-lm; do
	! read_by_name "$p" || fail "well-formed words: $p was read by name as well"
done
read_by_name zz-newer || fail "well-formed words: zz-newer, which the table does not know, was not read by name"
ok "well-formed words: the same list; only the feature the table does not know read by name"

for mode in string noreg badreg negecx toolarge notword many object empty refused; do
	echo "$mode" >"$T/mode"
	got=$(facts)
	[ "$got" = "$want" ] || fail "feature words '$mode': expected '$want', got '$got'"
	for p in apic pni svm lahf-lm zz-newer; do
		read_by_name "$p" || fail "feature words '$mode': $p was not read by name"
	done
	ok "feature words '$mode': not used, every feature read by name, the same list"
done
