"""`hpcpolicy subid list|show|revoke|grant|reclaim|import|check`: the sub-ID ledger by hand.

revoke/grant/reclaim/import change only the ledger (under the deploy lock, recorded in the
change log); nodes see the effect after the next `hpcpolicy apply`, which renders the ledger.
`check FILE` judges any subuid/subgid file and needs no site.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Set

from hpcpolicy.cli.argtypes import seconds
from hpcpolicy.cli.outcome import Outcome
from hpcpolicy.errors import (
    EXIT_INVALID,
    InvalidInput,
    Problem,
    RuntimeFailure,
    UsageError,
    printable,
)
from hpcpolicy.policy.model import Policy
from hpcpolicy.subid.ledger import Ledger, Record, load_ledger, save_ledger

NEXT_APPLY = "takes effect at the next `hpcpolicy apply`"


def add_parser(subparsers: Any, common_parent: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "subid", parents=[common_parent], help="inspect and edit the sub-ID ledger",
        description=__doc__)
    actions = parser.add_subparsers(dest="subid_action", metavar="ACTION")
    actions.required = True

    def action(name: str, helptext: str, run: Callable[[argparse.Namespace], Outcome],
               site: bool = True, lock: bool = False) -> argparse.ArgumentParser:
        p = actions.add_parser(name, parents=[common_parent], help=helptext)
        p.add_argument("--format", choices=("text", "json"), default="text")
        if site:
            p.add_argument("--site", metavar="SITE", help="site.toml (gives the deploy root)")
            p.add_argument("--deploy-root", metavar="DIR", help="deploy root (overrides SITE's)")
        if lock:
            p.add_argument("--lock-timeout", type=seconds, default=60.0, metavar="S",
                           help="seconds to wait for the deploy lock (default 60)")
        p.set_defaults(run=run)
        return p

    action("list", "every ledger record", run_list)
    action("show", "one user's record and history", run_show).add_argument("user")
    for name, helptext in (("revoke", "withdraw a user's range (kept reserved for them)"),
                           ("grant", "undo revoke"),
                           ("reclaim", "free the reserved range of a user who left")):
        action(name, helptext, run_change, lock=True).add_argument("user")
    imp = action("import", "adopt existing subuid/subgid lines", run_import, lock=True)
    imp.add_argument("subuid", metavar="SUBUID")
    imp.add_argument("subgid", metavar="SUBGID")
    imp.add_argument("--partial", action="store_true",
                     help="adopt the clean lines even when others have problems")
    chk = action("check", "check a subuid/subgid file (exit 2 on problems)", run_check,
                 site=False)
    chk.add_argument("file", metavar="FILE")
    chk.add_argument("--site", metavar="SITE",
                     help="also check against the real UIDs/GIDs of SITE's directory")


# ---------------------------------------------------------------------------- context


@dataclass
class _Context:
    root: str
    policy: Optional[Policy]
    owner: str
    site_name: Optional[str]
    operator: Optional[str] = None  # writers: the approved operator


def _load_policy(path: str) -> Policy:
    from hpcpolicy.policy.load import load  # the policy loader, imported only when needed

    return load(path)


def _context(args: argparse.Namespace, write: bool) -> _Context:
    """Readers: --site or a bare --deploy-root. Writers: the checks and approval of apply,
    from --site or from what apply recorded in the bare root (`deploy.site_record`)."""
    from hpcpolicy.deploy.store import check_deploy_root

    command = f"subid {args.subid_action}"
    if not args.site and not args.deploy_root:
        raise UsageError(f"{command}: give --site SITE or --deploy-root DIR")
    policy = _load_policy(args.site) if args.site else None
    if write:
        from hpcpolicy.cli.cmd_status import writer_operator
        from hpcpolicy.deploy.site_record import target_from_record
        from hpcpolicy.deploy.store import Target

        root = os.path.abspath(args.deploy_root) if args.deploy_root else None
        target = (Target.from_policy(policy, root) if policy is not None
                  else target_from_record(str(root), command))
        check_deploy_root(target.root, target.owner, True)
        operator = writer_operator(target, args, signs=False)  # the ledger is never signed
        return _Context(target.root, policy, target.owner, target.site or None, operator)
    root = os.path.abspath(args.deploy_root or (policy.site.deploy_root if policy else ""))
    owner = policy.site.deploy_owner if policy is not None else str(os.geteuid())
    ctx = _Context(root, policy, owner, policy.site.name if policy is not None else None)
    check_deploy_root(root, ctx.owner, write)
    return ctx


def _require(ledger: Optional[Ledger], root: str) -> Ledger:
    if ledger is None:
        raise RuntimeFailure(f"{root}: no sub-ID ledger yet (nothing was applied or imported)")
    return ledger


# ------------------------------------------------------------------------------ views


def _span(rec: Record) -> str:
    return f"{rec.start}-{rec.last}"


def _record_json(rec: Record, history: bool) -> Dict[str, Any]:
    out: Dict[str, Any] = {"uid": rec.uid, "name": rec.name, "start": rec.start,
                           "count": rec.count, "last": rec.last, "state": rec.state,
                           "withheld": rec.withheld, "created": rec.created,
                           "changed": rec.changed}
    if history:
        out["history"] = [{"at": e.at, "action": e.action, "detail": e.detail}
                          for e in rec.history]
    return out


def _table(records: List[Record]) -> str:
    rows = [("UID", "NAME", "START", "LAST", "COUNT", "STATE")]
    for r in records:
        state = r.state + (" (withheld)" if r.withheld else "")
        rows.append((str(r.uid), r.name, str(r.start), str(r.last), str(r.count), state))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
                     for row in rows)


def run_list(args: argparse.Namespace) -> Outcome:
    ctx = _context(args, write=False)
    ledger = load_ledger(ctx.root, ctx.site_name)
    if ledger is None:
        return Outcome(f"{ctx.root}: no sub-ID ledger yet", {"records": []})
    records = sorted(ledger.records.values(), key=lambda r: (r.start, r.uid))
    counts: Dict[str, int] = {}
    for r in records:
        counts[r.state] = counts.get(r.state, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no records"
    msg = f"site {ledger.site}, ledger revision {ledger.revision}: {summary}"
    data = {"site": ledger.site, "revision": ledger.revision, "updated": ledger.updated,
            "records": [_record_json(r, False) for r in records]}
    return Outcome(msg, data, text=_table(records) + "\n" + msg)


def run_show(args: argparse.Namespace) -> Outcome:
    ctx = _context(args, write=False)
    ledger = _require(load_ledger(ctx.root, ctx.site_name), ctx.root)
    rec = ledger.find(args.user)
    if rec is None:
        raise InvalidInput(f"{args.user}: no sub-ID range in the ledger", path="user")
    lines = [f"{rec.name} (uid {rec.uid}): {_span(rec)} (count {rec.count}), {rec.state}"
             + (" (withheld until `subid grant`)" if rec.withheld else "")]
    # history text is whatever the ledger file holds: escaped, so it cannot drive the terminal
    lines += [f"  {printable(e.at, 64)}  {printable(e.action, 64)}  {printable(e.detail, 500)}"
              .rstrip() for e in rec.history]
    return Outcome(lines[0], {"record": _record_json(rec, True)}, text="\n".join(lines))


# ---------------------------------------------------------------------------- changes


_WHAT = {"revoke": "revoked", "grant": "granted", "reclaim": "reclaimed"}


def _operation(name: str) -> Callable[[Ledger, str], Ledger]:
    from hpcpolicy.subid import allocate

    ops: Dict[str, Callable[[Ledger, str], Ledger]] = {
        "revoke": allocate.revoke, "grant": allocate.grant, "reclaim": allocate.reclaim}
    return ops[name]


def run_change(args: argparse.Namespace) -> Outcome:
    from hpcpolicy.deploy.changelog import append_change
    from hpcpolicy.deploy.lock import DeployLock

    ctx = _context(args, write=True)
    action = args.subid_action
    with DeployLock(ctx.root, args.lock_timeout, purpose=f"subid {action} {args.user}"):
        ledger = _require(load_ledger(ctx.root, ctx.site_name), ctx.root)
        new = _operation(action)(ledger, args.user)
        rec = new.find(args.user)
        assert rec is not None
        save_ledger(ctx.root, new)
        append_change(ctx.root, {
            "operator": ctx.operator,
            "action": f"subid {action}", "user": rec.name, "uid": rec.uid,
            "range": _span(rec), "state": rec.state, "ledger_revision": new.revision})
    msg = (f"{_WHAT[action]} {rec.name} (uid {rec.uid}) {_span(rec)}: now {rec.state}; "
           f"{NEXT_APPLY}")
    return Outcome(msg, {"record": _record_json(rec, False), "ledger_revision": new.revision},
                   changed=True)


def _read_file(path: str, trust: Optional[Any]) -> bytes:
    """A subuid/subgid file named on the command line, through `policy.inputs`."""
    from hpcpolicy.policy.inputs import SUBID_FILE_MAX, read_input

    try:
        return read_input(path, file="", key="", max_size=SUBID_FILE_MAX, trust=trust)
    except OSError as err:
        raise RuntimeFailure(f"{path}: cannot read: {err.strerror}") from None


def _read_text(path: str, trust: Any) -> str:
    """What `subid import` adopts: the ownership rule applies, as to everything apply reads."""
    data = _read_file(path, trust)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidInput(f"not UTF-8 (byte {err.start})", file=path) from None


def run_import(args: argparse.Namespace) -> Outcome:
    from hpcpolicy.deploy.changelog import append_change
    from hpcpolicy.deploy.lock import DeployLock
    from hpcpolicy.deploy.store import ensure_layout
    from hpcpolicy.subid.importer import import_files

    ctx = _context(args, write=True)
    from hpcpolicy.policy.inputs import trust_for

    trust = trust_for(ctx.owner)
    texts, refused = [], []
    for path in (args.subuid, args.subgid):
        try:
            texts.append(_read_text(path, trust))
        except InvalidInput as err:
            refused.extend(err.problems)
    if refused:
        raise InvalidInput(refused)  # both files' problems at once
    uid_text, gid_text = texts
    snapshot = None
    if ctx.policy is not None:
        from hpcpolicy.directory.read import read_directory

        snapshot = read_directory(ctx.policy)
    ensure_layout(ctx.root)
    with DeployLock(ctx.root, args.lock_timeout, purpose="subid import"):
        before = load_ledger(ctx.root, ctx.site_name)
        new, problems = import_files(before, ctx.policy, uid_text, gid_text, snapshot,
                                     files=(args.subuid, args.subgid))
        if problems and not args.partial:
            note = Problem("", "", "nothing imported; fix the lines above, or adopt the "
                                   "clean lines with --partial")
            raise InvalidInput(problems + [note])
        old = before.records if before is not None else {}
        adopted = sorted(uid for uid, rec in new.records.items() if old.get(uid) != rec)
        if adopted or before is None:
            save_ledger(ctx.root, new)
            append_change(ctx.root, {"operator": ctx.operator,
                                     "action": "subid import", "adopted": len(adopted),
                                     "skipped": len(problems), "files": [args.subuid,
                                                                         args.subgid],
                                     "ledger_revision": new.revision})
    msg = (f"adopted {len(adopted)} range(s); {len(problems)} line problem(s) skipped; "
           f"{NEXT_APPLY}")
    text = "\n".join([f"skipped: {p}" for p in problems] + [msg])
    return Outcome(msg, {"adopted": [new.records[u].name for u in adopted],
                         "skipped": [str(p) for p in problems],
                         "ledger_revision": new.revision},
                   text=text, changed=bool(adopted))


# ------------------------------------------------------------------------------- check


def _real_ids(site: Optional[str]) -> Optional[Set[int]]:
    if not site:
        return None
    from hpcpolicy.directory.read import read_directory

    uids, gids = read_directory(_load_policy(site)).real_ids()
    return uids | gids


def run_check(args: argparse.Namespace) -> Outcome:
    from hpcpolicy.subid.check import check_bytes

    data = _read_file(args.file, None)  # read-only: any owner, but never a FIFO or a device
    problems = check_bytes(data, args.file, _real_ids(args.site))
    lines = data.count(b"\n")
    if not problems:
        return Outcome(f"{args.file}: {lines} line(s), no problems", {"problems": []})
    msg = f"{args.file}: {len(problems)} problem(s)"
    return Outcome(msg, {"problems": [str(p) for p in problems]},
                   text="\n".join([str(p) for p in problems] + [msg]), exit_code=EXIT_INVALID)
