#!/usr/bin/env bash
# Build the sdist: packaging/build-sdist.sh OUTDIR  (prints the path of the tarball)
#
# Built from a copy of this tree, so the tree gets no build/ or egg-info. The sdist command
# generates the man pages and bash completion from the parser (packaging/gen-docs.py) and ships
# them: PYTHON must have setuptools, argparse-manpage, shtab >= 1.6 and tomli-w. Default: this
# tree's .venv (scripts/setup.sh --test installs them there), else python3.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
repo="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$1"
out="$(cd "$1" && pwd)"
py=${PYTHON:-}
if [ -z "$py" ]; then
    if [ -x "$repo/.venv/bin/python" ]; then py="$repo/.venv/bin/python"; else py=python3; fi
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# (packaging/generated comes along: regenerated when the generator can run, kept otherwise,
# e.g. when this tree is an unpacked sdist)
(cd "$repo" && tar --exclude=./.git --exclude='./.venv*' --exclude='*.egg-info' --exclude=./build \
     --exclude=./dist --exclude=./demo-out --exclude=__pycache__ --exclude=.pytest_cache \
     --exclude=.mypy_cache --exclude=.ruff_cache --exclude=.hypothesis -cf - .) | tar -xf - -C "$work"
(cd "$work" && HPCPOLICY_GEN_PYTHON="$py" "$py" setup.py -q sdist -d "$out" >"$work/.log" 2>&1) \
    || { cat "$work/.log" >&2; exit 1; }
version="$("$py" -c 'import sys; sys.path.insert(0, sys.argv[1]); import hpcpolicy; print(hpcpolicy.__version__)' "$repo")"
echo "$out/hpcpolicy-$version.tar.gz"
