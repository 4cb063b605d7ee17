#!/usr/bin/env bash
# The test command (README): installs what the tests need, then runs pytest.
# Debian packages are installed with apt-get when missing (root needed for that step only);
# servers (slapd, docker-registry) are started by the test fixtures on 127.0.0.1 in temp dirs.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs="podman skopeo buildah umoci docker-registry uidmap slapd ldap-utils ansible-core gpg gpg-agent
      openssh-client util-linux libpam-modules libpam-runtime passwd openssl procps
      libldap2-dev libsasl2-dev runc busybox-static fuse-overlayfs systemd-container chromium"
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
exit $rc
