"""`hpcpolicy audit SITE`: who may run which image, why, and what on a node enforces it.

Without `--user`, a report by access profile (users whose decisions are all the same): a
summary, the findings first (denials or signature requirements a mechanism does not carry,
contradictions, bypass routes that need no override, collection drift), then the image x
profile matrix and a legend. `--image REF` alone says who may run that image, by profile, with
user counts. `--user U` lists that user's decisions; `--explain` gives every detail of one.
`--users` adds the members of each profile; `--decisions --format json` streams every
(image, user) decision as JSON Lines. The audit exits 0 whatever it finds. Invalid site or
arguments (an unknown user, group or class, a malformed reference) exit 2; an unreadable
directory exits 1. It reads the directory and stats collection paths; it needs no deploy root
and writes nothing.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Iterator

from hpcpolicy.cli.outcome import Outcome
from hpcpolicy.errors import UsageError


def add_parser(subparsers: Any, common_parent: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "audit", parents=[common_parent], help="who may run which image, why, enforced by what",
        description=__doc__)
    parser.add_argument("site", metavar="SITE", help="the site file (site.toml)")
    parser.add_argument("--user", metavar="U", help="only this user (any user of the directory)")
    parser.add_argument("--image", metavar="REF",
                        help="a registry reference, an image file path, or oci:/sif:/... local "
                             "transport (default: an example per rule scope and each collection)")
    parser.add_argument("--group", metavar="G", help="only members of this group")
    parser.add_argument("--class", dest="node_class", metavar="NAME", default="default",
                        help="the node class audited (default: default)")
    parser.add_argument("--explain", action="store_true",
                        help="every detail of one decision (needs --user and --image)")
    more = parser.add_mutually_exclusive_group()
    more.add_argument("--users", action="store_true",
                      help="list the members of each access profile")
    more.add_argument("--decisions", action="store_true",
                      help="every (image, user) decision as JSON Lines (needs --format json)")
    parser.add_argument("--format", choices=("table", "text", "csv", "json", "html"),
                        default="table", help="text is the same as table")
    parser.set_defaults(run=run)


def _lines(result: Any) -> Iterator[str]:
    from hpcpolicy.audit.api import decisions

    dumps = json.JSONEncoder(sort_keys=True).encode
    for d in decisions(result):
        yield dumps(d.as_dict()) + "\n"


def _explain(d: Any, fmt: str, site: str) -> Outcome:
    from hpcpolicy.audit import report

    verb = "may run" if d.allowed else "may not run"
    msg = f"{d.user} {verb} {d.image} ({d.rule})"
    text = {
        "csv": lambda: report.to_csv([d]),
        "html": lambda: report.to_html([d], f"hpcpolicy audit: {site}", msg),
    }.get(fmt, lambda: report.explain(d))()
    return Outcome(msg, d.as_dict(), text)


def run(args: argparse.Namespace) -> Outcome:
    from hpcpolicy.audit import api, report

    if args.decisions and args.format != "json":
        raise UsageError("audit --decisions prints JSON Lines: it needs --format json")
    if args.decisions and args.explain:
        raise UsageError("audit --decisions and --explain are exclusive")
    result = api.run(args.site, user=args.user, image=args.image, group=args.group,
                     node_class=args.node_class, explain=args.explain)
    ctx = result.ctx
    site = ctx.policy.site.name
    if args.explain:
        return _explain(result.decisions[0], args.format, site)
    if args.decisions:
        return Outcome("", stream=_lines(result))
    if result.report is None:  # --user
        decisions = result.decisions
        counts = report.summary(decisions)
        msg = report.summary_line(site, ctx.node_class, counts)
        data = {"decisions": report.to_json(decisions), "summary": counts, "site": site,
                "class": ctx.node_class}
        text = {"csv": lambda: report.to_csv(decisions),
                "html": lambda: report.to_html(decisions, f"hpcpolicy audit: {site}", msg),
                }.get(args.format, lambda: report.table(decisions, msg))()
        return Outcome(msg, data, text)
    r = result.report
    msg = report.who_line(r) if args.image else report.report_line(r)
    title = f"hpcpolicy audit: {site} (class {ctx.node_class})"
    if args.format == "json":
        return Outcome(msg, r.as_dict(args.users))
    text = {"csv": lambda: report.profile_csv(r),
            "html": lambda: report.profile_html(r, title, msg, args.users),
            }.get(args.format, lambda: report.profile_table(r, msg, args.users))()
    return Outcome(msg, {}, text)
