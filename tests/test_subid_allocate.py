"""Eligibility and allocation: plain values in, plain values out (no I/O)."""

from __future__ import annotations

from pathlib import Path
from typing import List

import pytest

from hpcpolicy.errors import InvalidInput, RevokeGuard
from hpcpolicy.subid.allocate import allocate, check_fit, check_revoke
from hpcpolicy.subid.eligibility import eligible
from hpcpolicy.subid.ledger import LEFT, LIVE, RECLAIMED, REVOKED
from hpcpolicy.subid.operations import grant, reclaim, revoke
from tests.subid_fixtures import policy, snap, user, users, with_subid

C = 65536
S = 524288


def spans(result):  # type: ignore[no-untyped-def]
    return {a.name: (a.start, a.count) for a in result.allocations}


# ------------------------------------------------------------------------- eligibility


def test_eligibility_filters_and_sorts() -> None:
    us = [user("zed", 1001), user("amy", 1001), user("sys", 999), user("nobody", 65534),
          user("big", 70000), user("gone", 1002, disabled=True), user("svc", 1003),
          user("prim", 1004, gid=2000), user("out", 1005)]
    s = snap(us, [("containers", 2000, ["zed", "amy", "gone", "svc", "sys", "big",
                                        "nobody"])])
    pol = policy(max_uid=60000, eligible_groups=("containers",), exclude_users=("svc",))
    assert [(u.name, u.uid) for u in eligible(pol, s)] == [("amy", 1001), ("zed", 1001),
                                                          ("prim", 1004)]
    pol2 = policy(exclude_disabled=False, eligible_groups=("containers",))
    assert {u.name for u in eligible(pol2, s)} == {"amy", "zed", "gone", "svc", "prim", "big"}
    # no eligible_groups: every user with uid >= min_uid, never nfsnobody
    pol3 = policy()
    s3 = snap([user("a", 1000), user("nfsnobody", 4294967294)])
    assert [u.name for u in eligible(pol3, s3)] == ["a"]


# -------------------------------------------------------------------------- strategies


def test_ledger_strategy_dense_first_fit_skips_reserved() -> None:
    pol = policy(start=S, end=S + 10 * C - 1, reserved=((S + C, S + C + 5),))
    res = allocate(pol, snap(users([1000, 1001, 1002])), None, now="t")
    assert spans(res) == {"u1000": (S, C), "u1001": (S + C + 6, C),
                          "u1002": (S + 2 * C + 6, C)}
    assert res.added == ["u1000", "u1001", "u1002"] and res.ledger_changed
    assert res.ledger.revision == 1


def test_same_inputs_same_result_and_input_not_mutated() -> None:
    pol = policy()
    s = snap(users(range(1000, 1050)))
    first = allocate(pol, s, None, now="t")
    before = first.ledger.to_json()
    again = allocate(pol, s, first.ledger, now="t2")
    assert first.ledger.to_json() == before
    assert again.allocations == first.allocations
    assert not again.ledger_changed and again.ledger is first.ledger


def test_leaver_keeps_tombstone_and_returns_to_same_range() -> None:
    pol = policy()
    s = snap(users([1000, 1001, 1002]))
    r1 = allocate(pol, s, None, now="t1")
    r2 = allocate(pol, snap(users([1000, 1002])), r1.ledger, now="t2")
    assert r2.withdrawn == ["u1001"] and r2.live_before == 3
    assert r2.ledger.records[1001].state == LEFT
    r3 = allocate(pol, snap(users([1000, 1002, 1003])), r2.ledger, now="t3")
    # the newcomer does not get the leaver's range
    assert spans(r3)["u1003"] == (S + 3 * C, C)
    r4 = allocate(pol, snap(users([1000, 1001, 1002, 1003])), r3.ledger, now="t4")
    assert r4.restored == ["u1001"] and spans(r4)["u1001"] == spans(r1)["u1001"]


def test_reclaimed_range_is_reused_and_returner_gets_a_new_one() -> None:
    pol = policy()
    r1 = allocate(pol, snap(users([1000, 1001])), None, now="t1")
    r2 = allocate(pol, snap(users([1000])), r1.ledger, now="t2")
    led = reclaim(r2.ledger, "u1001", "t3")
    assert led.records[1001].state == RECLAIMED
    r3 = allocate(pol, snap(users([1000, 1005])), led, now="t4")
    assert spans(r3)["u1005"] == spans(r1)["u1001"]
    r4 = allocate(pol, snap(users([1000, 1001, 1005])), r3.ledger, now="t5")
    assert spans(r4)["u1001"] == (S + 2 * C, C)
    assert [e.action for e in r4.ledger.records[1001].history] == [
        "allocated", "left", "reclaimed", "allocated"]


