"""[subid]: the sub-ID space, its holes, who gets a range, and the revoke guard.

The checks here need no directory; the directory-dependent ones (real IDs inside the space, how
many eligible users fit) run in `directory.against` and `subid.allocate.check_fit`.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from hpcpolicy.errors import ProblemCollector
from hpcpolicy.policy.model import Directory, SubId
from hpcpolicy.policy.schema import (
    INVALID,
    Checker,
    Field,
    array,
    boolean,
    integer,
    item_path,
    number,
    one_of,
    read_table,
    type_name,
)
from hpcpolicy.policy.sections.common import MAX_ID, account

Pair = Tuple[int, int]


def _pair() -> Checker:
    """A reserved hole `[first, last]`, inclusive."""
    bound = integer(0, MAX_ID)

    def check(value: Any, where: str, out: ProblemCollector) -> Any:
        if not isinstance(value, list) or len(value) != 2:
            out.add(where, f"expected [first, last] (two integers), got {type_name(value)}"
                    + (f" of {len(value)}" if isinstance(value, list) else ""))
            return INVALID
        first = bound(value[0], item_path(where, 1), out)
        last = bound(value[1], item_path(where, 2), out)
        if INVALID in (first, last):
            return INVALID
        if first > last:
            out.add(where, f"first ({first}) must be <= last ({last})")
            return INVALID
        return (first, last)

    return check


_S = SubId()
FIELDS = {
    "enabled": Field(boolean(), _S.enabled),
    "strategy": Field(one_of("ledger", "uid"), _S.strategy),
    "start": Field(integer(1, MAX_ID), _S.start),
    "end": Field(integer(1, MAX_ID), _S.end),
    "count": Field(integer(1, MAX_ID), _S.count),
    "key": Field(one_of("uid", "name"), _S.key),
    "eligible_groups": Field(array(account("group name"), unique=True), _S.eligible_groups),
    "exclude_users": Field(array(account("user name"), unique=True), _S.exclude_users),
    "reserved": Field(array(_pair()), _S.reserved),
    "max_revoke": Field(number(0, 1), _S.max_revoke),
}


def _check_space(s: SubId, out: ProblemCollector) -> bool:
    if s.start >= s.end:
        out.add("subid.end", f"must be greater than subid.start ({s.start}), got {s.end}")
        return False
    size = s.end - s.start + 1
    if s.count > size:
        out.add("subid.count", f"{s.count} does not fit in the sub-ID space [{s.start}, "
                f"{s.end}] ({size} IDs)")
        return False
    return True


def _check_reserved(s: SubId, out: ProblemCollector) -> bool:
    """Holes lie inside the space or wholly outside it, and never overlap each other."""
    ok = True
    seen: List[Tuple[int, Pair]] = []
    for i, (first, last) in enumerate(s.reserved, 1):
        where = item_path("subid.reserved", i)
        if first < s.start <= last or first <= s.end < last:
            out.add(where, f"[{first}, {last}] straddles the edge of the sub-ID space "
                    f"[{s.start}, {s.end}]: a hole must lie inside it")
            ok = False
        for j, (a, b) in seen:
            if first <= b and a <= last:
                out.add(where, f"[{first}, {last}] overlaps subid.reserved[{j}] [{a}, {b}]")
                ok = False
        seen.append((i, (first, last)))
    return ok


def largest_gap(s: SubId) -> int:
    """The longest run of the space left free by the holes."""
    best, at = 0, s.start
    for first, last in sorted(s.reserved):
        if last < s.start or first > s.end:
            continue
        best = max(best, first - at)
        at = max(at, last + 1)
    return max(best, s.end + 1 - at)


def _check_uid_strategy(s: SubId, d: Directory, out: ProblemCollector) -> bool:
    """Strategy uid is a formula: the highest allowed UID must still land inside the space."""
    if s.strategy != "uid" or d.max_uid is None:
        return True
    top = s.start + (d.max_uid - d.min_uid) * s.count + s.count - 1
    if top <= s.end:
        return True
    fit = (s.end - s.start + 1) // s.count
    out.add("subid.strategy", f"'uid' gives directory.max_uid {d.max_uid} the range ending at "
            f"{top}, beyond subid.end ({s.end}): only {fit} UIDs from min_uid {d.min_uid} fit "
            "(raise end, lower count or directory.max_uid)")
    return False


def parse(raw: Any, out: ProblemCollector) -> Optional[SubId]:
    values = read_table(raw, "subid", FIELDS, out)
    if values is None:
        return None
    subid = SubId(**values)
    if not (_check_space(subid, out) and _check_reserved(subid, out)):
        return None
    if largest_gap(subid) < subid.count:
        out.add("subid.reserved", f"leaves no free run of {subid.count} IDs in the sub-ID space")
        return None
    return subid


def check_with_directory(subid: SubId, directory: Directory, out: ProblemCollector) -> None:
    """Rules joining [subid] and [directory] (both already sound)."""
    _check_uid_strategy(subid, directory, out)
