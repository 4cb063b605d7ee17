"""Directory data as the rest of hpcpolicy sees it, whatever source it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Iterable, List, NamedTuple, Optional, Set, Tuple

from hpcpolicy.errors import Problem


class User(NamedTuple):
    """One account. A NamedTuple (immutable like a frozen dataclass, about 3x cheaper to
    build): readers create one per directory entry, 100,000 at a time."""

    name: str
    uid: int
    gid: int  # primary group
    source: str  # "files" or "ldap" (or "files+ldap" when both agree)
    disabled: bool = False  # expired, locked or nologin
    # home directory as the directory states it (passwd field 6, LDAP `homeDirectory`);
    # None when the entry has none. Kept so that a site image store below any user's home is
    # refused, whichever source holds that user.
    home: Optional[str] = None


class Group(NamedTuple):
    name: str
    gid: int
    members: FrozenSet[str]  # user names (nested groups already resolved)
    source: str


class _Membership:
    """Who is in which group, primary groups included, computed once per snapshot.

    Without it `groups_of` scans every group for every user and `members_of` every user:
    O(users x groups) for the 30,000-user sites that eligibility and the node-wide image rules
    ask about. Each half is built on first use (eligibility needs only `primary`).
    """

    def __init__(self, users: Dict[str, User], groups: Dict[str, Group]) -> None:
        self.users, self.groups = users, groups  # what it was built from (see `fits`)
        self.sizes = (len(users), len(groups))
        self._listed: Optional[Dict[str, List[str]]] = None
        self._by_gid: Dict[int, List[str]] = {}
        self._primary: Optional[Dict[int, List[str]]] = None

    def fits(self, users: Dict[str, User], groups: Dict[str, Group]) -> bool:
        return (self.users is users and self.groups is groups
                and self.sizes == (len(users), len(groups)))

    def listed(self) -> Tuple[Dict[str, List[str]], Dict[int, List[str]]]:
        """(user name -> groups listing it as a member, gid -> names of groups with that gid)."""
        if self._listed is None:
            self._listed = {}
            for g in self.groups.values():
                self._by_gid.setdefault(g.gid, []).append(g.name)
                for member in g.members:
                    self._listed.setdefault(member, []).append(g.name)
        return self._listed, self._by_gid

    def primary(self) -> Dict[int, List[str]]:
        """gid -> names of the users whose primary group it is."""
        if self._primary is None:
            self._primary = {}
            for u in self.users.values():
                self._primary.setdefault(u.gid, []).append(u.name)
        return self._primary


@dataclass
class Snapshot:
    """Everything read from the directory for one run.

    Treat it as immutable once queried: `groups_of` / `members_of` use an index built on the
    first call (rebuilt if `users` or `groups` is replaced or changes size).
    """

    users: Dict[str, User] = field(default_factory=dict)
    groups: Dict[str, Group] = field(default_factory=dict)
    # what a reader noticed but did not refuse (e.g. LDAP referrals it did not follow): a
    # Problem's file is the source, its path the DN or line
    warnings: List[Problem] = field(default_factory=list)
    _index: Optional[_Membership] = field(default=None, init=False, repr=False, compare=False)

    def _membership(self) -> _Membership:
        index = self._index
        if index is None or not index.fits(self.users, self.groups):
            index = self._index = _Membership(self.users, self.groups)
        return index

    def groups_of(self, user: str) -> Set[str]:
        """Names of the groups a user belongs to, primary group included."""
        listed, by_gid = self._membership().listed()
        found = set(listed.get(user, ()))
        u = self.users.get(user)
        if u is not None:
            found.update(by_gid.get(u.gid, ()))
        return found

    def members_of(self, group: str) -> Set[str]:
        """User names in a group, users whose primary group it is included."""
        g = self.groups.get(group)
        if g is None:
            return set()
        out = set(g.members)
        out.update(self._membership().primary().get(g.gid, ()))
        return out

    def real_ids(self) -> Tuple[Set[int], Set[int]]:
        """All real UIDs and GIDs known (sub-ID space must not meet them)."""
        return {u.uid for u in self.users.values()}, {g.gid for g in self.groups.values()}

    @staticmethod
    def of(users: Iterable[User], groups: Iterable[Group]) -> Snapshot:
        return Snapshot({u.name: u for u in users}, {g.name: g for g in groups})
