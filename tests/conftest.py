"""Shared fixtures. Area-specific fixtures live in tests/*_fixtures.py modules."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parent.parent


@dataclass
class CliResult:
    rc: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run `hpcpolicy ARGS...` in-process; returns rc, stdout, stderr."""
    from hpcpolicy.cli.main import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        rc = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(rc, captured.out, captured.err)

    return run


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (unshare, bind mounts)")


@pytest.fixture(autouse=True)
def _no_host_node_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads this machine's /etc/hpcpolicy/node.toml (tests name theirs with --config)."""
    from hpcpolicy.node import config

    monkeypatch.setattr(config, "DEFAULT_PATH", "/nonexistent/hpcpolicy/node.toml")
