"""The sub-ID ledger by hand: `subid list|show|revoke|grant|reclaim|import|check`, one call each.

Readers take a site file or a bare deploy root. Writers (revoke, grant, reclaim, import) get the
deploy-root checks and the operator approval of apply, hold the deploy lock, save the ledger
durably and record the change in the change log; nodes see the effect after the next apply,
which renders the ledger. `check_file` judges any subuid/subgid file and needs no site.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from hpcpolicy.deploy.changelog import append_change
from hpcpolicy.deploy.lock import DeployLock
from hpcpolicy.deploy.store import check_deploy_root, ensure_layout, init_root, require_root
from hpcpolicy.errors import InvalidInput, Problem, RuntimeFailure, UsageError
from hpcpolicy.policy.inputs import Trust
from hpcpolicy.policy.model import Policy
from hpcpolicy.subid.ledger import Ledger, Record, load_ledger, save_ledger

ACTIONS = ("revoke", "grant", "reclaim")


@dataclass
class Where:
    """The deploy root a ledger command acts on, and what it knows of the site."""

    root: str
    policy: Optional[Policy]
    owner: str
    site_name: Optional[str]
    operator: Optional[str] = None  # writers: the approved operator


def reader(site: Optional[str], deploy_root: Optional[str], command: str) -> Where:
    """A site file or a bare deploy root, checked as a reader checks it."""
    from hpcpolicy.deploy.targets import reader as target_reader

    target, policy = target_reader(site, deploy_root, command)
    owner = policy.site.deploy_owner if policy is not None else str(os.geteuid())
    where = Where(target.root, policy, owner, policy.site.name if policy is not None else None)
    check_deploy_root(where.root, where.owner, False)
    return where


def writer(site: Optional[str], deploy_root: Optional[str], command: str,
           batch: bool = False) -> Where:
    """The checks and approval of apply, from a site file or from what apply recorded in the
    bare root; the ledger is never signed, so a batch run under approval is refused."""
    from hpcpolicy.deploy.targets import operator
    from hpcpolicy.deploy.targets import writer as target_writer

    target, policy = target_writer(site, deploy_root, command)
    check_deploy_root(target.root, target.owner, True)
    approved = operator(target, batch, signs=False)
    return Where(target.root, policy, target.owner, target.site or None, approved)


def ledger_of(where: Where) -> Ledger:
    ledger = load_ledger(where.root, where.site_name)
    if ledger is None:
        raise RuntimeFailure(f"{where.root}: no sub-ID ledger yet (nothing was applied or "
                             "imported)")
    return ledger


# ------------------------------------------------------------------------------ reading


def record_dict(rec: Record, history: bool = False) -> Dict[str, Any]:
    """A record as the JSON of `subid list|show` carries it."""
    out: Dict[str, Any] = {"uid": rec.uid, "name": rec.name, "start": rec.start,
                           "count": rec.count, "last": rec.last, "state": rec.state,
                           "withheld": rec.withheld, "created": rec.created,
                           "changed": rec.changed}
    if history:
        out["history"] = [{"at": e.at, "action": e.action, "detail": e.detail}
                          for e in rec.history]
    return out


def records(site: Optional[str] = None,
            deploy_root: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """`subid list`: site, revision, updated and every record (by range); None without a
    ledger yet."""
    where = reader(site, deploy_root, "subid list")
    ledger = load_ledger(where.root, where.site_name)
    if ledger is None:
        return None
    recs = sorted(ledger.records.values(), key=lambda r: (r.start, r.uid))
    return {"site": ledger.site, "revision": ledger.revision, "updated": ledger.updated,
            "records": [record_dict(r) for r in recs]}


def record(user: str, site: Optional[str] = None,
           deploy_root: Optional[str] = None) -> Dict[str, Any]:
    """`subid show USER`: one user's record, history included."""
    rec = ledger_of(reader(site, deploy_root, "subid show")).find(user)
    if rec is None:
        raise InvalidInput(f"{user}: no sub-ID range in the ledger", path="user")
    return record_dict(rec, history=True)


# ------------------------------------------------------------------------------ changes


def _operation(action: str) -> Callable[[Ledger, str], Ledger]:
    from hpcpolicy.subid import operations

    ops: Dict[str, Callable[[Ledger, str], Ledger]] = {
        "revoke": operations.revoke, "grant": operations.grant, "reclaim": operations.reclaim}
    if action not in ops:
        raise UsageError(f"subid {action}: not one of {', '.join(ACTIONS)}")
    return ops[action]


@dataclass
class Changed:
    record: Dict[str, Any]  # record_dict
    revision: int


