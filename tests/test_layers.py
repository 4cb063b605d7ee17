"""The import layers the README promises, read from the source with `ast` (nothing is imported).

Data flows down the README's layout table and imports point down it: a package may import the
foundation modules, itself and the packages listed before it, never one after it (imports inside
functions count too). `deploy` and `node` are siblings: neither imports the other, and `node`
imports only `generation` (a node never needs the publisher's code).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Dict, List, Set

from scripts.structure import circles, graph

REPO = Path(__file__).resolve().parent.parent

FOUNDATION = {"hpcpolicy", "hpcpolicy.errors", "hpcpolicy.fsutil", "hpcpolicy.gcpause",
              "hpcpolicy.interrupt"}
# rank of each package; equal ranks are siblings that must not import each other
LAYERS: Dict[str, int] = {
    "policy": 1,
    "directory": 2,
    "images": 3,
    "subid": 4,
    "render": 5,
    "generation": 6,
    "access": 6,
    "deploy": 7,
    "node": 7,
    "fleet": 7,
    "audit": 8,
    "cli": 9,
    "__main__": 10,
}
# packages a package may use beyond the rank rule's limit (none) and below it (all, unless listed)
ONLY: Dict[str, Set[str]] = {"node": {"generation"}, "fleet": {"generation"}}


def _layer(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else ""


def violations(root: Path) -> List[str]:
    """Every import that breaks the layer order, as `importer -> imported (why)`."""
    found: List[str] = []
    for module, targets in sorted(graph(str(root)).items()):
        if module in FOUNDATION:
            bad = sorted(t for t in targets if t not in FOUNDATION)
            found += [f"{module} -> {t} (foundation modules import nothing above them)"
                      for t in bad]
            continue
        here = _layer(module)
        assert here in LAYERS, f"{module}: package not in the layer table"
        for target in sorted(targets):
            if target in FOUNDATION:
                continue
            there = _layer(target)
            if there == here:
                continue
            if LAYERS[there] > LAYERS[here]:
                found.append(f"{module} -> {target} (points up: {there} is above {here})")
            elif LAYERS[there] == LAYERS[here]:
                found.append(f"{module} -> {target} (siblings {here} and {there})")
            elif here in ONLY and there not in ONLY[here]:
                found.append(f"{module} -> {target} ({here} imports only {sorted(ONLY[here])})")
    return found


def test_imports_point_down_the_layers() -> None:
    assert violations(REPO) == []


def test_no_import_circles() -> None:
    """Imports that run (those under `if TYPE_CHECKING:` do not) form no circle."""
    assert circles(graph(str(REPO), runtime=True)) == []


def test_every_package_has_a_layer() -> None:
    packages = {p.name for p in (REPO / "hpcpolicy").iterdir()
                if p.is_dir() and (p / "__init__.py").exists()}
    assert packages <= set(LAYERS)


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "hpcpolicy", tmp_path / "hpcpolicy",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)


def test_an_upward_import_is_caught(tmp_path: Path) -> None:
    """The check itself: a policy module importing render, even inside a function, fails it."""
    root = _copy(tmp_path)
    _append(root / "hpcpolicy/policy/paths.py",
            "\n\ndef _late() -> None:\n    from hpcpolicy.render.header import header  # noqa\n")
    assert violations(root) == [
        "hpcpolicy.policy.paths -> hpcpolicy.render.header (points up: render is above policy)"
    ]


def test_a_circle_and_a_node_import_are_caught(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    _append(root / "hpcpolicy/render/header.py", "\nimport hpcpolicy.render.tree  # noqa\n")
    _append(root / "hpcpolicy/node/state.py", "\nfrom hpcpolicy.subid import model  # noqa\n")
    (circle,) = circles(graph(str(root), runtime=True))
    assert {"hpcpolicy.render.header", "hpcpolicy.render.tree"} <= set(circle)
    assert violations(root) == [
        "hpcpolicy.node.state -> hpcpolicy.subid.model (node imports only ['generation'])"
    ]
