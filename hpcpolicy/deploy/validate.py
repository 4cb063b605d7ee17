"""`validate SITE`: is this site file sound? Offline, the file alone; otherwise also the
directory it names (`plan.checked_snapshot`: the groups it mentions, the sub-ID space clear of
every real UID/GID, room for every eligible user). An unreachable directory is a runtime
failure (exit 1), not a verdict on the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hpcpolicy.directory.model import Snapshot
from hpcpolicy.policy.model import Policy


@dataclass
class Validation:
    policy: Policy
    snapshot: Optional[Snapshot]  # None offline
    summary: Dict[str, Any]
    warnings: List[str] = field(default_factory=list)  # what the site file risks
    directory_warnings: List[str] = field(default_factory=list)  # what the directory showed


def validate_site(site: str, offline: bool = False) -> Validation:
    """Load `site` (every problem at once, InvalidInput) and, unless offline, check it against
    its directory; the summary a reviewer reads and the warnings of what the file risks."""
    from hpcpolicy.deploy.plan import checked_snapshot, directory_warnings
    from hpcpolicy.policy.cautions import cautions
    from hpcpolicy.policy.load import load

    policy = load(site)
    snapshot = None if offline else checked_snapshot(policy, fit=True)
    seen = [] if snapshot is None else directory_warnings(snapshot)
    return Validation(policy, snapshot, summary(policy), [str(w) for w in cautions(policy)],
                      seen)


def summary(policy: Policy) -> Dict[str, Any]:
    """The counts a reviewer checks at a glance."""
    s = policy.subid
    return {
        "site": policy.site.name,
        "runtimes": list(policy.site.runtimes),
        "binds": len(policy.binds),
        "image_rules": sum(1 for r in policy.images.rules if not r.alias_of),
        "collections": len(policy.images.collections),
        "node_classes": [c.name for c in policy.node_classes],
        "sources": list(policy.directory.sources),
        "subid": {"enabled": s.enabled, "strategy": s.strategy, "start": s.start,
                  "end": s.end, "count": s.count},
        "sha256": policy.sha256,
    }
