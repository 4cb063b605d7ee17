"""`hpcpolicy promote CHANNEL`: point `current` at the generation a channel (canary) names."""

from __future__ import annotations

import argparse
from typing import Any

from hpcpolicy.cli.argtypes import seconds
from hpcpolicy.cli.cmd_apply import JSON_ON_ERROR, outcome_of
from hpcpolicy.cli.options import add_root_options, add_writer_options
from hpcpolicy.cli.outcome import Outcome


def add_parser(subparsers: Any, common_parent: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "promote", parents=[common_parent], help="make a channel's generation the current one",
        description=__doc__)
    parser.add_argument("channel", metavar="CHANNEL", help="e.g. canary")
    add_root_options(parser)
    add_writer_options(parser)
    parser.add_argument("--lock-timeout", type=seconds, default=60.0, metavar="S")
    parser.set_defaults(run=run, json_on_error=JSON_ON_ERROR)


def run(args: argparse.Namespace) -> Outcome:
    from hpcpolicy.deploy.rollback import promote_site

    result = promote_site(args.channel, site=args.site, deploy_root=args.deploy_root,
                          batch=args.non_interactive, lock_timeout=args.lock_timeout)
    return outcome_of(result, False)
