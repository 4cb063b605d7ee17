"""Path and name rules shared by the loader and anything else that takes paths or names.

Pure functions returning a message (or None when the value is fine), so callers decide the key
path. The rules are strict on purpose: every path and name ends up in a line-oriented native file
(apptainer.conf, an fstab, /etc/subuid), where a comma, a colon, whitespace or a newline would
split or inject a field or a line.
"""

from __future__ import annotations

import os
import re
import unicodedata
from typing import Optional

# Bind targets that would hide or replace what the container (or the host) needs to work.
FORBIDDEN_TARGETS = frozenset(
    {
        "/",
        "/etc",
        "/usr",
        "/var",
        "/opt",
        "/bin",
        "/sbin",
        "/lib",
        "/lib64",
        "/etc/passwd",
        "/etc/group",
        "/etc/shadow",
        "/etc/nsswitch.conf",
    }
)
# Bind targets forbidden with everything below them (compared by component).
FORBIDDEN_TREES = ("/proc", "/sys", "/dev")

MAX_PATH = 4096
# Field or comment markers in the native formats paths are pasted into (apptainer.conf `bind path`
# splits on `,` and `:`; fstab and shells treat `#`, quotes and backslashes specially; enroot
# substitutes `${NAME}` from the user's environment in its mounts.d lines).
PATH_SEPARATORS = (",", ":", "#", '"', "'", "\\", "$")

SITE_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
CLASS_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
# POSIX portable user/group names as shadow's useradd accepts them by default (plus `.`, which
# LDAP directories commonly use), a trailing `$` for machine accounts; at most 256 characters.
ACCOUNT_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}\$?")
PAM_SERVICE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def is_unsafe_char(ch: str) -> bool:
    """Control characters (C0, DEL, C1), any Unicode whitespace, and format/separator marks."""
    if ch.isspace() or ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F:
        return True
    return unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Zs", "Cs", "Co", "Cn")


def unsafe_char_message(value: str) -> Optional[str]:
    """Name the first character that must never reach a rendered file, or None."""
    for ch in value:
        if is_unsafe_char(ch):
            return f"must not contain whitespace or control characters (found U+{ord(ch):04X})"
    return None


def check_text(value: str) -> Optional[str]:
    """Free text that ends up inside one line (filters, DNs): no control chars or line breaks."""
    for ch in value:
        if ch != " " and is_unsafe_char(ch):
            return ("must not contain control characters, line breaks or unusual whitespace "
                    f"(found U+{ord(ch):04X})")
    return None


def check_path(path: str) -> Optional[str]:
    """An absolute, normalised path with no character that could split a native config field."""
    if not path:
        return "must not be empty"
    if len(path) > MAX_PATH:
        return f"is longer than {MAX_PATH} characters"
    bad = unsafe_char_message(path)
    if bad:
        return bad
    for ch in PATH_SEPARATORS:
        if ch in path:
            return f"must not contain {ch!r}"
    if not path.startswith("/"):
        return "must be an absolute path"
    if ".." in path.split("/"):
        return "must not contain '..'"
    if path != "/" and path.endswith("/"):
        return "must not end with '/'"
    if "//" in path:
        return "must not contain '//'"
    if os.path.normpath(path) != path:
        return f"must be normalised (write {os.path.normpath(path)!r})"
    return None


def is_below(path: str, tree: str) -> bool:
    """True when `path` is `tree` or inside it, by component (`/procfs` is not below `/proc`)."""
    return path == tree or path.startswith(tree.rstrip("/") + "/")


def non_ascii_message(value: str) -> Optional[str]:
    """Name the first non-ASCII character (a look-alike such as Cyrillic `о` in `/prоc` reads
    as `/proc` to a reviewer), or None."""
    for ch in value:
        if not ch.isascii():
            name = unicodedata.name(ch, "unnamed character")
            return f"contains U+{ord(ch):04X} {name}: only ASCII, so that it reads as it is"
    return None


def check_bind_target(path: str) -> Optional[str]:
    """A path rule plus the targets no container may have replaced; ASCII only (a container
    path is the site's choice, and a look-alike of a forbidden one must not pass review)."""
    bad = check_path(path) or non_ascii_message(path)
    if bad:
        return bad
    if path in FORBIDDEN_TARGETS:
        return f"must not be {path} (binding over it breaks the container or exposes the host)"
    for tree in FORBIDDEN_TREES:
        if is_below(path, tree):
            return f"must not be {tree} or below it (kernel interfaces belong to the runtime)"
    return None


def check_name(value: str, pattern: re.Pattern[str], what: str) -> Optional[str]:
    """A name that must match `pattern` whole (so it can never carry a separator or a newline)."""
    if not value:
        return f"{what} must not be empty"
    if pattern.fullmatch(value) is None:
        return f"is not a valid {what} (allowed: {pattern.pattern})"
    return None


def check_account_name(value: str, what: str = "name") -> Optional[str]:
    """A user or group name safe in /etc/subuid and in messages; all digits is refused.

    A numeric name is read as a UID by Apptainer and shadow, so it would silently name someone else.
    """
    bad = check_name(value, ACCOUNT_NAME_RE, what)
    if bad:
        return bad
    if value.isdigit():
        return f"is not a valid {what}: all digits would be read as a numeric ID"
    return None
