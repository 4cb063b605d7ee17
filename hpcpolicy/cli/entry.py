"""The `hpcpolicy` command's first code: SIGINT and SIGTERM handlers, before anything else is
imported, so that an interruption at any instant ends in the command's own report (exit 1, and
the JSON object under --format json), never in a traceback."""

from __future__ import annotations

import os
import sys

from hpcpolicy.cli.signals import install_signals

TYPE_CHECKING = False  # typing's, without importing typing: see node/idle.py
if TYPE_CHECKING:
    from typing import NoReturn


def run() -> NoReturn:
    install_signals()
    if sys.argv[1:3] == ["node", "sync"]:  # the timer's command: nothing to do, mostly
        from hpcpolicy.cli.quick import run_idle

        code = run_idle(sys.argv[1:])
        if code is not None:
            exit_now(code)
    from hpcpolicy.cli.main import main

    sys.exit(main())


def exit_now(code: int) -> NoReturn:
    """End an answered idle `node sync` without the interpreter's teardown.

    Freeing every module object costs about 2 ms, a tenth of the whole run that every node's
    timer makes every few minutes. Nothing is left for the teardown to do: the run took no lock,
    opened no file for writing, registered no atexit handler, and its report is written and
    flushed (`report.deliver`). If a flush still fails, the normal way out reports it.
    """
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        sys.exit(code)
    os._exit(code)
