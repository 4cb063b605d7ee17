"""Cross-checks of a loaded policy against the directory (users and groups actually present).

Kept apart from `load` because it needs a directory snapshot: `validate --offline` skips it,
`validate`, `render` and `apply` run it. Pure: the snapshot is read by the caller.
"""

from __future__ import annotations

import bisect
from typing import List, Sequence, Tuple

from hpcpolicy.directory.model import Snapshot
from hpcpolicy.errors import Problem, join_path
from hpcpolicy.policy.model import ApptainerLimits, Policy, runtime_settings

SHOW_OFFENDERS = 5


def _sources(policy: Policy) -> str:
    return ", ".join(policy.directory.sources)


def _missing_groups(policy: Policy, snapshot: Snapshot) -> List[Problem]:
    """Every group the site file names must exist, or a rule silently applies to nobody."""
    where = _sources(policy)
    named: List[Tuple[str, str]] = []
    named += [(join_path("subid", "eligible_groups", i), g)
              for i, g in enumerate(policy.subid.eligible_groups, 1)]
    for rule in policy.images.rules:
        if rule.alias_of:  # a `h:443` copy of a rule: its groups are the written rule's
            continue
        named += [(join_path("images", "rule", rule.index, "groups", i), g)
                  for i, g in enumerate(rule.groups, 1)]
    named += [(join_path("images", "collection", i, "group"), c.group)
              for i, c in enumerate(policy.images.collections, 1)]
    return [
        Problem(policy.path, path, f"group {name!r} not found in the directory ({where})")
        for path, name in named
        if name not in snapshot.groups
    ]


def _missing_limit_names(policy: Policy, snapshot: Snapshot) -> List[Problem]:
    """Apptainer resolves `limit container owners/groups` names on every run and refuses the
    container when one does not resolve: each must be in the directory (root always is)."""
    where = _sources(policy)
    out: List[Problem] = []
    for base, limits in runtime_settings(policy.runtime, policy.node_classes,
                                         "apptainer_limits", ApptainerLimits):
        for key, names, known, what in (
                ("container_owners", limits.container_owners, snapshot.users, "user"),
                ("container_groups", limits.container_groups, snapshot.groups, "group")):
            for i, name in enumerate(names or (), 1):
                if name not in known and name != "root":
                    out.append(Problem(policy.path, f"{base}.{key}[{i}]",
                                       f"{what} {name!r} not found in the directory ({where})"))
    return out


def _inside(ids: Sequence[int], first: int, last: int) -> List[int]:
    """The sorted ids that lie in [first, last]."""
    lo = bisect.bisect_left(ids, first)
    hi = bisect.bisect_right(ids, last)
    return list(ids[lo:hi])


def _describe(kind: str, ids: Sequence[int], snapshot: Snapshot) -> str:
    names = {u.uid: u.name for u in snapshot.users.values()} if kind == "UID" else {
        g.gid: g.name for g in snapshot.groups.values()}
    shown = ", ".join(f"{i} ({names[i]})" if i in names else str(i) for i in ids[:SHOW_OFFENDERS])
    more = f" and {len(ids) - SHOW_OFFENDERS} more" if len(ids) > SHOW_OFFENDERS else ""
    return f"{len(ids)} real {kind}{'s' if len(ids) != 1 else ''}: {shown}{more}"


def _space_meets_real_ids(policy: Policy, snapshot: Snapshot) -> List[Problem]:
    """A sub-ID range that contains a real ID lets a container user become that user on disk."""
    space = policy.subid
    uids, gids = snapshot.real_ids()
    found = []
    for kind, ids in (("UID", sorted(uids)), ("GID", sorted(gids))):
        inside = _inside(ids, space.start, space.end)
        if inside:
            found.append(_describe(kind, inside, snapshot))
    if not found:
        return []
    message = (f"sub-ID space [{space.start}, {space.end}] contains " + "; ".join(found)
               + ": move start/end clear of every real ID")
    return [Problem(policy.path, "subid.start", message)]


def check_against_directory(policy: Policy, snapshot: Snapshot) -> List[Problem]:
    """Every problem the directory reveals in the policy (empty: consistent)."""
    problems = _missing_groups(policy, snapshot) + _missing_limit_names(policy, snapshot)
    if policy.subid.enabled:
        problems += _space_meets_real_ids(policy, snapshot)
    return problems
