"""Read every configured directory source and merge them into one `Snapshot`.

Merge rules (`[directory].sources`):

* A user (or group) present in several sources must agree: same name, same UID (GID) and, for
  users, the same primary GID. One name with two IDs, or one ID with two names across sources,
  is invalid input naming both sources: a node resolves the first NSS source only, so a
  disagreement means sub-ID ranges or group rules would bind to the wrong account.
* Agreeing entries merge: `source` becomes "files+ldap"; a user is disabled when any source
  says so (a lock or expiry in LDAP is not undone by a local entry); group members are the union.
* All conflicts are reported at once.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from hpcpolicy.directory.files import read_files
from hpcpolicy.directory.model import Group, Snapshot, User
from hpcpolicy.errors import InvalidInput, Problem, printable
from hpcpolicy.policy.inputs import check_anchor, trust_for, trust_problem
from hpcpolicy.policy.model import LdapSource, Policy

SOURCE_ORDER = ("files", "ldap")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceData:
    """What one source returned, with where it came from (for conflict messages)."""

    name: str  # "files" or "ldap"
    users_at: str  # e.g. "/etc/passwd" or "ldap://host ou=people,dc=example,dc=org"
    groups_at: str
    users: List[User] = field(default_factory=list)
    groups: List[Group] = field(default_factory=list)
    warnings: List[Problem] = field(default_factory=list)


def read_directory(policy: Policy) -> Snapshot:
    """Users and groups of every source in `policy.directory.sources`, merged and checked.
    What a source noticed but did not refuse is logged and kept in `Snapshot.warnings`."""
    snapshot = merge([_read_source(policy, name) for name in policy.directory.sources])
    for warning in snapshot.warnings:
        log.warning("%s", warning)
    return snapshot


def referral_warnings(at: str, referrals: Sequence[Tuple[str, str]]) -> List[Problem]:
    """One warning per search base naming the referrals the server returned there."""
    by_base: Dict[str, List[str]] = {}
    for base, uri in referrals:
        by_base.setdefault(base, []).append(printable(uri, 200))
    out = []
    for base, uris in by_base.items():
        shown = ", ".join(uris[:10]) + (f" and {len(uris) - 10} more" if len(uris) > 10 else "")
        out.append(Problem(at, printable(base, 200), (
            f"the server referred {len(uris)} part(s) of this search elsewhere ({shown}): "
            "referrals are not followed, so entries there are not read; sssd and nslcd follow "
            "them, so nodes may know users who get no sub-ID range here. Point user_base / "
            "group_base or uri at the server that holds them")))
    return out


def _read_source(policy: Policy, name: str) -> SourceData:
    directory = policy.directory
    if name == "files":
        users, groups = read_files(directory.files, trust_for(policy.site.deploy_owner),
                                   policy.path)
        return SourceData(name, directory.files.passwd, directory.files.group, users, groups)
    if name == "ldap":
        if directory.ldap is None:
            raise InvalidInput(
                "sources names \"ldap\" but there is no [directory.ldap] table",
                file=policy.path,
                path="directory.sources",
            )
        # Imported here: ldap3 is slow to import and only needed when LDAP is configured.
        from hpcpolicy.directory.ldap import describe, read_ldap_state

        check_ldap_files(policy, directory.ldap)
        users, groups, state = read_ldap_state(directory.ldap)
        at = describe(directory.ldap)
        return SourceData(
            name,
            f"{at} {directory.ldap.user_base}".strip(),
            f"{at} {directory.ldap.group_base}".strip(),
            users,
            groups,
            referral_warnings(at, state.referrals),
        )
    raise InvalidInput(f"unknown source {name!r}", file=policy.path, path="directory.sources")


def check_ldap_files(policy: Policy, src: LdapSource) -> None:
    """The bind password file and the CA file decide as much as the deploy root: the password
    file must be owned by root, the deploy owner or the operator and not group/other-writable
    (its no-group/other-read rule is checked as it is read); the CA file not world-writable."""
    problems: List[Problem] = []
    if src.bind_dn is not None and src.bind_password_file:
        try:
            st = os.lstat(src.bind_password_file)
        except OSError:
            st = None  # reading it says why
        if st is not None and stat.S_ISREG(st.st_mode):
            why = trust_problem(src.bind_password_file, st, trust_for(policy.site.deploy_owner))
            if why:
                problems.append(Problem(policy.path, "directory.ldap.bind_password_file", why))
    if src.ca_file and os.path.lexists(src.ca_file):
        try:
            check_anchor(src.ca_file, file=policy.path, key="directory.ldap.ca_file")
        except InvalidInput as err:
            problems.extend(err.problems)
    if problems:
        raise InvalidInput(problems)


def merge(sources: Sequence[SourceData]) -> Snapshot:
    """One snapshot from several sources; InvalidInput listing every disagreement."""
    problems: List[Problem] = []
    users = _merge_users(sources, problems)
    groups = _merge_groups(sources, problems)
    if problems:
        raise InvalidInput(problems)
    return Snapshot(users, groups, [w for src in sources for w in src.warnings])


def _label(src: SourceData, at: str) -> str:
    return f"{src.name} ({at})"


def _combined(a: str, b: str) -> str:
    names = set(a.split("+")) | set(b.split("+"))
    return "+".join(n for n in SOURCE_ORDER if n in names) or "+".join(sorted(names))


def _single(sources: Sequence[SourceData], users: bool) -> Optional[Dict[str, Any]]:
    """The common case, one source without repeated names, needs no merging at all: the result
    is its entries by name (what the general merge below yields for it, without its cost)."""
    if len(sources) != 1:
        return None
    entries = sources[0].users if users else sources[0].groups
    out = {e.name: e for e in entries}
    return out if len(out) == len(entries) else None


def _merge_users(sources: Sequence[SourceData], problems: List[Problem]) -> Dict[str, User]:
    single = _single(sources, users=True)
    if single is not None:
        return single
    out: Dict[str, User] = {}
    origin: Dict[str, SourceData] = {}  # name -> first source that had it
    by_uid: Dict[int, Tuple[str, SourceData]] = {}
    for src in sources:
        for user in src.users:
            first = out.get(user.name)
            if first is None:
                owner = by_uid.get(user.uid)
                if owner is not None and owner[1] is not src:
                    problems.append(_id_clash("uid", user.uid, owner, user.name, src, True))
                    continue
                out[user.name] = user
                origin[user.name] = src
                by_uid.setdefault(user.uid, (user.name, src))
                continue
            prev = origin[user.name]
            if (first.uid, first.gid) != (user.uid, user.gid):
                problems.append(
                    Problem(
                        prev.users_at,
                        "",
                        f"user {user.name!r} has uid {first.uid} gid {first.gid} in "
                        f"{_label(prev, prev.users_at)} but uid {user.uid} gid {user.gid} in "
                        f"{_label(src, src.users_at)}",
                    )
                )
                continue
            out[user.name] = first._replace(
                source=_combined(first.source, user.source),
                disabled=first.disabled or user.disabled,
                home=first.home or user.home,
            )
    return out


def _merge_groups(sources: Sequence[SourceData], problems: List[Problem]) -> Dict[str, Group]:
    single = _single(sources, users=False)
    if single is not None:
        return single
    out: Dict[str, Group] = {}
    origin: Dict[str, SourceData] = {}
    by_gid: Dict[int, Tuple[str, SourceData]] = {}
    for src in sources:
        for group in src.groups:
            first = out.get(group.name)
            if first is None:
                owner = by_gid.get(group.gid)
                if owner is not None and owner[1] is not src:
                    problems.append(_id_clash("gid", group.gid, owner, group.name, src, False))
                    continue
                out[group.name] = group
                origin[group.name] = src
                by_gid.setdefault(group.gid, (group.name, src))
                continue
            prev = origin[group.name]
            if first.gid != group.gid:
                problems.append(
                    Problem(
                        prev.groups_at,
                        "",
                        f"group {group.name!r} has gid {first.gid} in "
                        f"{_label(prev, prev.groups_at)} but gid {group.gid} in "
                        f"{_label(src, src.groups_at)}",
                    )
                )
                continue
            out[group.name] = first._replace(
                members=first.members | group.members,
                source=_combined(first.source, group.source),
            )
    return out


def _id_clash(
    id_word: str,
    ident: int,
    owner: Tuple[str, SourceData],
    name: str,
    src: SourceData,
    is_user: bool,
) -> Problem:
    kind = "user" if is_user else "group"
    first_name, first_src = owner
    first_at = first_src.users_at if is_user else first_src.groups_at
    at = src.users_at if is_user else src.groups_at
    return Problem(
        first_at,
        "",
        f"{id_word} {ident} is {kind} {first_name!r} in {_label(first_src, first_at)} "
        f"but {kind} {name!r} in {_label(src, at)}",
    )
