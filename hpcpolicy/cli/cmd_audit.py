"""`hpcpolicy audit SITE`: who may run which image, why, and what on a node enforces it.

Without `--user`, every user the node-wide files are rendered for (uid >= min_uid, not nobody,
not disabled when `exclude_disabled`); without `--image`, one example reference per rule scope,
one reference no rule matches, and every collection. `--explain` gives every detail of one
decision. The audit exits 0 whatever it finds: denials nobody enforces and permission drift are
findings, not failures. Invalid site or arguments (an unknown user, a malformed reference) exit
2; an unreadable directory exits 1. It reads the directory and stats collection paths; it needs
no deploy root and writes nothing.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Dict, List

from hpcpolicy.audit.decide import AuditDecision, Target
from hpcpolicy.cli.outcome import Outcome
from hpcpolicy.errors import InvalidInput, UsageError


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
    parser.add_argument("--format", choices=("table", "text", "csv", "json", "html"),
                        default="table", help="text is the same as table")
    parser.set_defaults(run=run)


def _target(arg: str) -> Target:
    from hpcpolicy.audit.decide import parse_target

    try:
        return parse_target(arg, os.getcwd())
    except ValueError as err:
        raise UsageError(f"--image {arg}: {err}") from err


def _decisions(args: argparse.Namespace) -> tuple[Any, List[AuditDecision]]:
    from hpcpolicy.audit.decide import (
        audit,
        default_targets,
        make_context,
        paths_to_observe,
        select_users,
    )
    from hpcpolicy.audit.observe import observe
    from hpcpolicy.directory.against import check_against_directory
    from hpcpolicy.directory.read import read_directory
    from hpcpolicy.policy.load import load

    if args.explain and not (args.user and args.image):
        raise UsageError("audit --explain needs --user U and --image REF")
    targets = [_target(args.image)] if args.image else None
    policy = load(args.site)
    snapshot = read_directory(policy)
    problems = list(check_against_directory(policy, snapshot))
    if problems:
        raise InvalidInput(problems)
    ctx = make_context(policy, snapshot, args.node_class)
    users = select_users(ctx, args.user, args.group)
    if args.explain and not users:
        raise UsageError(f"--user {args.user} is not a member of --group {args.group}")
    targets = targets or default_targets(policy)
    walk, single = paths_to_observe(policy, targets)
    return ctx, audit(ctx, users, targets, observe(walk, single))


def _explain(d: AuditDecision, fmt: str, site: str) -> Outcome:
    from hpcpolicy.audit import report

    verb = "may run" if d.allowed else "may not run"
    msg = f"{d.user} {verb} {d.image} ({d.rule})"
    text = {
        "csv": lambda: report.to_csv([d]),
        "html": lambda: report.to_html([d], f"hpcpolicy audit: {site}", msg),
    }.get(fmt, lambda: report.explain(d))()
    return Outcome(msg, d.as_dict(), text)


def run(args: argparse.Namespace) -> Outcome:
    from hpcpolicy.audit import report

    ctx, decisions = _decisions(args)
    site = ctx.policy.site.name
    if args.explain:
        return _explain(decisions[0], args.format, site)
    counts = report.summary(decisions)
    msg = report.summary_line(site, ctx.node_class, counts)
    data: Dict[str, Any] = {"decisions": report.to_json(decisions), "summary": counts,
                            "site": site, "class": ctx.node_class}
    if args.format == "csv":
        text = report.to_csv(decisions)
    elif args.format == "html":
        text = report.to_html(decisions, f"hpcpolicy audit: {site}", msg)
    else:
        text = report.table(decisions, msg)
    return Outcome(msg, data, text)
