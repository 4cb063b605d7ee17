"""The deploy root as a node first meets it: trust checks and the channel link, read once.

The light part of `source.py`: a `node sync` with nothing to do needs only this (the trust
checks, then one readlink), so it must not import the manifest and verification code.

* The deploy root, every parent and every place a symlink on the way leads must be owned by
  root or by the node's configured deploy owner, and not writable by group or other (a
  root-owned sticky parent, like /tmp, is fine).
* The channel link itself must be owned by one of them: whoever owns it can repoint it.
"""

from __future__ import annotations

import os
import stat

from hpcpolicy.errors import RuntimeFailure, UnsafePath
from hpcpolicy.generation import trust
from hpcpolicy.generation.naming import GENERATIONS, STABLE, channel_generation, channel_link

TYPE_CHECKING = False  # typing's, without importing typing: see node/idle.py
if TYPE_CHECKING:
    from typing import Set, Tuple

REFUSE = "; refusing to read it"
OWNER_HINT = (" (a deploy owner other than root is set with deploy_owner in node.toml "
              "or --deploy-owner)")


def check_deploy_root(deploy_root: str, owners: Set[int]) -> str:
    """Refuse to read a deploy root others could alter (UnsafePath); return it normalised.

    `owners`: the uids that may own it (root and the node's configured deploy owner).
    """
    path = os.path.normpath(os.path.abspath(deploy_root))
    try:
        top = os.stat(path)
    except OSError as err:
        raise RuntimeFailure(f"deploy root {path}: cannot read: {err.strerror}") from None
    if not stat.S_ISDIR(top.st_mode):
        raise RuntimeFailure(f"deploy root {path}: not a directory")
    inside = {path, os.path.realpath(path)}
    trust.check_dirs(f"deploy root {path}", trust.chain(path), owners, inside,
                     OWNER_HINT + REFUSE)
    return path


def check_link(deploy_root: str, channel: str, owners: Set[int]) -> None:
    """The channel link itself: whoever owns it can repoint it."""
    link = channel_link(deploy_root, channel)
    try:
        st = os.lstat(link)
    except OSError:
        return  # resolve() says that nothing is published
    if st.st_uid not in owners:
        raise UnsafePath(f"deploy root {deploy_root}: {link} is owned by uid {st.st_uid}, not "
                         f"root or the deploy owner{OWNER_HINT}{REFUSE}")


def resolve(deploy_root: str, channel: str) -> Tuple[str, str]:
    """(generation name, its directory): the channel link read exactly once."""
    name = channel_generation(deploy_root, channel)
    if name is None:
        what = "current" if channel == STABLE else f"channels/{channel}"
        raise RuntimeFailure(f"{deploy_root}: no generation published ({what} does not exist)")
    return name, os.path.join(deploy_root, GENERATIONS, name)
