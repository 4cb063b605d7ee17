#!/usr/bin/env bash
# Create .venv with hpcpolicy and (with --test) its test extras. No root needed.
# PYTHON: the interpreter to build it with (default python3); VENV: where (default .venv).
# A venv already installed from the same metadata (setup.cfg, setup.py, pyproject.toml, the
# version in hpcpolicy/__init__.py) and extras is left as it is: the install is editable, so
# the code itself needs no reinstall.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"
py=${PYTHON:-python3}
venv=${VENV:-.venv}
stamp="$venv/.hpcpolicy-setup"
want="$(cat setup.cfg setup.py pyproject.toml hpcpolicy/__init__.py | sha256sum | cut -d' ' -f1) $extras"
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
    "$py" -m venv "$venv"
fi
rm -f "$stamp"
"$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
"$venv/bin/python" -m pip install -q -e ".${extras}"
echo "$want" >"$stamp"
