"""`errors.failure_of`: every exception to (exit code, message, JSON fields), for both faces."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys

import pytest

from hpcpolicy.errors import (
    InvalidInput,
    Problem,
    RuntimeFailure,
    failure_of,
    os_failure,
)
from hpcpolicy.interrupt import Interrupted


def test_library_errors_keep_their_code_and_fields() -> None:
    bad = InvalidInput([Problem("site.toml", "subid.count", "too small"),
                        Problem("site.toml", "bind[2]", "relative")])
    got = failure_of(bad)
    assert (got.exit_code, got.internal) == (2, False)
    assert got.fields["errors"] == ["site.toml: subid.count: too small",
                                    "site.toml: bind[2]: relative"]
    err = RuntimeFailure("lock held")
    err.details = {"generation": None}
    assert failure_of(err).fields == {"generation": None} and failure_of(err).exit_code == 1


def test_os_errors_name_the_paths_and_the_reason() -> None:
    got = failure_of(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/shared/x", None,
                             "/shared/y"))
    assert (got.exit_code, got.msg, got.internal) == (
        1, "/shared/x -> /shared/y: No space left on device", False)
    assert failure_of(OSError(errno.EIO, "Input/output error")).msg == "Input/output error"


def test_signals_and_bugs() -> None:
    assert failure_of(Interrupted(signal.SIGTERM)).msg == "interrupted by SIGTERM"
    assert failure_of(KeyboardInterrupt()).msg == "interrupted by SIGINT"
    bug = failure_of(ValueError("x\ny"))
    assert bug.internal and bug.msg == "internal error: ValueError: x" and bug.exit_code == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_a_non_root_refusal_says_so() -> None:
    """Run as nobody: EACCES says which uid ran it, as it does through os_failure."""
    code = ("from hpcpolicy.errors import failure_of, os_failure\n"
            "try:\n    open('/root/.hpcpolicy-nope', 'w')\n"
            "except OSError as e:\n"
            "    print(failure_of(e).msg)\n    print(os_failure(e, '/x', 'cannot write'))\n")
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          sys.executable, "-c", code], capture_output=True, text=True,
                         cwd="/", check=True).stdout.splitlines()
    assert out == ["/root/.hpcpolicy-nope: Permission denied (running as uid 65534, not root)",
                   "/x: cannot write: Permission denied (running as uid 65534, not root)"]
    as_root = os_failure(OSError(errno.EACCES, "Permission denied"), "/x", "cannot write")
    assert str(as_root) == "/x: cannot write: Permission denied"
