"""`subid import`: existing lines are adopted as they are, doubtful ones reported, never guessed."""

from __future__ import annotations

from typing import List

import pytest

from hpcpolicy.errors import InvalidInput
from hpcpolicy.subid.allocate import allocate
from hpcpolicy.subid.importer import import_files
from hpcpolicy.subid.ledger import LEFT, LIVE
from hpcpolicy.subid.operations import revoke
from tests.subid_fixtures import policy, snap, user, users

C = 65536
S = 524288
POL = policy(eligible_groups=("containers",), reserved=((S + 5 * C, S + 5 * C),))
SNAP = snap(users([1000, 1001, 1002, 1003]) + [user("alice", 2000), user("big", S + 5 * C)],
            [("containers", 5000, ["u1000", "u1001", "u1002", "alice"])])


def _msgs(problems) -> List[str]:  # type: ignore[no-untyped-def]
    return [str(p) for p in problems]


def test_clean_lines_are_adopted_and_kept_by_allocate() -> None:
    text = f"# legacy\n1000:{S + 10 * C}:{C}\nalice:{S + 3 * C}:{C}\n1003:{S}:{C}\n"
    led, problems = import_files(None, POL, text, text, SNAP, now="t")
    assert problems == []
    assert {u: (r.start, r.state) for u, r in led.records.items()} == {
        1000: (S + 10 * C, LIVE), 2000: (S + 3 * C, LIVE), 1003: (S, LEFT)}  # 1003: not eligible
    assert led.records[2000].history[0].detail == f"{S + 3 * C}-{S + 4 * C - 1} from subuid line 3"
    res = allocate(POL, SNAP, led, now="t2")
    got = {a.name: a.start for a in res.allocations}
    assert got["u1000"] == S + 10 * C and got["alice"] == S + 3 * C
    assert got["u1001"] == S + C and got["u1002"] == S + 2 * C  # around 1003's tombstone
    assert res.withdrawn == []


def test_overlaps_disagreements_and_unknowns_are_reported_not_guessed() -> None:
    uid_text = (f"1000:{S}:{C}\n"
                f"1001:{S + 100}:{C}\n"        # overlaps 1000: neither adopted
                f"1002:{S + 2 * C}:{C}\n"      # subgid says otherwise
                f"nosuch:{S + 6 * C}:{C}\n"    # not in the directory
                f"alice:{S + 7 * C}:{C}\n"     # missing from subgid
                f"1003:{S + 8 * C}:1000\n"     # wrong count
                f"big:{S + 5 * C - C // 2}:{C}\n")  # contains big's own uid
    gid_text = (f"1000:{S}:{C}\n1001:{S + 100}:{C}\n1002:{S + 9 * C}:{C}\n"
                f"nosuch:{S + 6 * C}:{C}\n1003:{S + 8 * C}:1000\n"
                f"big:{S + 5 * C - C // 2}:{C}\n")
    led, problems = import_files(None, POL, uid_text, gid_text, SNAP, now="t")
    assert led.records == {}
    text = "\n".join(_msgs(problems))
    assert "subuid: line 2: 1001:" in text and "neither is adopted" in text
    assert f"uid 1002: {S + 2 * C}:{C} here but {S + 9 * C}:{C}" in text
    assert "owner 'nosuch' is not a user of the directory" in text
    assert "uid 2000 has no line in subgid" in text
    assert "count 1000 differs from subid.count" in text
    assert f"contains real id {S + 5 * C}" in text


def test_without_directory_only_numeric_owners() -> None:
    led, problems = import_files(None, POL, f"1000:{S}:{C}\nalice:{S + C}:{C}\n",
                                 f"1000:{S}:{C}\nalice:{S + C}:{C}\n", None, now="t")
    assert list(led.records) == [1000] and led.records[1000].name == "1000"
    assert "resolving names needs the directory" in _msgs(problems)[0]
    with pytest.raises(InvalidInput, match="give --site"):
        import_files(None, None, "", "", None)


def test_against_an_existing_ledger() -> None:
    led = allocate(POL, SNAP, None, now="t").ledger  # u1000 S, u1001 S+C, u1002 S+2C, alice...
    same = f"1000:{S}:{C}\n"
    again, problems = import_files(led, POL, same, same, SNAP, now="t2")
    assert problems == [] and again is led  # nothing new: the ledger is unchanged
    clash = f"1003:{S + C + 5}:{C}\n1000:{S + 9 * C}:{C}\n"
    after, problems = import_files(led, POL, clash, clash, SNAP, now="t2")
    assert after is led
    text = "\n".join(_msgs(problems))
    assert "held by u1002 (uid 1002)" in text and "uid 1000 already holds" in text
    revoked = revoke(led, "u1000", "t3")
    assert revoked.records[1000].state != LIVE
