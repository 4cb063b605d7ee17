"""Every command module `hpcpolicy/cli/cmd_*.py` is a command `hpcpolicy --help` lists and runs.

A module left out of the CLI's command list is dead code a user cannot reach, and nothing else
notices: its own tests may call its `run` directly. The modules are found on disk, the names
they register by calling their `add_parser`, and the command list is read from the installed
console script's real `--help`.
"""

from __future__ import annotations

import argparse
import importlib
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

import hpcpolicy.cli
from hpcpolicy.cli import main as cli_main

CLI_DIR = Path(hpcpolicy.cli.__file__).resolve().parent
MODULES = sorted(p.stem for p in CLI_DIR.glob("cmd_*.py"))


def registered(module_name: str) -> List[str]:
    """The command name(s) a cmd module registers, by running its `add_parser` on a bare
    parser (what it names, not what its file is called)."""
    module = importlib.import_module(f"hpcpolicy.cli.{module_name}")
    sub = argparse.ArgumentParser().add_subparsers()
    module.add_parser(sub, argparse.ArgumentParser(add_help=False))
    return sorted(sub.choices)


def listed(help_text: str) -> List[str]:
    """The command names in the COMMAND section of the top-level help."""
    section = help_text.split("\n  COMMAND\n", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^    (\S+)", section, flags=re.M)


def unreachable(help_text: str) -> Dict[str, List[str]]:
    """cmd module -> the names it registers that `--help` does not list."""
    shown = set(listed(help_text))
    missing = {m: [n for n in registered(m) if n not in shown] for m in MODULES}
    return {m: names for m, names in missing.items() if names}


def _console_help() -> str:
    script = Path(sys.executable).parent / "hpcpolicy"
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "hpcpolicy"]
    done = subprocess.run(argv + ["--help"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return done.stdout


def test_the_modules_are_found() -> None:
    assert len(MODULES) >= 12 and {"cmd_audit", "cmd_diff", "cmd_fleet"} <= set(MODULES)
    assert all(registered(m) for m in MODULES), "a cmd module that registers no command"


def test_every_cmd_module_is_in_the_top_level_help() -> None:
    text = _console_help()
    assert unreachable(text) == {}
    # and nothing listed comes from elsewhere (each listed name is some module's)
    assert sorted(listed(text)) == sorted(n for m in MODULES for n in registered(m))


@pytest.mark.parametrize("module", MODULES)
def test_every_command_runs_its_help(cli: Any, module: str) -> None:
    for name in registered(module):
        res = cli(name, "--help")
        assert res.rc == 0 and res.out.startswith(f"usage: hpcpolicy {name}"), res.err


def test_a_dropped_command_is_caught(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check itself: drop `diff` from the command list and it is reported."""
    monkeypatch.setattr(cli_main, "COMMAND_MODULES",
                        tuple(c for c in cli_main.COMMAND_MODULES if c != "diff"))
    res = cli("--help")
    assert res.rc == 0
    assert unreachable(res.out) == {"cmd_diff": ["diff"]}
