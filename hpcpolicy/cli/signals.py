"""SIGINT and SIGTERM raise `interrupt.Interrupted` while a command runs (`cli.entry` installs
them first thing, `main` for in-process callers)."""

from __future__ import annotations

import signal

from hpcpolicy.interrupt import Interrupted

TYPE_CHECKING = False  # typing's, without importing typing: see node/idle.py
if TYPE_CHECKING:
    from typing import Any, List, Optional, Tuple

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def on_signal(signum: int, _frame: object) -> None:
    """Raise Interrupted once; later signals are ignored while it is being reported."""
    quiet_signals()
    raise Interrupted(signum)


def quiet_signals() -> None:
    try:
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
    except ValueError:  # not the main thread: Python allows no handler there
        pass


def install_signals() -> Optional[List[Tuple[int, Any]]]:
    """Install `on_signal`; the previous handlers (None off the main thread)."""
    try:
        return [(sig, signal.signal(sig, on_signal)) for sig in SIGNALS]
    except ValueError:
        return None


def restore_signals(previous: Optional[List[Tuple[int, Any]]]) -> None:
    """Put back what `install_signals` replaced; our own handler comes back as SIG_IGN (the
    command is over: a late signal must not raise into the interpreter's exit)."""
    for sig, handler in previous or ():
        signal.signal(sig, signal.SIG_IGN if handler is on_signal else handler)
