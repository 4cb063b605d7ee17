"""The deploy root a reading command names, checked as every reader checks it.

Readers (`status`, `generations`, `fleet status`) name a deploy root by a site file (`--site`,
which also names the deploy owner) or by a bare `--deploy-root DIR` (trusting whoever owns it);
one of them is required, so no command ever falls back on a default site. It lives here, below
both `deploy` and `fleet`, so that each reading command is one call in either package; the
trust rule is `trust`'s, which the publisher's own check and every node apply as well.
"""

from __future__ import annotations

import os
import pwd
from typing import Optional, Set

from hpcpolicy.errors import RuntimeFailure, UnsafePath, UsageError
from hpcpolicy.generation import trust
from hpcpolicy.generation.naming import channel_link
from hpcpolicy.policy.model import Policy


def resolve_owner(owner: str) -> int:
    """The uid of `owner` (a user name, or a number for a squashed service account)."""
    if owner.isdigit():
        return int(owner)
    try:
        return pwd.getpwnam(owner).pw_uid
    except KeyError:
        raise RuntimeFailure(f"deploy owner {owner!r} is not a known user") from None


def site_policy(site: Optional[str], deploy_root: Optional[str], command: str
                ) -> Optional[Policy]:
    """The loaded site file, None for a bare `--deploy-root`; exit 2 when neither is given."""
    if not site and not deploy_root:
        raise UsageError(f"{command}: give --site SITE or --deploy-root DIR")
    if not site:
        return None
    from hpcpolicy.policy.load import load  # the loader, only when a site is given

    return load(site)


def check_read_root(path: str, allowed: Set[int]) -> None:
    """A deploy root to read (absolute, normalised) must exist, and nobody but `allowed` may
    alter it, a parent or a place a link on the way leads (UnsafePath)."""
    if not os.path.exists(path):
        if os.path.lexists(path):
            raise UnsafePath(f"deploy root {path}: is a dangling symlink")
        raise RuntimeFailure(f"deploy root {path}: does not exist")
    trust.check_dirs(f"deploy root {path}", trust.chain(path), allowed,
                     {path, os.path.realpath(path)})


def read_root(site: Optional[str], deploy_root: Optional[str], command: str,
              channel: Optional[str] = None) -> str:
    """The checked deploy root of a reading command: `deploy_root` (absolute) or the site's.

    A site file's deploy owner is trusted with root; a bare root's owner is whoever owns it. A
    channel name, when given, is checked too (exit 2 for a bad one).
    """
    policy = site_policy(site, deploy_root, command)
    root = os.path.abspath(deploy_root) if deploy_root else None
    if policy is not None:
        root = os.path.normpath(root or policy.site.deploy_root)
        owners = {0, resolve_owner(policy.site.deploy_owner)}
    else:
        assert root is not None
        root = os.path.normpath(root)
        try:
            owners = {0, os.stat(root).st_uid}
        except OSError:
            owners = {0}
    if not os.path.isabs(root):
        raise UnsafePath(f"deploy root {root}: must be an absolute path")
    check_read_root(root, owners)
    if channel is not None:
        channel_link(root, channel)
    return root
