"""`hpcpolicy node sync|doctor`: what runs on every node (by Ansible or a systemd timer).

Both read the node's settings from /etc/hpcpolicy/node.toml (or --config FILE): deploy root,
deploy owner, allowed-signers file, channel and class; an option on the command line wins.

The `--format json` object of `node sync` carries `generation` and `changes` on every path,
failures included.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from hpcpolicy.cli.argtypes import seconds
from hpcpolicy.cli.outcome import Outcome
from hpcpolicy.errors import EXIT_FAILURE, UsageError
from hpcpolicy.node import config
from hpcpolicy.node.config import DEFAULT_PATH


def add_parser(subparsers: Any, common_parent: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "node", parents=[common_parent], help="install the policy on this node, check it",
        description=__doc__)
    actions = parser.add_subparsers(dest="node_action", metavar="ACTION")
    actions.required = True

    sync = actions.add_parser("sync", parents=[common_parent],
                              help="install the current generation of a deploy root")
    sync.add_argument("--config", metavar="FILE",
                      help=f"the node's settings (default {DEFAULT_PATH}, when it exists)")
    sync.add_argument("--from", dest="deploy_root", metavar="DEPLOY_ROOT",
                      help="the deploy root on shared storage (default: deploy_root in the "
                      "node's settings)")
    sync.add_argument("--deploy-owner", metavar="NAME|UID",
                      help="the account besides root that may own the deploy root and what "
                      "is in it (default: deploy_owner in the node's settings, else root only)")
    sync.add_argument("--root", default="/", help="install under this directory (default /)")
    sync.add_argument("--allowed-signers", metavar="FILE",
                      help="require a manifest signature by a key in this OpenSSH file")
    sync.add_argument("--class", dest="node_class", metavar="NAME",
                      help="node class (default: matched from the hostname)")
    sync.add_argument("--channel", metavar="NAME",
                      help="follow this channel instead of `current` (stable)")
    sync.add_argument("--allow-older", action="store_true",
                      help="install a generation older than the one this node installed last "
                      "from the same site and deploy root (a re-initialised deploy root; logged)")
    sync.add_argument("--check", action="store_true", help="report what would change only")
    sync.add_argument("--diff", action="store_true", help="show the changes of each file")
    sync.add_argument("--migrate-users", action="store_true",
                      help="end the pause process of users whose rootless Podman user namespace "
                      "still maps old sub-ID ranges and who run no container (interactive only; "
                      "users with running containers are named, never touched)")
    sync.add_argument("--no-reload", action="store_true",
                      help="do not run `sysctl -p` on a changed sysctl file")
    sync.add_argument("--lock-timeout", type=seconds, default=30.0, metavar="S",
                      help="seconds to wait for shadow's and the node's locks (default 30)")
    sync.add_argument("--format", choices=("text", "json"), default="text")
    sync.set_defaults(run=run_sync, json_on_error={"generation": None, "changes": []},
                      defer_logging=True)

    doctor = actions.add_parser("doctor", parents=[common_parent],
                                help="check what the policy needs of this node")
    doctor.add_argument("--config", metavar="FILE",
                        help=f"the node's settings (default {DEFAULT_PATH}, when it exists)")
    doctor.add_argument("--root", default="/", help="check the node under this directory")
    doctor.add_argument("--from", dest="deploy_root", metavar="DEPLOY_ROOT",
                        help="compare with the deploy root's current generation too")
    doctor.add_argument("--class", dest="node_class", metavar="NAME", help="node class")
    doctor.add_argument("--format", choices=("text", "json"), default="text")
    doctor.set_defaults(run=run_doctor)


def run_sync(args: argparse.Namespace) -> Outcome:
    from hpcpolicy.cli.main import ensure_logging
    from hpcpolicy.node.sync import as_text, describe, sync, sync_options

    if args.migrate_users:
        _interactive_only("--migrate-users")
    opts = sync_options(
        config.load(args.config, root=args.root), deploy_root=args.deploy_root,
        deploy_owner=args.deploy_owner,
        allowed_signers=args.allowed_signers, node_class=args.node_class, channel=args.channel,
        root=args.root, check=args.check, want_diff=args.diff, reload=not args.no_reload,
        lock_timeout=args.lock_timeout, allow_older=args.allow_older,
        migrate_users=args.migrate_users)
    # logging is deferred (defer_logging): an idle sync logs nothing, only the full one needs it
    result = sync(opts, before_full=ensure_logging)
    return Outcome(msg=result.msg, data=describe(result), text=as_text(result),
                   changed=result.changed, notes=[str(e) for e in result.errors],
                   exit_code=EXIT_FAILURE if result.errors else 0)


def _interactive_only(flag: str) -> None:
    """Ending users' processes is a decision a person takes at a terminal, never a timer's."""
    import os

    if os.environ.get("INVOCATION_ID"):
        raise UsageError(f"{flag}: refused under a systemd unit; run it by hand on the node")
    if not sys.stdin.isatty():
        raise UsageError(f"{flag}: interactive use only (stdin is not a terminal)")


def run_doctor(args: argparse.Namespace) -> Outcome:
    from hpcpolicy.node.doctor import FAIL, doctor_options, examine, summary

    report = examine(doctor_options(config.load(args.config), root=args.root,
                                    deploy_root=args.deploy_root, node_class=args.node_class))
    checks = report.checks
    failed = any(c.status == FAIL for c in checks)
    text = "\n".join(c.line() for c in checks) + "\n" + summary(checks) + "\n"
    data = {"checks": [c.as_dict() for c in checks], "generation": report.generation,
            "channel": report.channel, "class": report.node_class}
    return Outcome(msg=summary(checks), data=data, text=text,
                   exit_code=EXIT_FAILURE if failed else 0)
