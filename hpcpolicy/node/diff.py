"""`--diff` of a node sync: `{path, before, after}` per changed file (SPEC §3).

Same shape as the publisher's diff (a node must not import `deploy`, hence this small copy):
a file over 256 KiB or not UTF-8 is summarised by size, line count and sha256, with its changed
lines counted as a multiset difference (linear; difflib can be quadratic on a 1 MB subuid).
"""

from __future__ import annotations

import difflib
import hashlib
from collections import Counter
from typing import Any, Dict, List, Optional

MAX_DIFF_BYTES = 256 * 1024


def _text(data: Optional[bytes]) -> Optional[str]:
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
    digest = hashlib.sha256(data).hexdigest()
    return f"({len(data)} bytes, {len(data.splitlines())} lines, sha256 {digest})"


def changed_lines(before: bytes, after: bytes) -> int:
    old, new = Counter(before.splitlines()), Counter(after.splitlines())
    return sum((old - new).values()) + sum((new - old).values())


def diff_entry(path: str, before: Optional[bytes], after: Optional[bytes]) -> Dict[str, Any]:
    """Text before/after, or summaries plus `changed_lines` for a big or binary file."""
    old, new = _text(before), _text(after)
    if old is not None and new is not None:
        return {"path": path, "before": old, "after": new}
    return {"path": path, "before": _summary(before), "after": _summary(after),
            "summarised": True, "changed_lines": changed_lines(before or b"", after or b"")}


def unified(entries: List[Dict[str, Any]]) -> str:
    """Text rendering: a unified diff per file, one summary line for big ones."""
    out: List[str] = []
    for entry in entries:
        path = entry["path"]
        if entry.get("summarised"):
            out.append(f"--- a/{path} {entry['before'] or '(absent)'}\n"
                       f"+++ b/{path} {entry['after'] or '(absent)'}\n"
                       f"@@ {entry['changed_lines']} changed lines (not shown) @@\n")
            continue
        for line in difflib.unified_diff(entry["before"].splitlines(keepends=True),
                                         entry["after"].splitlines(keepends=True),
                                         fromfile=f"a/{path}", tofile=f"b/{path}"):
            out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)
