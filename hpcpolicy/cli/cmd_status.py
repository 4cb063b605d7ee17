"""`hpcpolicy status [--site SITE | --deploy-root DIR]`: what nodes get now, since when, by whom."""

from __future__ import annotations

import argparse
from typing import Any, Dict, List, Optional

from hpcpolicy.cli.options import add_root_options
from hpcpolicy.cli.outcome import Outcome


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
    from hpcpolicy.deploy.status import status_of

    doc = status_of(args.site, args.deploy_root)
    current = doc["generation"]
    msg = f"current generation: {current}" if current else "nothing published yet"
    return Outcome(msg, doc, _text(doc))