def test_revoke_grant_and_revoked_reclaim_stays_withheld() -> None:
    pol = policy()
    s = snap(users([1000, 1001]))
    r1 = allocate(pol, s, None, now="t1")
    led = revoke(r1.ledger, "u1001", "t2")
    r2 = allocate(pol, s, led, now="t3")
    assert list(spans(r2)) == ["u1000"] and r2.ledger.records[1001].state == REVOKED
    assert r2.withdrawn == []  # a deliberate revoke is not counted by the guard
    r3 = allocate(pol, s, grant(r2.ledger, "1001", "t4"), now="t5")
    assert spans(r3)["u1001"] == spans(r1)["u1001"] and r3.restored == ["u1001"]
    # revoke then reclaim: range freed, but an eligible user must not get a new one
    led = reclaim(revoke(r3.ledger, "u1001", "t6"), "u1001", "t7")
    r4 = allocate(pol, s, led, now="t8")
    assert "u1001" not in spans(r4) and r4.ledger.records[1001].withheld
    r5 = allocate(pol, s, grant(r4.ledger, "u1001", "t9"), now="t10")
    assert "u1001" in spans(r5)


@pytest.mark.parametrize("op, user_, state, needle", [
    (revoke, "nobody-here", None, "no sub-ID range"),
    (grant, "u1000", LIVE, "not revoked"),
    (reclaim, "u1000", LIVE, "range is live"),
])
def test_ledger_operations_refuse_wrong_state(op, user_, state, needle) -> None:  # type: ignore[no-untyped-def]
    led = allocate(policy(), snap(users([1000])), None, now="t").ledger
    with pytest.raises(InvalidInput, match=needle):
        op(led, user_, "t2")
    with pytest.raises(InvalidInput, match="already revoked"):
        revoke(revoke(led, "u1000", "t"), "u1000", "t")


def test_rename_keeps_range() -> None:
    pol = policy()
    r1 = allocate(pol, snap([user("old", 1000)]), None, now="t1")
    r2 = allocate(pol, snap([user("new", 1000)]), r1.ledger, now="t2")
    assert spans(r2) == {"new": spans(r1)["old"]}
    assert r2.ledger.records[1000].history[-1].detail == "old -> new"


def test_full_pool_says_how_many_fit_and_what_to_do() -> None:
    pol = policy(start=S, end=S + 3 * C - 1)
    with pytest.raises(InvalidInput) as err:
        allocate(pol, snap(users(range(1000, 1005))), None, now="t")
    text = str(err.value)
    assert "can hold only 3 more range(s)" in text and "5 eligible user(s) need one" in text
    assert "smaller subid.count" in text and "at least 131072 IDs" in text
    assert err.value.problems[0].path == "subid"
    assert check_fit(pol, snap(users(range(1000, 1005))))
    assert check_fit(pol, snap(users(range(1000, 1003)))) == []


def test_real_id_inside_space_is_an_error_unless_reserved() -> None:
    s = snap(users([1000]) + [user("ldapuser", S + 10, gid=100)])
    pol = policy(max_uid=60000)
    with pytest.raises(InvalidInput, match=r"contains 1 real UID/GID.*524298"):
        allocate(pol, s, None, now="t")
    ok = allocate(with_subid(pol, reserved=((S, S + 99),)), s, None, now="t")
    assert spans(ok) == {"u1000": (S + 100, C)}


def test_uid_strategy_formula_and_overflow() -> None:
    pol = policy(strategy="uid", start=S, end=S + 10 * C - 1)
    res = allocate(pol, snap(users([1003, 1000])), None, now="t")
    assert spans(res) == {"u1000": (S, C), "u1003": (S + 3 * C, C)}
    with pytest.raises(InvalidInput) as err:
        allocate(pol, snap(users([1000, 1010, 1020])), None, now="t")
    assert err.value.problems[0].path == "subid.strategy"
    assert "u1020 (uid 1020)" in str(err.value) and "fits uids 1000-1009" in str(err.value)


