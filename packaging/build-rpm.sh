#!/usr/bin/env bash
# Build the noarch RPM: packaging/build-rpm.sh OUTDIR
#
# From the sdist (build-sdist.sh: it generates the man pages and bash completion) and
# packaging/rpm/hpcpolicy.spec, written for EL9 + EPEL. On a machine that is not rpm-based
# (Debian's rpmbuild) the build dependencies cannot be checked and are skipped (--nodeps),
# and the spec's fallbacks stand in for the EL9 macros. OUTDIR gets the .noarch.rpm, the
# .src.rpm and the Ansible collection's Galaxy tarball.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
mkdir -p "$1"
out="$(cd "$1" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"/{SOURCES,SPECS,BUILD,RPMS,SRPMS,BUILDROOT}
sdist="$("$here/build-sdist.sh" "$work/SOURCES")"
version="$(basename "$sdist" .tar.gz)"
version="${version#hpcpolicy-}"
spec_version="$(sed -n 's/^Version: *//p' "$here/rpm/hpcpolicy.spec")"
if [ "$spec_version" != "$version" ]; then
    echo "packaging/rpm/hpcpolicy.spec is at $spec_version, the code at $version" >&2
    exit 1
fi
cp "$here/rpm/hpcpolicy.spec" "$work/SPECS/"
nodeps=()
rpm -q rpm >/dev/null 2>&1 || nodeps=(--nodeps)
rpmbuild -ba "${nodeps[@]}" --define "_topdir $work" "$work/SPECS/hpcpolicy.spec" \
    >"$work/build.log" 2>&1 || { tail -40 "$work/build.log" >&2; exit 1; }
cp "$work"/RPMS/noarch/hpcpolicy-*.rpm "$work"/SRPMS/hpcpolicy-*.src.rpm "$out/"
ansible-galaxy collection build "$repo/ansible_collections/hpcpolicy/site" --output-path "$out" \
    --force >/dev/null
ls "$out"/hpcpolicy-*.noarch.rpm
