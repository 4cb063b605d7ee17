"""Collect the real permissions of collection paths: the only I/O the audit does.

Paths are `lstat`ed, never followed: a symlink inside a collection is reported as such, because
its target (possibly outside the collection) is what a reader opens. A collection is walked
breadth-first up to `limit` entries so one huge tree cannot stall an audit; the decision then
says the walk was partial. Errors other than "not there" are reported as `other` entries rather
than aborting: drift is data, not failure.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Deque, Iterable

from hpcpolicy.audit.context import Observation, PathState, mode_kind

WALK_LIMIT = 10000
ACL_XATTR = "system.posix_acl_access"


def _has_acl(path: str) -> bool:
    try:
        return ACL_XATTR in os.listxattr(path, follow_symlinks=False)
    except OSError:  # no xattr support here: mode bits are all there is
        return False


def stat_path(path: str) -> PathState:
    """One path as it is (`missing` when it does not exist)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return PathState(path, "missing")
    except NotADirectoryError:
        return PathState(path, "missing")
    except OSError:
        return PathState(path, "other")
    kind = mode_kind(st.st_mode)
    acl = kind in ("dir", "file") and _has_acl(path)
    return PathState(path, kind, st.st_mode & 0o7777, st.st_uid, st.st_gid, acl)


def walk(root: str, obs: Observation, limit: int = WALK_LIMIT) -> None:
    """Add `root` and what lies below it (without following symlinks) to `obs`."""
    first = stat_path(root)
    obs.states[root] = first
    queue: Deque[str] = deque([root] if first.kind == "dir" else [])
    seen = 1
    while queue:
        current = queue.popleft()
        try:
            with os.scandir(current) as entries:
                names = sorted(e.name for e in entries)
        except OSError:
            continue  # unreadable by us: the directory's own state is already recorded
        for name in names:
            if seen >= limit:
                obs.truncated.add(root)
                return
            path = os.path.join(current, name)
            state = stat_path(path)
            obs.states[path] = state
            seen += 1
            if state.kind == "dir":
                queue.append(path)


def observe(walk_roots: Iterable[str], single: Iterable[str],
            limit: int = WALK_LIMIT) -> Observation:
    """States of every collection to walk and every single path (see `decide.paths_to_observe`)."""
    obs = Observation()
    for root in walk_roots:
        if root not in obs.states:
            walk(root, obs, limit)
    for path in single:
        if path not in obs.states:
            obs.states[path] = stat_path(path)
    return obs
