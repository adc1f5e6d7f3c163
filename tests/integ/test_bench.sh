#!/usr/bin/env bash
# migrelay bench --local runs both gateways on loopback and reports a
# verified transfer with its figures, for each profile and compression mode.
. "$(dirname "$0")/lib.sh"
mr_setup
for args in "--profile idle" "--profile mixed --compress auto" "--profile random --compress zstd --connections 4"; do
	# shellcheck disable=SC2086
	out=$("$MIGRELAY" bench --local --size 64M --json $args 2>"$T/err") || { cat "$T/err"; fail "bench $args"; }
	echo "$out" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
assert r["bytes"] == 64 << 20, r
assert r["mb_per_s"] > 0 and r["cpu_s_per_gb_client"] > 0 and r["peak_kb_server"] > 0, r
' || fail "bench $args: unexpected report: $out"
	ok "bench $args: $out"
done
