# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# Helpers for e2e tests that migrate through migrelay (sourced after lib.sh):
#   mr_e2e_pki                       CA, server and client credentials in $E2E_TMP
#   mr_e2e_serve NAME PORT ARGS...   a `migrelay serve` named NAME on 127.0.0.1:PORT
#   mr_e2e_migrate SRC PORT TARGET ARGS...   `migrelay migrate` of SRC, output in SRC-migrate.log;
#                                    with --suspend (the RAM checks need the destination paused)
#                                    unless MR_E2E_RESUME=1

: "${MIGRELAY:?MIGRELAY must point at the migrelay binary}"

mr_e2e_pki() {
	"$MIGRELAY" pki init --dir "$E2E_TMP/ca" >/dev/null || e2e_fail "pki init"
	"$MIGRELAY" pki issue server --ca "$E2E_TMP/ca" --out "$E2E_TMP/srv" --cn dst.test --ip 127.0.0.1 >/dev/null ||
		e2e_fail "pki issue server"
	"$MIGRELAY" pki issue client --ca "$E2E_TMP/ca" --out "$E2E_TMP/cli" --cn src.test >/dev/null ||
		e2e_fail "pki issue client"
}

mr_e2e_serve() {
	local name=$1 port=$2 i
	shift 2
	e2e_spawn "$name" "$MIGRELAY" serve --listen "127.0.0.1:$port" --tls-dir "$E2E_TMP/srv" "$@"
	for ((i = 0; i < 100; i++)); do
		grep -q "listening on" "$E2E_TMP/$name.log" 2>/dev/null && return 0
		e2e_alive "$name" || break
		sleep 0.1
	done
	e2e_fail "migrelay serve $name did not start"
}

# Returns migrate's exit code; its output is in $E2E_TMP/SRC-migrate.log.
mr_e2e_migrate() {
	local src=$1 port=$2 target=$3 rc=0 t0
	shift 3
	t0=$(e2e_now)
	[ "${MR_E2E_RESUME:-0}" = 1 ] || set -- --suspend "$@"
	"$MIGRELAY" migrate --qmp "$(e2e_qmp_sock "$src")" --to "127.0.0.1:$port" --target "$target" \
		--tls-dir "$E2E_TMP/cli" --progress "$@" >"$E2E_TMP/$src-migrate.out" 2>"$E2E_TMP/$src-migrate.log" || rc=$?
	e2e_log "migrelay migrate $* -> exit $rc in $(e2e_since "$t0") s: $(tail -n 2 "$E2E_TMP/$src-migrate.log" | tr '\n' ' ')"
	return $rc
}
