"""`hpcpolicy fleet status NODESET`: which generation every node holds, folded as node sets.

Runs CMD (default `hpcpolicy node doctor --format json`) on every node through ClusterShell:
its ssh worker (ssh settings from ClusterShell's clush.conf), or its exec worker, which runs
CMD on this host with `%h` replaced by the node name (write a literal `%` as `%%`). Exit 0
when every node answered and passed (being behind alone is not a failure), 1 when any node is
failing or unreachable, 2 when the node set does not parse.
"""

from __future__ import annotations

import argparse
from typing import Any

from hpcpolicy.cli.outcome import Outcome
from hpcpolicy.errors import EXIT_FAILURE


def add_parser(subparsers: Any, common_parent: argparse.ArgumentParser) -> None:
    from hpcpolicy.cli.options import add_root_options

    parser = subparsers.add_parser(
        "fleet", parents=[common_parent], help="ask every node what it holds",
        description=__doc__)
    actions = parser.add_subparsers(dest="fleet_action", metavar="ACTION")
    actions.required = True
    st = actions.add_parser("status", parents=[common_parent], description=__doc__,
                            help="generation, failures and reachability of a node set")
    st.add_argument("nodeset", metavar="NODESET",
                    help="nodes in ClusterShell syntax (node[001-100],@compute)")
    add_root_options(st)
    st.add_argument("--channel", metavar="NAME",
                    help="the channel whose generation `current` reports, and the one a node "
                    "that names none is compared with (default stable)")
    st.add_argument("--worker", choices=("ssh", "exec"), default="ssh",
                    help="ClusterShell worker (default ssh)")
    st.add_argument("--command", metavar="CMD",
                    help="command run per node (default: hpcpolicy node doctor --format json)")
    st.add_argument("--fanout", type=int, default=64, metavar="N",
                    help="nodes asked at a time (default 64)")
    st.add_argument("--timeout", type=float, default=30.0, metavar="S",
                    help="seconds a node has to answer (default 30)")
    st.set_defaults(run=run_status, json_on_error={
        "current": None, "nodes": {}, "generations": {}, "behind": "", "failing": "",
        "unreachable": ""})


def run_status(args: argparse.Namespace) -> Outcome:
    from hpcpolicy.fleet.status import DEFAULT_COMMAND, status

    result = status(args.nodeset, args.site, args.deploy_root, channel=args.channel,
                    worker=args.worker, command=args.command or DEFAULT_COMMAND,
                    fanout=args.fanout, timeout=args.timeout)
    return Outcome(msg=result.msg, data=result.as_dict(), text=result.as_text(),
                   exit_code=EXIT_FAILURE if result.failed else 0)
