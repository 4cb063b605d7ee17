"""Which mounts lie below a path, from /proc/self/mountinfo (proc(5)).

A read-only bind is read-only on its top mount only, in every runtime that cannot ask the
kernel for a recursive read-only mount (Podman 4.3 refuses `rro`; `ro` and `ro,rbind` remount
the top only; Enroot's `rbind,ro` likewise): a filesystem mounted below the bind's source stays
writable inside the container. `node doctor`, `validate` (where it runs on a node) and the
audit name such binds from this.
"""

from __future__ import annotations

import os
import re
from typing import List, Optional, Sequence

MOUNTINFO = "/proc/self/mountinfo"
_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    """Mount points have space, tab, newline and backslash as octal escapes."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def mount_points(text: str) -> List[str]:
    """The mount point of every line of a mountinfo text (field 5)."""
    out = []
    for line in text.splitlines():
        fields = line.split(" ")
        if len(fields) >= 5:
            out.append(_unescape(fields[4]))
    return out


def read_mount_points(path: str = MOUNTINFO) -> Optional[List[str]]:
    """The live mount points, or None where the file cannot be read (not Linux, no /proc)."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            return mount_points(handle.read())
    except OSError:
        return None


def _below(path: str, tree: str) -> bool:
    return tree == "/" or path.startswith(tree.rstrip("/") + "/")


def submounts(source: str, points: Sequence[str]) -> List[str]:
    """Mount points strictly below `source` (compared by path component), sorted, once each.

    `source` is taken with symlinks resolved where it exists, as the kernel binds it."""
    real = os.path.realpath(source) if os.path.exists(source) else source
    return sorted({p for p in points if p != real and _below(p, real)})
