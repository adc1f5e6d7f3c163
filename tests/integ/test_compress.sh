#!/usr/bin/env bash
# zstd and all-zero chunks: zero, compressible, random and mixed inputs
# arrive byte-exact with --compress zstd; compressible input takes fewer
# bytes on the wire, random input is sent raw (never larger).
. "$(dirname "$0")/lib.sh"
mr_setup
mr_pki
port=$(mr_free_port)
mr_serve "$port" --tls-dir "$T/srv" --target "f=file:$T/out.bin"
head -c $((32 << 20)) /dev/zero >"$T/zero"
head -c $((32 << 20)) < <(yes "guest page with a repeating pattern 0123456789") >"$T/text"
head -c $((32 << 20)) /dev/urandom >"$T/random"
cat "$T/zero" "$T/text" "$T/random" "$T/zero" >"$T/mixed"
for kind in zero text random mixed; do
	for n in 1 4; do
		mode=zstd:3
		[ "$kind" = mixed ] && [ "$n" = 4 ] && mode=auto # auto must be byte-exact too
		"$MIGRELAY" send --to "127.0.0.1:$port" --target f --tls-dir "$T/cli" --connections "$n" \
			--compress "$mode" --json <"$T/$kind" >"$T/send.json" 2>"$T/send.log" || { cat "$T/send.log"; fail "$kind/$n"; }
		cmp "$T/$kind" "$T/out.bin" || fail "$kind over $n connections differs"
		report=$(grep '"event":"report"' "$T/send.json") # --json: on stdout
		sent=$(echo "$report" | python3 -c 'import json,sys; print(json.load(sys.stdin)["sent"])')
		wire=$(echo "$report" | python3 -c 'import json,sys; print(json.load(sys.stdin)["wire_sent"])')
		case $kind in
		zero | text) [ "$wire" -lt $((sent / 10)) ] || fail "$kind: $wire wire bytes for $sent stream bytes" ;;
		random) [ "$wire" -le $((sent + sent / 100)) ] || fail "random grew on the wire: $wire > $sent" ;;
		esac
		ok "$kind over $n connection(s), --compress $mode: byte-exact, $sent bytes -> $wire on the wire"
	done
done
