"""Stateful property test: long sequences of directory changes, ledger operations and space
changes never break the allocation invariants (see hpcpolicy/subid/allocate.py)."""

from __future__ import annotations

from typing import Dict, Optional, Set, Tuple

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from hpcpolicy.errors import InvalidInput
from hpcpolicy.policy.model import Policy
from hpcpolicy.subid.allocate import allocate
from hpcpolicy.subid.ledger import ID_LIMIT, LEFT, LIVE, RECLAIMED, REVOKED, Ledger
from hpcpolicy.subid.operations import grant, reclaim, revoke
from tests.subid_fixtures import policy, snap, user, with_subid

COUNT = 1000
START = 100000
UIDS = range(1000, 1012)
RESERVED = ((105500, 106499),)  # straddles two slots: the uid strategy must step around it
REAL_IN_HOLE = 106000  # a real uid sitting inside the reserved hole
uid_st = st.sampled_from(list(UIDS))
pick_st = st.integers(0, 1000)  # index into the current users/records (mod their number)


class SubIdMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.pol: Policy = policy(max_uid=100000, start=START, end=START + 14 * COUNT - 1,
                                  count=COUNT, reserved=RESERVED, max_revoke=1.0)
        self.wanted: Set[int] = set()
        self.names: Dict[int, str] = {}
        self.ledger: Optional[Ledger] = None
        self.clock = 0
        # what the last successful allocation returned, for the "never moves" check
        self.held: Dict[int, Tuple[int, int]] = {}
        self.left_ranges: Dict[int, Tuple[int, int]] = {}

    def now(self) -> str:
        self.clock += 1
        return f"t{self.clock:06d}"

    def snapshot(self):  # type: ignore[no-untyped-def]
        us = [user(self.names.get(u, f"u{u}"), u) for u in sorted(self.wanted)]
        return snap(us + [user("hole", REAL_IN_HOLE, gid=100)])

    # ------------------------------------------------------------------ directory changes
    @rule(uid=uid_st)
    def join(self, uid: int) -> None:
        self.wanted.add(uid)
        self.apply()

    @precondition(lambda self: self.wanted)
    @rule(pick=pick_st)
    def leave(self, pick: int) -> None:
        self.wanted.discard(sorted(self.wanted)[pick % len(self.wanted)])
        self.apply()

    @precondition(lambda self: self.left_ranges)
    @rule(pick=pick_st)
    def rejoin(self, pick: int) -> None:
        gone = sorted(self.left_ranges)
        self.wanted.add(gone[pick % len(gone)])
        self.apply()

    @rule(uid=uid_st)
    def rename(self, uid: int) -> None:
        self.names[uid] = f"r{self.clock}x{uid}"

    # ---------------------------------------------------------------------- space changes
    @rule(more=st.integers(1, 6))
    def widen(self, more: int) -> None:
        self.pol = with_subid(self.pol, end=self.pol.subid.end + more * COUNT)

    def _try(self, **change: object) -> None:
        """Change the space and apply; an administrator reverts a refused change."""
        old = self.pol
        self.pol = with_subid(self.pol, **change)
        if not self._apply():
            self.pol = old

    @rule(less=st.integers(1, 4))
    def shrink(self, less: int) -> None:
        self._try(end=max(START + COUNT - 1, self.pol.subid.end - less * COUNT))

    @rule(strategy=st.sampled_from(["ledger", "uid"]))
    def switch(self, strategy: str) -> None:
        self._try(strategy=strategy)

    @rule(count=st.sampled_from([COUNT, COUNT // 2]))
    def recount(self, count: int) -> None:
        self._try(count=count)

    # ------------------------------------------------------------------- ledger operations
    @precondition(lambda self: self.ledger is not None and self.ledger.records)
    @rule(pick=pick_st, op=st.sampled_from(["revoke", "grant", "reclaim"]))
    def operate(self, pick: int, op: str) -> None:
        assert self.ledger is not None
        uids = sorted(self.ledger.records)
        uid = uids[pick % len(uids)]
        before = self.ledger.records.get(uid)
        fn = {"revoke": revoke, "grant": grant, "reclaim": reclaim}[op]
        try:
            new = fn(self.ledger, str(uid), self.now())
        except InvalidInput:
            return
        assert before is not None
        rec = new.records[uid]
        assert (rec.start, rec.count) == (before.start, before.count)  # ops never move
        if op == "reclaim":
            assert before.state in (LEFT, REVOKED) and rec.state == RECLAIMED
            self.held.pop(uid, None)
            self.left_ranges.pop(uid, None)
        self.ledger = new
        self.apply()

    # ---------------------------------------------------------------------------- apply
    @rule()
    def apply(self) -> None:
        self._apply()

    def _apply(self) -> bool:
        try:
            res = allocate(self.pol, self.snapshot(), self.ledger, now=self.now())
        except InvalidInput as err:
            # a refused change names site.toml (the policy or directory is at fault), never
            # the ledger: the allocator's own self-check must not be what stops a bad result
            assert all(p.file == self.pol.path for p in err.problems), err.problems
            return False
        led = res.ledger
        sub = self.pol.subid
        held = sorted((r for r in led.records.values() if r.holds_range), key=lambda r: r.start)
        for prev, cur in zip(held, held[1:]):
            assert cur.start > prev.last, (prev, cur)
        for r in held:
            assert r.start >= 1 and r.last < ID_LIMIT
            assert not (r.start <= REAL_IN_HOLE <= r.last)
            assert not (r.start <= RESERVED[0][1] and RESERVED[0][0] <= r.last)
            assert sub.start <= r.start and r.last <= sub.end and r.count == sub.count
        # existing ranges never move; a returning user gets the same range back
        for uid, span in self.held.items():
            rec = led.records[uid]
            assert (rec.start, rec.count) == span
        for uid, span in self.left_ranges.items():
            if uid in self.wanted and led.records[uid].state == LIVE:
                assert (led.records[uid].start, led.records[uid].count) == span
        # exactly the eligible, not revoked users have a line, each with their record
        live = {a.uid: (a.start, a.count) for a in res.allocations}
        expected = {u for u in self.wanted
                    if led.records[u].state == LIVE}
        assert set(live) == expected
        for uid in self.wanted:
            assert led.records[uid].state in (LIVE, REVOKED) or led.records[uid].withheld
        for uid, rec in led.records.items():
            if uid not in self.wanted:
                assert rec.state != LIVE
        # records are never forgotten
        if self.ledger is not None:
            assert set(self.ledger.records) <= set(led.records)
        self.ledger = led
        self.held = {r.uid: (r.start, r.count) for r in held}
        self.left_ranges = {r.uid: (r.start, r.count) for r in held if r.state == LEFT}
        return True

    @invariant()
    def round_trips(self) -> None:
        if self.ledger is not None:
            assert Ledger.from_json(self.ledger.to_json(), "ledger.json") == self.ledger
            assert self.ledger.validate() == []


SubIdMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestSubIdMachine = SubIdMachine.TestCase


def test_machine_reaches_interesting_states() -> None:
    """Guard against a vacuous machine: a scripted run must allocate, withdraw and restore."""
    m = SubIdMachine()
    for uid in (1000, 1001, 1002):
        m.join(uid)
    m.apply()
    assert m.ledger is not None and len(m.held) == 3
    m.leave(1)
    m.apply()
    assert m.left_ranges == {1001: m.held[1001]}
    m.join(1001)
    m.apply()
    assert m.ledger.records[1001].state == LIVE


class LongSubIdMachine(SubIdMachine):
    """The same machine, much longer (nightly: `pytest -m slow`)."""


LongSubIdMachine.TestCase.settings = settings(
    max_examples=1000, stateful_step_count=100, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestLongSubIdMachine = pytest.mark.slow(LongSubIdMachine.TestCase)
