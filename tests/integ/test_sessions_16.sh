#!/usr/bin/env bash
# 16 concurrent sessions on one port, each to its own file target: all byte-exact, none sees another's bytes.
. "$(dirname "$0")/lib.sh"
mr_setup
mr_pki
port=$(mr_free_port)
args=()
for i in $(seq 1 16); do args+=(--target "f$i=file:$T/out$i"); done
mr_serve "$port" --tls-dir "$T/srv" --max-sessions 16 "${args[@]}"
for i in $(seq 1 16); do head -c $((8 << 20)) /dev/urandom >"$T/in$i"; done
for i in $(seq 1 16); do
	"$MIGRELAY" send --to "127.0.0.1:$port" --target "f$i" --tls-dir "$T/cli" --connections 2 --quiet \
		<"$T/in$i" >/dev/null 2>"$T/send$i.log" &
	pids[$i]=$!
done
for i in $(seq 1 16); do
	wait "${pids[$i]}" || { cat "$T/send$i.log"; fail "session $i"; }
done
for i in $(seq 1 16); do cmp "$T/in$i" "$T/out$i" || fail "session $i differs"; done
ok "16 concurrent sessions byte-exact"
