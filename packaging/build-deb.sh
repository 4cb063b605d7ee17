#!/usr/bin/env bash
# Build the Debian package: packaging/build-deb.sh OUTDIR
#
# 1. an sdist of this tree (build-sdist.sh: it generates the man pages and bash completion),
# 2. a Debian source tree from it (orig tarball = the sdist, debian/ = packaging/debian),
# 3. dpkg-buildpackage (debhelper + dh-python/pybuild), unsigned,
# 4. lintian over the result (errors fail the build),
# 5. the Ansible collection's Galaxy tarball (ansible-galaxy collection build).
# OUTDIR gets hpcpolicy_VERSION-1_all.deb, the source package files, the lintian report and
# hpcpolicy-site-VERSION.tar.gz. Needs (Debian): debhelper dh-python python3-all
# python3-setuptools dpkg-dev fakeroot lintian ansible-core, and for the sdist step a Python
# with argparse-manpage and shtab >= 1.6 (PYTHON, default this tree's .venv: see build-sdist.sh).
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
mkdir -p "$1"
out="$(cd "$1" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

sdist="$("$here/build-sdist.sh" "$work")"
version="$(basename "$sdist" .tar.gz)"
version="${version#hpcpolicy-}"
cp "$sdist" "$work/hpcpolicy_$version.orig.tar.gz"
tar -xzf "$sdist" -C "$work"
src="$work/hpcpolicy-$version"
cp -r "$src/packaging/debian" "$src/debian"
deb_version="$(cd "$src" && dpkg-parsechangelog -S Version)"
if [ "${deb_version%-*}" != "$version" ]; then
    echo "packaging/debian/changelog is at $deb_version, the code at $version: add an entry" >&2
    exit 1
fi
(cd "$src" && dpkg-buildpackage -us -uc -rfakeroot >"$work/build.log" 2>&1) || {
    tail -40 "$work/build.log" >&2
    exit 1
}
changes="$(ls "$work"/hpcpolicy_*.changes)"
cp "$work"/hpcpolicy_*.deb "$work"/hpcpolicy_*.dsc "$work"/hpcpolicy_*.debian.tar.* \
   "$work/hpcpolicy_$version.orig.tar.gz" "$changes" "$out/"
# lintian: errors fail the build, the rest is kept for reading
set +e
lintian --tag-display-limit 0 "$changes" >"$out/lintian.txt" 2>&1
set -e
if grep -q '^E: ' "$out/lintian.txt"; then
    grep '^E: ' "$out/lintian.txt" >&2
    exit 1
fi
ansible-galaxy collection build "$repo/ansible_collections/hpcpolicy/site" --output-path "$out" \
    --force >/dev/null
ls "$out"/hpcpolicy_*.deb
