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
    out: List[User] = []
    for user in snapshot.users.values():
        if user.uid < directory.min_uid or user.uid in NEVER_ELIGIBLE_UIDS:
            continue
        if directory.max_uid is not None and user.uid > directory.max_uid:
            continue
        if user.name in excluded:
            continue
        if members is not None and user.name not in members:
            continue
        if directory.exclude_disabled and user.disabled:
            continue
        out.append(user)
    out.sort(key=_BY_UID_NAME)
    return out
