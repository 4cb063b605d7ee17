"""Render /etc/subuid and /etc/subgid: `KEY:START:COUNT` lines, nothing else.

No header comment and no blank lines: several consumers (Apptainer's fakeroot code,
util-linux `unshare --map-auto`) drop or reject them. Both files hold identical ranges, so a
user's container files get the same numeric owner and group. Lines are sorted by start, which
is also what shadow's own tools leave behind.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

from hpcpolicy.errors import InvalidInput
from hpcpolicy.policy.model import Policy
from hpcpolicy.subid.model import Allocation

ID_LIMIT = 4294967295


def _key(policy: Policy, alloc: Allocation) -> str:
    if policy.subid.key == "name":
        name = alloc.name
        unsafe = (not name or name.isdigit() or name[0] in "!#-"
                  or any(c <= " " or c in ":\x7f" for c in name))
        if unsafe:
            raise InvalidInput(f"user name {name!r} cannot be a subuid key", policy.path,
                               "subid.key")
        return name
    return str(alloc.uid)


def _lines(policy: Policy, ordered: Sequence[Allocation]) -> List[str]:
    """One line per range, re-asserting what allocation already guaranteed (defence in depth):
    integer ids inside 1..2^32-2, no overlap with the previous range."""
    out: List[str] = []
    reach = 0  # first id after the previous range
    for alloc in ordered:
        start, count, uid = alloc.start, alloc.count, alloc.uid
        if not (type(uid) is int and type(start) is int and type(count) is int
                and 0 <= uid < ID_LIMIT and start >= max(1, reach) and count >= 1
                and start + count <= ID_LIMIT):
            raise InvalidInput(f"refusing to render range {alloc!r} (bad or overlapping)",
                               policy.path, "subid")
        reach = start + count
        out.append(f"{_key(policy, alloc)}:{start}:{count}\n")
    return out


def render(policy: Policy, allocations: Sequence[Allocation]) -> Dict[str, bytes]:
    """`etc/subuid` and `etc/subgid` (identical bytes; empty when nobody is eligible)."""
    ordered = sorted(allocations, key=lambda a: (a.start, a.uid))
    lines = _lines(policy, ordered)
    data = "".join(lines).encode("ascii" if policy.subid.key == "uid" else "utf-8")
    return {"etc/subuid": data, "etc/subgid": data}
