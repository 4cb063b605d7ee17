"""`hpcpolicy status [--site SITE | --deploy-root DIR]`: what nodes get now, since when, from whom.

Also holds the small helpers the deploy-root commands (status, generations, rollback, promote)
share: `--site`/`--deploy-root` options and turning them into a deploy Target.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Dict, List, Optional, Tuple

from hpcpolicy.cli.outcome import Outcome
from hpcpolicy.deploy.store import Target
from hpcpolicy.errors import UsageError
from hpcpolicy.policy.model import Policy


def add_root_options(parser: argparse.ArgumentParser) -> None:
    """--site / --deploy-root / --format, as every deploy-root command takes them."""
    parser.add_argument("--site", metavar="SITE", help="site.toml (gives deploy_root, approval)")
    parser.add_argument("--deploy-root", metavar="DIR", help="deploy root (overrides SITE's)")
    parser.add_argument("--format", choices=("text", "json"), default="text")


def add_writer_options(parser: argparse.ArgumentParser) -> None:
    """What every command that writes to a deploy root adds to the root options."""
    parser.add_argument("--non-interactive", action="store_true",
                        help="a scheduled run: under [site.approval] nobody is asked for a "
                             "password, the signature ([site] signing_key) is the accountable "
                             "act; without it, no terminal means no approval")


def writer_target(args: argparse.Namespace, command: str) -> Tuple[Target, Optional[Policy]]:
    """The Target of a command that writes: from --site (and --deploy-root), or from what
    apply recorded in the bare deploy root's state/site.json (exit 2 without one)."""
    if not getattr(args, "site", None) and not args.deploy_root:
        raise UsageError(f"{command}: give --site SITE or --deploy-root DIR")
    root = os.path.abspath(args.deploy_root) if args.deploy_root else None
    if args.site:
        from hpcpolicy.policy.load import load

        policy = load(args.site)
        return Target.from_policy(policy, root), policy
    from hpcpolicy.deploy.site_record import target_from_record

    assert root is not None
    return target_from_record(root, command), None


def writer_operator(target: Target, args: argparse.Namespace, signs: bool) -> str:
    """Operator approval for a writing command, by the target's [site.approval]."""
    from hpcpolicy.deploy.approval import approve

    return approve(target.approval, target.signing_key,
                   batch=bool(getattr(args, "non_interactive", False)), signs=signs)


def target_of(args: argparse.Namespace, command: str) -> Tuple[Target, Optional[Policy]]:
    """The deploy Target from --site and/or --deploy-root (one is required: exit 2); for
    commands that only READ (a bare root's owner is whoever owns it)."""
    if not args.site and not args.deploy_root:
        raise UsageError(f"{command}: give --site SITE or --deploy-root DIR")
    policy: Optional[Policy] = None
    if args.site:
        from hpcpolicy.policy.load import load  # only when a site is given

        policy = load(args.site)
    root = os.path.abspath(args.deploy_root) if args.deploy_root else None
    if policy is not None:
        return Target.from_policy(policy, root), policy
    assert root is not None
    return Target.from_root(root), None


def add_parser(subparsers: Any, common_parent: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "status", parents=[common_parent], help="the current generation and every channel",
        description=__doc__.splitlines()[0])
    add_root_options(parser)
    parser.set_defaults(run=run)


def _line(entry: Optional[Dict[str, Any]]) -> str:
    if not entry:
        return "nothing published"
    if entry.get("broken"):
        return f"{entry['generation']} (manifest unreadable)"
    classes = ", ".join(f"{c}: {n} files" for c, n in entry["classes"].items())
    subid = entry.get("subid_users")
    text = (f"{entry['generation']} created {entry['created']} by {entry['operator']} on "
            f"{entry['host']} ({entry.get('action') or 'apply'}); {classes}")
    if entry.get("rollback_to"):
        text += f"; files of {entry['rollback_to']}"
    return text + (f"; {subid} users with sub-IDs" if subid is not None else "")


def _text(doc: Dict[str, Any]) -> str:
    lines: List[str] = [f"deploy root: {doc['deploy_root']}",
                        f"current:     {_line(doc['current'])}"]
    for channel, entry in doc["channels"].items():
        if channel != "stable":
            lines.append(f"channel {channel}: {_line(entry)}")
    lines.append(f"generations: {doc['generations']}")
    last = doc.get("last_change")
    if last:
        lines.append(f"last change: {last.get('action')} {last.get('generation') or ''} at "
                     f"{last.get('time')} by {last.get('operator')}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> Outcome:
    from hpcpolicy.deploy.status import status
    from hpcpolicy.deploy.store import check_deploy_root

    target, _ = target_of(args, "status")
    check_deploy_root(target.root, target.owner, write=False)
    doc = status(target.root)
    current = doc["generation"]
    msg = f"current generation: {current}" if current else "nothing published yet"
    return Outcome(msg, doc, _text(doc))
