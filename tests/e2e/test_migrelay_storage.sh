#!/bin/bash
# SPDX-License-Identifier: MIT
# --copy-storage through migrelay: a guest with a qcow2 disk holding known
# content, mirrored over an NBD stream of the same session while the guest
# keeps running, then RAM; the disks must compare equal and so must RAM.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/migrelay.sh"

e2e_init test_migrelay_storage
command -v qemu-img >/dev/null && command -v qemu-io >/dev/null || e2e_skip "qemu-img or qemu-io not found"
e2e_accel
mr_e2e_pki
t0=$(e2e_now)
T=$E2E_TMP
port=$(e2e_free_port)
e2e_make_disk "$T/src.qcow2" 64
e2e_make_disk "$T/dst.qcow2" 64 empty
# shellcheck disable=SC2046
e2e_start_dst dst 128 dirty $(e2e_disk_args "$T/dst.qcow2")
mr_e2e_serve gw "$port" --target "vm=qmp:$(e2e_qmp_sock dst),log=$E2E_TMP/dst.log"
# A second monitor for the writer: migrelay holds the first during the migration.
# shellcheck disable=SC2046
e2e_start_src src 128 dirty $(e2e_disk_args "$T/src.qcow2") -qmp "unix:$T/src-writer.qmp,server=on,wait=off"
# The disk keeps changing while it is mirrored and while RAM moves: a writer
# on the source (qemu-io through the second monitor), until the migration ends.
python3 - "$T/src-writer.qmp" "$T/migrated" "$T/writes" <<'PY' &
import json, os, socket, sys, time
path, stop, out = sys.argv[1:4]
s = socket.socket(socket.AF_UNIX)
s.connect(path)
f = s.makefile("rw")
def cmd(name, args=None):
    f.write(json.dumps({"execute": name, "arguments": args or {}}) + "\n"); f.flush()
    while True:
        m = json.loads(f.readline())
        if "return" in m or "error" in m:
            return m
json.loads(f.readline())            # greeting
cmd("qmp_capabilities")
ok = errs = 0
last = ""
deadline = time.time() + 60
i = 0
while not os.path.exists(stop) and time.time() < deadline:
    # Only while the guest runs, as a guest's own writes: once the source is
    # paused for the switch-over, nothing may write behind the mirror's back.
    if cmd("query-status").get("return", {}).get("status") != "running":
        break
    i += 1
    r = cmd("human-monitor-command",
            {"command-line": 'qemu-io disk0 "write -P %d %dM 64k"' % (32 + i % 200, 1 + i % 60)})
    text = r.get("return", "")
    if "error" in r or "rror" in text:
        errs += 1; last = str(r)
    else:
        ok += 1
        if ok == 3:
            open(out + ".started", "w").close()
    time.sleep(0.01)
open(out, "w").write("%d %d %s\n" % (ok, errs, last[:200]))
PY
writer=$!
for ((i = 0; i < 300; i++)); do [ -e "$T/writes.started" ] && break; sleep 0.1; done
[ -e "$T/writes.started" ] || e2e_fail "the disk writer did not start"
# A bandwidth cap keeps RAM moving for a few seconds while the writer goes on.
mr_e2e_migrate src "$port" vm --copy-storage disk0 --connections 2 --bandwidth 40M ||
	e2e_fail "migrelay migrate --copy-storage failed"
touch "$T/migrated"
wait "$writer" || true
read -r writes werrs wlast <"$T/writes"
[ "$writes" -ge 5 ] || e2e_fail "only $writes disk writes happened during the migration ($werrs failed: $wlast)"
e2e_log "$writes disk writes on the source during the migration"
grep -q "completed and verified" "$E2E_TMP/src-migrate.log" || e2e_fail "no verified report"
e2e_ram_check src dst data
e2e_stop src dst
qemu-img compare "$T/src.qcow2" "$T/dst.qcow2" || e2e_fail "disks differ"
e2e_log "disks identical; passed in $(e2e_since "$t0") s"
