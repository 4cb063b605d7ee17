"""Sub-ID allocation: pure functions from (policy, directory snapshot, ledger) to a new ledger.

Invariants every function here keeps (and the property tests check):
* no two held ranges overlap; every new range lies in [start, end], outside `reserved`, and
  meets no real UID/GID;
* an existing range never moves or changes size (a policy change that would need it is an error);
* a range stays reserved for its uid until `reclaim` (tombstones are never reused before that);
* a user who returns gets the same range back.

Nothing here reads or writes files; errors are raised as `InvalidInput` / `RevokeGuard` with
every problem found, before anything is written.
"""

from __future__ import annotations

import bisect
import datetime
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from hpcpolicy.directory.model import Snapshot, User
from hpcpolicy.errors import InvalidInput, Problem, RevokeGuard
from hpcpolicy.policy.model import Policy
from hpcpolicy.subid.eligibility import eligible
from hpcpolicy.subid.ledger import (
    ID_LIMIT,
    LEFT,
    LIVE,
    RECLAIMED,
    Event,
    Ledger,
    Record,
)
from hpcpolicy.subid.model import Allocation

__all__ = ["AllocationResult", "allocate", "check_fit", "check_revoke", "utc_now"]

Interval = Tuple[int, int]  # inclusive [first, last]
_MAX_NAMED = 10  # ranges named in one message before "and N more"
_BY_START = attrgetter("start")


@dataclass
class AllocationResult:
    """What one allocation run decided. `ledger` is new; the input ledger is untouched."""

    allocations: List[Allocation]  # live lines to render, sorted by start
    ledger: Ledger
    added: List[str] = field(default_factory=list)  # got a new range
    withdrawn: List[str] = field(default_factory=list)  # had a line, lose it now
    restored: List[str] = field(default_factory=list)  # came back to their old range
    live_before: int = 0
    ledger_changed: bool = False  # whether `ledger` differs from the input (needs saving)


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ----------------------------------------------------------------------------- intervals


def _merge(intervals: Iterable[Interval]) -> List[Interval]:
    out: List[Interval] = []
    for first, last in sorted(intervals):
        if out and first <= out[-1][1] + 1:
            if last > out[-1][1]:
                out[-1] = (out[-1][0], last)
        else:
            out.append((first, last))
    return out


def _meets(merged: List[Interval], starts: List[int], first: int, last: int) -> bool:
    """Whether [first, last] meets any interval of `merged` (sorted, disjoint)."""
    i = bisect.bisect_right(starts, last) - 1
    return i >= 0 and merged[i][1] >= first


def _first_fit(blocked: List[Interval], lo: int, hi: int, count: int, want: int) -> List[int]:
    """Up to `want` starts of free [s, s+count-1] inside [lo, hi], lowest first (one sweep)."""
    out: List[int] = []
    cursor = lo
    for first, last in blocked + [(hi + 1, hi + 1)]:
        gap_end = min(first - 1, hi)
        while len(out) < want and cursor + count - 1 <= gap_end:
            out.append(cursor)
            cursor += count
        if len(out) >= want or cursor > hi:
            break
        cursor = max(cursor, last + 1)
    return out


def _name_ranges(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_MAX_NAMED])
    more = len(items) - _MAX_NAMED
    return shown + (f" and {more} more" if more > 0 else "")


# ------------------------------------------------------------------------------- checks


def _space_problems(policy: Policy, snapshot: Snapshot) -> List[Problem]:
    """The space itself: sane bounds, and no real UID/GID inside it outside `reserved`."""
    sub, file = policy.subid, policy.path
    out: List[Problem] = []
    if not 1 <= sub.start <= sub.end < ID_LIMIT:
        out.append(Problem(file, "subid.end",
                           f"space [{sub.start}, {sub.end}] must satisfy 1 <= start <= end "
                           f"< {ID_LIMIT}"))
    if sub.count < 1:
        out.append(Problem(file, "subid.count", "must be >= 1"))
    reserved = _merge(sub.reserved)
    rstarts = [r[0] for r in reserved]
    uids, gids = snapshot.real_ids()
    inside = sorted(i for i in uids | gids
                    if sub.start <= i <= sub.end and not _meets(reserved, rstarts, i, i))
    if inside:
        out.append(Problem(file, "subid.start", (
            f"sub-ID space [{sub.start}, {sub.end}] contains {len(inside)} real UID/GID(s) of "
            f"the directory ({_name_ranges([str(i) for i in inside])}): move the space or "
            "add them to subid.reserved")))
    return out


