"""Everything `render`, `apply` and `audit` compute before writing: the single pipeline.

load(site) -> read directory -> cross-check -> read ledger (read-only) -> allocate -> render.
Nothing here writes; `apply` persists `Plan.ledger` and publishes `Plan.trees`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, List, Optional

from hpcpolicy.directory.against import check_against_directory
from hpcpolicy.directory.model import Snapshot
from hpcpolicy.directory.read import read_directory
from hpcpolicy.errors import InvalidInput
from hpcpolicy.gcpause import paused
from hpcpolicy.policy.model import Policy
from hpcpolicy.render.tree import Tree, render_all
from hpcpolicy.subid.allocate import AllocationResult, allocate
from hpcpolicy.subid.ledger import Ledger, load_ledger

if TYPE_CHECKING:
    from hpcpolicy.deploy.ledger_guard import Published


@dataclass
class Plan:
    policy: Policy
    deploy_root: str
    snapshot: Snapshot
    ledger_before: Optional[Ledger]
    result: Optional[AllocationResult]  # None when [subid].enabled = false
    trees: Dict[str, Tree] = field(default_factory=dict)  # node class -> tree
    # every channel's verified manifest, read by the ledger guard (apply with sub-IDs); apply
    # compares with its channel's generation from here instead of verifying it again
    published: Optional[Published] = None

    @property
    def ledger(self) -> Optional[Ledger]:
        return self.result.ledger if self.result is not None else self.ledger_before


def build(
    policy: Policy,
    deploy_root: Optional[str] = None,
    snapshot: Optional[Snapshot] = None,
    now: Optional[str] = None,
    against_published: bool = False,
) -> Plan:
    """Compute the whole plan; raises InvalidInput with every problem found at once.

    `against_published` (apply): before allocating, the ledger must hold every sub-ID range
    the deploy root's channels publish (`deploy.ledger_guard`), else RuntimeFailure.
    """
    with paused():
        return _build(policy, deploy_root or policy.site.deploy_root, snapshot, now,
                      against_published)


def checked_snapshot(policy: Policy, snapshot: Optional[Snapshot] = None, *,
                     against: bool = True, fit: bool = False) -> Snapshot:
    """The one way into the directory: read it (unless given) and raise every problem it
    reveals in the policy at once (`against`: the groups it names, the sub-ID space clear of
    real IDs; `fit`: the space holds every eligible user)."""
    if snapshot is None:
        snapshot = read_directory(policy)
    if not against:
        return snapshot
    problems = list(check_against_directory(policy, snapshot))
    if not problems and fit:  # fit is meaningless while the space itself meets real IDs
        from hpcpolicy.subid.allocate import check_fit

        problems += check_fit(policy, snapshot)
    if problems:
        raise InvalidInput(problems)
    return snapshot


def directory_warnings(snapshot: Snapshot) -> List[str]:
    """What the directory read noticed but did not refuse (LDAP referrals it did not follow),
    one line each, as every command that reports them words them."""
    return [f"{w.file}: {w.path}: warning: {w.message}" for w in snapshot.warnings]


def _build(policy: Policy, root: str, snapshot: Optional[Snapshot], now: Optional[str],
           against_published: bool = False) -> Plan:
    snapshot = checked_snapshot(policy, snapshot)
    ledger = load_ledger(root, policy.site.name)
    result: Optional[AllocationResult] = None
    allocations: List = []
    published: Optional[Published] = None
    if policy.subid.enabled:
        if against_published:
            from hpcpolicy.deploy.ledger_guard import (
                check_ledger_holds_published,
                published_manifests,
            )

            published = published_manifests(root)
            check_ledger_holds_published(root, ledger, published)
        result = allocate(policy, snapshot, ledger, now=now)
        allocations = result.allocations
    trees = render_all(policy, snapshot, allocations)
    return Plan(policy, root, snapshot, ledger, result, trees, published)
