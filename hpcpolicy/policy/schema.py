"""A small schema engine for site.toml: typed fields, strict keys, every problem at its key path.

Each section module declares a `Dict[str, Field]`; `read_table` checks a TOML table against it,
records every problem in a `ProblemCollector`, and returns the values only when the whole table
is sound (so cross-field rules never reason about half-valid data and never report a mistake
twice). Checkers are plain functions `(value, path, out) -> value | INVALID`.

bool is never an int here (TOML `true` is not `1`), floats are finite, strings carry no control
characters, and every key shown in a message is quoted when it is not a bare TOML key, so a
hostile key cannot add a line to the output.
"""

from __future__ import annotations

import datetime
import difflib
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from hpcpolicy.errors import ProblemCollector
from hpcpolicy.policy.paths import check_text


class _Sentinel:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


REQUIRED: Any = _Sentinel("REQUIRED")
INVALID: Any = _Sentinel("INVALID")

Checker = Callable[[Any, str, ProblemCollector], Any]
Rule = Callable[[Any], Optional[str]]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Field:
    """One key of a table: how to check it and its default (REQUIRED: must be given)."""

    check: Checker
    default: Any = REQUIRED


def show_key(key: str) -> str:
    """A key as TOML would spell it: bare when possible, else quoted with escapes."""
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def show(value: Any, limit: int = 60) -> str:
    """A value for a message, on one line and bounded in length."""
    text = json.dumps(value, default=str) if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def key_path(parent: str, key: str) -> str:
    return f"{parent}.{show_key(key)}" if parent else show_key(key)


def item_path(parent: str, index: int) -> str:
    """`parent[index]` with a 1-based index, as a person counts tables in the file."""
    return f"{parent}[{index}]"


def type_name(value: Any) -> str:
    """TOML's name for a parsed value's type."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, datetime.datetime):
        return "date-time"
    if isinstance(value, datetime.date):
        return "date"
    if isinstance(value, datetime.time):
        return "time"
    return type(value).__name__


def _expected(out: ProblemCollector, path: str, want: str, value: Any) -> Any:
    out.add(path, f"expected {want}, got {type_name(value)}")
    return INVALID


def _apply_rules(value: Any, path: str, out: ProblemCollector, rules: Sequence[Rule]) -> Any:
    for rule in rules:
        message = rule(value)
        if message is not None:
            out.add(path, message)
            return INVALID
    return value


def string(*rules: Rule) -> Checker:
    """A string without control characters or line breaks, then each rule in turn."""

    def check(value: Any, path: str, out: ProblemCollector) -> Any:
        if not isinstance(value, str):
            return _expected(out, path, "string", value)
        return _apply_rules(value, path, out, (check_text,) + rules)

    return check


def integer(lo: Optional[int] = None, hi: Optional[int] = None) -> Checker:
    """An integer (never a boolean) in [lo, hi]."""

    def check(value: Any, path: str, out: ProblemCollector) -> Any:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            out.add(path, f"expected integer, got string (write {value.strip()} without quotes)")
            return INVALID
        if isinstance(value, bool) or not isinstance(value, int):
            return _expected(out, path, "integer", value)
        return _apply_rules(value, path, out, (_range_rule(lo, hi),))

    return check


def number(lo: Optional[float] = None, hi: Optional[float] = None) -> Checker:
    """A finite float or integer (never a boolean) in [lo, hi], returned as float."""

    def check(value: Any, path: str, out: ProblemCollector) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return _expected(out, path, "number", value)
        if isinstance(value, float) and not math.isfinite(value):
            out.add(path, "must be a finite number")
            return INVALID
        return _apply_rules(float(value), path, out, (_range_rule(lo, hi),))

    return check


def _range_rule(lo: Optional[float], hi: Optional[float]) -> Rule:
    def rule(value: Any) -> Optional[str]:
        if lo is not None and hi is not None and not lo <= value <= hi:
            return f"must be between {lo} and {hi}, got {value}"
        if lo is not None and value < lo:
            return f"must be >= {lo}, got {value}"
        if hi is not None and value > hi:
            return f"must be <= {hi}, got {value}"
        return None

    return rule


def boolean() -> Checker:
    def check(value: Any, path: str, out: ProblemCollector) -> Any:
        if not isinstance(value, bool):
            return _expected(out, path, "boolean (true or false)", value)
        return value

    return check


def suggest(word: str, choices: Sequence[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, compared without case; or ''."""
    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return f" (did you mean {show(lowered[close[0]])}?)" if close else ""


def one_of(*choices: str) -> Checker:
    """A string from a fixed set."""

    def rule(value: str) -> Optional[str]:
        if value in choices:
            return None
        listed = ", ".join(show(c) for c in choices)
        return f"must be one of {listed}, got {show(value)}{suggest(value, choices)}"

    return string(rule)


def array(item: Checker, nonempty: bool = False, unique: bool = False,
          empty_hint: str = "") -> Checker:
    """An array whose every item passes `item` (paths `key[1]`, `key[2]`, ...)."""

    def check(value: Any, path: str, out: ProblemCollector) -> Any:
        if not isinstance(value, list):
            return _expected(out, path, "array", value)
        if nonempty and not value:
            out.add(path, "must not be empty" + (f" ({empty_hint})" if empty_hint else ""))
            return INVALID
        items = [item(v, item_path(path, i), out) for i, v in enumerate(value, 1)]
        if any(v is INVALID for v in items):
            return INVALID
        if unique and not _unique(items, path, out):
            return INVALID
        return tuple(items)

    return check


def _unique(items: Sequence[Any], path: str, out: ProblemCollector) -> bool:
    seen: Dict[Any, int] = {}
    ok = True
    for i, v in enumerate(items, 1):
        if v in seen:
            out.add(item_path(path, i), f"duplicate of {item_path(path, seen[v])}")
            ok = False
        else:
            seen[v] = i
    return ok


def unknown_key(key: str, known: Sequence[str], hints: Mapping[str, str]) -> str:
    """The message for a key no schema knows, with the likeliest intended key."""
    if key in hints:
        return f"unknown key: {hints[key]}"
    return f"unknown key{suggest(key, known)}"


def read_table(
    raw: Any,
    path: str,
    fields: Mapping[str, Field],
    out: ProblemCollector,
    hints: Optional[Mapping[str, str]] = None,
) -> Optional[Dict[str, Any]]:
    """Check one table; the values (defaults filled in) when all is well, else None."""
    if not isinstance(raw, dict):
        _expected(out, path or "(top level)", "table", raw)
        return None
    ok = True
    for key in raw:
        if key not in fields:
            out.add(key_path(path, key), unknown_key(key, list(fields), hints or {}))
            ok = False
    values: Dict[str, Any] = {}
    for name, spec in fields.items():
        where = key_path(path, name)
        if name not in raw:
            if spec.default is REQUIRED:
                out.add(where, "is required")
                ok = False
            values[name] = spec.default
            continue
        values[name] = spec.check(raw[name], where, out)
        ok = ok and values[name] is not INVALID
    return values if ok else None


def table_array(
    raw: Any, path: str, out: ProblemCollector, parse_one: Callable[[Any, str, int], Any]
) -> List[Any]:
    """An array of tables (`[[bind]]`): `parse_one(raw, path, index)` per table, in file order."""
    if not isinstance(raw, list):
        out.add(path, f"expected an array of tables ([[{path}]]), got {type_name(raw)}")
        return []
    return [parse_one(item, item_path(path, i), i) for i, item in enumerate(raw, 1)]
