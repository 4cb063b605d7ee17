"""`hpcpolicy_node_sync` and `hpcpolicy_node_doctor` under the real ansible-playbook.

A real site is published with the CLI, then synced into a tmp `root` (never the host's /etc;
`reload: false`, and sysctl is never applied outside `/` anyway). The fallback tests run the
modules on the system Python, which cannot import hpcpolicy: with `executable` they drive the
CLI and give the same result; without, the task fails naming the interpreter.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any, Dict, Tuple

import pytest
from node_fixtures import BASE_TREE, Deploy

from hpcpolicy.deploy.store import ensure_layout
from tests.ansible_fixtures import (
    VENV_CLI,
    Ansible,
    ansible,
    ansible_system_python,
    apply_task,
    generation_of,
    sync_task,
)
from tests.test_e2e_admin import make_site

__all__ = ["ansible", "ansible_system_python"]  # fixtures, imported for pytest


@pytest.fixture
def published(cli: Any, tmp_path: Path) -> Tuple[Path, Path]:
    """(deploy root holding one generation of the demo site, an empty node root)."""
    site = make_site(tmp_path, make_root=False)
    assert cli("apply", site, "--init").rc == 0
    root = tmp_path / "node"
    root.mkdir()
    return tmp_path / "shared", root


def tree_files(deploy_root: Path) -> Dict[str, bytes]:
    tree = deploy_root / "current" / "tree"
    return {str(p.relative_to(tree)): p.read_bytes() for p in tree.rglob("*") if p.is_file()}


def test_sync_check_then_install_then_idempotent(ansible: Ansible,
                                                 published: Tuple[Path, Path]) -> None:
    shared, root = published
    dry = ansible.play(sync_task(shared, root), "--check", "--diff")
    assert dry.rc == 0, dry.show()
    assert dry.recap["changed"] == 1
    assert dry.result["check"] is True
    assert f"+++ after: {root}/etc/subuid" in dry.out
    assert list(root.iterdir()) == [], "check mode wrote under root"

    real = ansible.play(sync_task(shared, root))
    assert real.rc == 0, real.show()
    assert real.recap["changed"] == 1
    result = real.result
    assert result["generation"] == generation_of(shared)
    assert result["class"] == "default"
    assert result["changes"] == dry.result["changes"]
    assert any("--migrate-users" in n for n in result["notes"])
    for rel, data in tree_files(shared).items():
        installed = root / rel
        assert installed.read_bytes() == data, rel
        assert stat.S_IMODE(installed.stat().st_mode) == 0o644
    state = json.loads((root / "var/lib/hpcpolicy/installed.json").read_text())
    assert state["generation"] == result["generation"]

    again = ansible.play(sync_task(shared, root))
    assert again.rc == 0, again.show()
    assert again.recap["changed"] == 0
    assert again.result["changes"] == []
    assert "up to date" in again.result["msg"]


def test_local_edit_restored_tampered_generation_refused(ansible: Ansible, cli: Any,
                                                         published: Tuple[Path, Path]) -> None:
    shared, root = published
    assert cli("node", "sync", "--from", shared, "--root", root, "--no-reload").rc == 0
    subuid = root / "etc/subuid"
    good = subuid.read_bytes()
    subuid.write_bytes(good + b"6666:100000:65536\n")

    fixed = ansible.play(sync_task(shared, root), "--diff")
    assert fixed.rc == 0, fixed.show()
    assert fixed.result["changes"] == [{"path": "etc/subuid", "action": "modified"}]
    assert any("locally modified" in n for n in fixed.result["notes"])
    assert "-6666:100000:65536" in fixed.out
    assert subuid.read_bytes() == good

    gen_file = shared / "current" / "tree" / "etc/apptainer/apptainer.conf"
    os.chmod(gen_file, 0o644)
    gen_file.write_bytes(gen_file.read_bytes() + b"allow setuid = yes\n")
    (root / "etc/apptainer/apptainer.conf").unlink()
    bad = ansible.play(sync_task(shared, root))
    assert bad.rc == 2, bad.show()
    failure = bad.failure
    assert "\n" not in failure["msg"] and "apptainer.conf" in failure["msg"]
    assert failure["generation"] == generation_of(shared)
    assert failure["changes"] == [] and failure["changed"] is False
    assert not (root / "etc/apptainer/apptainer.conf").exists(), "installed a tampered file"


def test_system_python_fails_clearly_or_runs_the_cli(ansible_system_python: Ansible,
                                                     tmp_path: Path) -> None:
    site = make_site(tmp_path, make_root=False)
    shared, root = tmp_path / "shared", tmp_path / "node"
    root.mkdir()
    play = ansible_system_python.play

    missing = play(apply_task(site))
    assert missing.rc == 2, missing.show()
    msg = missing.failure["msg"]
    assert "Failed to import the required Python library (hpcpolicy)" in msg
    assert "/usr/bin/python3" in msg and "executable" in msg
    assert not shared.exists()

    applied = play(apply_task(site, executable=VENV_CLI, init=True))
    assert applied.rc == 0, applied.show()
    assert applied.result["changed"] is True
    assert applied.result["generation"] == generation_of(shared)

    synced = play(sync_task(shared, root, executable=VENV_CLI), "--diff")
    assert synced.rc == 0, synced.show()
    assert synced.result["changed"] is True
    assert synced.result["generation"] == applied.result["generation"]
    assert f"+++ after: {root}/etc/subuid" in synced.out
    assert tree_files(shared)["etc/subuid"] == (root / "etc/subuid").read_bytes()


def test_doctor_library_and_cli_agree(ansible: Ansible, ansible_system_python: Ansible,
                                      cli: Any, published: Tuple[Path, Path]) -> None:
    shared, root = published
    assert cli("node", "sync", "--from", shared, "--root", root, "--no-reload").rc == 0
    expected = json.loads(cli("node", "doctor", "--root", root, "--from", shared,
                              "--format", "json").out)
    task: Dict[str, Any] = {"name": "doctor", "failed_when": False,
                            "hpcpolicy.site.hpcpolicy_node_doctor": {"root": str(root),
                                                                    "from": str(shared)}}
    lib = ansible.play(task, "--check")
    assert lib.rc == 0, lib.show()
    assert lib.recap["changed"] == 0
    assert lib.result["checks"] == expected["checks"]
    assert lib.result["msg"] == expected["msg"]
    status = {c["name"]: c["status"] for c in lib.result["checks"]}
    assert status["generation"] == status["installed-files"] == "OK", status

    task["hpcpolicy.site.hpcpolicy_node_doctor"]["executable"] = VENV_CLI
    via_cli = ansible_system_python.play(task)
    assert via_cli.rc == 0, via_cli.show()
    assert via_cli.result["checks"] == expected["checks"]
    assert via_cli.result["changed"] is False


def test_sync_settings_from_node_toml(ansible: Ansible, ansible_system_python: Ansible,
                                      published: Tuple[Path, Path], tmp_path: Path) -> None:
    """No `from`: both backends take the deploy root and the deploy owner from node.toml."""
    shared, root = published
    config = tmp_path / "node.toml"
    config.write_text(f'deploy_root = "{shared}"\ndeploy_owner = "root"\n')
    os.chmod(config, 0o644)
    task = {"name": "sync", "hpcpolicy.site.hpcpolicy_node_sync": {
        "config": str(config), "root": str(root), "reload": False}}
    lib = ansible.play(task)
    assert lib.rc == 0, lib.show()
    assert lib.result["generation"] == generation_of(shared) and lib.recap["changed"] == 1
    task["hpcpolicy.site.hpcpolicy_node_sync"]["executable"] = VENV_CLI
    via_cli = ansible_system_python.play(task)
    assert via_cli.rc == 0, via_cli.show()
    assert via_cli.result["generation"] == generation_of(shared)
    assert via_cli.recap["changed"] == 0


def test_module_defaults_through_the_action_group(ansible: Ansible,
                                                  published: Tuple[Path, Path]) -> None:
    """`module_defaults: group/hpcpolicy.site.hpcpolicy` (meta/runtime.yml action_groups)
    gives every hpcpolicy module its options once per play."""
    shared, root = published
    task = {"name": "sync", "hpcpolicy.site.hpcpolicy_node_sync": {}}
    defaults = {"group/hpcpolicy.site.hpcpolicy": {"from": str(shared), "root": str(root),
                                                   "reload": False}}
    run = ansible.play(task, module_defaults=defaults)
    assert run.rc == 0, run.show()
    assert run.recap["changed"] == 1 and run.result["generation"] == generation_of(shared)
    assert (root / "etc/subuid").exists()


def test_check_mode_first_rollout_would_install(ansible_system_python: Ansible,
                                                published: Tuple[Path, Path]) -> None:
    """In the check-mode run of a first rollout the install task did not run: the sync task
    reports what it would do instead of failing; the real run without hpcpolicy still fails."""
    shared, root = published
    task = sync_task(shared, root, executable="/opt/hpcpolicy-not-yet/bin/hpcpolicy")
    dry = ansible_system_python.play(task, "--check")
    assert dry.rc == 0, dry.show()
    assert dry.recap["changed"] == 1
    assert dry.result["msg"].startswith("would install") and dry.result["generation"] is None
    assert list(root.iterdir()) == []
    real = ansible_system_python.play(task)
    assert real.rc == 2 and real.recap["failed"] == 1, real.show()


FACE_KEYS = ("changed", "msg", "generation", "class", "class_reason", "channel",
             "check", "changes", "notes", "pending", "stale_userns")


def _console_sync(deploy_root: Path, root: Path) -> Dict[str, Any]:
    """`hpcpolicy node sync --format json` as the timer runs it: a fresh process of the console
    script (an idle sync is answered by its fast path, before argparse)."""
    proc = subprocess.run([VENV_CLI, "node", "sync", "--from", str(deploy_root), "--root",
                           str(root), "--no-reload", "--format", "json"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return dict(json.loads(proc.stdout))


def test_module_and_cli_answer_alike_idle_and_changed(ansible: Ansible, tmp_path: Path) -> None:
    """The module and the CLI make the same library call (`node.sync.sync`): on an idle node
    and on a changed generation they report the same, and leave the same files."""
    deploy = tmp_path / "deploy"
    ensure_layout(str(deploy))
    publisher = Deploy(deploy)
    publisher.publish()
    by_module, by_cli = tmp_path / "node-ansible", tmp_path / "node-cli"
    by_module.mkdir()
    by_cli.mkdir()
    for step in ("first install", "idle", "changed generation", "idle again"):
        if step == "changed generation":
            publisher.publish({"default": {**BASE_TREE, "etc/subuid": b"1001:600000:65536\n"}})
        play = ansible.play(sync_task(deploy, by_module))
        assert play.rc == 0, play.show()
        module, cli_doc = play.result, _console_sync(deploy, by_cli)
        for key in FACE_KEYS:
            mine, theirs = module.get(key), cli_doc.get(key)
            if isinstance(mine, str) and isinstance(theirs, str):  # the node roots differ
                mine, theirs = mine.replace(str(by_module), "ROOT"), theirs.replace(
                    str(by_cli), "ROOT")
            elif key == "notes":
                mine = [n.replace(str(by_module), "ROOT") for n in mine]
                theirs = [n.replace(str(by_cli), "ROOT") for n in theirs]
            assert mine == theirs, (step, key, mine, theirs)
        assert module["changed"] is (step in ("first install", "changed generation")), step
        assert installed(by_module) == installed(by_cli), step


def installed(root: Path) -> Dict[str, Tuple[int, bytes]]:
    """{path: (mode, bytes)} of what a sync put under the node root's etc/."""
    return {str(p.relative_to(root)): (p.lstat().st_mode, p.read_bytes())
            for p in sorted((root / "etc").rglob("*")) if p.is_file()}
