#!/usr/bin/env bash
# Every command answers --help (exit 0, usage on stdout); bad command lines
# exit 2 with a message that names the problem.
. "$(dirname "$0")/lib.sh"
mr_setup
for c in serve send forward migrate pki bench; do
	"$MIGRELAY" "$c" --help >"$T/out" 2>"$T/err" || fail "$c --help exit $?"
	grep -q "^Usage: migrelay $c" "$T/out" || fail "$c --help: no usage on stdout"
done
"$MIGRELAY" pki issue --help | grep -q "^Usage: migrelay pki issue" || fail "pki issue --help"
"$MIGRELAY" pki init --help | grep -q "^Usage: migrelay pki init" || fail "pki init --help"
"$MIGRELAY" --help | grep -q "^Usage: migrelay COMMAND" || fail "migrelay --help"
ok "--help on every command"

expect2() { # PATTERN ARGS...
	local pat=$1 rc=0
	shift
	"$MIGRELAY" "$@" </dev/null >/dev/null 2>"$T/err" || rc=$?
	[ "$rc" = 2 ] || { cat "$T/err"; fail "$*: exit $rc, expected 2"; }
	grep -qiE -- "$pat" "$T/err" || { cat "$T/err"; fail "$*: message does not match /$pat/"; }
}
expect2 "unknown command" frobnicate
expect2 "--to" send --target x
expect2 "--target" send --to 127.0.0.1:1
expect2 "1 to 64" send --to 127.0.0.1:1 --target x --connections 65
expect2 "compress" send --to 127.0.0.1:1 --target x --compress lz4
expect2 "not a valid name" send --to 127.0.0.1:1 --target "../etc"
expect2 "listen" serve --target x=discard
expect2 "NAME=SPEC" serve --listen 127.0.0.1:0 --target nothing
expect2 "unknown SPEC" serve --listen 127.0.0.1:0 --target x=tcp:1.2.3.4
expect2 "QMP socket path" serve --listen 127.0.0.1:0 --target "x=qmp:,log=/tmp/q.log"
expect2 "given twice" serve --listen 127.0.0.1:0 --target x=discard --target x=discard
expect2 "cannot read|no such" serve --listen 127.0.0.1:0 --target x=discard --tls-dir "$T/nonexistent"
# --window is a size: 1M to 64M, with or without a suffix (accepted, the missing TLS directory is what stops these)
for w in 1048576 1M 4096K 2.5M 64M; do
	expect2 "cannot read|no such" serve --listen 127.0.0.1:0 --target x=discard --window "$w" --tls-dir "$T/nonexistent"
done
for w in 512K 65M 1G x ""; do
	expect2 "--window takes 1048576 to 67108864 bytes \\(or 1M to 64M\\), not \"$w\"" serve --listen 127.0.0.1:0 \
		--target x=discard --window "$w"
done
expect2 "qmp" migrate --to 127.0.0.1:1 --target x
expect2 "bandwidth" migrate --qmp q --to 127.0.0.1:1 --target x --bandwidth fast
expect2 "both --copy-storage and --copy-storage-inc" migrate --qmp q --to 127.0.0.1:1 --target x \
	--copy-storage disk0 --copy-storage-inc disk0
expect2 "given twice" migrate --qmp q --to 127.0.0.1:1 --target x --copy-storage-inc disk0 --copy-storage-inc disk0
expect2 "A-Z a-z" migrate --qmp q --to 127.0.0.1:1 --target x --copy-storage-inc ../disk0
expect2 "needs a disk to mirror" migrate --qmp q --to 127.0.0.1:1 --target x --copy-storage-synchronous-writes
expect2 "unix:PATH" forward --to 127.0.0.1:1 --target x --listen /tmp/x
ok "bad command lines: exit 2 with a message naming the problem"
