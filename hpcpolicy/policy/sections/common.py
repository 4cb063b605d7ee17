"""Checkers shared by several sections: paths, names, sub-tables."""

from __future__ import annotations

import os
import re
from typing import Any, Callable, Mapping, Optional

from hpcpolicy.errors import ProblemCollector
from hpcpolicy.policy import paths
from hpcpolicy.policy.schema import INVALID, Checker, Field, read_table, string

MAX_ID = 2**32 - 2  # (uid_t)-1 means "no change" to chown and setresuid: never a real or sub ID


def path() -> Checker:
    """An absolute, normalised, separator-free path."""
    return string(paths.check_path)


def bind_target() -> Checker:
    return string(paths.check_bind_target)


def account(what: str, numeric_ok: bool = False) -> Checker:
    """A user or group name that is safe in every rendered file (or a numeric ID if allowed)."""

    def rule(value: str) -> Optional[str]:
        if numeric_ok and value.isdigit() and value.isascii() and int(value) <= MAX_ID:
            return None
        return paths.check_account_name(value, what)

    return string(rule)


def named(pattern: re.Pattern[str], what: str) -> Checker:
    def rule(value: str) -> Optional[str]:
        return paths.check_name(value, pattern, what)

    return string(rule)


def sub_table(
    fields: Mapping[str, Field],
    build: Callable[..., Any],
    hints: Optional[Mapping[str, str]] = None,
) -> Checker:
    """A nested table checked with its own schema, built into its model type."""

    def check(value: Any, where: str, out: ProblemCollector) -> Any:
        values = read_table(value, where, fields, out, hints)
        return INVALID if values is None else build(**values)

    return check


def relative_rule(value: str) -> Optional[str]:
    """A file path that may be relative (to the site file's directory) or absolute."""
    if not value:
        return "must not be empty"
    problem = paths.check_path(value if value.startswith("/") else "/" + value)
    if problem is not None:
        return problem.replace("must be an absolute path", "must be a file path")
    return None


def resolved_path(base_dir: str) -> Checker:
    """A path relative to the site file's directory (or absolute), returned absolute."""
    check = string(relative_rule)

    def resolve(value: Any, where: str, out: ProblemCollector) -> Any:
        value = check(value, where, out)
        if value is INVALID:
            return INVALID
        return os.path.normpath(os.path.join(base_dir, value))

    return resolve
