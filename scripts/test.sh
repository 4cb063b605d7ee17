#!/usr/bin/env bash
# The test command (README): installs what the tests need, then runs pytest.
# Debian packages are installed with apt-get when missing (root needed for that step only);
# servers (slapd, docker-registry) are started by the test fixtures on 127.0.0.1 in temp dirs.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs="podman skopeo buildah umoci docker-registry uidmap slapd ldap-utils ansible-core gpg gpg-agent
      openssh-client util-linux libpam-modules libpam-runtime passwd openssl procps
      libldap2-dev libsasl2-dev runc busybox-static fuse-overlayfs systemd-container chromium
      debhelper dh-python python3-all python3-setuptools dpkg-dev fakeroot lintian rpm man-db
      python3-ldap3 python3-clustershell python3-tomli-w
      python3-pampy python3-six
      openssh-server strace rsync curl conmon python3-venv"
# The pure part of the suite (no server, no external program, no root): run again on every other
# Python 3.9-3.13 this machine has (~/.pyenv/versions), each in its own .venv-pyX.Y.
pure_tests="tests/test_policy_commands.py tests/test_policy_paths.py tests/test_images_reference.py
      tests/test_images_scope.py tests/test_render_apptainer.py tests/test_render_apptainer_golden.py
      tests/test_subid_allocate.py tests/test_subid_properties.py tests/test_subid_ledger.py
      tests/test_subid_render.py tests/test_subid_import.py tests/test_subid_disabled.py
      tests/test_generation_verify.py tests/test_directory_files.py tests/test_audit_decide.py
      tests/test_deploy_gc.py tests/test_deploy_diff.py tests/test_node_config.py tests/test_layers.py"
missing=()
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "installing: ${missing[*]}" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "missing Debian packages (tests needing them will skip): ${missing[*]}" >&2
    fi
fi
scripts/setup.sh --test
# the optional python-ldap backend, so both LDAP paths are tested; a failed build only skips them
if ! .venv/bin/python -c "import ldap" 2>/dev/null; then
    .venv/bin/python -m pip install -q "python-ldap>=3.4" >/dev/null 2>&1 \
        || echo "python-ldap did not build: its LDAP backend tests will skip" >&2
fi
# lint and types first: an unclean tree fails the test command before any test runs
# (the import layers are a test: tests/test_layers.py)
.venv/bin/ruff check hpcpolicy tests bench scripts ansible_collections
.venv/bin/mypy
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then
    echo "pytest collected no tests" >&2
    exit 1
fi
[ $rc -eq 0 ] || exit $rc
# Asked for particular tests (a path, or -k/-m with a value)? Then only those. Output options
# alone (CI's -q -ra) still run the pure part on the other interpreters.
for arg in "$@"; do
    case "$arg" in -*) ;; *) exit 0 ;; esac
done
main_version="$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
for version in 3.9 3.10 3.11 3.12 3.13; do
    [ "$version" = "$main_version" ] && continue
    py="$(ls -d "$HOME"/.pyenv/versions/"$version".*/bin/python 2>/dev/null | sort -V | tail -1 || true)"
    [ -n "$py" ] && [ -x "$py" ] || continue   # not on this machine: nothing to say
    venv=".venv-py$version"
    mkdir -p "$venv"
    if ! PYTHON="$py" VENV="$venv" scripts/setup.sh --test >"$venv/pip.log" 2>&1; then
        cat "$venv/pip.log" >&2
        exit 1
    fi
    echo "pure tests on Python $version" >&2
    # shellcheck disable=SC2086
    "$venv/bin/python" -m pytest -q -p no:cacheprovider $pure_tests
done
