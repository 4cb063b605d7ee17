"""`hpcpolicy render SITE --out DIR`: write the node trees a generation would hold, nothing else.

Layout: the `default` class at `DIR/<node path>` (e.g. `DIR/etc/subuid`), each declared class at
`DIR/class/NAME/<node path>`; with `--class NAME` only that class, at `DIR/<node path>`, as a node
of that class would install it. It reads the directory and the ledger (read-only) exactly as
`apply` does, renders everything in memory first, so an invalid site writes nothing, and refuses
to write through a symlink anywhere below DIR. Files already equal are left untouched.
"""

from __future__ import annotations

import argparse
import os
import stat
from typing import Any, Dict, List, Optional

from hpcpolicy.cli.outcome import Outcome
from hpcpolicy.errors import RuntimeFailure, UnsafePath, UsageError
from hpcpolicy.fsutil import atomic_write, read_bytes_nofollow

FILE_MODE = 0o644
DIR_MODE = 0o755


def add_parser(subparsers: Any, common_parent: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "render", parents=[common_parent], help="render the node trees into a directory",
        description=__doc__)
    parser.add_argument("site", metavar="SITE", help="the site file (site.toml)")
    parser.add_argument("--out", required=True, metavar="DIR", help="where to write the trees")
    parser.add_argument("--deploy-root", metavar="DIR",
                        help="read the ledger here instead of site.deploy_root")
    parser.add_argument("--class", dest="node_class", metavar="NAME",
                        help="render only this node class, at DIR/<node path>")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.set_defaults(run=run, json_on_error={"changes": []})


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


def _refuse_symlinks(out_dir: str, rel: str) -> None:
    """Every existing component below DIR is a real directory; the file, if any, is regular."""
    parts = rel.split("/")
    current = out_dir
    for i, part in enumerate(parts):
        current = os.path.join(current, part)
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            return
        last = i == len(parts) - 1
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePath(f"{current} is a symlink: refusing to write through it")
        if not last and not stat.S_ISDIR(st.st_mode):
            raise UnsafePath(f"{current} is not a directory")
        if last and not stat.S_ISREG(st.st_mode):
            raise UnsafePath(f"{current} exists and is not a regular file")


def _make_dirs(out_dir: str, rel_dir: str) -> None:
    current = out_dir
    for part in [p for p in rel_dir.split("/") if p]:
        current = os.path.join(current, part)
        try:
            os.mkdir(current, DIR_MODE)
            os.chmod(current, DIR_MODE)  # not subject to the umask
        except FileExistsError:
            pass
        if os.path.islink(current) or not os.path.isdir(current):
            raise UnsafePath(f"{current} is not a directory (or became a symlink)")


def _write(out_dir: str, rel: str, data: bytes) -> Optional[str]:
    """Write one file; the action taken (`added` / `modified`) or None when already equal."""
    _refuse_symlinks(out_dir, rel)
    target = os.path.join(out_dir, rel)
    action = "added"
    if os.path.lexists(target):
        same = read_bytes_nofollow(target) == data
        if same and stat.S_IMODE(os.lstat(target).st_mode) == FILE_MODE:
            return None
        action = "modified"
    _make_dirs(out_dir, os.path.dirname(rel))
    _refuse_symlinks(out_dir, rel)
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
        _refuse_symlinks(out_dir, rel)
    if not os.path.isdir(out_dir):
        os.makedirs(out_dir, DIR_MODE)
    changes = []
    for rel, data in files.items():
        action = _write(out_dir, rel, data)
        if action is not None:
            changes.append({"path": rel, "action": action})
    return changes


def run(args: argparse.Namespace) -> Outcome:
    from hpcpolicy.deploy.plan import build
    from hpcpolicy.policy.load import load

    out_dir = _prepare_out(args.out)
    policy = load(args.site)
    if args.node_class is not None and args.node_class not in policy.class_names():
        raise UsageError(f"--class {args.node_class}: not a node class of {args.site} "
                         f"({', '.join(policy.class_names())})")
    deploy_root = os.path.abspath(args.deploy_root) if args.deploy_root else None
    plan = build(policy, deploy_root=deploy_root)
    files = layout(plan.trees, args.node_class)
    changes = write_tree(out_dir, files)
    classes = [args.node_class] if args.node_class else list(plan.trees)
    msg = (f"rendered {len(files)} files for {', '.join(classes)} into {out_dir}: "
           f"{len(changes)} changed")
    text = "\n".join([msg] + [f"  {c['action']:<8} {c['path']}" for c in changes]) + "\n"
    data = {"out": out_dir, "classes": classes, "files": sorted(files), "changes": changes}
    return Outcome(msg, data, text, changed=bool(changes))
