"""Render /etc/subuid and /etc/subgid: `KEY:START:COUNT` lines, nothing else.

No header comment and no blank lines: several consumers (Apptainer's fakeroot code,
util-linux `unshare --map-auto`) drop or reject them. Both files hold identical ranges, so a
user's container files get the same numeric owner and group. Lines are sorted by start, which
is also what shadow's own tools leave behind.
"""

from __future__ import annotations

import operator
import re
from operator import attrgetter
from typing import Dict, List, Optional, Sequence

from hpcpolicy.errors import InvalidInput
from hpcpolicy.policy.model import Policy
from hpcpolicy.subid.model import Allocation

ID_LIMIT = 4294967295
_UNSAFE_NAME_CHARS = re.compile(r"[\x00- :\x7f]")  # c <= " ", ":" or DEL
_BY_START_UID = attrgetter("start", "uid")


def _name_key(policy: Policy, name: str) -> str:
    if not name or name.isdigit() or name[0] in "!#-" or _UNSAFE_NAME_CHARS.search(name):
        raise InvalidInput(f"user name {name!r} cannot be a subuid key", policy.path, "subid.key")
    return name


def _plain_lines(ordered: Sequence[Allocation]) -> Optional[List[str]]:
    """The lines of `key = "uid"` when every range passes `_lines`' checks, checked a field at a
    time over all ranges; None (let `_lines` find and name the culprit) otherwise."""
    if not ordered:
        return []
    _names, uids, starts, counts = zip(*ordered)
    if {type(v) for v in (*uids, *starts, *counts)} != {int}:
        return None
    ends = list(map(operator.add, starts, counts))
    if (min(uids) < 0 or max(uids) >= ID_LIMIT or min(counts) < 1 or starts[0] < 1
            or max(ends) > ID_LIMIT or not all(map(operator.le, ends, starts[1:]))):
        return None
    return [f"{uid}:{start}:{count}\n" for uid, start, count in zip(uids, starts, counts)]


def _lines(policy: Policy, ordered: Sequence[Allocation]) -> List[str]:
    """One line per range, re-asserting what allocation already guaranteed (defence in depth):
    integer ids inside 1..2^32-2, no overlap with the previous range."""
    by_name = policy.subid.key == "name"
    plain = None if by_name else _plain_lines(ordered)
    if plain is not None:
        return plain
    out: List[str] = []
    reach = 1  # first id the next range may use: after the previous range, never 0
    for alloc in ordered:
        name, uid, start, count = alloc
        if not (type(uid) is int and type(start) is int and type(count) is int
                and 0 <= uid < ID_LIMIT and start >= reach and count >= 1
                and start + count <= ID_LIMIT):
            raise InvalidInput(f"refusing to render range {alloc!r} (bad or overlapping)",
                               policy.path, "subid")
        reach = start + count
        key = _name_key(policy, name) if by_name else uid
        out.append(f"{key}:{start}:{count}\n")
    return out


def render(policy: Policy, allocations: Sequence[Allocation]) -> Dict[str, bytes]:
    """`etc/subuid` and `etc/subgid` (identical bytes; empty when nobody is eligible)."""
    ordered = sorted(allocations, key=_BY_START_UID)  # allocate's order: a linear pass
    lines = _lines(policy, ordered)
    data = "".join(lines).encode("ascii" if policy.subid.key == "uid" else "utf-8")
    return {"etc/subuid": data, "etc/subgid": data}
