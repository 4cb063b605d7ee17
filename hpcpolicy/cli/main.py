"""Entry point: parse arguments, run one command, report its outcome or its failure.

Each command module offers `add_parser(subparsers, parent)` and `run(args) -> Outcome`. Every
exception ends in `errors.failure_of` (exit code, message, JSON fields); the output is written
here, inside the funnel, so a closed or full stdout is reported like any other failure:
closed (EPIPE): silent, exit 1; full (ENOSPC) or unwritable: one line on stderr, exit 1.
SIGINT and SIGTERM raise `Interrupted` (handlers installed by `cli.entry` before this module
is imported): exit 1, and under `--format json` the one JSON object.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import traceback
from typing import Any, Callable, Dict, Iterable, List, NoReturn, Optional, Sequence, Tuple, Union

from hpcpolicy import __version__
from hpcpolicy.cli.help import decorate
from hpcpolicy.cli.options import site_of
from hpcpolicy.cli.outcome import Outcome
from hpcpolicy.cli.signals import install_signals, quiet_signals, restore_signals
from hpcpolicy.errors import EXIT_FAILURE, EXIT_INVALID, failure_of, printable

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


# ------------------------------------------------------------------------------ reports


# exit code, stdout (text, or chunks written as they are produced), stderr text
Report = Tuple[int, Union[str, Iterable[str]], str]


def _success(outcome: Outcome, as_json: bool) -> Report:
    notes = "".join(f"hpcpolicy: {printable(note, limit=None)}\n" for note in outcome.notes)
    if outcome.stream is not None:
        return outcome.exit_code, outcome.stream, notes
    if as_json:
        return outcome.exit_code, json.dumps(outcome.payload(), sort_keys=True) + "\n", notes
    text = outcome.text or outcome.msg
    if not text:
        return outcome.exit_code, "", notes
    # no escape sequence from a ledger or a directory reaches a terminal
    text = printable(text, limit=None, keep="\n\t")
    return outcome.exit_code, text if text.endswith("\n") else text + "\n", notes


def _failure(err: BaseException, as_json: bool, debug: bool, on_error: Dict[str, Any]) -> Report:
    failure = failure_of(err)
    msg = failure.msg
    err_text = ""
    if failure.internal:
        if debug:
            err_text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
        else:
            msg += " (run with --debug for details)"
    out = ""
    if as_json:
        payload: Dict[str, Any] = {**on_error, **failure.fields,
                                   "changed": False, "failed": True, "msg": msg}
        out = json.dumps(payload, sort_keys=True) + "\n"
    for line in printable(msg, limit=None, keep="\n").splitlines():
        prefix = "" if line.startswith("hpcpolicy") else "hpcpolicy: "
        err_text += f"{prefix}{line}\n"
    return failure.exit_code, out, err_text


def _usage(err: _UsageError, as_json: bool) -> Report:
    out = json.dumps({"changed": False, "failed": True, "msg": str(err)}, sort_keys=True) + "\n"
    prefix = "" if as_json else err.usage
    return EXIT_INVALID, out if as_json else "", f"{prefix}{err}\n"


def _write_err(text: str) -> None:
    # a closed or full stderr leaves nothing to tell: never a second failure
    try:
        if text and sys.stderr is not None:
            sys.stderr.write(text)
            sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _drop_stdout() -> None:
    """Point fd 1 at /dev/null, so the interpreter's last flush has nothing left to fail on."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _write_out(out: Union[str, Iterable[str]], debug: bool) -> Optional[Report]:
    """Write stdout; a failure of a streamed command while it produces its output, as the
    report to give instead (its JSON object can no longer be the only one: stderr only)."""
    chunks = iter([out] if isinstance(out, str) else out)
    while True:
        try:
            chunk = next(chunks)
        except StopIteration:
            break
        except BaseException as err:  # the funnel, for output produced as it is written
            quiet_signals()
            code, _out, err_text = _failure(err, False, debug, {})
            sys.stdout.flush()
            return code, "", err_text
        if chunk:
            if sys.stdout is None:  # started with stdout closed (`>&-`)
                raise BrokenPipeError
            sys.stdout.write(chunk)
    if sys.stdout is not None:
        sys.stdout.flush()
    return None


def _deliver(report: Report, debug: bool = False) -> int:
    """Write a report; the exit code, which a failed stdout turns into at least 1."""
    code, out, err = report
    try:
        instead = _write_out(out, debug)
    except BrokenPipeError:  # the reader went away (`| head`): nothing left to say to it
        _drop_stdout()
        _write_err(err)
        return code or EXIT_FAILURE
    except (OSError, ValueError) as exc:  # a full disk behind stdout (/dev/full), EIO, ...
        _drop_stdout()
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        _write_err(err + f"hpcpolicy: cannot write to standard output: {why}\n")
        return code or EXIT_FAILURE
    except BaseException as exc:  # a signal while a stream is written: stop, and say why
        quiet_signals()
        _write_err(err + f"hpcpolicy: {failure_of(exc).msg}\n")
        return code or EXIT_FAILURE
    if instead is not None:
        code, _out, err = instead
    _write_err(err)
    return code


# ------------------------------------------------------------------------------ main


class _PrintableFormatter(logging.Formatter):
    """Log lines quote what others wrote (directory values, manifests, lock records): their
    control characters are escaped like every other output."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record), limit=None, keep="\n")


def _setup_logging(debug: bool) -> None:
    logging.raiseExceptions = False  # a closed stderr must not print "--- Logging error ---"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_PrintableFormatter("hpcpolicy: %(levelname)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, handlers=[handler])


def _run(argv: List[str]) -> Tuple[Report, bool]:
    as_json = _json_hint(argv)
    debug = "--debug" in argv
    on_error: Dict[str, Any] = {}
    _Parser.printed = []
    try:
        _setup_logging(debug)
        try:
            args = build_parser(argv).parse_args(argv)
        except _UsageError as err:
            quiet_signals()
            return _usage(err, as_json), debug
        except SystemExit as exc:  # --help / --version, their text collected by _Parser
            quiet_signals()
            return (int(exc.code or 0), "".join(_Parser.printed), ""), debug
        as_json = getattr(args, "format", None) == "json"
        debug = bool(getattr(args, "debug", False))
        if hasattr(args, "site_option"):  # SITE positional or --site: one site, never a default
            args.site = site_of(args, args.command)
        if getattr(args, "verbose", False) and not debug:
            logging.getLogger().setLevel(logging.INFO)
        # a command may name JSON fields its error objects carry too (apply: generation, changes)
        on_error = dict(getattr(args, "json_on_error", None) or {})
        run: Callable[[argparse.Namespace], Outcome] = args.run
        outcome = run(args)
        if outcome.stream is None:  # a stream still runs the command while it is written
            quiet_signals()
        return _success(outcome, as_json), debug
    except BaseException as err:  # the funnel: every exception, signals included
        quiet_signals()
        return _failure(err, as_json, debug, on_error), debug


def main(argv: Optional[List[str]] = None) -> int:
    """Run one command; its exit code. SIGINT/SIGTERM raise Interrupted meanwhile."""
    previous = install_signals()
    try:
        report, debug = _run(list(sys.argv[1:] if argv is None else argv))
        return _deliver(report, debug)
    finally:
        restore_signals(previous)


def run() -> NoReturn:
    """The console script of installs made before `cli.entry` existed."""
    install_signals()
    sys.exit(main())


if __name__ == "__main__":
    run()
