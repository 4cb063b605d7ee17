"""Which deploy root a command acts on, and who approves a write to it.

Commands name a deploy root by a site file (`--site SITE`, which also gives the deploy owner,
approval, keep and signing) or by a bare `--deploy-root DIR`; one of them is required, so no
command ever falls back on a default site. A reader of a bare root trusts whoever owns it; a
writer of a bare root needs what apply recorded there (`deploy.site_record`).
"""

from __future__ import annotations

import os
from typing import Optional, Tuple

from hpcpolicy.deploy.store import Target
from hpcpolicy.policy.model import Policy


def _root(deploy_root: Optional[str]) -> Optional[str]:
    return os.path.abspath(deploy_root) if deploy_root else None


def _policy(site: Optional[str], deploy_root: Optional[str], command: str) -> Optional[Policy]:
    from hpcpolicy.generation.reading import site_policy

    return site_policy(site, deploy_root, command)


def reader(site: Optional[str], deploy_root: Optional[str],
           command: str) -> Tuple[Target, Optional[Policy]]:
    """The Target of a command that only reads (a bare root's owner is whoever owns it)."""
    policy = _policy(site, deploy_root, command)
    if policy is not None:
        return Target.from_policy(policy, _root(deploy_root)), policy
    return Target.from_root(str(_root(deploy_root))), None


def writer(site: Optional[str], deploy_root: Optional[str],
           command: str) -> Tuple[Target, Optional[Policy]]:
    """The Target of a command that writes: from the site file (and --deploy-root), or from
    what apply recorded in the bare deploy root's state/site.json (exit 2 without one)."""
    policy = _policy(site, deploy_root, command)
    if policy is not None:
        return Target.from_policy(policy, _root(deploy_root)), policy
    from hpcpolicy.deploy.site_record import target_from_record

    return target_from_record(str(_root(deploy_root)), command), None


def operator(target: Target, batch: bool, signs: bool) -> str:
    """The approved operator of a writing command, by the target's [site.approval]."""
    from hpcpolicy.deploy.approval import approve

    return approve(target.approval, target.signing_key, batch=batch, signs=signs)
