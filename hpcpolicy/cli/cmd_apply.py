"""`hpcpolicy apply SITE`: validate, allocate, render, and publish a new generation.

Nothing changed: nothing published (`changed: false`). `--check` writes nothing at all.
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Any, Dict, Iterator, List, Sequence

from hpcpolicy.cli.argtypes import seconds
from hpcpolicy.cli.options import add_format, add_site, add_writer_options, site_of
from hpcpolicy.cli.outcome import Outcome

JSON_ON_ERROR: Dict[str, Any] = {"generation": None, "changes": []}


def add_parser(subparsers: Any, common_parent: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "apply", parents=[common_parent], help="publish a new generation to shared storage",
        description=__doc__)
    add_site(parser)
    parser.add_argument("--check", action="store_true", help="say what would change; write nothing")
    parser.add_argument("--diff", action="store_true", help="show what changes in each file")
    parser.add_argument("--allow-revoke", action="store_true",
                        help="allow withdrawing more sub-ID ranges than subid.max_revoke")
    parser.add_argument("--lock-timeout", type=seconds, default=60.0, metavar="S",
                        help="seconds to wait for another writer (default 60)")
    parser.add_argument("--deploy-root", metavar="DIR", help="override site.deploy_root")
    parser.add_argument("--init", action="store_true",
                        help="create a missing deploy root (mode 0755, owned by the deploy "
                             "owner; never its parents); without it a missing deploy root, "
                             "e.g. an unmounted share, is an error")
    parser.add_argument("--channel", default="stable", metavar="NAME",
                        help="publish to this channel only (default: stable, i.e. current)")
    add_format(parser)
    add_writer_options(parser)
    parser.set_defaults(run=run, json_on_error=JSON_ON_ERROR)


def result_text(result: Any, with_diff: bool) -> str:
    """The text a person reads: the message, one line per changed file, then the diffs."""
    from hpcpolicy.generation.diff import unified

    lines: List[str] = [result.msg]
    lines += [f"  {c['action']:<8} {c['path']}" for c in result.changes]
    if getattr(result, "access_changes", None):
        from hpcpolicy.access.document import describe

        lines.append("  who may run what:")
        lines += [f"    {line}" for line in describe(result.access_changes)]
    if getattr(result, "removed", None):
        lines.append(f"  garbage-collected: {', '.join(result.removed)}")
    lines += list(dict.fromkeys(getattr(result, "warnings", None) or []))  # each once
    text = "\n".join(lines) + "\n"
    if with_diff and result.diff:
        text += unified(result.diff)
    return text


def outcome_of(result: Any, with_diff: bool) -> Outcome:
    return Outcome(result.msg, result.as_dict(), result_text(result, with_diff),
                   changed=result.changed)


# The loggers that state, as they happen, the warnings `apply` also returns in its result.
_WARNING_LOGGERS = ("hpcpolicy.deploy.publish", "hpcpolicy.directory.read")


@contextlib.contextmanager
def _held_log(names: Sequence[str], hold: bool) -> Iterator[None]:
    """With `hold`, keep the records of `names` back while the block runs: on success its
    text output states them (so a person reads each warning once); on failure they are
    logged after all, since the error text does not carry them."""
    if not hold:
        yield
        return
    import logging

    held: List[logging.LogRecord] = []

    def keep(record: logging.LogRecord) -> bool:
        held.append(record)
        return False

    loggers = [logging.getLogger(name) for name in names]
    for logger in loggers:
        logger.addFilter(keep)
    try:
        yield
    except BaseException:
        for logger in loggers:
            logger.removeFilter(keep)
        for record in held:
            logging.getLogger(record.name).handle(record)
        raise
    finally:
        for logger in loggers:
            logger.removeFilter(keep)


def run(args: argparse.Namespace) -> Outcome:
    from hpcpolicy.deploy.publish import apply_site

    with _held_log(_WARNING_LOGGERS, hold=args.format == "text"):
        result = apply_site(site_of(args, "apply"), deploy_root=args.deploy_root,
                            check=args.check, diff=args.diff, allow_revoke=args.allow_revoke,
                            lock_timeout=args.lock_timeout, channel=args.channel,
                            batch=args.non_interactive, init=args.init)
    return outcome_of(result, args.diff)
