"""Who gets a sub-ID range: the one place that turns `[subid]` + `[directory]` into a user list.

Pure. Allocation, validation and the audit all ask this module, so they can never disagree
about who is eligible.
"""

from __future__ import annotations

from operator import attrgetter
from typing import List, Set

from hpcpolicy.directory.model import Snapshot, User
from hpcpolicy.policy.model import Policy

# nobody / nfsnobody: never eligible whatever min_uid/max_uid say (shared by every distro).
NEVER_ELIGIBLE_UIDS = frozenset({65534, 4294967294})
_BY_UID_NAME = attrgetter("uid", "name")


def _group_members(policy: Policy, snapshot: Snapshot) -> Set[str]:
    members: Set[str] = set()
    for group in policy.subid.eligible_groups:
        members.update(snapshot.members_of(group))
    return members


def eligible(policy: Policy, snapshot: Snapshot) -> List[User]:
    """Eligible users, sorted by (uid, name) so allocation order is deterministic."""
    sub, directory = policy.subid, policy.directory
    excluded = set(sub.exclude_users)
    members = _group_members(policy, snapshot) if sub.eligible_groups else None
    lo, hi, skip_disabled = directory.min_uid, directory.max_uid, directory.exclude_disabled
    out = [u for u in snapshot.users.values()
           if u.uid >= lo and u.uid not in NEVER_ELIGIBLE_UIDS
           and (hi is None or u.uid <= hi)
           and u.name not in excluded
           and (members is None or u.name in members)
           and not (skip_disabled and u.disabled)]
    out.sort(key=_BY_UID_NAME)
    return out
