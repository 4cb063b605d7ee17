"""Directory data as the rest of hpcpolicy sees it, whatever source it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Iterable, Set, Tuple


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int  # primary group
    source: str  # "files" or "ldap" (or "files+ldap" when both agree)
    disabled: bool = False  # expired, locked or nologin


@dataclass(frozen=True)
class Group:
    name: str
    gid: int
    members: FrozenSet[str]  # user names (nested groups already resolved)
    source: str


@dataclass
class Snapshot:
    """Everything read from the directory for one run."""

    users: Dict[str, User] = field(default_factory=dict)
    groups: Dict[str, Group] = field(default_factory=dict)

    def groups_of(self, user: str) -> Set[str]:
        """Names of the groups a user belongs to, primary group included."""
        found = {g.name for g in self.groups.values() if user in g.members}
        u = self.users.get(user)
        if u is not None:
            found.update(g.name for g in self.groups.values() if g.gid == u.gid)
        return found

    def members_of(self, group: str) -> Set[str]:
        """User names in a group, users whose primary group it is included."""
        g = self.groups.get(group)
        if g is None:
            return set()
        out = set(g.members)
        out.update(u.name for u in self.users.values() if u.gid == g.gid)
        return out

    def real_ids(self) -> Tuple[Set[int], Set[int]]:
        """All real UIDs and GIDs known (sub-ID space must not meet them)."""
        return {u.uid for u in self.users.values()}, {g.gid for g in self.groups.values()}

    @staticmethod
    def of(users: Iterable[User], groups: Iterable[Group]) -> Snapshot:
        return Snapshot({u.name: u for u in users}, {g.name: g for g in groups})
