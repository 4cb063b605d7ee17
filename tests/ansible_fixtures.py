"""Run the hpcpolicy.site collection under the real `ansible-playbook` (Debian ansible-core).

Everything is local and offline: `hosts: localhost`, `connection: local`, the collection found
through ANSIBLE_COLLECTIONS_PATH = the repository root, Ansible's state in the test's tmp dir.
The modules run on `ansible_python_interpreter` = this test's interpreter (the project venv,
which imports hpcpolicy but has no Ansible: AnsiballZ ships what the module needs), or on the
system Python for the CLI-fallback tests.

Playbooks are written as JSON (YAML's subset), so no YAML library is needed. Each play runs
one task, whose result Ansible's own `tree` callback saves (a file per host, last result): no
extra task is run, and the json callback is avoided because it lives in ansible.posix, which a
bare ansible-core install lacks.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

import pytest

from tests.conftest import REPO

SYSTEM_PYTHON = "/usr/bin/python3"
VENV_CLI = str(Path(sys.executable).parent / "hpcpolicy")
# a PATH without the venv: the fallback must be asked for, or fail, not stumble on it
PLAIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
RECAP = re.compile(r"^localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)",
                   re.MULTILINE)
FAILED = re.compile(r"^fatal: \[localhost\]: FAILED! => (\{.*\})$", re.MULTILINE)


@dataclass
class PlayRun:
    """One ansible-playbook run: exit code, output, recap counters and the saved results."""

    rc: int
    out: str
    err: str
    result: Dict[str, Any] = field(default_factory=dict)

    @property
    def recap(self) -> Dict[str, int]:
        found = RECAP.findall(self.out)
        assert found, f"no PLAY RECAP in:\n{self.out}\n{self.err}"
        ok, changed, unreachable, failed = (int(v) for v in found[-1])
        return {"ok": ok, "changed": changed, "unreachable": unreachable, "failed": failed}

    @property
    def failure(self) -> Dict[str, Any]:
        """The failed task's result, as Ansible printed it."""
        found = FAILED.findall(self.out)
        assert found, f"no failed task in:\n{self.out}\n{self.err}"
        printed = dict(json.loads(found[-1]))
        assert printed == self.result, "the tree callback saved another result"
        return printed

    def show(self) -> str:
        return f"rc={self.rc}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


class Ansible:
    """Writes an inventory and playbooks in `tmp`, runs them, collects the results."""

    def __init__(self, tmp: Path, interpreter: str = sys.executable) -> None:
        self.tmp = tmp
        self.count = 0
        (tmp / "ansible-home").mkdir(exist_ok=True)
        self.inventory = tmp / "inventory.ini"
        self.inventory.write_text(
            f"localhost ansible_connection=local ansible_python_interpreter={interpreter}\n")

    def env(self, tree: Path) -> Dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
        home = self.tmp / "ansible-home"
        env.update({
            "PATH": PLAIN_PATH,
            "HOME": str(home),
            "LC_ALL": "C.UTF-8",
            "ANSIBLE_COLLECTIONS_PATH": str(REPO),
            "ANSIBLE_HOME": str(home),
            "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
            "ANSIBLE_REMOTE_TEMP": str(home / "remote-tmp"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_PIPELINING": "1",  # no module file in a remote tmp: ~0.3 s less per run
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_LOCALHOST_WARNING": "0",
            "ANSIBLE_DEPRECATION_WARNINGS": "0",
            "ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.tree",
            "ANSIBLE_CALLBACK_TREE_DIR": str(tree),
        })
        return env

    def play(self, task: Dict[str, Any], *flags: str,
             module_defaults: Optional[Dict[str, Any]] = None) -> PlayRun:
        """Run one task on localhost; its result (as Ansible registered it) comes back."""
        self.count += 1
        tree = self.tmp / f"results-{self.count}"
        book = self.tmp / f"play-{self.count}.json"
        play: Dict[str, Any] = {"hosts": "localhost", "gather_facts": False, "tasks": [task]}
        if module_defaults:
            play["module_defaults"] = module_defaults
        book.write_text(json.dumps([play], indent=1))
        proc = subprocess.run(
            [ansible_playbook(), "-i", str(self.inventory), str(book), *flags],
            cwd=self.tmp, env=self.env(tree), capture_output=True, text=True, timeout=180,
            check=False)
        saved = tree / "localhost"
        result = json.loads(saved.read_text()) if saved.exists() else {}
        return PlayRun(proc.returncode, proc.stdout, proc.stderr, result)


def ansible_playbook() -> str:
    path = shutil.which("ansible-playbook", path=PLAIN_PATH)
    if path is None:
        pytest.skip("ansible-playbook not installed (apt-get install ansible-core)")
    return path


@pytest.fixture
def ansible(tmp_path: Path) -> Ansible:
    """Playbooks whose modules run on this venv's Python (hpcpolicy importable)."""
    ansible_playbook()
    return Ansible(tmp_path)


@pytest.fixture
def ansible_system_python(tmp_path: Path) -> Ansible:
    """Playbooks whose modules run on the system Python, which cannot import hpcpolicy."""
    ansible_playbook()
    if not os.path.exists(SYSTEM_PYTHON):
        pytest.skip(f"{SYSTEM_PYTHON} missing")
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import hpcpolicy"], capture_output=True,
                           cwd="/", check=False)
    if probe.returncode == 0:
        pytest.skip(f"{SYSTEM_PYTHON} imports hpcpolicy: the fallback cannot be exercised")
    (tmp_path / "system-python").mkdir()
    return Ansible(tmp_path / "system-python", interpreter=SYSTEM_PYTHON)


def apply_task(site: Path, **options: Any) -> Dict[str, Any]:
    return {"name": "apply", "hpcpolicy.site.hpcpolicy_apply": dict(site=str(site), **options)}


def sync_task(deploy_root: Path, root: Path, **options: Any) -> Dict[str, Any]:
    opts: Dict[str, Any] = {"from": str(deploy_root), "root": str(root), "reload": False}
    opts.update(options)
    return {"name": "sync", "hpcpolicy.site.hpcpolicy_node_sync": opts}


def generation_of(deploy_root: Path, link: str = "current") -> Optional[str]:
    path = deploy_root / link
    return os.path.basename(os.readlink(path)) if path.is_symlink() else None
