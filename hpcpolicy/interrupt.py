"""`Interrupted`: what SIGINT and SIGTERM raise while a command runs.

A module of its own, importing nothing but `signal`, so that the command's entry point installs
its handlers within a millisecond of starting (`cli.entry`); `errors.failure_of` reports it.
"""

from __future__ import annotations

import signal

__all__ = ["Interrupted"]


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived. A BaseException, like KeyboardInterrupt, so that no
    `except Exception` in the library swallows it; `finally` blocks still release locks."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
