"""render/subid.py: exact bytes, and refusal of anything a consumer would misread."""

from __future__ import annotations

from typing import List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hpcpolicy.render.subid as subid_render
from hpcpolicy.errors import InvalidInput
from hpcpolicy.render.subid import render
from hpcpolicy.subid.allocate import allocate
from hpcpolicy.subid.check import check_text
from hpcpolicy.subid.model import Allocation
from tests.subid_fixtures import policy, snap, user


def test_uid_keyed_lines_sorted_by_start_identical_files() -> None:
    allocs = [Allocation("bob", 1002, 589824, 65536), Allocation("alice", 1001, 524288, 65536)]
    out = render(policy(), allocs)
    assert out == {"etc/subuid": b"1001:524288:65536\n1002:589824:65536\n",
                   "etc/subgid": b"1001:524288:65536\n1002:589824:65536\n"}


def test_name_key_and_empty_file() -> None:
    out = render(policy(key="name"), [Allocation("alice", 1001, 524288, 65536)])
    assert out["etc/subuid"] == b"alice:524288:65536\n"
    assert render(policy(), []) == {"etc/subuid": b"", "etc/subgid": b""}


@pytest.mark.parametrize("alloc, key", [
    (Allocation("x", 1, 4294967295 - 10, 65536), "uid"),  # crosses (uid_t)-1
    (Allocation("x", 1, 0, 65536), "uid"),
    (Allocation("x", 1, 100000, 0), "uid"),
    (Allocation("a:b", 1, 100000, 10), "name"),
    (Allocation("a\nb", 1, 100000, 10), "name"),
    (Allocation("4242", 1, 100000, 10), "name"),  # Apptainer would read it as a uid
    (Allocation("!x", 1, 100000, 10), "name"),
])
def test_refuses_what_consumers_misread(alloc: Allocation, key: str) -> None:
    with pytest.raises(InvalidInput):
        render(policy(key=key), [alloc])


def test_refuses_overlap() -> None:
    with pytest.raises(InvalidInput, match="bad or overlapping"):
        render(policy(), [Allocation("a", 1, 100000, 10), Allocation("b", 2, 100009, 10)])


def test_rendered_allocation_passes_check() -> None:
    users = [user(f"u{i}", 1000 + i) for i in range(200)]
    res = allocate(policy(), snap(users), None, now="t")
    text = render(policy(), res.allocations)["etc/subuid"].decode()
    assert len(text.splitlines()) == 200
    assert check_text(text, "subuid", {u.uid for u in users}) == []


_edge = st.sampled_from([-1, 0, 1, 9, 10, 65536, 4294967285, 4294967294, 4294967295, True])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.builds(Allocation, st.just("a"), _edge, _edge, _edge), max_size=4))
def test_all_at_once_check_agrees_with_range_by_range(allocs: List[Allocation]) -> None:
    """`_plain_lines` takes ranges exactly when the range-by-range checks pass."""
    ordered = sorted(allocs, key=lambda a: (a.start, a.uid))
    reach, fine = 1, True
    for a in ordered:
        fine = fine and all(type(v) is int for v in (a.uid, a.start, a.count)) and (
            0 <= a.uid < 4294967295 and a.start >= reach and a.count >= 1
            and a.start + a.count <= 4294967295)
        reach = a.start + a.count
    plain = subid_render._plain_lines(ordered)
    if fine:
        assert plain == [f"{a.uid}:{a.start}:{a.count}\n" for a in ordered]
    else:
        assert plain is None
        with pytest.raises(InvalidInput, match="refusing to render range"):
            render(policy(), allocs)