def _existing_problems(policy: Policy, held: List[Record], real: List[int]) -> List[Problem]:
    """Existing ranges never move: a policy change that would need it is an error."""
    sub, file = policy.subid, policy.path
    outside, resized, reserved_hit, real_hit = [], [], [], []
    reserved = _merge(sub.reserved)
    rstarts = [r[0] for r in reserved]
    for rec in held:
        start, last = rec.start, rec.start + rec.count - 1
        i = bisect.bisect_left(real, start)
        hits_real = i < len(real) and real[i] <= last
        wrong = (start < sub.start or last > sub.end or rec.count != sub.count or hits_real
                 or (reserved and _meets(reserved, rstarts, start, last)))
        if not wrong:
            continue  # the fast path: no message text built for a range that is fine
        desc = f"{rec.name} (uid {rec.uid}) {start}-{last}"
        if start < sub.start or last > sub.end:
            outside.append(desc)
        if rec.count != sub.count:
            resized.append(f"{desc} of {rec.count}")
        if _meets(reserved, rstarts, start, last):
            reserved_hit.append(desc)
        if hits_real:
            real_hit.append(f"{desc} contains real id {real[i]}")
    out: List[Problem] = []
    if outside:
        out.append(Problem(file, "subid.start", (
            f"{len(outside)} existing range(s) would lie outside [{sub.start}, {sub.end}]: "
            f"{_name_ranges(outside)}; existing ranges never move: widen the space again "
            "(or `subid reclaim` users who left)")))
    if resized:
        out.append(Problem(file, "subid.count", (
            f"{len(resized)} existing range(s) are not of count {sub.count}: "
            f"{_name_ranges(resized)}; existing ranges never change size")))
    if reserved_hit:
        out.append(Problem(file, "subid.reserved", (
            f"reserved ranges meet {len(reserved_hit)} existing range(s): "
            f"{_name_ranges(reserved_hit)}")))
    if real_hit:
        out.append(Problem(file, "subid", (
            f"{len(real_hit)} existing range(s) meet a real UID/GID of the directory: "
            f"{_name_ranges(real_hit)}; give that account another id, or `subid revoke` and "
            "`subid reclaim` the range")))
    return out


def _name_key_problems(policy: Policy, users: Sequence[User]) -> List[Problem]:
    """With key = "name", names land in /etc/subuid: they must parse the same everywhere."""
    if policy.subid.key != "name":
        return []
    bad = [u.name for u in users if not _safe_name_key(u.name)]
    if not bad:
        return []
    return [Problem(policy.path, "subid.key", (
        f"{len(bad)} eligible user name(s) cannot be written as a subuid key "
        f"({_name_ranges([repr(b) for b in bad])}): use key = \"uid\""))]


def _safe_name_key(name: str) -> bool:
    """No separator, whitespace or control chars; not numeric (apptainer reads it as a uid);
    not starting with '!' (apptainer: disabled) or '#' (a comment to some parsers)."""
    if not name or name.isdigit() or name[0] in "!#-":
        return False
    return all(c > " " and c != ":" and c != "\x7f" for c in name)


# ----------------------------------------------------------------------------- allocate


def _eligible_by_uid(policy: Policy, snapshot: Snapshot) -> Dict[int, User]:
    """One user per uid (the first by name when several names share one uid)."""
    out: Dict[int, User] = {}
    for user in eligible(policy, snapshot):
        out.setdefault(user.uid, user)
    return out


def _names_by_uid(snapshot: Snapshot) -> Dict[int, str]:
    """uid -> name (the first name in sort order when several names share a uid)."""
    out: Dict[int, str] = {}
    for user in snapshot.users.values():
        known = out.get(user.uid)
        if known is None or user.name < known:
            out[user.uid] = user.name
    return out


