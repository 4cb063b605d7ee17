"""`hpcpolicy rollback [GENERATION]`: publish a new generation with an older one's files.

Sub-ID files (etc/subuid, etc/subgid) stay as they are now. Without GENERATION: the newest
generation before the current one whose node files differ from it. The new generation records
who may run what under the chosen generation's image rules with the directory as it is now, so
rolling back a generation that has such a record needs --site SITE (to read the directory).
"""

from __future__ import annotations

import argparse
from typing import Any

from hpcpolicy.cli.argtypes import seconds
from hpcpolicy.cli.cmd_apply import JSON_ON_ERROR, outcome_of
from hpcpolicy.cli.options import add_root_options, add_writer_options
from hpcpolicy.cli.outcome import Outcome


def add_parser(subparsers: Any, common_parent: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "rollback", parents=[common_parent], help="go back to an older generation's files",
        description=__doc__)
    parser.add_argument("generation", nargs="?", metavar="GENERATION",
                        help="a generation name (000042-3f2a9c1b) or number (42)")
    add_root_options(parser)
    add_writer_options(parser)
    parser.add_argument("--diff", action="store_true", help="show what changes in each file")
    parser.add_argument("--lock-timeout", type=seconds, default=60.0, metavar="S")
    parser.set_defaults(run=run, json_on_error=JSON_ON_ERROR)


def run(args: argparse.Namespace) -> Outcome:
    from hpcpolicy.deploy.rollback import rollback_site

    result = rollback_site(args.generation, site=args.site, deploy_root=args.deploy_root,
                           batch=args.non_interactive, lock_timeout=args.lock_timeout,
                           diff=args.diff)
    return outcome_of(result, args.diff)
