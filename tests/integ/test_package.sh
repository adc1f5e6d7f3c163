#!/usr/bin/env bash
# Install and package, from an already built tree (seconds):
# 1. `cmake --install` into a DESTDIR puts every file where it belongs; the
#    installed binary runs; the installed unit starts that binary.
# 2. CPack's .deb: control fields, Depends from dpkg-shlibdeps, conffiles,
#    nothing but the installed files; extracted with dpkg-deb into a clean
#    root, `migrelay --version` runs from there.
# 3. `man -l` renders both pages without a warning; migrelay(1) has every
#    command, every option of every `--help` and every exit code of
#    README.md; migrelay-serve.conf(5) has every option of serve as a key.
# 4. The installed bash completion completes every command and option.
# 5. The installed example configuration names only options of serve.
# Skips (77) when cpack, dpkg-deb, dpkg-shlibdeps or man is missing
# (scripts/deps installs them).
. "$(dirname "$0")/lib.sh"
: "${MR_SRC:?MR_SRC must point at the source tree}"
: "${MR_BUILD:?MR_BUILD must point at the build tree}"
for tool in cmake cpack dpkg-deb dpkg-shlibdeps man groff; do
	if ! command -v "$tool" >/dev/null; then
		echo "skip: $tool is not installed (scripts/deps installs it)"
		exit 77
	fi
done
[ -f "$MR_BUILD/CPackConfig.cmake" ] || fail "no $MR_BUILD/CPackConfig.cmake: the build tree has no packaging"
mr_setup
version=$("$MIGRELAY" --version | sed -n 's/^migrelay \([0-9][0-9.]*\) .*/\1/p')
[ -n "$version" ] || fail "no version in: $("$MIGRELAY" --version)"

# The commands of `migrelay --help`, and the long options of a help text on stdin.
commands() { "$MIGRELAY" --help | sed -n '/^Commands:/,/^$/s/^  \([a-z][a-z-]*\)  .*/\1/p'; }
long_opts() { grep -oE -- '^ +(-[a-zA-Z], )?--[a-z][a-z0-9-]*' | grep -oE -- '--[a-z][a-z0-9-]*' | sort -u; }
# Every help text a user can ask for: "CMD" or "pki init" / "pki issue".
help_words() {
	local c
	for c in $(commands); do
		case $c in
		version) ;;
		pki) echo "pki init" && echo "pki issue" ;;
		*) echo "$c" ;;
		esac
	done
}

# 1. cmake --install into a DESTDIR, prefix /usr/local
DESTDIR=$T/dest cmake --install "$MR_BUILD" --prefix /usr/local >"$T/install.log" 2>&1 ||
	{ cat "$T/install.log"; fail "cmake --install"; }
D=$T/dest
for f in usr/local/bin/migrelay usr/local/share/man/man1/migrelay.1 usr/local/share/man/man5/migrelay-serve.conf.5 \
	usr/local/lib/systemd/system/migrelay-serve.service usr/local/lib/sysusers.d/migrelay.conf \
	usr/local/share/bash-completion/completions/migrelay etc/migrelay/serve.conf.example \
	etc/migrelay/serve.env.example usr/local/share/doc/migrelay/README.md; do
	[ -f "$D/$f" ] || fail "cmake --install did not install /$f"
done
[ -x "$D/usr/local/bin/migrelay" ] || fail "the installed binary is not executable"
got=$("$D/usr/local/bin/migrelay" --version) || fail "the installed migrelay --version failed"
[ "$got" = "$("$MIGRELAY" --version)" ] || fail "the installed binary says $got"
grep -q '^ExecStart=/usr/local/bin/migrelay serve ' "$D/usr/local/lib/systemd/system/migrelay-serve.service" ||
	fail "the installed unit does not start /usr/local/bin/migrelay"
grep -qxF 'RuntimeDirectory=migrelay' "$D/usr/local/lib/systemd/system/migrelay-serve.service" &&
	grep -qxF 'RuntimeDirectoryMode=0750' "$D/usr/local/lib/systemd/system/migrelay-serve.service" ||
	fail "the unit does not make /run/migrelay with mode 0750"
