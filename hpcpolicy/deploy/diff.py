"""What an apply, rollback or promote changes: `changes` and `diff` of SPEC §3.

Trees of every node class are flattened into one path space: the default class keeps the node
path (`etc/subuid`), another class is prefixed `class/NAME/` (`class/gpu/etc/subuid`), the way
the generation lays them out minus the `tree/` level. So one list covers every class, and a
default-only site reads exactly like the files a node installs.

A file over 256 KiB (or not UTF-8) is summarised, not shown: a 30,000-user subuid is ~1 MB, and a
unified diff of it would drown the change that matters. Its changed lines are counted as a
multiset difference, which is linear in the file size (difflib is quadratic at worst).
"""

from __future__ import annotations

import difflib
import hashlib
from collections import Counter
from typing import Any, Dict, List, Mapping, Optional

from hpcpolicy.generation.naming import CLASS_DIR, DEFAULT_CLASS

MAX_DIFF_BYTES = 256 * 1024
Trees = Mapping[str, Mapping[str, bytes]]


def flatten(trees: Trees) -> Dict[str, bytes]:
    """{class: {path: bytes}} -> {flat path: bytes} (see the module docstring)."""
    out: Dict[str, bytes] = {}
    for node_class in sorted(trees):
        prefix = "" if node_class == DEFAULT_CLASS else f"{CLASS_DIR}/{node_class}/"
        for path, data in trees[node_class].items():
            out[prefix + path] = data
    return out


def changes(before: Mapping[str, bytes], after: Mapping[str, bytes]) -> List[Dict[str, str]]:
    """[{path, action}] with action added / modified / removed, sorted by path."""
    out: List[Dict[str, str]] = []
    for path in sorted(set(before) | set(after)):
        if path not in before:
            out.append({"path": path, "action": "added"})
        elif path not in after:
            out.append({"path": path, "action": "removed"})
        elif before[path] != after[path]:
            out.append({"path": path, "action": "modified"})
    return out


def _text(data: Optional[bytes]) -> Optional[str]:
    """The file as text, or None when it must be summarised (too big or not UTF-8)."""
    if data is None:
        return ""
    if len(data) > MAX_DIFF_BYTES:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _summary(data: Optional[bytes]) -> str:
    if data is None:
        return ""
    lines = len(data.splitlines())
    return f"({len(data)} bytes, {lines} lines, sha256 {hashlib.sha256(data).hexdigest()})"


def changed_lines(before: bytes, after: bytes) -> int:
    """Lines removed plus lines added, counted as a multiset difference."""
    old, new = Counter(before.splitlines()), Counter(after.splitlines())
    return sum((old - new).values()) + sum((new - old).values())


def diff_entry(path: str, before: Optional[bytes], after: Optional[bytes]) -> Dict[str, Any]:
    """{path, before, after} holding text, or a summary plus `changed_lines` for big files."""
    old, new = _text(before), _text(after)
    if old is not None and new is not None:
        return {"path": path, "before": old, "after": new}
    return {
        "path": path,
        "before": _summary(before),
        "after": _summary(after),
        "summarised": True,
        "changed_lines": changed_lines(before or b"", after or b""),
    }


def diff(before: Mapping[str, bytes], after: Mapping[str, bytes]) -> List[Dict[str, Any]]:
    """One diff entry per changed path."""
    return [diff_entry(c["path"], before.get(c["path"]), after.get(c["path"]))
            for c in changes(before, after)]


def unified(entries: List[Dict[str, Any]]) -> str:
    """The text-mode rendering: a unified diff per file, a one-line summary for big ones."""
    out: List[str] = []
    for entry in entries:
        path = entry["path"]
        if entry.get("summarised"):
            out.append(f"--- a/{path} {entry['before'] or '(absent)'}\n")
            out.append(f"+++ b/{path} {entry['after'] or '(absent)'}\n")
            out.append(f"@@ {entry['changed_lines']} changed lines (file over "
                       f"{MAX_DIFF_BYTES // 1024} KiB or not text: not shown) @@\n")
            continue
        lines = difflib.unified_diff(
            entry["before"].splitlines(keepends=True), entry["after"].splitlines(keepends=True),
            fromfile=f"a/{path}", tofile=f"b/{path}")
        for line in lines:
            out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)
