"""One error hierarchy, and the one mapping of any exception to what a user is told.

Exit codes: 1 runtime failure (an OS error, a signal included), 2 invalid input or usage.
`failure_of` turns every exception into (exit code, message, JSON fields) for both faces: the
CLI prints it, the Ansible modules hand it to `fail_json`.
"""

from __future__ import annotations

import errno
import os
import re

from hpcpolicy.interrupt import Interrupted

TYPE_CHECKING = False  # typing's, without importing typing: see node/idle.py
if TYPE_CHECKING:
    from typing import Any, Dict, Iterable, List, Optional, Sequence

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID = 2


if TYPE_CHECKING:
    from typing import NamedTuple

    class _Problem(NamedTuple):
        file: str
        path: str
        message: str
else:  # the same tuple type at run time, without importing typing (tests/test_start_up.py)
    from collections import namedtuple

    _Problem = namedtuple("Problem", ("file", "path", "message"))


class Problem(_Problem):
    """One finding in an input file: `FILE: key.path: message` (path may be empty).

    A named tuple, not a dataclass: `dataclasses` imports `inspect` (and ast, dis, tokenize),
    which every command would pay at start-up, the node's timer-run `node sync` included; and
    `collections.namedtuple` rather than typing's, which would import typing into that run.
    """

    __slots__ = ()

    def __str__(self) -> str:
        # a key path or a message can carry input of any length (a 100,000-character key or
        # scope): each is cut, and terminal control characters never reach the screen
        parts = [printable(self.file, 4096), printable(self.path, 300, keep="\n")]
        return ": ".join([p for p in parts if p] + [printable(self.message, 2000, keep="\n")])


# C0 and C1 controls, DEL, and the invisible marks that reorder or hide text on a terminal
# (bidi overrides and isolates, zero-width characters, line and paragraph separators).
# Compiled at first use: most runs (an idle node sync) print nothing read from others' files.
_HOSTILE = "[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]"


def printable(text: object, limit: Optional[int] = 200, keep: str = "") -> str:
    """`text` safe to print: terminal escape sequences and other control characters become
    visible `\\xNN`/`\\uNNNN` escapes (characters in `keep` stay), and text longer than `limit`
    is cut with a note. For anything read from files or servers that others can write (ledger
    records, lock holders, directory entries) before it reaches a terminal or a log."""
    s = str(text)
    if limit is not None and len(s) > limit:
        s = f"{s[:limit]}... ({len(s) - limit} more characters)"

    def escape(m: re.Match[str]) -> str:
        ch = m.group()
        if ch in keep:
            return ch
        return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"

    return re.sub(_HOSTILE, escape, s)


class HpcPolicyError(Exception):
    """Base of every error the tool raises on purpose.

    `details`: extra fields for the command's `--format json` error object (e.g. the generation
    a failed node sync was reading).
    """

    exit_code = EXIT_FAILURE
    details: Dict[str, Any] = {}


