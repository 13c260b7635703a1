#!/usr/bin/env bash
# End-to-end test of the release artifacts, as a user installs them: builds
# them with scripts/release, then installs each in a clean place and runs the
# example apps (apps.py) against the installed bellwether, which must find
# its bellwether-exec beside itself:
#
#   the wheel     pip install into a fresh virtualenv; auditwheel must name the
#                 wheel's own manylinux tag; pip uninstall leaves nothing
#   (each)        the fork server in share/bellwether/, and --preload works
#   the tarball   extracted into a temporary directory; SHA256SUMS must match
#   the .deb      lintian must report no error; dpkg -i, then dpkg -r
#
# usage: install.sh VENV   (VENV holds gunicorn and the examples' requirements)
# Needs root (dpkg -i); installs lintian, dpkg-dev, binutils and, into
# .build/release-tools, auditwheel when they are missing. Prints "ok"/"FAIL"
# lines and "install: N passed, N failed"; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -eq 1 ] || { sed -n '2,15s/^# \{0,1\}//p' "$0" >&2; exit 64; }
venv=$(cd "$1" && pwd)
[ "$(id -u)" -eq 0 ] || { echo "install.sh: needs root, for dpkg -i" >&2; exit 77; }

# --- set-up ----------------------------------------------------------------
apt_updated=
need_package() {  # need_package COMMAND DEBIAN_PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    echo "install test set-up: installing $2" >&2
    if [ -z "$apt_updated" ]; then apt-get update -qq >&2; apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >&2
}
need_package lintian lintian
need_package dpkg-shlibdeps dpkg-dev
need_package objdump binutils
tools=.build/release-tools
# auditwheel's report is parsed below: its version is pinned.
if [[ "$("$tools/bin/auditwheel" --version 2>/dev/null || true)" != "auditwheel 6.8.2 "* ]]; then
    echo "install test set-up: auditwheel into $tools" >&2
    python3 -m venv "$tools"
    "$tools/bin/pip" install -q --disable-pip-version-check auditwheel==6.8.2 >&2
fi

passed=0 failed=0
check() {  # check NAME COMMAND [ARG...]: ok when COMMAND succeeds
    local name=$1; shift
    if "$@"; then
        passed=$((passed + 1)); echo "ok   $name"
    else
        failed=$((failed + 1)); echo "FAIL $name"
    fi
}
# The example apps under an installed bellwether: all of apps.py's checks of
# bellwether; its baseline, plain gunicorn, is scripts/test's own apps.py run's.
run_apps() {  # run_apps ARTIFACT BELLWETHER
    local start=$SECONDS
    check "$1: apps.py passes with $2" python3 Tests/EndToEnd/apps.py --no-baseline "$2" "$venv"
    echo "     ($1: apps.py took $((SECONDS - start)) s)"
}
same_file() { cmp -s "$1" "$2"; }
says_version() { [ "$("$1" --version)" = "bellwether $version" ]; }
executable_pair() { [ -x "$1/bellwether" ] && [ -x "$1/bellwether-exec" ] && [ -f "$1/bellwether-exec" ]; }
absent() { local path; for path; do [ ! -e "$path" ] || return 1; done; }
# --preload with the installed fork server: a worker forked by it, with the
# preloaded module already imported, runs; then TERM.
preload_works() {  # preload_works BELLWETHER
    local marker=$scratch/preloaded-$RANDOM tries=0 master
    printf 'import os, sys, time\nopen(%s, "w").write(f"{\x27colorsys\x27 in sys.modules} {os.environ[\x27WORKER_ROLE\x27]}")\ntime.sleep(60)\n' \
        "'$marker'" >"$scratch/preload_app.py"
    "$1" -w 1 --preload colorsys -- python3 "$scratch/preload_app.py" >"$scratch/preload.log" 2>&1 &
    master=$!
    until [ -s "$marker" ] || [ $((tries += 1)) -gt 300 ]; do sleep 0.1; done
    kill -TERM "$master"
    wait "$master" || true
    grep -q "fork server of generation 0 started" "$scratch/preload.log" \
        && [ "$(cat "$marker" 2>/dev/null)" = "True scheduler" ] || { cat "$scratch/preload.log"; return 1; }
}

scratch=$(mktemp -d /tmp/bellwether-install-XXXXXX)
deb_installed=
cleanup() {
    if [ -n "$deb_installed" ]; then dpkg -r bellwether >/dev/null 2>&1 || true; fi
    rm -rf "$scratch"
}
trap cleanup EXIT

start=$SECONDS
scripts/release >"$scratch/release.log" 2>&1 || { cat "$scratch/release.log"; exit 1; }
echo "     (scripts/release took $((SECONDS - start)) s)"
version=$(sed -n 's/.*current = "\(.*\)".*/\1/p' Sources/Bellwether/Version.swift)
wheel=$(echo dist/bellwether-"$version"-py3-none-*.whl)
tarball=dist/bellwether-$version-linux-$(uname -m).tar.gz
deb=dist/bellwether_${version}-1_$(dpkg --print-architecture).deb
check "scripts/release wrote $wheel, $tarball and $deb" test -f "$wheel" -a -f "$tarball" -a -f "$deb"