def change(action: str, user: str, *, site: Optional[str] = None,
           deploy_root: Optional[str] = None, lock_timeout: float = 60.0,
           batch: bool = False) -> Changed:
    """`subid revoke|grant|reclaim USER`: under the lock, saved, logged."""
    operation = _operation(action)
    where = writer(site, deploy_root, f"subid {action}", batch)
    with DeployLock(where.root, lock_timeout, purpose=f"subid {action} {user}"):
        new = operation(ledger_of(where), user)
        rec = new.find(user)
        assert rec is not None
        save_ledger(where.root, new)
        append_change(where.root, {
            "operator": where.operator,
            "action": f"subid {action}", "user": rec.name, "uid": rec.uid,
            "range": f"{rec.start}-{rec.last}", "state": rec.state,
            "ledger_revision": new.revision})
    return Changed(record_dict(rec), new.revision)


@dataclass
class Imported:
    adopted: List[str]  # user names
    skipped: List[Problem] = field(default_factory=list)
    revision: int = 0
    past: Optional[int] = None  # the newest published revision a stale ledger was raised past


def read_subid_file(path: str, trust: Optional[Trust]) -> bytes:
    """A subuid/subgid file named on the command line, through `policy.inputs` (regular
    files only, size-capped; `trust`: the ownership rule, None for any owner)."""
    from hpcpolicy.policy.inputs import SUBID_FILE_MAX, read_input

    return read_input(path, file="", key="", max_size=SUBID_FILE_MAX, trust=trust)


def _text(path: str, trust: Optional[Trust]) -> str:
    data = read_subid_file(path, trust)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidInput(f"not UTF-8 (byte {err.start})", file=path) from None


def import_ranges(subuid: str, subgid: str, *, site: Optional[str] = None,
                  deploy_root: Optional[str] = None, partial: bool = False,
                  lock_timeout: float = 60.0, batch: bool = False,
                  init: bool = False) -> Imported:
    """`subid import SUBUID SUBGID`: adopt existing lines; every problem of both files at once,
    nothing adopted unless `partial`. The ownership rule of apply applies to both files.
    A missing deploy root is refused unless `init` (as for apply)."""
    from hpcpolicy.deploy.ledger_guard import behind, published_manifests
    from hpcpolicy.policy.inputs import trust_for
    from hpcpolicy.subid.importer import import_files

    where = writer(site, deploy_root, "subid import", batch)
    require_root(where.root, init)  # before reading the directory: fail fast
    trust = trust_for(where.owner)
    texts, refused = [], []
    for path in (subuid, subgid):
        try:
            texts.append(_text(path, trust))
        except InvalidInput as err:
            refused.extend(err.problems)
    if refused:
        raise InvalidInput(refused)
    snapshot = None
    if where.policy is not None:
        from hpcpolicy.deploy.plan import checked_snapshot

        snapshot = checked_snapshot(where.policy, against=False)
    if init:
        init_root(where.root, where.owner)
    ensure_layout(where.root)
    with DeployLock(where.root, lock_timeout, purpose="subid import"):
        before = load_ledger(where.root, where.site_name)
        new, problems = import_files(before, where.policy, texts[0], texts[1], snapshot,
                                     files=(subuid, subgid))
        if problems and not partial:
            note = Problem("", "", "nothing imported; fix the lines above, or adopt the "
                                   "clean lines with --partial")
            raise InvalidInput(problems + [note])
        old = before.records if before is not None else {}
        adopted = sorted(uid for uid, rec in new.records.items() if old.get(uid) != rec)
        # a ledger older than what was published (restored from a backup) is accepted by
        # importing: past every revision published, so that apply allocates again
        stale = behind(before, published_manifests(where.root))
        if stale is not None:
            new = replace(new, revision=max(new.revision, stale[0] + 1))
        if adopted or before is None or stale is not None:
            save_ledger(where.root, new)
            append_change(where.root, {"operator": where.operator,
                                       "action": "subid import", "adopted": len(adopted),
                                       "skipped": len(problems), "files": [subuid, subgid],
                                       "ledger_revision": new.revision})
    return Imported([new.records[u].name for u in adopted], problems, new.revision,
                    stale[0] if stale is not None else None)


# ------------------------------------------------------------------------------ check


def _real_ids(site: Optional[str]) -> Optional[Set[int]]:
    if not site:
        return None
    from hpcpolicy.deploy.plan import checked_snapshot
    from hpcpolicy.policy.load import load

    uids, gids = checked_snapshot(load(site), against=False).real_ids()
    return uids | gids


def check_file(path: str, site: Optional[str] = None) -> Tuple[List[Problem], int]:
    """`subid check FILE`: every problem of a subuid/subgid file (with a site: against the
    real UIDs/GIDs of its directory too), and its line count. Read-only: any owner, but never
    a FIFO or a device."""
    from hpcpolicy.subid.check import check_bytes

    data = read_subid_file(path, None)
    return check_bytes(data, path, _real_ids(site)), data.count(b"\n")
