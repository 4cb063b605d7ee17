"""Read users and groups from LDAP: failover over the URIs, a choice of backend, no silent
truncation.

* A URI that cannot be reached (refused, timed out, TLS handshake failed, connection lost while
  reading) is skipped for the next one; when all fail, `DirectoryError` names each and why. A
  server that answers but refuses (bad credentials, missing base, truncated result) stops the
  read: another replica would answer the same, and a partial directory must never be used.
* The bind password comes from `bind_password_file` (the file must not be readable by group or
  other; one trailing newline is stripped).
* Backends (`ldap_session` states their contract): python-ldap (libldap, optional, `ldap_fast`,
  decodes in C) when importable, else ldap3 (`ldap_ldap3`). Both stream: entries are interpreted
  (`ldap_interpret`) page by page as they arrive (no raw copy of the directory is held), and the
  next page is requested before the current one is interpreted, so the server works meanwhile.
"""

from __future__ import annotations

import importlib
import stat
import time
from typing import List, Optional, Tuple

from hpcpolicy.directory.ldap_interpret import (
    group_attributes,
    interpret_groups,
    interpret_users,
    user_attributes,
)
from hpcpolicy.directory.ldap_ldap3 import session_ldap3
from hpcpolicy.directory.ldap_session import ReadState, Session, Unreachable
from hpcpolicy.directory.model import Group, User
from hpcpolicy.errors import DirectoryError
from hpcpolicy.gcpause import paused
from hpcpolicy.policy.inputs import SECRET_MAX, read_checked
from hpcpolicy.policy.model import LdapSource

DAY = 86400


def describe(src: LdapSource) -> str:
    """The URIs of a source, for messages."""
    return ",".join(src.uri)


def read_ldap(
    src: LdapSource, now: Optional[float] = None, backend: Optional[str] = None
) -> Tuple[List[User], List[Group]]:
    """Users and groups of `src`, trying each URI in order.

    `now` (seconds since the epoch) judges shadowExpire; `backend` forces "ldap3" or
    "python-ldap" (default: python-ldap when importable, it decodes in C; else ldap3).
    Entries are interpreted as they arrive, page by page: no raw copy of the directory is held.
    """
    return read_ldap_state(src, now, backend)[:2]


def read_ldap_state(
    src: LdapSource, now: Optional[float] = None, backend: Optional[str] = None
) -> Tuple[List[User], List[Group], ReadState]:
    """`read_ldap`, with the read's state: the referrals the server returned and did not
    follow (entries behind them are not read; the caller says so)."""
    password = read_password(src)
    session = _backend(backend)
    today = int((time.time() if now is None else now) // DAY)
    reasons: List[str] = []
    state = ReadState(src)
    for uri in src.uri:
        state.remaining()  # a failover after a slow server does not restart the clock
        state.referrals.clear()
        try:
            with paused(), session(uri, src, password, state) as search:
                users, dn_to_user = interpret_users(
                    src, uri, search(src.user_base, src.user_filter, user_attributes(src)), today
                )
                groups = interpret_groups(
                    src, uri, search(src.group_base, src.group_filter, group_attributes(src)),
                    dn_to_user, (u.name for u in users),
                )
        except Unreachable as err:
            reasons.append(f"{uri}: {err}")
            continue
        return users, groups, state
    raise DirectoryError("no LDAP server could be read: " + "; ".join(reasons))




def _backend(name: Optional[str]) -> Session:
    """The session factory of the chosen backend."""
    if name not in (None, "ldap3", "python-ldap"):
        raise ValueError(f"unknown LDAP backend {name!r}")
    if name != "ldap3":
        try:
            ldap_fast = importlib.import_module("hpcpolicy.directory.ldap_fast")
        except ImportError:
            if name == "python-ldap":
                raise DirectoryError(
                    "python-ldap is not installed (pip install python-ldap)"
                ) from None
        else:
            return ldap_fast.session  # type: ignore[no-any-return,unused-ignore]
    return session_ldap3


def read_password(src: LdapSource) -> Optional[str]:
    """The bind password, or None for anonymous / SASL EXTERNAL. Refuses a readable secret."""
    if src.bind_dn is None:
        return None
    path = src.bind_password_file
    if not path:
        raise DirectoryError("directory.ldap: bind_dn is set but bind_password_file is not")
    try:  # a FIFO or a device as the file is exit 2, never a hang (policy.inputs)
        data, st = read_checked(path, file="", key="directory.ldap.bind_password_file",
                                max_size=SECRET_MAX, nofollow=True)
    except OSError as err:
        raise DirectoryError(f"{path}: cannot read bind password: {err.strerror or err}") from None
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o044:
        raise DirectoryError(
            f"{path}: bind password file has mode {mode:04o}, readable by group or other;"
            f" chmod 600 it"
        )
    text = data.decode("utf-8", errors="strict")
    text = text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text
    if not text:
        raise DirectoryError(f"{path}: empty bind password (an empty simple bind is anonymous)")
    return text
