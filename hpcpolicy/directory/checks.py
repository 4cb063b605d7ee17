"""Checks shared by every directory reader, so files and LDAP judge names and IDs alike.

Names end up in line-oriented files (`/etc/subuid`, `name:start:count`) and group member
lists, so anything that could break such a line is refused here, at the source.
"""

from __future__ import annotations

import re
from typing import Optional

# Shells that mean "this account cannot log in" (`exclude_disabled`).
NOLOGIN_SHELLS = frozenset(
    {"/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false"}
)

MAX_ID = 4294967294  # (uid_t)-1 = 4294967295 means "no ID" to the kernel; never a real ID
_MAX_ID_DIGITS = len(str(MAX_ID))

_BAD_NAME_CHARS = re.compile(r"[\s:,\x00-\x1f\x7f]")
_BAD_MEMBER_LIST_CHARS = re.compile(r"[\s:\x00-\x1f\x7f]")  # the same, ',' separates names


def name_problem(name: str) -> Optional[str]:
    """Why `name` cannot be a user or group name, or None when it can."""
    if not name:
        return "empty name"
    bad = _BAD_NAME_CHARS.search(name)
    if bad:
        return f"name {name!r} contains {bad.group()!r} (whitespace, ':', ',' or control character)"
    return None


def name_ok(name: str) -> bool:
    """`name_problem(name) is None`, without building the message (the readers' fast path)."""
    return bool(name) and _BAD_NAME_CHARS.search(name) is None


def member_list_ok(text: str) -> bool:
    """Whether every name of a ','-separated member list passes `name_problem` (empty items
    are skipped by the readers, so they are fine here too)."""
    return _BAD_MEMBER_LIST_CHARS.search(text) is None


def parse_id(text: str) -> Optional[int]:
    """A decimal UID/GID in [0, MAX_ID], or None. Signs, spaces and other forms are refused."""
    if not text.isdigit() or not text.isascii() or len(text.lstrip("0")) > _MAX_ID_DIGITS:
        return None  # (too many digits: also spares int() its ValueError past 4300 digits)
    value = int(text)
    return value if value <= MAX_ID else None


def is_nologin(shell: str) -> bool:
    """True for the shells that lock an account out (path compared exactly)."""
    return shell.strip() in NOLOGIN_SHELLS
