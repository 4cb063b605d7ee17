"""What keeps the timer's idle `node sync` cheap: its path imports no typing, and the named
tuples it builds are typed for mypy under `if TYPE_CHECKING:` but built by
`collections.namedtuple` at run time; both definitions must stay the same tuple."""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
from node_fixtures import Deploy, deploy, node_root

from hpcpolicy.node.sync import SyncOptions, sync

__all__ = ["deploy", "node_root"]

REPO = Path(__file__).resolve().parent.parent
CONSOLE = str(Path(sys.executable).parent / "hpcpolicy")
TYPED_TUPLES = [("hpcpolicy.errors", "Problem", "_Problem"),
                ("hpcpolicy.node.config", "NodeConfig", "_NodeConfig"),
                ("hpcpolicy.node.options", "SyncOptions", "_SyncOptions")]


def typed_fields(module: Any, base: str) -> List[Tuple[str, Any]]:
    """(field, default or the `REQUIRED` marker) of `class BASE(NamedTuple)` in the module's
    `if TYPE_CHECKING:` block, defaults evaluated in the module's namespace."""
    tree = ast.parse(Path(module.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == base:
            out: List[Tuple[str, Any]] = []
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    default = ("REQUIRED" if item.value is None else
                               eval(compile(ast.Expression(item.value), "<default>", "eval"),
                                    vars(module)))
                    out.append((item.target.id, default))
            return out
    raise AssertionError(f"{module.__name__}: no class {base}")


@pytest.mark.parametrize(("module_name", "public", "base"), TYPED_TUPLES)
def test_runtime_named_tuple_equals_the_typed_one(module_name: str, public: str,
                                                  base: str) -> None:
    module = importlib.import_module(module_name)
    cls = getattr(module, public)
    runtime = [(f, cls._field_defaults.get(f, "REQUIRED")) for f in cls._fields]
    assert runtime == typed_fields(module, base)
    assert issubclass(cls, tuple) and cls.__name__ == public
    assert repr(cls(*["x"] * (len(cls._fields)))).startswith(f"{public}(")


def _idle_console(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-X", "importtime", CONSOLE, *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_idle_sync_imports_no_typing_and_no_full_sync(deploy: Deploy, node_root: Path) -> None:
    if not os.path.exists(CONSOLE):
        pytest.skip("no console script next to this interpreter")
    deploy.publish()
    sync(SyncOptions(str(deploy.root), str(node_root)))
    for fmt in ("json", "text"):
        run = _idle_console("node", "sync", "--from", str(deploy.root), "--root",
                            str(node_root), "--format", fmt)
        assert run.returncode == 0, run.stderr[-2000:]
        assert "nothing to do" in run.stdout
        imported = {line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines()}
        assert "hpcpolicy.node.idle" in imported
        assert not {"typing", "dataclasses", "argparse", "logging",
                    "hpcpolicy.node.full", "hpcpolicy.generation.verify"} & imported


def test_idle_answer_that_cannot_be_written_fails_as_the_cli_does(deploy: Deploy,
                                                                  node_root: Path) -> None:
    """The idle answer ends without the interpreter's teardown; a stdout that is full or
    closed is still reported (exit 1, one line), as by the full CLI."""
    if not os.path.exists(CONSOLE):
        pytest.skip("no console script next to this interpreter")
    deploy.publish()
    sync(SyncOptions(str(deploy.root), str(node_root)))
    argv = [CONSOLE, "node", "sync", "--from", str(deploy.root), "--root", str(node_root),
            "--format", "json"]
    results: Dict[str, Tuple[int, str]] = {}
    with open("/dev/full", "w") as full:
        proc = subprocess.run(argv, stdout=full, stderr=subprocess.PIPE, text=True,
                              timeout=60, check=False)
        results["full"] = (proc.returncode, proc.stderr)
    reader = subprocess.Popen(["true"], stdin=subprocess.PIPE)
    reader.wait()
    assert reader.stdin is not None
    proc = subprocess.run(argv, stdout=reader.stdin, stderr=subprocess.PIPE, text=True,
                          timeout=60, check=False)
    reader.stdin.close()
    results["closed pipe"] = (proc.returncode, proc.stderr)
    assert results["full"][0] == 1
    assert results["full"][1] == "hpcpolicy: cannot write to standard output: No space left on " \
                                 "device\n"
    assert results["closed pipe"] == (1, "")
