"""The `diff` entries of `--format json`, shared by publisher and nodes: `{path, before, after}`.

A file over 256 KiB (or not UTF-8) is summarised by size, line count and sha256, not shown: a
30,000-user subuid is ~1 MB, and a unified diff of it would drown the change that matters. Its
changed lines are counted as a multiset difference, linear in the file size (difflib can be
quadratic). Lives in `generation/` because both `deploy` and `node` speak this format.
"""

from __future__ import annotations

import difflib
import hashlib
from collections import Counter
from typing import Any, Dict, List, Optional

MAX_DIFF_BYTES = 256 * 1024


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
