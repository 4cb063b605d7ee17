"""Who could alter a deploy root: the trust rule shared by the publisher and every node.

A deploy root is what every node installs as root, so anybody who can replace a file or a
directory on the way to it owns the cluster. The rule: the path itself, every parent, and every
place a symlink on the way leads (recursively) must be owned by an allowed uid (root or the
deploy owner) and not writable by group or other; a root-owned sticky parent such as /tmp is
fine, because others cannot replace what is in it.
"""

from __future__ import annotations

import os
import stat

from hpcpolicy.errors import RuntimeFailure, UnsafePath

TYPE_CHECKING = False  # typing's, without importing typing: see node/idle.py
if TYPE_CHECKING:
    from typing import Iterable, List, Optional, Set

MAX_LINKS = 40


def prefixes(path: str) -> List[str]:
    """'/a/b' -> ['/', '/a', '/a/b'] (lexical, no resolution)."""
    out = ["/"]
    for part in path.split("/"):
        if part:
            out.append(os.path.join(out[-1], part))
    return out


def chain(path: str, depth: int = 0) -> List[str]:
    """Every directory whose owner could redirect `path`: its prefixes, and for each symlink met
    on the way, the prefixes of where it points (recursively), then the resolved path's."""
    if depth > MAX_LINKS:
        raise UnsafePath(f"{path}: too many levels of symbolic links")
    out: List[str] = []
    for entry in prefixes(path):
        out.append(entry)
        if os.path.islink(entry):
            target = os.path.join(os.path.dirname(entry), os.readlink(entry))
            out.extend(chain(os.path.normpath(target), depth + 1))
    out.extend(prefixes(os.path.realpath(path)))
    return list(dict.fromkeys(out))


def why_unsafe(st: os.stat_result, allowed: Set[int], inside: bool) -> Optional[str]:
    """Why one directory is unsafe, or None. `inside`: the deploy root itself (no sticky pass)."""
    if st.st_uid not in allowed:
        return f"owned by uid {st.st_uid}, not root or the deploy owner"
    writable = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if not writable:
        return None
    if st.st_mode & stat.S_ISVTX and st.st_uid == 0 and not inside:
        return None  # like /tmp: others cannot replace what is in it
    who = "group and other" if writable == (stat.S_IWGRP | stat.S_IWOTH) else (
        "group" if writable & stat.S_IWGRP else "other")
    return f"writable by {who} (mode {stat.S_IMODE(st.st_mode):04o})"


def check_dirs(label: str, entries: Iterable[str], allowed: Set[int], inside: Set[str],
               suffix: str = "") -> None:
    """Raise UnsafePath naming the first entry that is not a safe directory."""
    for entry in entries:
        try:
            st = os.stat(entry)  # follows links: judge what a link leads to
        except OSError as err:
            raise RuntimeFailure(f"{label}: {entry}: {err.strerror}") from None
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafePath(f"{label}: {entry} is not a directory")
        reason = why_unsafe(st, allowed, entry in inside)
        if reason:
            raise UnsafePath(f"{label}: {entry} is {reason}{suffix}")


ANCHOR_LIMIT = 1 << 20  # a node config or allowed-signers file is a few lines


def anchor_problem(path: str, owners: Set[int]) -> Optional[str]:
    """Why a file that decides what a node trusts (node.toml, allowed-signers) is unsafe, or None.

    Whoever can change such a file decides what every sync installs as root, so it must be a
    regular file owned by an allowed uid (root), not writable by group or other, in directories
    that satisfy the deploy-root rule (a root-owned sticky parent is fine).
    """
    try:
        st = os.stat(path)
    except OSError as err:
        return f"cannot read: {err.strerror}"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_uid not in owners:
        return f"owned by uid {st.st_uid}, not root; chown root {path}"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        mode = stat.S_IMODE(st.st_mode)
        return f"writable by group or other (mode {mode:04o}); chmod go-w {path}"
    if st.st_size > ANCHOR_LIMIT:
        return f"{st.st_size} bytes, more than such a file can hold ({ANCHOR_LIMIT})"
    parents = chain(os.path.dirname(os.path.abspath(path)))
    parents += chain(os.path.dirname(os.path.realpath(path)))  # where a symlinked file lives
    for entry in dict.fromkeys(parents):
        try:
            dst = os.stat(entry)
        except OSError as err:
            return f"{entry}: {err.strerror}"
        if dst.st_uid not in owners:
            return f"its directory {entry} is owned by uid {dst.st_uid}, not root"
        reason = why_unsafe(dst, owners, inside=False)
        if reason:
            return f"its directory {entry} is {reason}"
    return None
