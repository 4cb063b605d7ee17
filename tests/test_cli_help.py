"""`--help` of every command and subcommand: a description, examples, no internal documents,
SITE positional or --site, and never a default site."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, List, Tuple

import pytest

from hpcpolicy.cli.help import walk
from hpcpolicy.cli.main import build_parser

COMMANDS: List[Tuple[str, argparse.ArgumentParser]] = list(walk(build_parser()))


def test_every_command_is_walked() -> None:
    names = {name for name, _ in COMMANDS}
    assert {"apply", "subid revoke", "node sync", "audit"} <= names


@pytest.mark.parametrize("command", [name for name, _ in COMMANDS])
def test_help_has_description_and_examples(cli: Any, command: str) -> None:
    res = cli(*command.split(), "--help")
    assert res.rc == 0 and res.err == ""
    usage, _, rest = res.out.partition("\n\n")
    description = rest.split("\n\n")[0]
    assert usage.startswith("usage: hpcpolicy") and description.strip()
    assert not description.startswith(("positional arguments", "options"))
    examples = res.out.split("examples:\n", 1)[1]
    assert all(line.startswith("  hpcpolicy ") for line in examples.splitlines() if line)
    assert f"hpcpolicy {command}" in examples
    for word in ("SPEC", "§", "notes/", "`main`"):
        assert word not in res.out, f"{command} --help mentions {word}"


def test_top_level_help_has_examples(cli: Any) -> None:
    res = cli("--help")
    assert res.rc == 0 and "examples:\n  hpcpolicy validate site.toml" in res.out


@pytest.mark.parametrize("command", [name for name, parser in COMMANDS
                                     if any(a.dest == "site" and not a.option_strings
                                            for a in parser._actions)])
def test_positional_site_also_as_option(cli: Any, command: str, tmp_path: Path) -> None:
    """SITE or --site name the same file; neither is exit 2, never a default site."""
    missing = tmp_path / "nosuch.toml"
    extra = ["--out", str(tmp_path / "out")] if command == "render" else []
    as_option = cli(*command.split(), "--site", missing, *extra, "--format", "json")
    as_positional = cli(*command.split(), missing, *extra, "--format", "json")
    assert as_option.rc == as_positional.rc == 2
    assert json.loads(as_option.out)["msg"] == json.loads(as_positional.out)["msg"]
    assert "nosuch.toml" in json.loads(as_option.out)["msg"]
    bare = cli(*command.split(), *extra)
    assert bare.rc == 2 and "give the site file" in bare.err
    both = cli(*command.split(), missing, "--site", tmp_path / "other.toml", *extra)
    assert both.rc == 2 and "differ" in both.err


@pytest.mark.parametrize("argv", [["rollback"], ["status"], ["generations"], ["promote", "x"],
                                  ["subid", "list"], ["subid", "revoke", "alice"]])
def test_no_default_site(cli: Any, argv: List[str]) -> None:
    res = cli(*argv)
    assert res.rc == 2 and "give --site SITE or --deploy-root DIR" in res.err
