"""How log lines look: `hpcpolicy: LEVEL: message`, control characters escaped.

Its own module so that `cli.main` imports `logging` only when a command needs it (the idle
`node sync` a timer runs on every node logs nothing, and `logging` is a tenth of its run).
"""

from __future__ import annotations

import logging

from hpcpolicy.errors import printable


class PrintableFormatter(logging.Formatter):
    """Log lines quote what others wrote (directory values, manifests, lock records): their
    control characters are escaped like every other output."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record), limit=None, keep="\n")