def test_strategy_switch_never_moves_existing_ranges() -> None:
    pol = policy(start=S, end=S + 40 * C - 1)
    r1 = allocate(pol, snap(users([1005, 1007])), None, now="t1")  # dense: slots 0 and 1
    r2 = allocate(with_subid(pol, strategy="uid"), snap(users([1005, 1007, 1010])), r1.ledger,
                  now="t2")
    assert spans(r2) == {"u1005": (S, C), "u1007": (S + C, C), "u1010": (S + 10 * C, C)}
    # uid 1001's slot under "uid" is exactly u1007's ledger range: refused, never overlapped
    with pytest.raises(InvalidInput, match=r"meets a recorded.*u1001"):
        allocate(with_subid(pol, strategy="uid"), snap(users([1001, 1005, 1007])), r1.ledger,
                 now="t3")
    r3 = allocate(pol, snap(users([1005, 1007, 1010, 1011])), r2.ledger, now="t4")
    assert spans(r3)["u1010"] == (S + 10 * C, C) and spans(r3)["u1011"] == (S + 2 * C, C)


@pytest.mark.parametrize("change, path, needle", [
    ({"count": 32768}, "subid.count", "never change size"),
    ({"end": S + C - 1}, "subid.start", "would lie outside"),
    ({"start": S + 1}, "subid.start", "would lie outside"),
    ({"reserved": ((S + C + 5, S + C + 5),)}, "subid.reserved", "reserved ranges meet"),
])
def test_space_changes_that_would_move_ranges_are_errors(change, path, needle) -> None:  # type: ignore[no-untyped-def]
    pol = policy()
    led = allocate(pol, snap(users([1000, 1001])), None, now="t").ledger
    with pytest.raises(InvalidInput) as err:
        allocate(with_subid(pol, **change), snap(users([1000, 1001])), led, now="t2")
    assert any(p.path == path and needle in p.message for p in err.value.problems)
    assert "u1001 (uid 1001)" in str(err.value) or "u1000 (uid 1000)" in str(err.value)


def test_a_real_id_appearing_inside_an_existing_range_is_an_error() -> None:
    pol = policy(max_uid=60000, reserved=((S + C, S + C),))
    led = allocate(pol, snap(users([1000])), None, now="t").ledger
    s = snap(users([1000]) + [user("late", S + 5, gid=100)])
    with pytest.raises(InvalidInput, match=r"meet a real UID/GID.*contains real id 524293"):
        allocate(pol, s, led, now="t2")


def test_key_name_refuses_names_consumers_misread() -> None:
    pol = policy(key="name")
    for bad in ("12345", "!x", "a:b", "#c"):
        with pytest.raises(InvalidInput, match="subuid key"):
            allocate(pol, snap([user(bad, 1000)]), None, now="t")


def test_revoke_guard() -> None:
    pol = policy(max_revoke=0.25)
    led = allocate(pol, snap(users(range(1000, 1008))), None, now="t").ledger
    one = allocate(pol, snap(users(range(1000, 1006))), led, now="t2")  # 2/8 = 25%: allowed
    check_revoke(pol, one, allow_revoke=False)
    three = allocate(pol, snap(users(range(1000, 1005))), led, now="t2")  # 3/8
    with pytest.raises(RevokeGuard) as err:
        check_revoke(pol, three, allow_revoke=False)
    assert "3 of 8 users (37.5%)" in str(err.value) and "--allow-revoke" in str(err.value)
    assert err.value.exit_code == 1
    check_revoke(pol, three, allow_revoke=True)
    everyone = allocate(pol, snap([]), led, now="t3")  # an LDAP outage looks like this
    with pytest.raises(RevokeGuard, match="8 of 8"):
        check_revoke(pol, everyone, allow_revoke=False)


def test_plan_build_pauses_gc_and_restores_it_on_every_exit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """plan.build turns the cyclic GC off only while it runs, even when it raises."""
    import gc

    from hpcpolicy.deploy import plan

    pol = policy(deploy_root=str(tmp_path))
    assert plan.build(pol, snapshot=snap(users([1000]))).result is not None
    assert gc.isenabled()
    seen: List[bool] = []

    def failing(*_args: object) -> None:
        seen.append(gc.isenabled())
        raise InvalidInput("boom")

    monkeypatch.setattr(plan, "_build", failing)
    try:
        for enabled in (True, False):
            (gc.enable if enabled else gc.disable)()
            with pytest.raises(InvalidInput, match="boom"):
                plan.build(pol, snapshot=snap([]))
            assert gc.isenabled() is enabled
    finally:
        gc.enable()
    assert seen == [False, False]
