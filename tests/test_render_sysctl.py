"""sysctl drop-in: applied by procps `sysctl` and by systemd-sysctl inside a private user+net
namespace, where `user.*` counts are per namespace, so the host's sysctls never change."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, List

import pytest
from runtime_fixtures import policy

from hpcpolicy.errors import InvalidInput
from hpcpolicy.render import sysctl

UNSHARE = shutil.which("unshare")
SYSCTL = shutil.which("sysctl")
SYSTEMD_SYSCTL = "/usr/lib/systemd/systemd-sysctl"
HOST_FILE = Path("/proc/sys/user/max_user_namespaces")


def can_unshare() -> bool:
    if UNSHARE is None:
        return False
    probe = subprocess.run([UNSHARE, "--user", "--map-root-user", "--net", "true"])
    return probe.returncode == 0


needs_ns = pytest.mark.skipif(
    not can_unshare() or SYSCTL is None, reason="needs unshare --user --net and procps sysctl"
)


def body(**runtime: Any) -> List[str]:
    data = sysctl.render(policy(**runtime))[sysctl.PATH].decode()
    assert data.endswith("\n") and "\r" not in data
    return [line for line in data.splitlines() if not line.startswith("#")]


def test_defaults() -> None:
    assert body() == [
        "user.max_user_namespaces = 15000",
        "-kernel.unprivileged_userns_clone = 1",
    ]


def test_net_namespaces_only_when_set() -> None:
    assert "user.max_net_namespaces = 0" in body(max_net_namespaces=0)
    assert "user.max_net_namespaces = 7" in body(max_net_namespaces=7)
    assert not any("max_net" in line for line in body())


def test_user_namespaces_off_means_zero() -> None:
    assert body(user_namespaces=False, max_user_namespaces=15000) == [
        "user.max_user_namespaces = 0",
        "-kernel.unprivileged_userns_clone = 0",
    ]


@pytest.mark.parametrize("value", [-1, 2**31, True])
def test_out_of_range_counts_are_refused(value: object) -> None:
    with pytest.raises(InvalidInput) as err:
        body(max_user_namespaces=value)
    assert "runtime.max_user_namespaces" in str(err.value)


def apply_in_namespace(tool: List[str], conf: Path) -> Dict[str, str]:
    """Apply `conf` in a fresh user+net namespace; return the counts seen there and stderr."""
    script = (
        '"$@" >/dev/null 2>"$TMPERR"; echo "rc=$?"; '
        "cat /proc/sys/user/max_user_namespaces /proc/sys/user/max_net_namespaces"
    )
    err = conf.with_suffix(".err")
    out = subprocess.run(
        [UNSHARE or "unshare", "--user", "--map-root-user", "--net", "sh", "-c", script, "sh"]
        + tool
        + [str(conf)],
        env={**os.environ, "TMPERR": str(err)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return {"rc": out[0], "user": out[1], "net": out[2], "stderr": err.read_text()}


@needs_ns
def test_procps_applies_the_file(tmp_path: Path) -> None:
    before = HOST_FILE.read_text()
    conf = tmp_path / "90-hpcpolicy.conf"
    conf.write_bytes(
        sysctl.render(policy(max_user_namespaces=1234, max_net_namespaces=5))[sysctl.PATH]
    )
    # -e: procps < 4.0.3 reports the '-' key that is absent on non-Debian kernels
    seen = apply_in_namespace([SYSCTL or "sysctl", "-e", "-p"], conf)
    assert (seen["rc"], seen["user"], seen["net"]) == ("rc=0", "1234", "5")
    assert HOST_FILE.read_text() == before


@needs_ns
@pytest.mark.skipif(not os.access(SYSTEMD_SYSCTL, os.X_OK), reason="systemd-sysctl not installed")
def test_systemd_sysctl_applies_the_file_and_honours_the_dash(tmp_path: Path) -> None:
    conf = tmp_path / "90-hpcpolicy.conf"
    conf.write_bytes(sysctl.render(policy(max_user_namespaces=4321))[sysctl.PATH])
    seen = apply_in_namespace([SYSTEMD_SYSCTL], conf)
    assert (seen["rc"], seen["user"]) == ("rc=0", "4321")
    if not Path("/proc/sys/kernel/unprivileged_userns_clone").exists():
        assert "unprivileged_userns_clone" not in seen["stderr"]  # '-': silently skipped


@needs_ns
def test_procps_without_dash_would_fail_on_this_kernel(tmp_path: Path) -> None:
    """Why the leading '-' and `-e` matter: the Debian key is absent on upstream kernels."""
    if Path("/proc/sys/kernel/unprivileged_userns_clone").exists():
        pytest.skip("this kernel has kernel.unprivileged_userns_clone")
    conf = tmp_path / "plain.conf"
    conf.write_text("kernel.unprivileged_userns_clone = 1\n")
    seen = apply_in_namespace([SYSCTL or "sysctl", "-p"], conf)
    assert seen["rc"] != "rc=0"
