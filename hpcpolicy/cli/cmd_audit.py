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


def _text(result: Any, fmt: str, members: bool) -> str:
    """The answer in a text format: table (or explanation), CSV or an HTML page."""
    from hpcpolicy.audit import profile_report, report

    site, node_class = result.site, result.ctx.node_class
    r, found, msg = result.report, result.decisions, result.msg
    if r is not None:
        title = f"hpcpolicy audit: {site} (class {node_class})"
        return {"csv": lambda: profile_report.profile_csv(r),
                "html": lambda: profile_report.profile_html(r, title, msg, members),
                }.get(fmt, lambda: profile_report.profile_table(r, msg, members))()
    return {"csv": lambda: report.to_csv(found),
            "html": lambda: report.to_html(found, f"hpcpolicy audit: {site}", msg),
            }.get(fmt, lambda: (report.explain(found[0]) if result.explain
                                else report.table(found, msg)))()


def run(args: argparse.Namespace) -> Outcome:
    from hpcpolicy.audit import api

    if args.decisions and args.format != "json":
        raise UsageError("audit --decisions prints JSON Lines: it needs --format json")
    if args.decisions and args.explain:
        raise UsageError("audit --decisions and --explain are exclusive")
    result = api.run(args.site, user=args.user, image=args.image, group=args.group,
                     node_class=args.node_class, explain=args.explain)
    if args.decisions:
        return Outcome("", stream=_lines(result))
    if args.format == "json":
        return Outcome(result.msg, result.as_dict(args.users))
    return Outcome(result.msg, {}, _text(result, args.format, args.users))