@dataclass
class _Run:
    """Mutable working state of one allocate() call (never escapes it)."""

    now: str
    records: Dict[int, Record]
    result: AllocationResult
    new_users: List[Tuple[User, Optional[Record]]] = field(default_factory=list)


def _update_states(run: _Run, wanted: Dict[int, User], names: Dict[int, str]) -> None:
    """Renames, restores, withdrawals; collects users who need a new range."""
    now, records, res = run.now, run.records, run.result
    for uid, known in list(records.items()):
        name = names.get(uid)
        if name is not None and name != known.name:
            records[uid] = known.evolve(now, "renamed", f"{known.name} -> {name}", name=name)
    for uid, user in wanted.items():
        rec = records.get(uid)
        if rec is None or rec.state == RECLAIMED:
            if rec is None or not rec.withheld:
                run.new_users.append((user, rec))
        elif rec.state == LEFT:
            records[uid] = rec.evolve(now, "restored", f"{rec.start}-{rec.last}", state=LIVE)
            res.restored.append(user.name)
    for uid, rec in list(records.items()):
        if rec.state == LIVE and uid not in wanted:
            records[uid] = rec.evolve(now, "left", "no longer eligible", state=LEFT)
            res.withdrawn.append(rec.name)


def _blocked(policy: Policy, records: Dict[int, Record], real: List[int]) -> List[Interval]:
    sub = policy.subid
    spans = list(sub.reserved)
    spans += [(r.start, r.last) for r in records.values() if r.holds_range]
    spans += [(i, i) for i in real if sub.start <= i <= sub.end]
    return _merge(spans)


def _fit_problem(policy: Policy, fit: int, need: int, eligible_total: int) -> Problem:
    sub = policy.subid
    short = (need - fit) * sub.count
    return Problem(policy.path, "subid", (
        f"the sub-ID space [{sub.start}, {sub.end}] can hold only {fit} more range(s) of "
        f"{sub.count}, but {need} eligible user(s) need one ({eligible_total} eligible, "
        f"{eligible_total - need} already have a range): use a smaller subid.count, narrow "
        "the eligible set (subid.eligible_groups, subid.exclude_users, directory.min_uid/"
        f"max_uid), or enlarge the space by at least {short} IDs (subid.start/end, reserved)"))


def _starts_ledger(policy: Policy, blocked: List[Interval], need: int) -> List[int]:
    sub = policy.subid
    return _first_fit(blocked, sub.start, sub.end, sub.count, need)


def _starts_uid(policy: Policy, blocked: List[Interval], users: Sequence[User]
                ) -> Tuple[List[int], List[Problem]]:
    """start + (uid - min_uid) * count; overflow and collisions are errors, never wrapped."""
    sub, base = policy.subid, policy.directory.min_uid
    starts = [sub.start + (u.uid - base) * sub.count for u in users]
    bstarts = [b[0] for b in blocked]
    over = [u for u, s in zip(users, starts) if s + sub.count - 1 > sub.end]
    problems: List[Problem] = []
    if over:
        top = max(over, key=lambda u: u.uid)
        fits = base + (sub.end - sub.start + 1) // sub.count - 1
        problems.append(Problem(policy.path, "subid.strategy", (
            f"strategy \"uid\" overflows subid.end = {sub.end} for {len(over)} eligible "
            f"user(s): the highest, {top.name} (uid {top.uid}), would need "
            f"{sub.start + (top.uid - base) * sub.count}-"
            f"{sub.start + (top.uid - base + 1) * sub.count - 1}; the space fits uids "
            f"{base}-{fits}: raise subid.end, lower subid.count, set directory.max_uid, "
            "or use strategy \"ledger\"")))
    hits = [f"{u.name} (uid {u.uid}) {s}-{s + sub.count - 1}"
            for u, s in zip(users, starts)
            if u not in over and _meets(blocked, bstarts, s, s + sub.count - 1)]
    if hits:
        problems.append(Problem(policy.path, "subid.strategy", (
            f"strategy \"uid\" would give {len(hits)} user(s) a range that meets a recorded "
            f"or reserved range or a real id: {_name_ranges(hits)}")))
    return starts, problems


