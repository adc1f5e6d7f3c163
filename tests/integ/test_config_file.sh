#!/usr/bin/env bash
# A configuration file (migrelay-serve.conf(5)) read by gateway/config.c with
# serve's own options as keys (through tests/tools/configargs.c) is an argv
# that `migrelay serve` accepts as it is:
# 1. contrib/serve.conf.example stands for the options its comments describe;
# 2. a daemon started from a file (comments, quotes, "key = value", a flag
#    set to no) relays a file byte-exact, and an option given on the command
#    line after the file's overrides it (the file's listen port stays closed);
# 3. an unknown key or a quote in a word is refused with the file and line.
. "$(dirname "$0")/lib.sh"
: "${MR_SRC:?MR_SRC must point at the source tree}"
: "${MR_BUILD:?MR_BUILD must point at the build tree}"
CONFIGARGS=$MR_BUILD/tests/mr_configargs
[ -x "$CONFIGARGS" ] || fail "no $CONFIGARGS (build the tree first)"
mr_setup

# serve's keys from its --help: "--name WORD" takes a value, "--name  text" is a flag.
keys=()
while IFS= read -r line; do
	if [[ $line =~ ^\ +(-[a-zA-Z],\ )?--([a-z][a-z0-9-]*)\ [^\ ] ]]; then
		keys+=("${BASH_REMATCH[2]}=")
	elif [[ $line =~ ^\ +(-[a-zA-Z],\ )?--([a-z][a-z0-9-]*) ]]; then
		keys+=("${BASH_REMATCH[2]}")
	fi
done < <("$MIGRELAY" serve --help)
((${#keys[@]} >= 10)) || fail "only ${#keys[@]} options in serve --help"
# conf FILE: the argv FILE stands for, into the array args
conf() {
	args=()
	local w
	while IFS= read -r -d '' w; do
		args+=("$w")
	done < <("$CONFIGARGS" "$1" "${keys[@]}" 2>"$T/conf.err")
	wait $! || return 2
}

# 1. The example
conf "$MR_SRC/contrib/serve.conf.example" || fail "serve.conf.example: $(cat "$T/conf.err")"
want=(--listen 0.0.0.0:4433 --tls-dir /etc/pki/qemu --target vm1=qmp:/run/qemu/vm1.qmp
	--target backup=file:/var/lib/migrelay/backup.img --allow 'CN=src.example')
[ "${args[*]}" = "${want[*]}" ] && [ "${#args[@]}" = "${#want[@]}" ] ||
	fail "serve.conf.example stands for: ${args[*]}"
ok "serve.conf.example stands for ${args[*]}"

# 2. A daemon from a file, one option overridden on the command line
mr_pki
port_file=$(mr_free_port)
port=$(mr_free_port)
while [ "$port" = "$port_file" ]; do port=$(mr_free_port); done
mkdir "$T/in dir"
cat >"$T/serve.conf" <<EOF
# test daemon
listen 127.0.0.1:$port_file
tls-dir = "$T/srv"
target f=file:$T/out.bin   # the file target
Target "d=discard"
allow "CN=client1,O=migrelay tests"
allow-for=f=CN=client1,*
max-sessions 4
insecure-plaintext no
verbose no
EOF
chmod 0640 "$T/serve.conf"
conf "$T/serve.conf" || fail "serve.conf: $(cat "$T/conf.err")"
"$MIGRELAY" serve "${args[@]}" --listen "127.0.0.1:$port" >"$T/serve-$port.log" 2>&1 &
MR_PIDS+=($!)
mr_wait_port "$port"
! (exec 3<>"/dev/tcp/127.0.0.1/$port_file") 2>/dev/null || fail "the file's listen address is open: the command line did not override it"
head -c 3000000 /dev/urandom >"$T/in"
"$MIGRELAY" send --to "127.0.0.1:$port" --target f --tls-dir "$T/cli" --connections 2 --quiet <"$T/in" >/dev/null 2>"$T/send.log" ||
	{ cat "$T/send.log"; fail "send to the daemon started from a configuration file"; }
cmp "$T/in" "$T/out.bin" || fail "the file differs"
ok "a daemon from a configuration file relays byte-exact; --listen on the command line overrides the file's"

# 3. Refused files name the file and the line
printf 'listen 127.0.0.1:1\n\nlisten-on 127.0.0.1:2\n' >"$T/bad1.conf"
printf '# x\nallow CN=a,O="b c"\n' >"$T/bad2.conf"
printf 'help yes\n' >"$T/bad3.conf"
printf 'target a=discard\r\n' >"$T/bad4.conf"
for c in "bad1.conf:3: unknown key \"listen-on\"" "bad2.conf:2: a quote inside a value" \
	"bad3.conf:1: \"help\" cannot be set" "bad4.conf:1: carriage return"; do
	f=${c%%:*}
	rc=0
	conf "$T/$f" || rc=$?
	[ "$rc" = 2 ] || fail "$f: exit $rc, want 2"
	grep -qF "$T/$c" "$T/conf.err" || fail "$f: \"$(cat "$T/conf.err")\", want \"$c\""
done
chmod 0646 "$T/serve.conf"
rc=0
conf "$T/serve.conf" || rc=$?
[ "$rc" = 2 ] && grep -qF "others may write it" "$T/conf.err" || fail "a world-writable file: exit $rc, $(cat "$T/conf.err")"
ok "unknown key, stray quote, refused key, CR and a world-writable file: refused with file and line"

# 4. serve --config FILE itself: the same file (command line overriding it) relays;
#    an unknown key stops serve with exit 2, the file and the line.
chmod 0640 "$T/serve.conf"
port2=$(mr_free_port)
while [ "$port2" = "$port_file" ] || [ "$port2" = "$port" ]; do port2=$(mr_free_port); done
"$MIGRELAY" serve --config "$T/serve.conf" --listen "127.0.0.1:$port2" --control none >"$T/serve-$port2.log" 2>&1 &
MR_PIDS+=($!)
mr_wait_port "$port2"
! (exec 3<>"/dev/tcp/127.0.0.1/$port_file") 2>/dev/null || fail "serve --config: the file's listen address is open"
rm -f "$T/out.bin"
"$MIGRELAY" send --to "127.0.0.1:$port2" --target f --tls-dir "$T/cli" --quiet <"$T/in" >/dev/null 2>"$T/send.log" ||
	fail "send to serve --config: $(cat "$T/send.log")"
cmp "$T/in" "$T/out.bin" || fail "serve --config: the file differs"
rc=0
"$MIGRELAY" serve --config "$T/bad1.conf" --target x=discard >/dev/null 2>"$T/bad1.err" || rc=$?
[ "$rc" = 2 ] && grep -qF "$T/bad1.conf:3: unknown key \"listen-on\"" "$T/bad1.err" ||
	fail "serve --config bad1.conf: exit $rc, $(cat "$T/bad1.err")"
rc=0
"$MIGRELAY" serve --config "$T/nonexistent.conf" --listen 127.0.0.1:1 --target x=discard >/dev/null 2>"$T/nf.err" || rc=$?
[ "$rc" = 2 ] && grep -qF "nonexistent.conf" "$T/nf.err" || fail "serve --config of a missing file: exit $rc, $(cat "$T/nf.err")"
ok "serve --config: a file relays with the command line overriding it; an unknown key and a missing file exit 2 naming them"
