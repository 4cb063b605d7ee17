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


def _line(policy: Policy, alloc: Allocation) -> str:
    """One line, re-asserting what allocation already guaranteed (defence in depth)."""
    ok = (isinstance(alloc.uid, int) and 0 <= alloc.uid < ID_LIMIT and alloc.start >= 1
          and alloc.count >= 1 and alloc.start + alloc.count <= ID_LIMIT)
    if not ok:
        raise InvalidInput(f"refusing to render range {alloc!r}", policy.path, "subid")
    return f"{_key(policy, alloc)}:{alloc.start}:{alloc.count}\n"


def _check_disjoint(policy: Policy, ordered: Sequence[Allocation]) -> None:
    for prev, cur in zip(ordered, ordered[1:]):
        if cur.start <= prev.last:
            raise InvalidInput(f"refusing to render overlapping ranges {prev!r} and {cur!r}",
                               policy.path, "subid")


def render(policy: Policy, allocations: Sequence[Allocation]) -> Dict[str, bytes]:
    """`etc/subuid` and `etc/subgid` (identical bytes; empty when nobody is eligible)."""
    ordered = sorted(allocations, key=lambda a: (a.start, a.uid))
    _check_disjoint(policy, ordered)
    lines: List[str] = [_line(policy, a) for a in ordered]
    data = "".join(lines).encode("ascii" if policy.subid.key == "uid" else "utf-8")
    return {"etc/subuid": data, "etc/subgid": data}