grep -qE '^u migrelay ' "$D/usr/local/lib/sysusers.d/migrelay.conf" || fail "sysusers.d does not create the user migrelay"
ok "cmake --install: binary (runs), man pages, unit (ExecStart /usr/local/bin/migrelay), sysusers.d, completion, examples"

# 2. The Debian package
cpack --config "$MR_BUILD/CPackConfig.cmake" -B "$T/pkg" >"$T/cpack.log" 2>&1 || { cat "$T/cpack.log"; fail "cpack"; }
debs=("$T"/pkg/*.deb)
[ "${#debs[@]}" = 1 ] && [ -f "${debs[0]}" ] || fail "cpack made ${#debs[@]} packages: ${debs[*]}"
deb=${debs[0]}
[ "$(dpkg-deb -f "$deb" Package)" = migrelay ] || fail "package name $(dpkg-deb -f "$deb" Package)"
[ "$(dpkg-deb -f "$deb" Version)" = "$version" ] || fail "package version $(dpkg-deb -f "$deb" Version), binary $version"
[ "$(dpkg-deb -f "$deb" Architecture)" = "$(dpkg --print-architecture)" ] || fail "architecture $(dpkg-deb -f "$deb" Architecture)"
depends=$(dpkg-deb -f "$deb" Depends)
# Every shared library the binary needs is in Depends, through the package that holds it.
while read -r lib; do
	# awk reads all of ldconfig's output (no early exit: under pipefail a SIGPIPE of ldconfig fails the line)
	path=$(ldconfig -p | awk -v l="$lib" '!p && $1 == l && /x86-64|x32|AArch64|64/ { p = $NF } END { print p }')
	[ -n "$path" ] || path=$(ldconfig -p | awk -v l="$lib" '!p && $1 == l { p = $NF } END { print p }')
	[ -n "$path" ] || fail "cannot find $lib"
	pkg=$(dpkg -S "$(readlink -f "$path")" 2>/dev/null | head -n1 | cut -d: -f1) ||
		pkg=$(dpkg -S "$path" 2>/dev/null | head -n1 | cut -d: -f1) || true
	[ -n "$pkg" ] || fail "no package holds $path"
	grep -qE "(^|, )$pkg( |,|$)" <<<"$depends" || fail "Depends ($depends) lacks $pkg for $lib"
done < <(objdump -p "$MIGRELAY" | awk '$1 == "NEEDED" { print $2 }' | grep -v '^ld-linux')
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles >"$T/conffiles"
grep -qxF /etc/migrelay/serve.conf.example "$T/conffiles" || fail "serve.conf.example is not a conffile"
for s in postinst prerm postrm; do
	dpkg-deb --ctrl-tarfile "$deb" | tar -xO "./$s" >"$T/$s" 2>/dev/null || fail "no $s in the package"
	sh -n "$T/$s" || fail "$s is not a valid sh script"
done
grep -q 'systemd-sysusers migrelay.conf' "$T/postinst" || fail "postinst does not create the user"
dpkg-deb -c "$deb" | awk '{ print $NF }' | grep -v '/$' | sed 's|^\./||' | sort >"$T/files"
(cd "$D" && find . -type f | sed 's|^\./||; s|^usr/local/|usr/|' | sort) >"$T/installed"
diff -u "$T/installed" "$T/files" >"$T/files.diff" || { cat "$T/files.diff"; fail "the package holds other files than cmake --install"; }
rm -rf "$T/root"
mkdir "$T/root"
dpkg-deb -x "$deb" "$T/root"
got=$("$T/root/usr/bin/migrelay" --version) || fail "migrelay --version from the extracted package failed"
[ "$got" = "$("$MIGRELAY" --version)" ] || fail "the packaged binary says $got"
grep -q '^ExecStart=/usr/bin/migrelay serve ' "$T/root/usr/lib/systemd/system/migrelay-serve.service" ||
	fail "the packaged unit does not start /usr/bin/migrelay"
ok "package $(basename "$deb"): Depends $depends; $(wc -l <"$T/files") files; migrelay --version runs from a clean root"

# 3. The man pages, from the extracted package
M1=$T/root/usr/share/man/man1/migrelay.1
M5=$T/root/usr/share/man/man5/migrelay-serve.conf.5
for page in "$M1" "$M5"; do
	LC_ALL=C.UTF-8 MANWIDTH=200 man --warnings -l "$page" >"$T/page.txt" 2>"$T/page.err" || fail "man -l $page"
	[ ! -s "$T/page.err" ] || { cat "$T/page.err"; fail "man -l $(basename "$page") warns"; }
	groff -man -ww -z "$page" 2>"$T/page.err" && [ ! -s "$T/page.err" ] ||
		{ cat "$T/page.err"; fail "groff warns about $(basename "$page")"; }
	grep -q '^NAME' "$T/page.txt" && grep -q '^SEE ALSO' "$T/page.txt" || fail "$(basename "$page") lacks NAME or SEE ALSO"
done
page1=$(LC_ALL=C MANWIDTH=200 man -l "$M1" 2>/dev/null)
page5=$(LC_ALL=C MANWIDTH=200 man -l "$M5" 2>/dev/null)
nopts=0
while read -r words; do
	grep -qE "^   migrelay $words( |$)" <<<"$page1" || fail "migrelay(1) has no section \"migrelay $words\""
	# shellcheck disable=SC2086
	for o in $("$MIGRELAY" $words --help 2>&1 | long_opts); do
		grep -qE -- "(^|[ ,(])$o( |,|\)|$)" <<<"$page1" || fail "migrelay(1) does not document $words $o"
		nopts=$((nopts + 1))
	done
done < <(help_words)
for c in $(sed -n 's/^| \([0-9][0-9]*\) | .*/\1/p' "$MR_SRC/README.md"); do
	sed -n '/^EXIT STATUS/,/^[A-Z]/p' <<<"$page1" | grep -qE "^       $c( |$)" || fail "migrelay(1) lacks exit code $c"
done
for o in $("$MIGRELAY" serve --help | long_opts); do
	key=${o#--}
	case $key in help | config) continue ;; esac
	grep -qE "^       $key( |$)" <<<"$page5" || fail "migrelay-serve.conf(5) does not list the key $key"
done
ok "man -l: both pages render without warnings; $nopts options of $(help_words | wc -l) help texts, the exit codes and serve's keys documented"

# 4. Bash completion, from the extracted package, against the installed binary
comp=$T/root/usr/share/bash-completion/completions/migrelay
complete_words() { # prints COMPREPLY for: migrelay WORDS... (the last one is being completed)
	bash -c '. "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _migrelay; printf "%s\n" "${COMPREPLY[@]}"' \
		_ "$comp" "$T/root/usr/bin/migrelay" "$@"
}
got=$(complete_words "" | sort)
for c in $(commands); do
	grep -qxF "$c" <<<"$got" || fail "completion of \"migrelay \" lacks $c"
done
nopts=0
while read -r words; do
	# shellcheck disable=SC2086
	got=$(complete_words $words --)
	# shellcheck disable=SC2086
	for o in $("$MIGRELAY" $words --help 2>&1 | long_opts); do
		grep -qxF -- "$o" <<<"$got" || fail "completion of \"migrelay $words --\" lacks $o"
		nopts=$((nopts + 1))
	done
done < <(help_words)
[ "$(complete_words migrate --compress z)" = "zstd
zstd:" ] || fail "completion of --compress z: $(complete_words migrate --compress z)"
got=$(complete_words pki "")
grep -qxF init <<<"$got" && grep -qxF issue <<<"$got" || fail "completion of \"migrelay pki \": $got"
[ "$(complete_words pki issue "")" = "server
client" ] || fail "completion of pki issue: $(complete_words pki issue "")"
[ -z "$(complete_words serve --listen "")" ] || fail "completion after an option that takes a value offers options"
ok "bash completion: every command and $nopts options, and values of --compress and pki issue"

# 5. The example configuration names only serve's options, each once per line.
ex=$T/root/etc/migrelay/serve.conf.example
opts=$("$MIGRELAY" serve --help | long_opts)
while read -r key _; do
	grep -qxF -- "--$key" <<<"$opts" || fail "serve.conf.example: \"$key\" is no option of serve"
done < <(sed -e 's/^#\([a-z]\)/\1/' "$ex" | grep -E '^[a-z]')
ok "serve.conf.example: every key, commented out or not, is an option of serve"
