"""`node doctor` on a node of a class with enforcement settings, published by the real writer.

The site file is the one of test_enforcement_policy (setuid login class with Apptainer limits and
an ECL, a site image store, a read-only bind for Podman and Enroot); its trees and requirements
come from the real renderer and `requirements_of`, the node installs them with `node sync`, and
doctor checks the node root: image store (lock files, who may write), setuid starter, ECL and
limit directories, read-only binds with mounts below them (real mounts in a private mount
namespace).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import pytest
from node_fixtures import Deploy, deploy, node_root
from test_enforcement_policy import _full_site

from hpcpolicy.deploy.writer import requirements_of
from hpcpolicy.directory.model import Snapshot
from hpcpolicy.node import mountinfo
from hpcpolicy.node.doctor import FAIL, OK, Check, DoctorOptions, doctor
from hpcpolicy.node.enforce_checks import lock_files, weak_readonly_binds
from hpcpolicy.node.sync import SyncOptions, sync
from hpcpolicy.policy.load import load
from hpcpolicy.render.tree import render_all

__all__ = ["deploy", "node_root"]


class Node:
    def __init__(self, root: Path, proc: Path) -> None:
        self.root, self.proc = root, proc

    def checks(self, node_class: str) -> Dict[str, Check]:
        opts = DoctorOptions(root=str(self.root), proc_sys=str(self.proc), node_class=node_class)
        return {c.name: c for c in doctor(opts)}


def _store(root: Path, store: str, driver: str = "overlay") -> Path:
    path = root / store.lstrip("/")
    for lock in lock_files(str(path), driver):
        Path(lock).parent.mkdir(parents=True, exist_ok=True)
        Path(lock).write_text("")
    return path


@pytest.fixture
def node(tmp_path: Path, deploy: Deploy, node_root: Path) -> Node:
    (tmp_path / "site").mkdir()
    policy = load(str(_full_site(tmp_path / "site")))
    trees = render_all(policy, Snapshot(), [])
    deploy.publish(trees, requirements=requirements_of(policy, trees),
                   node_sets={"login": "login[1-2]"})
    sync(SyncOptions(str(deploy.root), str(node_root), node_class="login"))
    proc = tmp_path / "proc_sys"
    (proc / "user").mkdir(parents=True)
    (proc / "user" / "max_user_namespaces").write_text("0\n")
    return Node(node_root, proc)


def test_ecl_and_keyring_are_installed_on_the_class(node: Node) -> None:
    assert (node.root / "etc/apptainer/ecl.toml").is_file()
    assert (node.root / "etc/singularity/global-pgp-public").is_file()
    assert (node.root / "etc/containers/storage.conf").is_file()


def test_login_class_checks_fail_then_pass(node: Node) -> None:
    checks = node.checks("login")
    assert checks["user-namespaces"].status == OK  # off by the class's policy
    assert checks["sysctl user.max_user_namespaces"].status == OK
    assert checks["setuid-starter"].status == FAIL
    assert "no setuid starter" in checks["setuid-starter"].detail
    store = "image-store /shared/containers/vfs-store"
    assert checks[store].status == FAIL and "does not exist" in checks[store].detail
    assert checks["limit-container-paths"].status == FAIL
    assert checks["ecl-dirs"].status == FAIL
    # make the node right
    starter = node.root / "usr/libexec/apptainer/bin/starter-suid"
    starter.parent.mkdir(parents=True)
    starter.write_text("")
    starter.chmod(0o4755)
    _store(node.root, "/shared/containers/vfs-store", "vfs")
    (node.root / "shared/containers/signed").mkdir(parents=True, exist_ok=True)
    for dirpath in ("shared", "shared/containers", "shared/containers/vfs-store"):
        (node.root / dirpath).chmod(0o755)
    checks = node.checks("login")
    for name in ("setuid-starter", store, "limit-container-paths", "ecl-dirs"):
        assert checks[name].status == OK, checks[name].line()


def test_starter_must_be_root_4755(node: Node) -> None:
    starter = node.root / "usr/libexec/singularity/bin/starter-suid"
    starter.parent.mkdir(parents=True)
    starter.write_text("")
    starter.chmod(0o4775)
    check = node.checks("login")["setuid-starter"]
    assert check.status == FAIL and "4775" in check.detail


def test_store_without_lock_files_or_writable_fails(node: Node) -> None:
    path = _store(node.root, "/shared/containers/vfs-store", "vfs")
    for d in ("shared", "shared/containers", "shared/containers/vfs-store"):
        (node.root / d).chmod(0o755)
    os.unlink(path / "vfs-layers" / "layers.lock")
    check = node.checks("login")["image-store /shared/containers/vfs-store"]
    assert check.status == FAIL and "layers.lock is missing" in check.detail
    assert "touch" in check.remedy
    (path / "vfs-layers" / "layers.lock").write_text("")
    (node.root / "shared/containers").chmod(0o777)
    check = node.checks("login")["image-store /shared/containers/vfs-store"]
    assert check.status == FAIL and "/shared/containers is writable" in check.detail


def test_default_class_has_its_own_store_and_no_starter_needed(node: Node) -> None:
    checks = node.checks("default")
    assert checks["setuid-starter"].status == OK
    assert checks["image-store /shared/containers/store"].status == FAIL
    assert "limit-container-paths" not in checks


# ------------------------------------------------------------------ read-only binds

def test_mountinfo_parser_unescapes_and_finds_submounts() -> None:
    text = ("22 1 0:21 / / rw - ext4 /dev/root rw\n"
            "30 22 0:40 / /data rw - nfs srv:/data rw\n"
            "31 30 0:41 / /data/my\\040dir rw - tmpfs tmpfs rw\n"
            "32 22 0:42 / /database rw - tmpfs tmpfs rw\n")
    points = mountinfo.mount_points(text)
    assert points == ["/", "/data", "/data/my dir", "/database"]
    assert mountinfo.submounts("/data", points) == ["/data/my dir"]
    binds = [{"source": "/data", "target": "/data", "runtimes": ["podman", "enroot"]}]
    weak = weak_readonly_binds(binds, points)
    assert [(w["runtime"], w["submounts"]) for w in weak] == [
        ("podman", ["/data/my dir"]), ("enroot", ["/data/my dir"])]
    # a read-only bind of the submount itself, at the same place, closes it for that runtime
    binds.append({"source": "/data/my dir", "target": "/data/my dir", "runtimes": ["podman"]})
    assert [w["runtime"] for w in weak_readonly_binds(binds, points)] == ["enroot"]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root and unshare for a private mount namespace")
def test_doctor_names_a_real_submount_below_a_readonly_source(node: Node) -> None:
    data = node.root / "data"
    (data / "sub").mkdir(parents=True)
    script = ("mount -t tmpfs tmpfs \"$1\" && shift && exec \"$@\"")
    argv = [sys.executable, "-m", "hpcpolicy", "node", "doctor", "--root", str(node.root),
            "--class", "login", "--format", "json"]
    res = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                          "sh", str(data / "sub"), *argv],
                         capture_output=True, text=True, timeout=60, check=False)
    doc: Any = json.loads(res.stdout)
    bad = [c for c in doc["checks"] if c["name"].startswith("readonly-bind /data")]
    assert {c["name"] for c in bad} == {"readonly-bind /data (podman)",
                                        "readonly-bind /data (enroot)"}
    assert all(c["status"] == FAIL and "/data/sub" in c["detail"] for c in bad)
    # outside that namespace the mount does not exist: nothing to name
    check = node.checks("login")["readonly-binds"]
    assert check.status == OK


def test_store_below_a_root_sticky_parent_is_accepted(node: Node) -> None:
    """Like a deploy root: a root-owned sticky parent lets nobody replace the store."""
    _store(node.root, "/shared/containers/vfs-store", "vfs")
    (node.root / "shared").chmod(0o1777)
    for d in ("shared/containers", "shared/containers/vfs-store"):
        (node.root / d).chmod(0o755)
    check = node.checks("login")["image-store /shared/containers/vfs-store"]
    assert check.status == OK, check.line()
    (node.root / "shared").chmod(0o777)
    check = node.checks("login")["image-store /shared/containers/vfs-store"]
    assert check.status == FAIL and "/shared is writable" in check.detail
