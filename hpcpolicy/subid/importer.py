"""Adopt existing /etc/subuid and /etc/subgid lines into the ledger (`subid import`).

Sites already have ranges in use (from `useradd`, `apptainer config fakeroot`, a cron job).
Users keep exactly those ranges. Anything doubtful (overlaps, lines the two files disagree on,
unknown owners, ranges on real IDs or outside the space) is reported and not adopted: the
importer never guesses which of two claims is right. Pure: the caller reads the files.
"""

from __future__ import annotations

import bisect
import datetime
from typing import Dict, List, Optional, Set, Tuple

from hpcpolicy.directory.model import Snapshot
from hpcpolicy.errors import InvalidInput, Problem
from hpcpolicy.policy.model import Policy
from hpcpolicy.subid.check import Entry, overlapping_pairs, parse
from hpcpolicy.subid.eligibility import eligible
from hpcpolicy.subid.ledger import LEFT, LIVE, RECLAIMED, Event, Ledger, Record

Claim = Tuple[int, str, Entry]  # uid, name, entry


def _resolve(entries: List[Entry], snapshot: Optional[Snapshot], file: str,
             problems: List[Problem]) -> List[Claim]:
    """Owner -> (uid, name). Numeric owners are uids; names need the directory."""
    by_uid: Dict[int, str] = {}
    if snapshot is not None:
        for user in sorted(snapshot.users.values(), key=lambda u: (u.uid, u.name)):
            by_uid.setdefault(user.uid, user.name)
    out: List[Claim] = []
    for e in entries:
        if e.owner.isdigit():
            uid = int(e.owner)
            out.append((uid, by_uid.get(uid, e.owner), e))
        elif snapshot is None:
            problems.append(Problem(file, f"line {e.line}", (
                f"owner {e.owner!r} is a name: resolving names needs the directory "
                "(give --site), or write numeric uids")))
        elif e.owner in snapshot.users:
            out.append((snapshot.users[e.owner].uid, e.owner, e))
        else:
            problems.append(Problem(file, f"line {e.line}",
                                    f"owner {e.owner!r} is not a user of the directory"))
    return out


def _per_uid(claims: List[Claim], file: str, problems: List[Problem]) -> Dict[int, Claim]:
    """One range per uid; a uid with several lines is reported and skipped."""
    grouped: Dict[int, List[Claim]] = {}
    for claim in claims:
        grouped.setdefault(claim[0], []).append(claim)
    out: Dict[int, Claim] = {}
    for uid, items in grouped.items():
        if len(items) == 1:
            out[uid] = items[0]
        else:
            lines = ", ".join(str(c[2].line) for c in items)
            problems.append(Problem(file, f"line {items[0][2].line}", (
                f"uid {uid} has {len(items)} ranges (lines {lines}); hpcpolicy keeps one range "
                "per user: not adopted")))
    return out


def _file_claims(text: str, file: str, snapshot: Optional[Snapshot],
                 problems: List[Problem]) -> Dict[int, Claim]:
    entries, errors, _warnings = parse(text, file)  # comment/blank lines are simply dropped
    problems.extend(errors)
    bad: Set[int] = set()
    for entry, other in overlapping_pairs(entries):
        bad.update((entry.line, other.line))
        problems.append(Problem(file, f"line {entry.line}", (
            f"{entry.owner}:{entry.start}:{entry.count} overlaps line {other.line} "
            f"({other.owner}:{other.start}:{other.count}): neither is adopted")))
    clean = [e for e in entries if e.line not in bad]
    return _per_uid(_resolve(clean, snapshot, file, problems), file, problems)


def _agree(uids: Dict[int, Claim], gids: Dict[int, Claim], files: Tuple[str, str],
           problems: List[Problem]) -> List[Claim]:
    """Claims whose subuid and subgid lines name the same range."""
    out: List[Claim] = []
    for uid in sorted(set(uids) | set(gids)):
        u, g = uids.get(uid), gids.get(uid)
        if u is None or g is None:
            present, missing = (files[1], files[0]) if u is None else (files[0], files[1])
            line = (g or u)[2].line  # type: ignore[index]
            problems.append(Problem(present, f"line {line}",
                                    f"uid {uid} has no line in {missing}: not adopted"))
        elif (u[2].start, u[2].count) != (g[2].start, g[2].count):
            problems.append(Problem(files[0], f"line {u[2].line}", (
                f"uid {uid}: {u[2].start}:{u[2].count} here but {g[2].start}:{g[2].count} "
                f"on line {g[2].line} of {files[1]}; hpcpolicy keeps identical ranges: "
                "not adopted")))
        else:
            out.append(u)
    return out


