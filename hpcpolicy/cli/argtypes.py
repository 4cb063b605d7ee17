"""argparse value types shared by several commands."""

from __future__ import annotations

import argparse
import math


def seconds(text: str) -> float:
    """A finite, non-negative number of seconds (`nan` or `inf` would wait for ever)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (finite, >= 0)")
    return value
