"""The node's record of the files it installed: one `lstat` says whether each is untouched.

`node sync` keeps, per installed file, what `lstat` said right after installing it: size,
mtime and ctime (nanoseconds), inode, device, mode, owner and group. Any write, chmod, chown,
rename or replacement changes ctime or the inode (ctime cannot be set from user space), so a
file whose `lstat` still equals its record holds the bytes the sync wrote: no need to read and
hash it. Only a mismatch costs a rehash (and a repair when the bytes or the mode changed).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing's, without importing typing: see node/idle.py
if TYPE_CHECKING:
    from typing import Any, Dict, List, Mapping, Optional

    Record = List[int]



def record_of(path: str) -> Optional[Record]:
    """What `lstat` says of `path` now, as stored in the node's state (None when absent)."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev, st.st_mode,
            st.st_uid, st.st_gid]


def records(root: str, rels: List[str]) -> Dict[str, Record]:
    """{node path: record} of installed files (absent ones are left out)."""
    out: Dict[str, Record] = {}
    for rel in rels:
        rec = record_of(os.path.join(root, *rel.split("/")))
        if rec is not None:
            out[rel] = rec
    return out


def intact(root: str, rel: str, state: Optional[Mapping[str, Any]]) -> bool:
    """True when the file at `rel` is exactly as the last sync left it (one lstat)."""
    if not state:
        return False
    recorded = (state.get("stat") or {}).get(rel)
    return recorded is not None and record_of(os.path.join(root, *rel.split("/"))) == recorded


def intact_hashes(root: str, state: Optional[Mapping[str, Any]]) -> Dict[str, str]:
    """{node path: sha256} of the recorded files that are untouched on the node."""
    if not state:
        return {}
    files = state.get("files") or {}
    return {rel: str(sha) for rel, sha in files.items() if intact(root, rel, state)}


def identity(st: os.stat_result) -> Record:
    """Size, mtime, ctime, inode and device: any change or replacement of the file shows."""
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def file_key(path: Optional[str]) -> Optional[Record]:
    """Identity of a file the node trusts (its allowed-signers file): a changed one is no
    idle sync, the generation is verified again against it."""
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return [-1]
    return identity(st)
