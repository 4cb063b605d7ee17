"""The `hpcpolicy` command's first code: SIGINT and SIGTERM handlers, before anything else is
imported, so that an interruption at any instant ends in the command's own report (exit 1, and
the JSON object under --format json), never in a traceback."""

from __future__ import annotations

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
            sys.exit(code)
    from hpcpolicy.cli.main import main

    sys.exit(main())