# --- the wheel -------------------------------------------------------------
tag=${wheel#dist/bellwether-"$version"-py3-none-}
tag=${tag%.whl}
"$tools/bin/auditwheel" show "$wheel" >"$scratch/auditwheel.txt" 2>&1 || true
audited=$(tr -s ' \n' ' ' <"$scratch/auditwheel.txt" | sed -n 's/.*is consistent with the following platform tag: "\([^"]*\)".*/\1/p')
check "wheel: auditwheel show finds it consistent with its own tag, $tag (auditwheel: ${audited:-nothing})" \
    test "$audited" = "$tag"
# The oldest glibc the wheel claims is the one the .deb depends on.
glibc=$(echo "$tag" | sed -n 's/^manylinux_\([0-9]*\)_\([0-9]*\)_.*/\1.\2/p')
check "wheel and .deb agree: $tag and libc6 (>= $glibc)" \
    grep -q "libc6 (>= ${glibc:-none})" <(dpkg-deb -f "$deb" Depends)

python3 -m venv "$scratch/venv"
check "wheel: pip installs it into a fresh virtualenv" \
    "$scratch/venv/bin/pip" install -q --disable-pip-version-check --no-index "$wheel"
check "wheel: bellwether and bellwether-exec executable, side by side in the virtualenv's bin/" \
    executable_pair "$scratch/venv/bin"
check "wheel: bellwether --version says $version" says_version "$scratch/venv/bin/bellwether"
data=$("$scratch/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("data"))')
check "wheel: gunicorn.conf.py at $data/share/bellwether/" \
    same_file etc/gunicorn.conf.py "$data/share/bellwether/gunicorn.conf.py"
check "wheel: the manual at $data/share/man/man1/" same_file man/bellwether.1 "$data/share/man/man1/bellwether.1"
check "wheel: the fork server at $data/share/bellwether/" \
    same_file share/forkserver.py "$data/share/bellwether/forkserver.py"
check "wheel: --preload forks a worker from the installed fork server" preload_works "$scratch/venv/bin/bellwether"
run_apps wheel "$scratch/venv/bin/bellwether"
"$scratch/venv/bin/pip" uninstall -q -y bellwether
check "wheel: pip uninstall removes it all" \
    absent "$scratch/venv/bin/bellwether" "$scratch/venv/bin/bellwether-exec" "$data/share/bellwether" "$data/share/man/man1/bellwether.1"

# --- the tarball -----------------------------------------------------------
mkdir "$scratch/tar"
tar -xzf "$tarball" -C "$scratch/tar"
unpacked=$scratch/tar/bellwether-$version-linux-$(uname -m)
check "tarball: SHA256SUMS matches every file" \
    bash -c "cd '$unpacked' && sha256sum --quiet -c SHA256SUMS && [ \$(wc -l <SHA256SUMS) -eq \$(find . -type f ! -name SHA256SUMS | wc -l) ]"
check "tarball: bin/bellwether and bin/bellwether-exec executable" executable_pair "$unpacked/bin"
check "tarball: etc/ and man/ as in the source" \
    bash -c "diff -r etc '$unpacked/etc' && cmp man/bellwether.1 '$unpacked/man/bellwether.1'"
check "tarball: bellwether --version says $version" says_version "$unpacked/bin/bellwether"
check "tarball: the fork server at share/bellwether/" \
    same_file share/forkserver.py "$unpacked/share/bellwether/forkserver.py"
check "tarball: --preload forks a worker from the unpacked fork server" preload_works "$unpacked/bin/bellwether"
run_apps tarball "$unpacked/bin/bellwether"

# --- the Debian package ----------------------------------------------------
lintian --fail-on error "$deb" >"$scratch/lintian.txt" 2>&1 && lintian_status=0 || lintian_status=$?
check "deb: lintian reports no error ($(grep -c '^W:' "$scratch/lintian.txt" || true) warnings)" \
    test "$lintian_status" -eq 0 -a -z "$(grep '^E:' "$scratch/lintian.txt" || true)"
[ "$lintian_status" -eq 0 ] || cat "$scratch/lintian.txt"
dpkg_install() {  # dpkg -i, waiting while another dpkg or apt holds the lock
    local tries=0
    until dpkg -i "$1" >"$scratch/dpkg.log" 2>&1; do
        grep -q 'lock' "$scratch/dpkg.log" && [ $((tries += 1)) -lt 60 ] || { cat "$scratch/dpkg.log"; return 1; }
        sleep 5
    done
}
deb_installed=1
check "deb: dpkg -i installs it" dpkg_install "$deb"
check "deb: /usr/bin/bellwether and /usr/bin/bellwether-exec executable" executable_pair /usr/bin
check "deb: bellwether --version says $version" says_version /usr/bin/bellwether
check "deb: gunicorn.conf.py at /usr/share/bellwether/" same_file etc/gunicorn.conf.py /usr/share/bellwether/gunicorn.conf.py
check "deb: the fork server at /usr/share/bellwether/" same_file share/forkserver.py /usr/share/bellwether/forkserver.py
check "deb: --preload forks a worker from the installed fork server" preload_works /usr/bin/bellwether
check "deb: the manual at /usr/share/man/man1/bellwether.1.gz" \
    same_file man/bellwether.1 <(gzip -dc /usr/share/man/man1/bellwether.1.gz)
check "deb: the systemd units and sample config in /usr/share/doc/bellwether/examples/" \
    same_file etc/bellwether.service /usr/share/doc/bellwether/examples/bellwether.service
run_apps deb /usr/bin/bellwether
check "deb: dpkg -r removes it" bash -c "dpkg -r bellwether >/dev/null && [ ! -e /usr/bin/bellwether ] && [ ! -e /usr/bin/bellwether-exec ]"
deb_installed=

echo "install: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