def _assign(run: _Run, policy: Policy, real: List[int], eligible_total: int
            ) -> List[Problem]:
    if not run.new_users:
        return []
    sub, need = policy.subid, len(run.new_users)
    blocked = _blocked(policy, run.records, real)
    users = [u for u, _ in run.new_users]
    if sub.strategy == "uid":
        starts, problems = _starts_uid(policy, blocked, users)
    else:
        starts = _starts_ledger(policy, blocked, need)
        problems = [] if len(starts) == need else [_fit_problem(policy, len(starts), need,
                                                                eligible_total)]
    if problems:
        return problems
    _record_new_ranges(run, starts, sub.count)
    return []


def _record_new_ranges(run: _Run, starts: List[int], count: int) -> None:
    """One record (or reclaimed record reused) per new user; the hot loop of a first run."""
    now, records, added = run.now, run.records, run.result.added
    for (user, rec), start in zip(run.new_users, starts):
        span = f"{start}-{start + count - 1}"
        if rec is None:
            records[user.uid] = Record(user.uid, user.name, start, count, LIVE, now, now, False,
                                       (Event(now, "allocated", span),))
        else:
            records[user.uid] = rec.evolve(now, "allocated", span, start=start, count=count,
                                           state=LIVE)
        added.append(user.name)


def allocate(policy: Policy, snapshot: Snapshot, ledger: Optional[Ledger],
             now: Optional[str] = None) -> AllocationResult:
    """Decide every range; raise InvalidInput with all problems if any (nothing is written)."""
    now = now or utc_now()
    before = ledger if ledger is not None else Ledger(policy.site.name, updated=now)
    uids, gids = snapshot.real_ids()
    real = sorted(uids | gids)
    wanted = _eligible_by_uid(policy, snapshot)
    live_before = sum(1 for r in before.records.values() if r.state == LIVE)
    run = _Run(now, dict(before.records), AllocationResult([], before, live_before=live_before))
    problems = _space_problems(policy, snapshot)
    problems += _existing_problems(policy, before.held(), real)
    problems += _name_key_problems(policy, list(wanted.values()))
    _update_states(run, wanted, _names_by_uid(snapshot))
    if not problems:
        problems += _assign(run, policy, real, len(wanted))
    if problems:
        raise InvalidInput(problems)
    return _finish(run, before)


def _finish(run: _Run, before: Ledger) -> AllocationResult:
    res = run.result
    old = before.records
    # untouched records are the very objects of `before` (the identity test is the fast path)
    changed = {uid for uid, rec in run.records.items()
               if (prev := old.get(uid)) is not rec and prev != rec}
    if changed:
        res.ledger = before.with_records(run.records, run.now)
        res.ledger_changed = True
    problems = res.ledger.validate(changed=changed)
    if problems:  # defence in depth: an allocation bug must never reach a node
        raise InvalidInput(problems)
    live = sorted((r for r in run.records.values() if r.state == LIVE), key=_BY_START)
    res.allocations = [Allocation(r.name, r.uid, r.start, r.count) for r in live]
    return res


def check_fit(policy: Policy, snapshot: Snapshot) -> List[Problem]:
    """Problems `allocate` would raise for a fresh ledger (for `validate` without a ledger)."""
    if not policy.subid.enabled:
        return []
    try:
        allocate(policy, snapshot, None, now="1970-01-01T00:00:00Z")
    except InvalidInput as err:
        return err.problems
    return []


def check_revoke(policy: Policy, result: AllocationResult, allow_revoke: bool) -> None:
    """Stop an apply that withdraws too many live ranges (an LDAP outage, a filter typo)."""
    if allow_revoke or not result.withdrawn or result.live_before == 0:
        return
    share = len(result.withdrawn) / result.live_before
    limit = policy.subid.max_revoke
    if share > limit:
        raise RevokeGuard(
            f"this apply would withdraw the sub-ID ranges of {len(result.withdrawn)} of "
            f"{result.live_before} users ({share:.1%}), more than subid.max_revoke = "
            f"{limit:.1%} ({_name_ranges(sorted(result.withdrawn))}): check the directory "
            "source and eligible_groups; rerun with --allow-revoke if this is intended")
