"""What an apply, rollback or promote changes: its `changes` and `diff` fields.

Trees of every node class are flattened into one path space: the default class keeps the node
path (`etc/subuid`), another class is prefixed `class/NAME/` (`class/gpu/etc/subuid`), the way
the generation lays them out minus the `tree/` level. So one list covers every class, and a
default-only site reads exactly like the files a node installs.

Per-file diff entries and their text rendering are `generation.diff` (nodes share them).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, TypeVar

from hpcpolicy.generation.diff import diff_entry
from hpcpolicy.generation.naming import CLASS_DIR, DEFAULT_CLASS

T = TypeVar("T")


def flatten(trees: Mapping[str, Mapping[str, T]]) -> Dict[str, T]:
    """{class: {path: bytes or hash}} -> {flat path: same} (see the module docstring)."""
    out: Dict[str, T] = {}
    for node_class in sorted(trees):
        prefix = "" if node_class == DEFAULT_CLASS else f"{CLASS_DIR}/{node_class}/"
        for path, data in trees[node_class].items():
            out[prefix + path] = data
    return out


def changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> List[Dict[str, str]]:
    """[{path, action}] with action added / modified / removed, sorted by path (values are file
    contents or their hashes: anything compared by equality)."""
    out: List[Dict[str, str]] = []
    for path in sorted(set(before) | set(after)):
        if path not in before:
            out.append({"path": path, "action": "added"})
        elif path not in after:
            out.append({"path": path, "action": "removed"})
        elif before[path] != after[path]:
            out.append({"path": path, "action": "modified"})
    return out


def diff(before: Mapping[str, bytes], after: Mapping[str, bytes]) -> List[Dict[str, Any]]:
    """One diff entry per changed path."""
    return [diff_entry(c["path"], before.get(c["path"]), after.get(c["path"]))
            for c in changes(before, after)]
