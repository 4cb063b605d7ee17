"""What every LDAP backend shares: the session contract, URI parsing and result checks.

A backend opens one connection per URI as a context manager yielding a search function:
search(base, filter, attributes) -> entries (DN, values by lower-cased attribute name), streamed
page by page. Transport failures raise `Unreachable` (the caller tries the next URI), refusals
`DirectoryError`.

Result checks: every page's result code is checked before its entries are used; a malformed
answer is `DirectoryError` (never guessed at). sizeLimitExceeded (4),
adminLimitExceeded (11) and any other non-success is `DirectoryError` (ldap3 raises nothing for
them and simply ends the result early, e.g. at OpenLDAP's default of 500 entries).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterator, List, NoReturn, Optional, Tuple
from urllib.parse import unquote, urlsplit

from hpcpolicy.directory.ldap_wire import RawEntry
from hpcpolicy.errors import DirectoryError
from hpcpolicy.policy.model import LdapSource

SearchFn = Callable[[str, str, List[str]], Iterator[RawEntry]]

RESULT_NAMES = {
    3: "timeLimitExceeded",
    4: "sizeLimitExceeded",
    10: "referral",
    11: "adminLimitExceeded",
    13: "confidentialityRequired",
    32: "noSuchObject",
    49: "invalidCredentials",
    50: "insufficientAccessRights",
}

_LIMITS_ADVICE = (
    "the result is truncated; raise the server's limit for {who} (OpenLDAP: "
    "`limits {limits_dn} size.prtotal=unlimited`, 389-DS: nsPagedSizeLimit, "
    "Active Directory: MaxPageSize), or bind as an account without that limit"
)


class Unreachable(Exception):
    """This URI failed at the transport level: try the next one."""


class ReadState:
    """One directory read, shared with the backend: its overall deadline (a server that drips
    its answer, each piece inside the per-operation `timeout`, must not hold apply and its
    lock for ever) and the continuation references the searches returned (not chased)."""

    def __init__(self, src: LdapSource) -> None:
        self.seconds = src.deadline
        self.at = time.monotonic() + src.deadline
        self.referrals: List[Tuple[str, str]] = []  # (search base, referral URI)

    def remaining(self) -> float:
        """Seconds left; DirectoryError (exit 1) once the deadline has passed."""
        left = self.at - time.monotonic()
        if left <= 0:
            self.exceeded()
        return left

    def exceeded(self) -> NoReturn:
        raise DirectoryError(
            f"the directory read took longer than directory.ldap.deadline "
            f"({self.seconds} s): the server answers too slowly; nothing was used")

    def timed_out(self, wait: float, timeout: float) -> None:
        """After a wait of `wait` s ran out: past the deadline when it was the deadline that
        cut the wait short (DirectoryError, no failover); else the operation's own timeout."""
        if wait < timeout:
            self.exceeded()

    def bound(self, timeout: float) -> float:
        """The wait for one operation: its own timeout, cut at the deadline."""
        return min(float(timeout), self.remaining())


Session = Callable[[str, LdapSource, Optional[str], ReadState], ContextManager[SearchFn]]


def unbind_quietly(conn: object) -> None:
    # closing a broken connection must not mask the real result
    with contextlib.suppress(Exception):
        conn.unbind()  # type: ignore[attr-defined]


@dataclass
class _Endpoint:
    scheme: str
    host: str
    port: Optional[int]


def parse_uri(uri: str) -> _Endpoint:
    """Scheme, host (or socket path for ldapi) and port of an LDAP URI."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in ("ldap", "ldaps", "ldapi"):
        raise DirectoryError(f"{uri}: not an ldap://, ldaps:// or ldapi:// URI")
    if scheme == "ldapi":
        path = unquote(parts.netloc) or "/var/run/ldapi"
        return _Endpoint(scheme, path, None)
    try:
        port = parts.port
    except ValueError:
        raise DirectoryError(f"{uri}: bad port") from None
    return _Endpoint(scheme, parts.hostname or "localhost", port)


def result_text(result: Optional[dict]) -> str:
    if not result:
        return "no result"
    code = result.get("result")
    desc = result.get("description") or RESULT_NAMES.get(code or -1, "error")
    msg = (result.get("message") or "").strip()
    return f"{desc} ({code})" + (f": {msg}" if msg else "")


def check_result(
    uri: str,
    base: str,
    filt: str,
    code: Optional[int],
    text: str,
    count: int,
    bind_dn: Optional[str] = None,
) -> None:
    """Any non-success is fatal: a partial directory would revoke everyone not returned."""
    if code == 0:
        return
    where = f"{uri}: search of {base!r} with {filt}"
    if code in (4, 11, 3):
        advice = _LIMITS_ADVICE.format(
            who=f"bind account {bind_dn}" if bind_dn else "anonymous binds",
            limits_dn=f'dn.exact="{bind_dn}"' if bind_dn else "anonymous",
        )
        raise DirectoryError(f"{where} stopped after {count} entries with {text}: {advice}")
    if code == 32:
        raise DirectoryError(f"{where}: the base does not exist ({text})")
    raise DirectoryError(f"{where} failed after {count} entries: {text}")
