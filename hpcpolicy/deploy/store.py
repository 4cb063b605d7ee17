"""The deploy root on shared storage: is it safe to trust, and its fixed layout.

A deploy root is what every node installs as root, so anybody who can replace a file or a
directory on the way to it owns the cluster: `check_deploy_root` applies the trust rule of
`generation.trust` (shared with nodes) to the path, every parent and wherever links lead.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Optional, Set

from hpcpolicy.errors import RuntimeFailure, UnsafePath
from hpcpolicy.fsutil import make_dirs
from hpcpolicy.generation import trust
from hpcpolicy.generation.naming import CHANNELS, CURRENT, GENERATIONS
from hpcpolicy.generation.reading import check_read_root, resolve_owner
from hpcpolicy.generation.trust import check_dirs
from hpcpolicy.policy.model import Approval, Policy

STATE = "state"
LOG = "log"
LOCK = ".lock"
__all__ = ["CHANNELS", "CURRENT", "GENERATIONS", "LAYOUT_DIRS", "LOCK", "LOG", "STATE",
           "Target", "check_deploy_root", "ensure_layout", "init_root", "require_root",
           "resolve_owner"]
LAYOUT_DIRS = (GENERATIONS, STATE, LOG)


def _existing(path: str) -> str:
    """`path` itself, or its nearest existing ancestor (a deploy root may still be created)."""
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check_deploy_root(path: str, owner: str, write: bool) -> None:
    """Refuse a deploy root that anybody but root or `owner` could alter (UnsafePath, exit 1).

    With `write`, a root that does not exist yet is accepted when its existing ancestors are
    safe (apply creates it); without, it must exist (a node has nothing to read otherwise).
    """
    if not os.path.isabs(path):
        raise UnsafePath(f"deploy root {path}: must be an absolute path")
    path = os.path.normpath(path)
    allowed = {0, resolve_owner(owner)}
    if not write:
        check_read_root(path, allowed)
        return
    if not os.path.exists(path) and os.path.lexists(path):
        raise UnsafePath(f"deploy root {path}: is a dangling symlink")
    start = _existing(path)
    targets = {path, os.path.realpath(path)} if start == path else set()
    check_dirs(f"deploy root {path}", trust.chain(start), allowed, targets)
    if start == path:
        check_layout(path, allowed)


# What a writer writes below the deploy root: none of it may be a symlink, or root would write
# wherever its owner points it (the deploy root's own owner check does not see inside).
LAYOUT_FILES = (os.path.join(STATE, "subid-ledger.json"), os.path.join(STATE, "site.json"),
                os.path.join(STATE, "current-history.json"), os.path.join(LOG, "changes.jsonl"),
                LOCK)


def check_layout(root: str, allowed: Set[int]) -> None:
    """generations/ state/ log/ channels/: real directories, safe as the root itself; the
    files writers replace or append: never symlinks (`current` and the channel links are
    links by design, replaced by rename and never written through)."""
    for name in LAYOUT_DIRS + (CHANNELS,):
        sub = os.path.join(root, name)
        try:
            st = os.lstat(sub)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePath(f"deploy root {root}: {sub} is a symlink; refusing to write "
                             "through it")
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafePath(f"deploy root {root}: {sub} is not a directory")
        reason = trust.why_unsafe(st, allowed, True)
        if reason:
            raise UnsafePath(f"deploy root {root}: {sub} is {reason}")
    for rel in LAYOUT_FILES:
        path = os.path.join(root, rel)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePath(f"deploy root {root}: {path} is not a regular file (a symlink?);"
                             " refusing to write through it")


def require_root(path: str, init: bool) -> None:
    """A missing deploy root is an error unless `init` (then its parent must exist).

    A writer never creates a deploy root on its own: a mistyped path, or a share that is not
    mounted, would otherwise get a fresh, empty sub-ID ledger and hand out ranges again.
    """
    if os.path.lexists(path):
        return
    if not init:
        raise RuntimeFailure(
            f"deploy root {path}: does not exist (not mounted?); a new deploy root is "
            "created with `hpcpolicy apply --init`")
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise RuntimeFailure(
            f"deploy root {path}: its parent {parent} does not exist (not mounted?); --init "
            "creates the deploy root itself, never its parents")


def init_root(path: str, owner: str) -> bool:
    """Create a missing deploy root: mode 0755, owned by the deploy owner. True when created."""
    if os.path.isdir(path):
        return False
    uid = resolve_owner(owner)
    parent, name = os.path.split(path)
    make_dirs(parent, name, 0o755, sync=True)
    if os.stat(path).st_uid != uid:
        os.chown(path, uid, -1)  # a root-run --init for a service-account deploy owner
    return True


def ensure_layout(root: str) -> None:
    """Create the deploy root and generations/ state/ log/ (0755) when missing.

    Writers that take a site's deploy root call `require_root` first: this creates a root only
    for callers that were given one to create (tests, `init_root`).
    """
    if not os.path.isdir(root):
        os.makedirs(root, mode=0o755, exist_ok=True)
        os.chmod(root, 0o755)
    for name in LAYOUT_DIRS:
        sub = os.path.join(root, name)
        if not os.path.isdir(sub):
            os.makedirs(sub, mode=0o755, exist_ok=True)
            os.chmod(sub, 0o755)  # umask must not decide what nodes may read


@dataclass(frozen=True)
class Target:
    """Where and how to publish: from a validated site, or from a bare deploy root.

    Writers given `--deploy-root` alone take owner, keep, grace, approval and `signed` from
    what apply recorded (`deploy.site_record`); readers (`status`) may use `from_root`.
    """

    root: str
    owner: str = "root"
    keep: int = 10
    gc_grace: int = 3600
    signing_key: Optional[str] = None
    site: str = ""
    approval: Optional[Approval] = None
    signed: bool = False  # generations are signed (the site has a signing key)

    @classmethod
    def from_policy(cls, policy: Policy, deploy_root: Optional[str] = None) -> Target:
        site = policy.site
        return cls(os.path.normpath(deploy_root or site.deploy_root), site.deploy_owner,
                   site.keep, site.gc_grace, site.signing_key, site.name, site.approval,
                   site.signing_key is not None)

    @classmethod
    def from_root(cls, deploy_root: str) -> Target:
        """For READING only (status, generations): the owner is whoever owns the root."""
        root = os.path.normpath(os.path.abspath(deploy_root))
        try:
            owner = str(os.stat(root).st_uid)
        except OSError:
            owner = "root"
        return cls(root, owner)
