"""`hpcpolicy diff [FROM [TO]]`: who gained or lost which image between two generations.

TO defaults to the current generation, FROM to the generation TO replaced. A user counts when
their verdict for an image changed, whether because a rule changed or because they joined or
left a group or the directory (`absent`). A generation published before hpcpolicy recorded
access cannot be compared (exit 1); an unknown generation or class is exit 2. Reads the deploy
root, writes nothing.
"""

from __future__ import annotations

import argparse
from typing import Any

from hpcpolicy.cli.options import add_root_options
from hpcpolicy.cli.outcome import Outcome


def add_parser(subparsers: Any, common_parent: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "diff", parents=[common_parent], help="who gained or lost which image between generations",
        description=__doc__)
    parser.add_argument("from_", nargs="?", metavar="FROM",
                        help="a generation name or number (default: the one TO replaced)")
    parser.add_argument("to", nargs="?", metavar="TO",
                        help="a generation name or number (default: current)")
    add_root_options(parser)
    parser.add_argument("--class", dest="node_class", metavar="NAME",
                        help="only this node class (default: every class)")
    parser.set_defaults(run=run, json_on_error={"changes": []})


def run(args: argparse.Namespace) -> Outcome:
    from hpcpolicy.access.document import describe
    from hpcpolicy.deploy.access_diff import access_diff_of

    doc = access_diff_of(args.site, args.deploy_root, args.from_, args.to, args.node_class)
    lines = [doc["msg"]] + [f"  {line}" for line in describe(doc["changes"], limit=10**9)]
    return Outcome(doc["msg"], {k: v for k, v in doc.items() if k != "msg"},
                   "\n".join(lines) + "\n")
