"""`render SITE --out DIR`: a review copy of the node trees a generation would hold.

Layout: the `default` class at `DIR/<node path>`, each declared class at
`DIR/class/NAME/<node path>`; with a class named, only that class at `DIR/<node path>`, as a
node of that class would install it. The plan is computed exactly as `apply` computes it
(directory and ledger read, never written) and rendered in memory first, so an invalid site
writes nothing. Every path is checked before any file is written; nothing is written through a
symlink below DIR (`fsutil.refuse_symlinked_parents`, `fsutil.make_dirs`); files already equal
are left untouched, others are replaced atomically.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from hpcpolicy.errors import RuntimeFailure, UsageError
from hpcpolicy.fsutil import atomic_write, make_dirs, read_bytes_nofollow, refuse_symlinked_parents

FILE_MODE = 0o644
DIR_MODE = 0o755


@dataclass
class Rendered:
    out: str
    classes: List[str]
    files: List[str]
    changes: List[Dict[str, str]] = field(default_factory=list)


def render_site(site: str, out: str, node_class: Optional[str] = None,
                deploy_root: Optional[str] = None) -> Rendered:
    """Plan `site` as apply would and write its trees below `out`."""
    from hpcpolicy.deploy.plan import build
    from hpcpolicy.policy.load import load

    out_dir = _prepare_out(out)
    policy = load(site)
    if node_class is not None and node_class not in policy.class_names():
        raise UsageError(f"--class {node_class}: not a node class of {site} "
                         f"({', '.join(policy.class_names())})")
    plan = build(policy, deploy_root=os.path.abspath(deploy_root) if deploy_root else None)
    files = layout(plan.trees, node_class)
    changes = write_tree(out_dir, files)
    classes = [node_class] if node_class else list(plan.trees)
    return Rendered(out_dir, classes, sorted(files), changes)


def layout(trees: Dict[str, Dict[str, bytes]], only: Optional[str]) -> Dict[str, bytes]:
    """Output-relative path -> bytes for the classes asked for."""
    if only is not None:
        return {_checked(p): data for p, data in trees[only].items()}
    out: Dict[str, bytes] = {}
    for name, tree in trees.items():
        prefix = "" if name == "default" else f"class/{name}/"
        out.update({prefix + _checked(p): data for p, data in tree.items()})
    return dict(sorted(out.items()))


def _checked(node_path: str) -> str:
    """A renderer's node path must stay inside the tree (defence in depth)."""
    parts = node_path.split("/")
    if (not node_path or node_path.startswith("/") or os.path.normpath(node_path) != node_path
            or ".." in parts or "\0" in node_path):
        raise RuntimeFailure(f"internal error: renderer produced unsafe path {node_path!r}")
    return node_path


def _write(out_dir: str, rel: str, data: bytes) -> Optional[str]:
    """Write one file; the action taken (`added` / `modified`) or None when already equal."""
    refuse_symlinked_parents(out_dir, rel, last=True)
    target = os.path.join(out_dir, rel)
    action = "added"
    if os.path.lexists(target):
        same = read_bytes_nofollow(target) == data
        if same and stat.S_IMODE(os.lstat(target).st_mode) == FILE_MODE:
            return None
        action = "modified"
    make_dirs(out_dir, os.path.dirname(rel), DIR_MODE)
    atomic_write(target, data, mode=FILE_MODE)
    return action


def _refuse_planted_links(out: str) -> None:
    """DIR itself must not be a symlink, nor may any directory above it be one that somebody
    other than root or the caller made: a link planted in /tmp or /scratch would otherwise
    send a root `render` to write into /etc."""
    path = os.path.abspath(out)
    if os.path.islink(path):
        raise UsageError(f"--out {out}: is a symbolic link (to {os.readlink(path)}): "
                         "name the real directory")
    me = os.geteuid()
    parent = os.path.dirname(path)
    while True:
        try:
            st = os.lstat(parent)
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_ISLNK(st.st_mode) and st.st_uid not in (0, me):
            raise UsageError(f"--out {out}: {parent} is a symbolic link owned by uid "
                             f"{st.st_uid}, who could point it anywhere: name the real directory")
        if parent == os.path.dirname(parent):
            return
        parent = os.path.dirname(parent)


def _prepare_out(out: str) -> str:
    _refuse_planted_links(out)
    real = os.path.realpath(out)
    if real == "/":
        raise UsageError("refusing to render into /: render writes a review copy; "
                         "nodes install with `hpcpolicy node sync`")
    if os.path.lexists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out}: not a directory")
    return out


def write_tree(out_dir: str, files: Dict[str, bytes]) -> List[Dict[str, str]]:
    """Write every file below `out_dir`; checks all paths before writing any."""
    for rel in files:
        refuse_symlinked_parents(out_dir, rel, last=True)
    if not os.path.isdir(out_dir):
        os.makedirs(out_dir, DIR_MODE)
    changes = []
    for rel, data in files.items():
        action = _write(out_dir, rel, data)
        if action is not None:
            changes.append({"path": rel, "action": action})
    return changes
