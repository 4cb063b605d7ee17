"""The command's last word: its outcome or its failure as (exit code, stdout, stderr), written
inside the funnel.

A closed stdout (EPIPE) ends the command silently with exit 1; a full or unwritable one
(ENOSPC, EIO) with exit 1 (an invalid input keeps 2) and one line on stderr; a closed stderr
is never a second failure. Text for a terminal is escaped (`errors.printable`).
"""

from __future__ import annotations

import json
import os
import sys

from hpcpolicy.cli.outcome import Outcome
from hpcpolicy.cli.signals import quiet_signals
from hpcpolicy.errors import EXIT_FAILURE, EXIT_INVALID, failure_of, printable

TYPE_CHECKING = False  # typing's, without importing typing: see node/idle.py
if TYPE_CHECKING:
    from typing import Any, Dict, Iterable, Optional, Tuple, Union

    Report = Tuple[int, Union[str, Iterable[str]], str]

# exit code, stdout (text, or chunks written as they are produced), stderr text


def success(outcome: Outcome, as_json: bool) -> Report:
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


def failure(err: BaseException, as_json: bool, debug: bool, on_error: Dict[str, Any]) -> Report:
    failure = failure_of(err)
    msg = failure.msg
    err_text = ""
    if failure.internal:
        if debug:
            import traceback  # only with --debug: it imports tokenize and linecache

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


def usage(msg: str, usage_text: str, as_json: bool) -> Report:
    """A usage error: exit 2; under --format json its one object too."""
    out = json.dumps({"changed": False, "failed": True, "msg": msg}, sort_keys=True) + "\n"
    prefix = "" if as_json else usage_text
    return EXIT_INVALID, out if as_json else "", f"{prefix}{msg}\n"


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
            code, _out, err_text = failure(err, False, debug, {})
            sys.stdout.flush()
            return code, "", err_text
        if chunk:
            if sys.stdout is None:  # started with stdout closed (`>&-`)
                raise BrokenPipeError
            sys.stdout.write(chunk)
    if sys.stdout is not None:
        sys.stdout.flush()
    return None


def deliver(report: Report, debug: bool = False) -> int:
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
