"""Render /etc/subuid and /etc/subgid: `KEY:START:COUNT` lines, nothing else.

No header comment and no blank lines: several consumers (Apptainer's fakeroot code,
util-linux `unshare --map-auto`) drop or reject them. Both files hold identical ranges, so a
user's container files get the same numeric owner and group. Lines are sorted by start, which
is also what shadow's own tools leave behind.
"""

from __future__ import annotations

import re
from operator import attrgetter
from typing import Dict, List, Sequence

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


def _lines(policy: Policy, ordered: Sequence[Allocation]) -> List[str]:
    """One line per range, re-asserting what allocation already guaranteed (defence in depth):
    integer ids inside 1..2^32-2, no overlap with the previous range."""
    by_name = policy.subid.key == "name"
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
