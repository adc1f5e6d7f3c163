#!/usr/bin/env bash
# contrib/migrelay-serve.service: systemd accepts it (systemd-analyze verify,
# with ExecStart pointing at the built binary), every hardening line is there,
# and its ExecStart line, expanded with an environment file as systemd does,
# starts a daemon that relays a file. Skips (77) without systemd-analyze.
. "$(dirname "$0")/lib.sh"
: "${MR_SRC:?MR_SRC must point at the source tree}"
UNIT=$MR_SRC/contrib/migrelay-serve.service
ENVEX=$MR_SRC/contrib/serve.env
[ -f "$UNIT" ] || fail "no $UNIT"
if ! command -v systemd-analyze >/dev/null; then
	echo "skip: systemd-analyze is not installed (Debian package systemd)"
	exit 77
fi
mr_setup

# 1. Every hardening directive, with its value: removing one fails here.
want=(
	'NoNewPrivileges=yes'
	'ProtectSystem=strict'
	'ProtectHome=yes'
	'PrivateTmp=yes'
	'PrivateDevices=yes'
	'ProtectKernelTunables=yes'
	'ProtectKernelModules=yes'
	'ProtectKernelLogs=yes'
	'ProtectControlGroups=yes'
	'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX'
	'RestrictNamespaces=yes'
	'LockPersonality=yes'
	'MemoryDenyWriteExecute=yes'
	'SystemCallFilter=@system-service'
	'CapabilityBoundingSet='
	'Restart=on-failure'
	'EnvironmentFile=/etc/migrelay/serve.env'
	'ReadWritePaths=/run/migrelay'
)
for d in "${want[@]}"; do
	grep -qxF "$d" "$UNIT" || fail "the unit lacks the line $d"
	# nor may a later line of the same key undo it (more paths and "~" filters narrow, so they may follow)
	key=${d%%=*}
	case $key in
	ReadWritePaths) ;;
	SystemCallFilter) ! grep -E "^$key=" "$UNIT" | grep -vxF "$d" | grep -qv "^$key=~" || fail "another $key= line" ;;
	*) ! grep -E "^$key=" "$UNIT" | grep -qvxF "$d" || fail "another $key= line than $d" ;;
	esac
done
grep -qxE 'User=[a-z_][a-z0-9_-]*|DynamicUser=yes' "$UNIT" || fail "the unit names no unprivileged user"
! grep -qxE 'User=(root|0)' "$UNIT" || fail "the unit runs as root"
! grep -qE '^(AmbientCapabilities|CapabilityBoundingSet)=.*CAP_' "$UNIT" || fail "the unit grants a capability"
ok "all ${#want[@]} hardening and service lines present, unprivileged user"

# 2. systemd-analyze verify: an error fails it; a warning about our unit
#    (unknown key, bad value) fails here. It checks that ExecStart exists.
sed "s|/usr/local/bin/migrelay|$MIGRELAY|g" "$UNIT" >"$T/migrelay-serve.service"
grep -q "^ExecStart=$MIGRELAY serve " "$T/migrelay-serve.service" || fail "ExecStart does not run /usr/local/bin/migrelay serve"
rc=0
(cd "$T" && systemd-analyze verify migrelay-serve.service) >"$T/verify.log" 2>&1 || rc=$?
if [ "$rc" != 0 ] || grep -q 'migrelay-serve' "$T/verify.log"; then
	cat "$T/verify.log"
	fail "systemd-analyze verify (exit $rc) reports the lines above"
fi
ok "systemd-analyze verify: no error or warning"
# Exposure score (systemd 250 and later can rate a unit file offline).
if out=$(cd "$T" && systemd-analyze security --offline=yes migrelay-serve.service 2>/dev/null); then
	score=$(echo "$out" | sed -n 's/.*Overall exposure level for migrelay-serve.service: \([0-9.]*\).*/\1/p')
	[ -n "$score" ] || fail "no exposure level in systemd-analyze security's output"
	awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' || { echo "$out"; fail "exposure level $score, more than 2.0"; }
	ok "systemd-analyze security: exposure level $score"
fi

# 3. The options the unit and the example environment use exist.
help=$("$MIGRELAY" serve --help 2>&1) || true
for o in $(grep -hoE -- '--[a-z][a-z-]+' <(grep '^ExecStart=' "$UNIT") <(grep -v '^#' "$ENVEX") | sort -u); do
	grep -q -- "$o " <<<"$help" || fail "migrelay serve has no option $o"
done
ok "every option in ExecStart and serve.env is one of migrelay serve's"

# 4. ExecStart as systemd expands it: \${VAR} is one word, \$VAR splits at spaces.
port=$(mr_free_port)
mr_pki
cat >"$T/serve.env" <<EOF
MIGRELAY_LISTEN=127.0.0.1:$port
MIGRELAY_TLS_DIR=$T/srv
MIGRELAY_TARGETS=--target f=file:$T/out.bin --target d=discard
MIGRELAY_OPTS=--allow CN=client1,* --max-sessions 4
EOF
while IFS= read -r line; do
	[[ $line =~ ^([A-Z_]+)=(.*)$ ]] && printf -v "${BASH_REMATCH[1]}" '%s' "${BASH_REMATCH[2]}"
done <"$T/serve.env"
args=()
read -ra words <<<"$(sed -n 's/^ExecStart=//p' "$T/migrelay-serve.service")"
for w in "${words[@]}"; do
	if [[ $w =~ ^\$\{([A-Z_]+)\}$ ]]; then
		args+=("${!BASH_REMATCH[1]}")
	elif [[ $w =~ ^\$([A-Z_]+)$ ]]; then
		read -ra split <<<"${!BASH_REMATCH[1]}"
		args+=("${split[@]}")
	else
		args+=("$w")
	fi
done
if [ "${args[0]}" != "$MIGRELAY" ] || [ "${args[1]}" != serve ]; then
	fail "ExecStart expands to ${args[*]}"
fi
"${args[@]}" >"$T/serve-$port.log" 2>&1 &
MR_PIDS+=($!)
mr_wait_port "$port"
head -c 1000000 /dev/urandom >"$T/in"
"$MIGRELAY" send --to "127.0.0.1:$port" --target f --tls-dir "$T/cli" --quiet <"$T/in" >/dev/null 2>"$T/send.log" ||
	{ cat "$T/send.log"; fail "send to the daemon started from ExecStart"; }
cmp "$T/in" "$T/out.bin" || fail "the file differs"
ok "ExecStart with an environment file starts a daemon that relays byte-exact"
