"""The ledger changed by hand: `subid revoke`, `grant` and `reclaim` (pure: ledger in, ledger
out; `deploy.ledger_ops` holds the lock, saves and logs)."""

from __future__ import annotations

from typing import Optional

from hpcpolicy.errors import InvalidInput
from hpcpolicy.subid.allocate import utc_now
from hpcpolicy.subid.ledger import LEFT, LIVE, RECLAIMED, REVOKED, Ledger, Record


def _need(ledger: Ledger, user: str) -> Record:
    rec = ledger.find(user)
    if rec is None:
        raise InvalidInput(f"{user}: no sub-ID range in the ledger", path="user")
    return rec


def _wrong_state(rec: Record, op: str, why: str) -> InvalidInput:
    return InvalidInput(f"{rec.name} (uid {rec.uid}): cannot {op}: {why}", path="user")


def revoke(ledger: Ledger, user: str, now: Optional[str] = None) -> Ledger:
    """Withdraw a range even while the user is eligible; it stays reserved for them."""
    now = now or utc_now()
    rec = _need(ledger, user)
    if rec.state == REVOKED or (rec.state == RECLAIMED and rec.withheld):
        raise _wrong_state(rec, "revoke", "already revoked")
    if rec.state == RECLAIMED:
        new = rec.evolve(now, "revoked", "no range held; none will be given", withheld=True)
    else:
        new = rec.evolve(now, "revoked", f"{rec.start}-{rec.last}", state=REVOKED)
    return ledger.with_records({**ledger.records, rec.uid: new}, now)


def grant(ledger: Ledger, user: str, now: Optional[str] = None) -> Ledger:
    """Undo `revoke`: the user gets their range back at the next apply if eligible."""
    now = now or utc_now()
    rec = _need(ledger, user)
    if rec.state == REVOKED:
        new = rec.evolve(now, "granted", f"{rec.start}-{rec.last}", state=LEFT)
    elif rec.state == RECLAIMED and rec.withheld:
        new = rec.evolve(now, "granted", "a new range at the next apply", withheld=False)
    else:
        raise _wrong_state(rec, "grant", f"not revoked (state {rec.state})")
    return ledger.with_records({**ledger.records, rec.uid: new}, now)


def reclaim(ledger: Ledger, user: str, now: Optional[str] = None) -> Ledger:
    """Free the reserved range of a user who left (or was revoked) for someone else."""
    now = now or utc_now()
    rec = _need(ledger, user)
    if rec.state == LIVE:
        raise _wrong_state(rec, "reclaim", "the range is live; `subid revoke` first "
                                           "(and apply) or wait until they leave")
    if rec.state == RECLAIMED:
        raise _wrong_state(rec, "reclaim", "already reclaimed")
    new = rec.evolve(now, "reclaimed", f"{rec.start}-{rec.last} freed", state=RECLAIMED,
                     withheld=rec.state == REVOKED)
    return ledger.with_records({**ledger.records, rec.uid: new}, now)