def _policy_problem(claim: Claim, policy: Optional[Policy],
                    real: List[int]) -> Optional[str]:
    """Why the policy (space, count, reserved) or a real id forbids this range, or None."""
    _uid, _name, e = claim
    i = bisect.bisect_left(real, e.start)
    if i < len(real) and real[i] <= e.last:
        return f"range {e.start}-{e.last} contains real id {real[i]}"
    if policy is None:
        return None
    sub = policy.subid
    if e.count != sub.count:
        return f"count {e.count} differs from subid.count = {sub.count} (ranges never resize)"
    if e.start < sub.start or e.last > sub.end:
        return f"range {e.start}-{e.last} lies outside the space [{sub.start}, {sub.end}]"
    for first, last in sub.reserved:
        if e.start <= last and first <= e.last:
            return f"range {e.start}-{e.last} meets reserved [{first}, {last}]"
    return None


def _ledger_problem(claim: Claim, ledger: Ledger, held: List[Record],
                    starts: List[int]) -> Tuple[Optional[str], bool]:
    """(why not, already-recorded) against what the ledger holds."""
    uid, _name, e = claim
    own = ledger.records.get(uid)
    if own is not None and own.holds_range:
        if (own.start, own.count) == (e.start, e.count):
            return None, True
        return (f"uid {uid} already holds {own.start}-{own.last} in the ledger "
                f"(state {own.state})"), False
    if own is not None and own.withheld:
        return f"uid {uid} was revoked (`subid grant` first)", False
    i = bisect.bisect_right(starts, e.last) - 1
    if i >= 0 and held[i].last >= e.start:
        other = held[i]
        return (f"range {e.start}-{e.last} meets {other.start}-{other.last} held by "
                f"{other.name} (uid {other.uid}) in the ledger"), False
    return None, False


def import_files(
    ledger: Optional[Ledger],
    policy: Optional[Policy],
    subuid_text: str,
    subgid_text: str,
    snapshot: Optional[Snapshot],
    now: Optional[str] = None,
    files: Tuple[str, str] = ("subuid", "subgid"),
) -> Tuple[Ledger, List[Problem]]:
    """The ledger with every clean line adopted, and the problems of every other line.

    Without a snapshot only numeric owners are accepted and real ids are not checked (the
    next `apply` checks them); without a policy the space and count are not checked either.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if ledger is None:
        if policy is None:
            raise InvalidInput("no ledger yet: give --site so the new ledger knows its site")
        ledger = Ledger(policy.site.name, updated=now)
    problems: List[Problem] = []
    uids = _file_claims(subuid_text, files[0], snapshot, problems)
    gids = _file_claims(subgid_text, files[1], snapshot, problems)
    claims = _agree(uids, gids, files, problems)
    real: List[int] = []
    if snapshot is not None:
        users, groups = snapshot.real_ids()
        real = sorted(users | groups)
    wanted = None
    if policy is not None and snapshot is not None:
        wanted = {u.uid for u in eligible(policy, snapshot)}
    held = ledger.held()
    starts = [r.start for r in held]
    records = dict(ledger.records)
    for claim in sorted(claims, key=lambda c: c[2].start):
        why = _policy_problem(claim, policy, real)
        known = False
        if why is None:
            why, known = _ledger_problem(claim, ledger, held, starts)
        if why is not None:
            problems.append(Problem(files[0], f"line {claim[2].line}", why + ": not adopted"))
        elif not known:
            records[claim[0]] = _adopted(claim, records.get(claim[0]), wanted, now, files[0])
    problems.sort(key=lambda p: (p.file, int(p.path.split()[-1]) if p.path else 0))
    if records == ledger.records:
        return ledger, problems
    new = ledger.with_records(records, now)
    check = new.validate()
    if check:  # two clean lines of different files can still collide: report, adopt nothing
        return ledger, problems + check
    return new, problems


def _adopted(claim: Claim, old: Optional[Record], wanted: Optional[Set[int]], now: str,
             file: str) -> Record:
    uid, name, e = claim
    state = LIVE if wanted is None or uid in wanted else LEFT
    detail = f"{e.start}-{e.last} from {file} line {e.line}"
    if old is not None and old.state == RECLAIMED:
        return old.evolve(now, "imported", detail, name=name, start=e.start, count=e.count,
                          state=state, withheld=False)
    return Record(uid, name, e.start, e.count, state, now, now,
                  history=(Event(now, "imported", detail),))
