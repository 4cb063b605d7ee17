"""Entry point: parse arguments, run one command, report its outcome or its failure.

Each command module offers `add_parser(subparsers, parent)` and `run(args) -> Outcome`. Every
exception ends in `errors.failure_of` (exit code, message, JSON fields); `report` writes the
outcome or the failure inside the funnel, so a closed or full stdout is reported like any other
failure. SIGINT and SIGTERM raise `Interrupted` (handlers installed by `cli.entry` before this
module is imported): exit 1, and under `--format json` the one JSON object.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import TYPE_CHECKING, Any, Callable, Dict, List, NoReturn, Optional, Sequence, Tuple

from hpcpolicy import __version__
from hpcpolicy.cli.help import decorate
from hpcpolicy.cli.options import site_of
from hpcpolicy.cli.outcome import Outcome
from hpcpolicy.cli.report import deliver, failure, success, usage
from hpcpolicy.cli.signals import install_signals, quiet_signals, restore_signals

if TYPE_CHECKING:
    from hpcpolicy.cli.report import Report

DESCRIPTION = """\
Keep the container policy of every HPC node in one reviewed site.toml: validate it, render every
launcher's native configuration, publish immutable generations on shared storage, and install
them on nodes. Exit codes: 0 success, 1 runtime failure, 2 invalid input or usage. Every command
accepts --format json and then prints exactly one JSON object on stdout, errors included.
"""

EPILOG = """\
examples:
  hpcpolicy validate site.toml
  hpcpolicy apply site.toml --check --diff
  hpcpolicy status --site site.toml --format json
  hpcpolicy node sync --from /shared/hpcpolicy
  hpcpolicy COMMAND --help           (each command's options and examples)
"""


# Order is the order of `hpcpolicy --help`.
COMMAND_MODULES = (
    "validate",
    "render",
    "apply",
    "status",
    "generations",
    "rollback",
    "promote",
    "diff",
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
    """argparse that raises instead of exiting (so --format json reports usage errors too) and
    whose --help / --version text is written by `main`, inside the funnel."""

    printed: List[str] = []

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: {message}", self.format_usage())

    def _print_message(self, message: str, file: Any = None) -> None:
        if message:
            _Parser.printed.append(message)

    def _get_formatter(self) -> argparse.HelpFormatter:
        # the width argparse would take, without its `import shutil` (which brings zlib, lzma
        # and bz2): every add_argument makes a formatter, also in the timer's `node sync`
        make: Any = self.formatter_class
        formatter: argparse.HelpFormatter = make(prog=self.prog, width=_columns() - 2)
        return formatter


def _columns() -> int:
    """The terminal width as shutil.get_terminal_size() gives it ($COLUMNS, stdout, else 80)."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        stdout: Any = sys.__stdout__
        try:
            columns = os.get_terminal_size(stdout.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


def _json_hint(argv: Sequence[str]) -> bool:
    """Whether --format json was asked for, when argv could not be parsed (a usage error):
    the options alone, abbreviations and the last value winning, as argparse reads them."""
    probe = _Parser(add_help=False)
    probe.add_argument("--format")
    probe.add_argument("--debug", action="store_true")
    try:
        known, _rest = probe.parse_known_args(list(argv))
    except (_UsageError, SystemExit):
        return False
    return bool(known.format == "json")


def _command_in(argv: Sequence[str]) -> Optional[str]:
    """The command named on the line (the first word: global options take no value)."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMAND_MODULES else None
    return None


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The whole parser, or only the named command's: `node sync` runs from a timer on every
    node, and importing every other command's modules would be most of its cost."""
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    common.add_argument("-v", "--verbose", action="store_true", help="more log messages")
    parser = _Parser(prog="hpcpolicy", description=DESCRIPTION, epilog=EPILOG, parents=[common],
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"hpcpolicy {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    named = _command_in(argv)
    for name in (named,) if named else COMMAND_MODULES:
        module = importlib.import_module(f"hpcpolicy.cli.cmd_{name}")
        module.add_parser(subparsers, common)
    decorate(parser)
    return parser


# ------------------------------------------------------------------------------ main


_LOGGING: Dict[str, bool] = {"debug": False, "verbose": False}


def ensure_logging() -> None:
    """Log lines to stderr as `hpcpolicy: LEVEL: message`, their control characters escaped
    (they quote what others wrote: directory values, manifests, lock records).

    Called before a command runs, unless its parser set `defer_logging` (the idle `node sync`:
    importing `logging` is a tenth of its run); such a command calls it before any code that
    logs. Imported here, not at the top, for that reason.
    """
    import logging

    from hpcpolicy.cli.logfmt import PrintableFormatter

    debug = _LOGGING["debug"]
    logging.raiseExceptions = False  # a closed stderr must not print "--- Logging error ---"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PrintableFormatter("hpcpolicy: %(levelname)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, handlers=[handler])
    if _LOGGING["verbose"] and not debug:
        logging.getLogger().setLevel(logging.INFO)


def _run(argv: List[str]) -> Tuple[Report, bool]:
    as_json = _json_hint(argv)
    debug = "--debug" in argv
    on_error: Dict[str, Any] = {}
    _Parser.printed = []
    try:
        try:
            args = build_parser(argv).parse_args(argv)
        except _UsageError as err:
            quiet_signals()
            return usage(str(err), err.usage, as_json), debug
        except SystemExit as exc:  # --help / --version, their text collected by _Parser
            quiet_signals()
            return (int(exc.code or 0), "".join(_Parser.printed), ""), debug
        as_json = getattr(args, "format", None) == "json"
        debug = bool(getattr(args, "debug", False))
        if hasattr(args, "site_option"):  # SITE positional or --site: one site, never a default
            args.site = site_of(args, args.command)
        _LOGGING.update(debug=debug, verbose=bool(getattr(args, "verbose", False)))
        if not getattr(args, "defer_logging", False):
            ensure_logging()
        # a command may name JSON fields its error objects carry too (apply: generation, changes)
        on_error = dict(getattr(args, "json_on_error", None) or {})
        run: Callable[[argparse.Namespace], Outcome] = args.run
        outcome = run(args)
        if outcome.stream is None:  # a stream still runs the command while it is written
            quiet_signals()
        return success(outcome, as_json), debug
    except BaseException as err:  # the funnel: every exception, signals included
        quiet_signals()
        return failure(err, as_json, debug, on_error), debug


def main(argv: Optional[List[str]] = None) -> int:
    """Run one command; its exit code. SIGINT/SIGTERM raise Interrupted meanwhile."""
    previous = install_signals()
    try:
        report, debug = _run(list(sys.argv[1:] if argv is None else argv))
        return deliver(report, debug)
    finally:
        restore_signals(previous)


def run() -> NoReturn:
    """The console script of installs made before `cli.entry` existed."""
    install_signals()
    sys.exit(main())


if __name__ == "__main__":
    run()
