"""The README's first command: scripts/demo.sh runs the main job on the bundled demo site as an
ordinary user (no root, no LDAP), and is safe to run again."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parent.parent
NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"   # an interpreter an unprivileged user can run
IGNORE = shutil.ignore_patterns(".git", ".venv*", "demo-out", "__pycache__", "*.egg-info",
                                ".mypy_cache", ".ruff_cache", ".pytest_cache", "build", "dist")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None
    or subprocess.run([SYSTEM_PYTHON, "-c", "import ensurepip, venv"],
                      capture_output=True).returncode != 0,
    reason="needs root (to become an unprivileged user), setpriv and the system python3 with venv")


@pytest.fixture
def checkout() -> Iterator[Path]:
    """A fresh copy of the repository owned by an unprivileged user, under /tmp (a root-owned
    sticky parent): the demo builds its own .venv there, as on a fresh machine."""
    top = Path(tempfile.mkdtemp(prefix="hpcpolicy-demo-", dir="/tmp"))
    try:
        repo = top / "repo"
        shutil.copytree(REPO, repo, ignore=IGNORE, symlinks=True)
        for path in [top, *top.rglob("*")]:
            os.lchown(path, NOBODY, NOBODY)
        top.chmod(0o755)
        yield repo
    finally:
        shutil.rmtree(top, ignore_errors=True)


def run_demo(repo: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(repo), "LANG": "C.UTF-8",
           "PYTHON": SYSTEM_PYTHON, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    return subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
         "bash", "-c", "umask 022 && exec bash scripts/demo.sh"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=600)


def test_demo_runs_unprivileged_and_again(checkout: Path) -> None:
    first = run_demo(checkout)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Traceback" not in first.stdout + first.stderr
    out = checkout / "demo-out"
    current = out / "shared" / "current"
    assert (current / "manifest.json").is_file()
    published = (current / "tree" / "etc" / "subuid").read_bytes()
    assert published.count(b"\n") >= 1
    assert (out / "node" / "etc" / "subuid").read_bytes() == published
    assert "verdict: ALLOWED" in first.stdout
    generation = os.readlink(current)

    again = run_demo(checkout)
    assert again.returncode == 0, again.stderr[-3000:]
    assert os.readlink(current) == generation, "a second run must publish nothing"
    assert "no change" in again.stdout + again.stderr
