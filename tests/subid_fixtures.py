"""Small builders for sub-ID tests: policies and directory snapshots from plain values."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterable, List, Optional, Tuple

from hpcpolicy.directory.model import Group, Snapshot, User
from hpcpolicy.policy.model import Directory, Policy, Site, SubId


def policy(min_uid: int = 1000, max_uid: Optional[int] = None, exclude_disabled: bool = True,
           name: str = "cluster-a", deploy_root: str = "/shared/hpcpolicy",
           **subid: Any) -> Policy:
    return Policy(
        path="site.toml", sha256="0" * 64, site=Site(name=name, deploy_root=deploy_root),
        directory=Directory(min_uid=min_uid, max_uid=max_uid, exclude_disabled=exclude_disabled),
        subid=SubId(**subid),
    )


def with_subid(pol: Policy, **changes: Any) -> Policy:
    return replace(pol, subid=replace(pol.subid, **changes))


def user(name: str, uid: int, gid: Optional[int] = None, disabled: bool = False) -> User:
    return User(name, uid, uid if gid is None else gid, "files", disabled)


def users(uids: Iterable[int], prefix: str = "u") -> List[User]:
    return [user(f"{prefix}{uid}", uid) for uid in uids]


def snap(us: Iterable[User], groups: Iterable[Tuple[str, int, Iterable[str]]] = ()) -> Snapshot:
    return Snapshot.of(list(us), [Group(n, g, frozenset(m), "files") for n, g, m in groups])