class InvalidInput(HpcPolicyError):
    """Bad input (site file, directory data, subid file, arguments): exit 2.

    Holds every problem found, so that an administrator fixes the file in one pass.
    """

    exit_code = EXIT_INVALID

    def __init__(self, problems: Sequence[Problem] | str, file: str = "", path: str = "") -> None:
        if isinstance(problems, str):
            problems = [Problem(file, path, problems)]
        self.problems: List[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class UsageError(HpcPolicyError):
    """Wrong command-line use: exit 2."""

    exit_code = EXIT_INVALID


class RuntimeFailure(HpcPolicyError):
    """I/O failed, a service is unreachable, a guard tripped: exit 1."""

    exit_code = EXIT_FAILURE


class DirectoryError(RuntimeFailure):
    """A user/group source could not be read (LDAP unreachable, bad credentials, TLS)."""


class LockTimeout(RuntimeFailure):
    """Another writer held the deploy lock past --lock-timeout."""


class VerificationError(RuntimeFailure):
    """A generation does not match its manifest or signature."""


class UnsafePath(RuntimeFailure):
    """A deploy root or install path is writable by others, badly owned, or a symlink trick."""


class RevokeGuard(RuntimeFailure):
    """An apply would withdraw more than `subid.max_revoke` of live ranges."""


class ProblemCollector:
    """Collects problems for one file; `raise_if_any` raises them all at once."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: List[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(self.file, path, message))

    def extend(self, problems: Iterable[Problem]) -> None:
        self.problems.extend(problems)

    def raise_if_any(self) -> None:
        if self.problems:
            raise InvalidInput(self.problems)

    def __bool__(self) -> bool:
        return bool(self.problems)


def join_path(*parts: object) -> str:
    """Key path for messages: join_path("bind", 2, "target") -> "bind[2].target" (1-based)."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out:
            out += f".{part}"
        else:
            out = str(part)
    return out


def first_line(err: BaseException, default: Optional[str] = None) -> str:
    """A one-line rendering of an unexpected exception for users without --debug."""
    text = str(err).strip().splitlines()
    return text[0] if text else (default or type(err).__name__)


def check_seconds(value: float, what: str) -> float:
    """A wait in seconds must be finite and non-negative: `nan` never compares past a deadline
    (an endless wait) and `inf` is one. UsageError (exit 2) otherwise."""
    import math  # here: only lock waits check a number of seconds

    if not math.isfinite(value) or value < 0:
        raise UsageError(f"{what}: {value!r} is not a number of seconds (finite, >= 0)")
    return value


class Failure:
    """What a face reports for one exception.

    `internal`: not an error the tool raises on purpose (a bug, or a library's surprise): the
    CLI suggests --debug, the Ansible module adds the traceback.
    """

    def __init__(self, exit_code: int, msg: str, fields: Optional[Dict[str, Any]] = None,
                 internal: bool = False) -> None:
        self.exit_code = exit_code
        self.msg = msg
        self.fields: Dict[str, Any] = {} if fields is None else fields
        self.internal = internal

    def __repr__(self) -> str:
        return f"Failure({self.exit_code}, {self.msg!r}, internal={self.internal})"


def _reason(err: OSError) -> str:
    reason = err.strerror or str(err)
    if err.errno in (errno.EACCES, errno.EPERM) and hasattr(os, "geteuid") and os.geteuid() != 0:
        reason += f" (running as uid {os.geteuid()}, not root)"
    return reason


def os_error_text(err: OSError) -> str:
    """`PATH: reason` (both paths of a rename); says so when a non-root user was refused."""
    paths = [str(p) for p in (err.filename, err.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {_reason(err)}" if paths else _reason(err)


def os_failure(err: OSError, path: str, doing: str) -> RuntimeFailure:
    """`PATH: DOING: reason`, for a handler that knows what it was doing (`cannot write the
    ledger`) better than the OS error's own file name tells; the non-root hint kept."""
    return RuntimeFailure(f"{path}: {doing}: {_reason(err)}")


def failure_of(err: BaseException) -> Failure:
    """The exit code, message and JSON fields of any exception: the funnel of both faces."""
    if isinstance(err, InvalidInput):
        return Failure(err.exit_code, str(err),
                       {**err.details, "errors": [str(p) for p in err.problems]})
    if isinstance(err, HpcPolicyError):
        return Failure(err.exit_code, str(err), dict(err.details))
    if isinstance(err, Interrupted):
        return Failure(EXIT_FAILURE, str(err))
    if isinstance(err, KeyboardInterrupt):
        return Failure(EXIT_FAILURE, "interrupted by SIGINT")
    if isinstance(err, OSError):
        return Failure(EXIT_FAILURE, os_error_text(err))
    return Failure(EXIT_FAILURE, f"internal error: {type(err).__name__}: {first_line(err)}",
                   internal=True)
