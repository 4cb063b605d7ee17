"""`hpcpolicy generations [--site SITE | --deploy-root DIR]`: every generation, newest first."""

from __future__ import annotations

import argparse
from typing import Any, Dict, List

from hpcpolicy.cli.options import add_root_options
from hpcpolicy.cli.outcome import Outcome


def add_parser(subparsers: Any, common_parent: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "generations", parents=[common_parent], help="list the generations on shared storage",
        description=__doc__)
    add_root_options(parser)
    parser.set_defaults(run=run)


def _table(entries: List[Dict[str, Any]]) -> str:
    rows = [("", "NUMBER", "GENERATION", "CREATED", "OPERATOR", "ACTION", "CHANNELS")]
    for e in entries:
        rows.append(("*" if e["current"] else "", str(e["number"]), e["generation"],
                     str(e.get("created") or "?"), str(e.get("operator") or "?"),
                     str(e.get("action") or ("broken" if e.get("broken") else "apply")),
                     ",".join(e["channels"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def run(args: argparse.Namespace) -> Outcome:
    from hpcpolicy.deploy.status import generations_of

    entries = generations_of(args.site, args.deploy_root)
    msg = f"{len(entries)} generations"
    return Outcome(msg, {"generations": entries}, _table(entries) if entries else msg)
