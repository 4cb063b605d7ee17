"""Entry point: parse arguments, run one command, turn every error into one line and an exit code.

Each command module offers `add_parser(subparsers, parent)` and `run(args) -> Outcome`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import traceback
from typing import Any, List, NoReturn, Optional, Sequence

from hpcpolicy import __version__
from hpcpolicy.cli.outcome import Outcome
from hpcpolicy.errors import (
    EXIT_FAILURE,
    EXIT_INVALID,
    HpcPolicyError,
    InvalidInput,
    first_line,
    printable,
)

DESCRIPTION = """\
Keep the container policy of every HPC node in one reviewed site.toml: validate it, render every
launcher's native configuration, publish immutable generations on shared storage, and install
them on nodes. Exit codes: 0 success, 1 runtime failure, 2 invalid input or usage.
"""

log = logging.getLogger("hpcpolicy")

# Order is the order of `hpcpolicy --help`.
COMMAND_MODULES = (
    "validate",
    "render",
    "apply",
    "status",
    "generations",
    "rollback",
    "promote",
    "audit",
    "subid",
    "node",
    "fleet",
)


class _UsageError(Exception):
    def __init__(self, message: str, usage: str) -> None:
        super().__init__(message)
        self.usage = usage


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so --format json can report usage errors too."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: {message}", self.format_usage())


def _wants_json(argv: Sequence[str]) -> bool:
    for i, arg in enumerate(argv):
        if arg == "--format=json" or (arg == "--format" and argv[i + 1 : i + 2] == ["json"]):
            return True
    return False


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    common.add_argument("-v", "--verbose", action="store_true", help="more log messages")
    parser = _Parser(prog="hpcpolicy", description=DESCRIPTION, parents=[common])
    parser.add_argument("--version", action="version", version=f"hpcpolicy {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"hpcpolicy.cli.cmd_{name}")
        module.add_parser(subparsers, common)
    return parser


def _emit(outcome: Outcome, as_json: bool) -> None:
    if outcome.stream is not None:
        for chunk in outcome.stream:
            sys.stdout.write(chunk)
    elif as_json:
        sys.stdout.write(json.dumps(outcome.payload(), sort_keys=True) + "\n")
    elif outcome.text or outcome.msg:  # no escape sequence from a ledger or directory on a tty
        text = printable(outcome.text or outcome.msg, limit=None, keep="\n\t")
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _fail(msg: str, code: int, as_json: bool, extra: Optional[dict] = None) -> int:
    if as_json:
        payload: dict = {"changed": False, "failed": True, "msg": msg}
        payload.update(extra or {})
        sys.stdout.write(json.dumps(payload, sort_keys=True) + "\n")
    for line in printable(msg, limit=None, keep="\n").splitlines():
        prefix = "" if line.startswith("hpcpolicy") else "hpcpolicy: "
        sys.stderr.write(f"{prefix}{line}\n")
    return code


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = _wants_json(argv)
    debug = "--debug" in argv
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if debug else logging.WARNING,
        format="hpcpolicy: %(levelname)s: %(message)s",
    )
    try:
        args = build_parser().parse_args(argv)
    except _UsageError as err:
        if not as_json:
            sys.stderr.write(err.usage)
        return _fail(str(err), EXIT_INVALID, as_json)
    except SystemExit as exc:  # --help / --version
        return int(exc.code or 0)
    if getattr(args, "verbose", False) and not debug:
        logging.getLogger().setLevel(logging.INFO)
    # a command may name JSON fields its error objects carry too (apply: generation, changes)
    on_error: dict[str, Any] = dict(getattr(args, "json_on_error", None) or {})
    try:
        outcome: Outcome = args.run(args)
    except InvalidInput as err:
        extra: dict[str, Any] = {**on_error, **err.details,
                                 "errors": [str(p) for p in err.problems]}
        return _fail(str(err), err.exit_code, as_json, extra)
    except HpcPolicyError as err:
        return _fail(str(err), err.exit_code, as_json, {**on_error, **err.details})
    except KeyboardInterrupt:
        return _fail("interrupted", 130, as_json, on_error)
    except Exception as err:  # the funnel: one line unless --debug
        if debug:
            traceback.print_exc()
        return _fail(f"internal error: {type(err).__name__}: {first_line(err)}"
                     + ("" if debug else " (run with --debug for details)"),
                     EXIT_FAILURE, as_json, on_error)
    _emit(outcome, as_json)
    return outcome.exit_code


def run() -> NoReturn:
    sys.exit(main())


if __name__ == "__main__":
    run()
