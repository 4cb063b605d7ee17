"""`hpcpolicy node doctor` on crafted node roots: every check both OK and FAIL (or WARN)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest
from node_fixtures import BASE_TREE, REQUIREMENTS, Deploy, deploy, node_root

from hpcpolicy.node.doctor import FAIL, OK, WARN, Check, DoctorOptions, doctor
from hpcpolicy.node.state import STATE_FILE
from hpcpolicy.node.sync import SyncOptions, sync

__all__ = ["deploy", "node_root"]


class Node:
    def __init__(self, root: Path, proc: Path, deploy: Deploy) -> None:
        self.root, self.proc, self.deploy = root, proc, deploy

    def write(self, rel: str, data: str, mode: int = 0o644) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data)
        os.chmod(path, mode)
        return path

    def proc_value(self, key: str, value: str) -> None:
        path = self.proc.joinpath(*key.split("."))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")

    def checks(self, **kw: Any) -> Dict[str, Check]:
        opts = DoctorOptions(root=str(self.root), proc_sys=str(self.proc), **kw)
        return {c.name: c for c in doctor(opts)}


@pytest.fixture
def node(tmp_path: Path, deploy: Deploy, node_root: Path) -> Node:
    """A healthy node: synced, bind source present, shadow configured, kernel as wanted."""
    deploy.publish()
    sync(SyncOptions(str(deploy.root), str(node_root)))
    n = Node(node_root, tmp_path / "proc_sys", deploy)
    (node_root / "scratch").mkdir()
    for name in ("newuidmap", "newgidmap"):
        n.write(f"usr/bin/{name}", "#!/bin/sh\n", 0o4755)
    n.write("usr/sbin/useradd", "#!/bin/sh\n", 0o755)
    n.write("etc/login.defs", "UID_MIN 1000\nSUB_UID_COUNT 0\nSUB_GID_COUNT\t0 # hpcpolicy\n")
    n.write("etc/nsswitch.conf", "passwd: files\ngroup: files\n# subid: sss\n")
    n.write("etc/containers/registries.conf.d/.keep", "")
    n.write("usr/libexec/apptainer/bin/starter", "", 0o755)
    n.proc_value("user.max_user_namespaces", "15000")
    return n


def test_healthy_node_all_ok(node: Node) -> None:
    checks = node.checks()
    bad = [c.line() for c in checks.values() if c.status != OK]
    assert bad == []
    assert set(checks) == {
        "generation", "installed-files", "bind-sources", "sysctl user.max_user_namespaces",
        "user-namespaces", "newuidmap", "newgidmap", "setuid-starter", "nsswitch-subid",
        "login-defs", "registries-drop-ins", "user-policy-json", "apparmor-userns",
        "deploy-owner", "signatures", "pending-steps"}


def _nsswitch_sss(n: Node) -> None:
    n.write("etc/nsswitch.conf", "passwd: files\nsubid: sss\n")


def _login_defs(n: Node) -> None:
    n.write("etc/login.defs", "SUB_UID_COUNT 65536\nSUB_GID_COUNT 0\n")


def _login_defs_default(n: Node) -> None:
    n.write("etc/login.defs", "UID_MIN 1000\n")


def _dropin(n: Node) -> None:
    n.write("etc/containers/registries.conf.d/50-mirror.conf",
            '[[registry]]\nprefix = "docker.io"\nlocation = "mirror.example.org"\n')


def _dropin_aliases(n: Node) -> None:
    n.write("etc/containers/registries.conf.d/000-shortnames.conf",
            '[aliases]\n"ubuntu" = "docker.io/library/ubuntu"\n')


def _dropin_fifo(n: Node) -> None:
    """A FIFO planted as a drop-in: the doctor used to block on it for ever."""
    os.mkfifo(n.root / "etc/containers/registries.conf.d/60-fifo.conf")


def _suid_starter(n: Node) -> None:
    n.write("usr/libexec/apptainer/bin/starter-suid", "", 0o4755)


def _missing_bind(n: Node) -> None:
    (n.root / "scratch").rmdir()


def _sysctl_off(n: Node) -> None:
    n.proc_value("user.max_user_namespaces", "0")


def _newuidmap_not_setuid(n: Node) -> None:
    os.chmod(n.root / "usr/bin/newuidmap", 0o755)


def _newgidmap_writable(n: Node) -> None:
    os.chmod(n.root / "usr/bin/newgidmap", 0o4775)


def _newuidmap_missing(n: Node) -> None:
    (n.root / "usr/bin/newuidmap").unlink()


def _skel_policy(n: Node) -> None:
    n.write("etc/skel/.config/containers/policy.json", "{}")


def _home_policy(n: Node) -> None:
    n.write("home/alice/.config/containers/policy.json", "{}")


def _apparmor(n: Node) -> None:
    n.proc_value("kernel.apparmor_restrict_unprivileged_userns", "1")


def _apparmor_profile(n: Node) -> None:
    _apparmor(n)
    n.write("etc/apparmor.d/apptainer", "profile apptainer flags=(unconfined) { userns, }\n")


def _tampered_file(n: Node) -> None:
    (n.root / "etc/subuid").write_bytes(b"0:0:1\n")


def _no_state(n: Node) -> None:
    (n.root / STATE_FILE).unlink()


def _debian_clone(n: Node) -> None:
    n.proc_value("kernel.unprivileged_userns_clone", "0")


def _bind_private(n: Node) -> None:
    os.chmod(n.root / "scratch", 0o700)


def _bind_group_only(n: Node) -> None:
    os.chmod(n.root / "scratch", 0o750)



BREAKAGES: List[Any] = [
    (_nsswitch_sss, "nsswitch-subid", FAIL, "subid: sss"),
    (_login_defs, "login-defs", FAIL, "SUB_UID_COUNT 65536"),
    (_login_defs_default, "login-defs", FAIL, "shadow's default"),
    (_dropin, "registries-drop-ins", FAIL, "50-mirror.conf"),
    (_dropin_aliases, "registries-drop-ins", WARN, "000-shortnames.conf"),
    (_dropin_fifo, "registries-drop-ins", FAIL, "60-fifo.conf"),
    (_suid_starter, "setuid-starter", FAIL, "starter-suid"),
    (_missing_bind, "bind-sources", FAIL, "/scratch"),
    (_bind_private, "bind-sources", FAIL, "/scratch (directory mode 0700"),
    (_bind_group_only, "bind-sources", WARN, "/scratch (directory mode 0750"),
    (_sysctl_off, "sysctl user.max_user_namespaces", FAIL, "is 0, policy wants 15000"),
    (_sysctl_off, "user-namespaces", FAIL, "is 0"),
    (_debian_clone, "user-namespaces", FAIL, "unprivileged_userns_clone"),
    (_newuidmap_not_setuid, "newuidmap", FAIL, "neither setuid nor"),
    (_newgidmap_writable, "newgidmap", FAIL, "writable by group"),
    (_newuidmap_missing, "newuidmap", FAIL, "not installed"),
    (_skel_policy, "user-policy-json", FAIL, "/etc/skel"),
    (_home_policy, "user-policy-json", WARN, "/home/alice"),
    (_apparmor, "apparmor-userns", FAIL, "apparmor_restrict_unprivileged_userns = 1"),
    (_apparmor_profile, "apparmor-userns", WARN, "apptainer"),
    (_tampered_file, "installed-files", FAIL, "/etc/subuid"),
    (_no_state, "generation", FAIL, "never ran"),
]


@pytest.mark.parametrize(("breakage", "name", "status", "needle"), BREAKAGES,
                         ids=[b[0].__name__.strip("_") for b in BREAKAGES])
def test_each_check_fails(node: Node, breakage: Callable[[Node], None], name: str, status: str,
                          needle: str) -> None:
    breakage(node)
    checks = node.checks()
    check = checks[name]
    assert check.status == status, check.line()
    assert needle in check.detail, check.line()
    if status == FAIL:
        assert check.remedy and " — " in check.line()
    others = [c.line() for c in checks.values() if c.status != OK and c.name != name]
    expected_others = {"_sysctl_off": 1, "_no_state": 1}.get(breakage.__name__, 0)
    assert len(others) == expected_others, others


def test_setuid_allowed_by_policy(tmp_path: Path, deploy: Deploy, node_root: Path) -> None:
    deploy.publish(requirements={"setuid_allowed": True, "subid_enabled": False,
                                 "runtimes": ["apptainer"]})
    sync(SyncOptions(str(deploy.root), str(node_root)))
    (node_root / "usr/libexec/apptainer/bin").mkdir(parents=True)
    (node_root / "usr/libexec/apptainer/bin/starter-suid").write_text("")
    os.chmod(node_root / "usr/libexec/apptainer/bin/starter-suid", 0o4755)
    checks = {c.name: c for c in doctor(DoctorOptions(str(node_root),
                                                      proc_sys=str(tmp_path / "none")))}
    assert checks["setuid-starter"].status == OK
    assert checks["newuidmap"].status == OK  # sub-IDs disabled: not needed
    assert checks["login-defs"].status == OK
    assert "not managed" in checks["registries-drop-ins"].detail


def test_from_deploy_root_compares_with_current(node: Node) -> None:
    checks = node.checks(deploy_root=str(node.deploy.root))
    assert checks["generation"].status == OK
    newer = node.deploy.publish({"default": dict(BASE_TREE, **{"etc/subuid": b""})})
    checks = node.checks(deploy_root=str(node.deploy.root))
    assert checks["generation"].status == FAIL and newer in checks["generation"].detail
    assert checks["installed-files"].status == FAIL
    assert "/etc/subuid" in checks["installed-files"].detail


def test_from_unsafe_deploy_root(node: Node) -> None:
    os.chmod(node.deploy.root, 0o777)
    checks = node.checks(deploy_root=str(node.deploy.root))
    assert checks["generation"].status == FAIL and "writable" in checks["generation"].detail


def test_cli_doctor(cli: Any, node: Node) -> None:
    """Through the CLI the live /proc/sys is read; the exit code follows the FAIL lines."""
    res = cli("node", "doctor", "--root", node.root, "--format", "json")
    doc = json.loads(res.out)
    assert doc["changed"] is False and {"checks", "failed", "msg"} <= set(doc)
    statuses = [c["status"] for c in doc["checks"]]
    assert set(statuses) <= {OK, WARN, FAIL}
    assert res.rc == (1 if FAIL in statuses else 0) and doc["failed"] == (res.rc == 1)
    _nsswitch_sss(node)
    res = cli("node", "doctor", "--root", node.root)
    assert res.rc == 1
    line = next(x for x in res.out.splitlines() if x.startswith("FAIL nsswitch-subid:"))
    assert "delete the subid: line" in line
    assert res.out.rstrip().splitlines()[-1].endswith("warning(s)")


def test_home_scan_is_bounded(node: Node) -> None:
    for i in range(5):
        node.write(f"home/u{i}/.config/containers/policy.json", "{}")
    checks = node.checks(home_limit=2)
    assert checks["user-policy-json"].status == WARN
    assert checks["user-policy-json"].detail.startswith(("1 user", "2 user"))


def test_optional_sysctl_missing_from_kernel_is_ok(tmp_path: Path, deploy: Deploy,
                                                   node_root: Path) -> None:
    """A `-key` line (kernel.unprivileged_userns_clone) may be absent; a plain key may not."""
    reqs = dict(REQUIREMENTS, sysctls={"user.max_user_namespaces": "15000",
                                       "kernel.unprivileged_userns_clone": "1",
                                       "user.max_net_namespaces": "0"},
                sysctls_optional=["kernel.unprivileged_userns_clone"])
    deploy.publish(requirements=reqs)
    sync(SyncOptions(str(deploy.root), str(node_root)))
    n = Node(node_root, tmp_path / "proc_sys", deploy)
    n.proc_value("user.max_user_namespaces", "15000")
    checks = n.checks()
    assert checks["sysctl kernel.unprivileged_userns_clone"].status == OK
    assert checks["sysctl user.max_net_namespaces"].status == FAIL


def test_sysctl_remedy_ignores_keys_the_kernel_lacks(node: Node) -> None:
    """procps 4 exits 1 on an optional `-key` the kernel lacks: the remedy must say -e."""
    _sysctl_off(node)
    check = node.checks()["sysctl user.max_user_namespaces"]
    assert "sysctl -e -p /etc/sysctl.d/90-hpcpolicy.conf" in check.remedy


def test_bind_source_behind_a_closed_directory(node: Node) -> None:
    (node.root / "scratch").rmdir()
    (node.root / "site" / "scratch").mkdir(parents=True)
    os.chmod(node.root / "site", 0o700)
    node.deploy.publish(requirements={**REQUIREMENTS,
                                      "bind_sources": {"default": ["/site/scratch"]}})
    sync(SyncOptions(str(node.deploy.root), str(node.root)))
    check = node.checks()["bind-sources"]
    assert check.status == FAIL, check.line()
    assert "its parent /site has mode 0700" in check.detail


def test_userns_off_by_policy_passes_a_correct_node(tmp_path: Path, deploy: Deploy,
                                                    node_root: Path) -> None:
    """runtime.user_namespaces = false: a node with user namespaces off is correct, and no
    remedy tells the admin to turn them on."""
    reqs = {**REQUIREMENTS, "sysctls": {"user.max_user_namespaces": "0",
                                        "kernel.unprivileged_userns_clone": "0"},
            "sysctls_optional": ["kernel.unprivileged_userns_clone"]}
    deploy.publish(requirements=reqs)
    sync(SyncOptions(str(deploy.root), str(node_root)))
    n = Node(node_root, tmp_path / "proc_sys", deploy)
    (node_root / "scratch").mkdir()
    for name in ("newuidmap", "newgidmap"):
        n.write(f"usr/bin/{name}", "#!/bin/sh\n", 0o4755)
    n.write("etc/containers/registries.conf.d/.keep", "")
    n.proc_value("user.max_user_namespaces", "0")
    n.proc_value("kernel.unprivileged_userns_clone", "0")
    n.proc_value("kernel.apparmor_restrict_unprivileged_userns", "1")
    checks = n.checks()
    bad = [c.line() for c in checks.values() if c.status != OK]
    assert bad == []
    assert checks["user-namespaces"].status == OK
    assert not any("15000" in c.remedy or "= 0" in c.remedy for c in checks.values())
    n.proc_value("user.max_user_namespaces", "15000")  # drifted back on: the sysctl check says so
    again = n.checks()
    assert again["sysctl user.max_user_namespaces"].status == FAIL
    assert "policy wants 0" in again["sysctl user.max_user_namespaces"].detail
