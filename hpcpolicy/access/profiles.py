"""Access profiles: the users whose decisions are all the same. Pure.

A site has 30,000-100,000 users but only tens of ways to be treated by the image policy: a
user's verdicts depend only on which of the *named* groups they are in (the groups that image
rules and collections name, plus, for the audit, the groups that own an observed file), on
whether node-wide files are rendered for them (eligibility), and on the node class. A user who
owns an observed file is a profile of their own (file permissions treat the owner apart).
Deciding once per profile and image makes the audit and `access.json` grow with profiles x
images, not with users.

A profile's `id` is a hash of what defines it, so the same groups get the same id in every
generation (diffs and reports can be compared by id).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Collection, Dict, FrozenSet, Iterable, List, Optional, Set, Tuple

from hpcpolicy.directory.model import Snapshot, User
from hpcpolicy.images.scope import NOBODY_UIDS, may_run
from hpcpolicy.policy.model import Policy

SAMPLE = 5


@dataclass(frozen=True)
class Profile:
    """Users who are treated alike: the named groups they hold, eligibility, a file owner."""

    id: str
    groups: Tuple[str, ...]  # sorted
    eligible: bool
    owner: Optional[str]  # the user name when this is a file owner's own profile
    members: Tuple[str, ...]  # sorted user names

    @property
    def group_set(self) -> FrozenSet[str]:
        return frozenset(self.groups)

    @property
    def label(self) -> str:
        """How a person names the profile: its groups (or "no named group"), and the rest."""
        text = " + ".join(self.groups) if self.groups else "no named group"
        if self.owner is not None:
            text += f" (owner {self.owner})"
        if not self.eligible:
            text += " (not eligible)"
        return text

    def as_dict(self, members: bool = False) -> Dict[str, object]:
        out: Dict[str, object] = {
            "id": self.id, "groups": list(self.groups), "eligible": self.eligible,
            "owner": self.owner, "users": len(self.members),
            "sample": list(self.members[:SAMPLE]),
        }
        if members:
            out["members"] = list(self.members)
        return out


def profile_id(groups: Iterable[str], eligible: bool, owner: Optional[str] = None) -> str:
    """Stable across runs and generations for the same defining facts."""
    text = json.dumps([sorted(groups), eligible, owner], separators=(",", ":"))
    return "p-" + hashlib.sha256(text.encode()).hexdigest()[:10]


def named_groups(policy: Policy) -> Set[str]:
    """Groups whose membership changes a verdict under the rules: image rules and collections
    (any other mechanism that names groups, such as a site image store, adds its groups here)."""
    named = {g for r in policy.images.rules for g in r.groups}
    named.update(c.group for c in policy.images.collections)
    return named


def directory_users(policy: Policy, snapshot: Snapshot) -> List[User]:
    """Users the policy is about: uid >= min_uid and not nobody, sorted by name (eligible or
    not: a disabled account is a profile of its own, not absent)."""
    low = policy.directory.min_uid
    return sorted((u for u in snapshot.users.values()
                   if u.uid >= low and u.uid not in NOBODY_UIDS), key=lambda u: u.name)


def build_profiles(
    policy: Policy,
    snapshot: Snapshot,
    users: Iterable[User],
    groups: Collection[str],
    owner_uids: FrozenSet[int] = frozenset(),
) -> List[Profile]:
    """Partition `users` into profiles by the `groups` they hold (primary group included),
    eligibility and file ownership. One pass over the users; memberships come from the few
    named groups, never from every user's groups."""
    held: Dict[str, List[str]] = {}
    for group in sorted(groups):
        for member in snapshot.members_of(group):
            held.setdefault(member, []).append(group)
    buckets: Dict[Tuple[Tuple[str, ...], bool, Optional[str]], List[str]] = {}
    empty: Tuple[str, ...] = ()
    d = policy.directory
    for user in users:
        mine = held.get(user.name)
        # eligible: node-wide files are rendered for this user (`images.scope.eligible_users`)
        key = (tuple(mine) if mine else empty, may_run(d, user),
               user.name if user.uid in owner_uids else None)
        buckets.setdefault(key, []).append(user.name)
    out = [Profile(profile_id(g, e, o), g, e, o, tuple(sorted(names)))
           for (g, e, o), names in buckets.items()]
    out.sort(key=lambda p: (p.owner is not None, not p.eligible, len(p.groups), p.groups,
                            p.owner or ""))
    return out
