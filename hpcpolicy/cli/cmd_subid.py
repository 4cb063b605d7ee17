"""`hpcpolicy subid list|show|revoke|grant|reclaim|import|check`: the sub-ID ledger by hand.

revoke/grant/reclaim/import change only the ledger (under the deploy lock, recorded in the
change log); nodes see the effect after the next `hpcpolicy apply`, which renders the ledger.
`check FILE` judges any subuid/subgid file and needs no site.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable, Dict, List

from hpcpolicy.cli.argtypes import seconds
from hpcpolicy.cli.options import add_format
from hpcpolicy.cli.outcome import Outcome
from hpcpolicy.errors import EXIT_INVALID, printable

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
        add_format(p)
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
    imp.add_argument("--init", action="store_true",
                     help="create a missing deploy root first (as apply --init does)")
    chk = action("check", "check a subuid/subgid file (exit 2 on problems)", run_check,
                 site=False)
    chk.add_argument("file", metavar="FILE")
    chk.add_argument("--site", metavar="SITE",
                     help="also check against the real UIDs/GIDs of SITE's directory")


# ------------------------------------------------------------------------------ views


def _span(rec: Dict[str, Any]) -> str:
    return f"{rec['start']}-{rec['last']}"


def _table(records: List[Dict[str, Any]]) -> str:
    rows = [("UID", "NAME", "START", "LAST", "COUNT", "STATE")]
    for r in records:
        state = r["state"] + (" (withheld)" if r["withheld"] else "")
        rows.append((str(r["uid"]), r["name"], str(r["start"]), str(r["last"]), str(r["count"]),
                     state))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
                     for row in rows)


def run_list(args: argparse.Namespace) -> Outcome:
    from hpcpolicy.deploy.ledger_ops import records

    doc = records(args.site, args.deploy_root)
    if doc is None:
        return Outcome("no sub-ID ledger yet", {"records": []})
    counts: Dict[str, int] = {}
    for r in doc["records"]:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no records"
    msg = f"site {doc['site']}, ledger revision {doc['revision']}: {summary}"
    return Outcome(msg, doc, text=_table(doc["records"]) + "\n" + msg)


def run_show(args: argparse.Namespace) -> Outcome:
    from hpcpolicy.deploy.ledger_ops import record

    rec = record(args.user, args.site, args.deploy_root)
    lines = [f"{rec['name']} (uid {rec['uid']}): {_span(rec)} (count {rec['count']}), "
             f"{rec['state']}" + (" (withheld until `subid grant`)" if rec["withheld"] else "")]
    # history text is whatever the ledger file holds: escaped, so it cannot drive the terminal
    lines += [f"  {printable(e['at'], 64)}  {printable(e['action'], 64)}  "
              f"{printable(e['detail'], 500)}".rstrip() for e in rec["history"]]
    return Outcome(lines[0], {"record": rec}, text="\n".join(lines))


# ---------------------------------------------------------------------------- changes


_WHAT = {"revoke": "revoked", "grant": "granted", "reclaim": "reclaimed"}


def run_change(args: argparse.Namespace) -> Outcome:
    from hpcpolicy.deploy.ledger_ops import change

    done = change(args.subid_action, args.user, site=args.site, deploy_root=args.deploy_root,
                  lock_timeout=args.lock_timeout, batch=getattr(args, "non_interactive", False))
    rec = done.record
    msg = (f"{_WHAT[args.subid_action]} {rec['name']} (uid {rec['uid']}) {_span(rec)}: now "
           f"{rec['state']}; {NEXT_APPLY}")
    return Outcome(msg, {"record": rec, "ledger_revision": done.revision}, changed=True)


def run_import(args: argparse.Namespace) -> Outcome:
    from hpcpolicy.deploy.ledger_ops import import_ranges

    done = import_ranges(args.subuid, args.subgid, site=args.site, deploy_root=args.deploy_root,
                         partial=args.partial, lock_timeout=args.lock_timeout, init=args.init,
                         batch=getattr(args, "non_interactive", False))
    msg = (f"adopted {len(done.adopted)} range(s); {len(done.skipped)} line problem(s) "
           f"skipped; {NEXT_APPLY}")
    if done.past is not None:
        msg += (f"; the ledger was older than published generations (revision {done.past}): "
                f"now revision {done.revision}. Ranges reserved for users who left are in no "
                "published file and were not recovered")
    text = "\n".join([f"skipped: {p}" for p in done.skipped] + [msg])
    return Outcome(msg, {"adopted": done.adopted, "skipped": [str(p) for p in done.skipped],
                         "ledger_revision": done.revision},
                   text=text, changed=bool(done.adopted) or done.past is not None)


# ------------------------------------------------------------------------------- check


def run_check(args: argparse.Namespace) -> Outcome:
    from hpcpolicy.deploy.ledger_ops import check_file

    problems, lines = check_file(args.file, args.site)
    if not problems:
        return Outcome(f"{args.file}: {lines} line(s), no problems", {"problems": []})
    msg = f"{args.file}: {len(problems)} problem(s)"
    return Outcome(msg, {"problems": [str(p) for p in problems]},
                   text="\n".join([str(p) for p in problems] + [msg]), exit_code=EXIT_INVALID)
