"""Crafted policies and directories for the audit tests (no site file, no I/O)."""

from __future__ import annotations

from typing import Iterable, Optional, Sequence, Tuple

from hpcpolicy.directory.model import Group, Snapshot, User
from hpcpolicy.policy.model import Collection, Directory, ImageRule, Images, Policy, Site

LICENCE_GID = 4242
OTHER_GID = 4343


def rule(scope: str, action: str = "allow", groups: Sequence[str] = (), index: int = 0,
         signed_by: Optional[str] = None) -> ImageRule:
    return ImageRule(scope, action, tuple(groups), signed_by=signed_by,
                     signed_by_path=f"/keys/{signed_by}" if signed_by else None, index=index)


def numbered(rules: Iterable[ImageRule]) -> Tuple[ImageRule, ...]:
    """Give rules their 1-based file positions."""
    return tuple(
        ImageRule(r.scope, r.action, r.groups, r.signed_by, r.signed_by_path, i)
        for i, r in enumerate(rules, 1)
    )


def make_policy(
    rules: Sequence[ImageRule] = (),
    default: str = "deny",
    collections: Sequence[Collection] = (),
    runtimes: Sequence[str] = ("apptainer", "podman", "enroot"),
    local: str = "deny",
    exclude_disabled: bool = True,
) -> Policy:
    return Policy(
        path="site.toml",
        sha256="0" * 64,
        site=Site(name="test", deploy_root="/d", runtimes=tuple(runtimes)),
        directory=Directory(min_uid=1000, exclude_disabled=exclude_disabled),
        images=Images(default=default, local_transports=local, rules=numbered(rules),
                      collections=tuple(collections)),
    )


def snapshot() -> Snapshot:
    """alice (bio), bob (chem, licence), carol (nothing), dave disabled (bio), sys below min_uid."""
    users = [
        User("alice", 5001, 5001, "files"),
        User("bob", 5002, 5002, "files"),
        User("carol", 5003, 5003, "files"),
        User("dave", 5004, 5004, "files", disabled=True),
        User("sys", 500, 500, "files"),
        User("nobody", 65534, 65534, "files"),
    ]
    groups = [
        Group("alice", 5001, frozenset(), "files"),
        Group("bob", 5002, frozenset(), "files"),
        Group("carol", 5003, frozenset(), "files"),
        Group("dave", 5004, frozenset(), "files"),
        Group("sys", 500, frozenset(), "files"),
        Group("bio", 6001, frozenset({"alice", "dave"}), "files"),
        Group("chem", 6002, frozenset({"bob"}), "files"),
        Group("licence", LICENCE_GID, frozenset({"bob"}), "files"),
        Group("other", OTHER_GID, frozenset({"carol"}), "files"),
    ]
    return Snapshot.of(users, groups)
