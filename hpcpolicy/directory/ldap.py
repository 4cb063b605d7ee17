"""Read users and groups from LDAP (ldap3): failover, verified TLS, paging, no silent truncation.

Transport (per URI in `uri`, in order):

* `ldaps://` and `start_tls = true` always verify the server certificate (`CERT_REQUIRED`
  against `ca_file`, or the system store when `ca_file` is unset) and its host name: ldap3's own
  default verifies nothing.
* `ldapi://` without `bind_dn` binds with SASL EXTERNAL (the peer credentials of this process);
  otherwise a simple bind with the password from `bind_password_file` (the file must not be
  readable by group or other; one trailing newline is stripped), or anonymous without `bind_dn`.
* A URI that cannot be reached (refused, timed out, TLS handshake failed, connection lost while
  reading) is skipped for the next one; when all fail, `DirectoryError` names each and why. A
  server that answers but refuses (bad credentials, missing base, truncated result) stops the
  read: another replica would answer the same, and a partial directory must never be used.

Backends: ldap3 (always available) connects, negotiates TLS and binds; its search requests are
encoded by ldap3 but the answers are decoded by `ldap_wire` (DN and raw values only), because
ldap3's general decoding made a 100k-user read ~10x slower than `ldapsearch`. python-ldap
(libldap, optional, `ldap_fast`) is used when importable. Both stream: entries are interpreted
page by page as they arrive (no raw copy of the directory is held), and the next page is
requested before the current one is interpreted, so the server works meanwhile.

Result checks: every page's result code is checked before its entries are used; a malformed
answer is `DirectoryError` (never guessed at). sizeLimitExceeded (4),
adminLimitExceeded (11) and any other non-success is `DirectoryError` (ldap3 raises nothing for
them and simply ends the result early, e.g. at OpenLDAP's default of 500 entries).

Interpretation (pure, `interpret_users` / `interpret_groups`): attribute names from
`LdapAttributes`; entries missing a required attribute or carrying a non-integer ID are
`InvalidInput` problems naming the DN and attribute, all collected. Disabled: nologin shell,
`shadowExpire` on or before today (days since epoch, pam_unix semantics; -1 or absent: never),
`nsAccountLock: TRUE`, or any `pwdAccountLockedTime`. Groups: `memberUid` holds names;
`member` / `uniqueMember` hold DNs, mapped to the users read (by DN) and to other groups, whose
members are included transitively (cycles tolerated). DNs naming nothing that was read (a user
outside `user_base` / `user_filter`, a deleted entry) are ignored, as NSS clients do.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import stat
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Dict, Iterable, Iterator, List, Optional, Set, Tuple
from urllib.parse import unquote, urlsplit

from hpcpolicy.directory.checks import MAX_ID, is_nologin, name_problem, parse_id
from hpcpolicy.directory.ldap_wire import (
    Disconnected,
    Page,
    PageReader,
    RawEntry,
    WireError,
    decode_page,
)
from hpcpolicy.directory.model import Group, User
from hpcpolicy.errors import DirectoryError, InvalidInput, Problem
from hpcpolicy.gcpause import paused
from hpcpolicy.policy.model import LdapSource

SOURCE = "ldap"
DAY = 86400

RECV_SIZE = 256 * 1024

# A backend opens one connection per URI as a context manager yielding a search function:
# search(base, filter, attributes) -> entries (DN, values by lower-cased attribute name),
# streamed page by page. Transport failures raise Unreachable, refusals DirectoryError.
SearchFn = Callable[[str, str, List[str]], Iterator[RawEntry]]
Session = Callable[[str, LdapSource, Optional[str]], ContextManager[SearchFn]]

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


def describe(src: LdapSource) -> str:
    """The URIs of a source, for messages."""
    return ",".join(src.uri)


# --------------------------------------------------------------------------------------------
# entry point


def read_ldap(
    src: LdapSource, now: Optional[float] = None, backend: Optional[str] = None
) -> Tuple[List[User], List[Group]]:
    """Users and groups of `src`, trying each URI in order.

    `now` (seconds since the epoch) judges shadowExpire; `backend` forces "ldap3" or
    "python-ldap" (default: python-ldap when importable, it decodes in C; else ldap3).
    Entries are interpreted as they arrive, page by page: no raw copy of the directory is held.
    """
    password = read_password(src)
    session = _backend(backend)
    today = int((time.time() if now is None else now) // DAY)
    reasons: List[str] = []
    for uri in src.uri:
        try:
            with paused(), session(uri, src, password) as search:
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
        return users, groups
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
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as err:
        raise DirectoryError(f"{path}: cannot read bind password: {err.strerror or err}") from None
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & 0o044:
            raise DirectoryError(
                f"{path}: bind password file has mode {mode:04o}, readable by group or other;"
                f" chmod 600 it"
            )
        data = b""
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    text = data.decode("utf-8", errors="strict")
    text = text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text
    if not text:
        raise DirectoryError(f"{path}: empty bind password (an empty simple bind is anonymous)")
    return text


# --------------------------------------------------------------------------------------------
# attribute lists


def user_attributes(src: LdapSource) -> List[str]:
    a = src.attributes
    return [a.name, a.uid, a.gid, "loginShell", "shadowExpire", "nsAccountLock",
            "pwdAccountLockedTime"]


def group_attributes(src: LdapSource) -> List[str]:
    a = src.attributes
    return [a.group_name, a.gid, src.member_attribute]


# --------------------------------------------------------------------------------------------
# ldap3 backend


@contextlib.contextmanager
def session_ldap3(uri: str, src: LdapSource, password: Optional[str]) -> Iterator[SearchFn]:
    """One bound ldap3 connection; its searches decode responses with `ldap_wire`."""
    conn = connect_ldap3(uri, src, password)
    try:
        yield lambda base, filt, attrs: _search_ldap3(conn, uri, src, base, filt, attrs)
    finally:
        unbind_quietly(conn)


def unbind_quietly(conn: object) -> None:
    # closing a broken connection must not mask the real result
    with contextlib.suppress(Exception):
        conn.unbind()  # type: ignore[attr-defined]


def _tls_ldap3(src: LdapSource):  # type: ignore[no-untyped-def]
    import ssl

    from ldap3 import Tls
    from ldap3.core.exceptions import LDAPSSLConfigurationError

    if src.ca_file and not os.path.isfile(src.ca_file):
        raise DirectoryError(f"directory.ldap.ca_file {src.ca_file}: no such file")
    try:
        return Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=src.ca_file or None)
    except LDAPSSLConfigurationError as err:
        raise DirectoryError(f"directory.ldap.ca_file {src.ca_file}: {err}") from None


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


def _import_ldap3_quietly() -> None:
    """ldap3 2.9 with pyasn1 >= 0.6 warns (tagMap/typeMap deprecated) at import: not for users."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import ldap3  # noqa: F401


def connect_ldap3(uri: str, src: LdapSource, password: Optional[str]):  # type: ignore[no-untyped-def]
    """An open, bound ldap3 connection; Unreachable on transport failure."""
    _import_ldap3_quietly()
    from ldap3 import ANONYMOUS, EXTERNAL, NONE, SASL, SIMPLE, SYNC, Connection, Server
    from ldap3.core.exceptions import LDAPException

    end = parse_uri(uri)
    use_tls = end.scheme == "ldaps" or (src.start_tls and end.scheme == "ldap")
    tls = _tls_ldap3(src) if use_tls else None
    if end.scheme == "ldapi":
        server = Server(f"ldapi://{end.host}", get_info=NONE, connect_timeout=src.timeout)
    else:
        server = Server(end.host, port=end.port, use_ssl=end.scheme == "ldaps", tls=tls,
                        get_info=NONE, connect_timeout=src.timeout)
    if src.bind_dn is not None:
        auth = {"user": src.bind_dn, "password": password, "authentication": SIMPLE}
    elif end.scheme == "ldapi":
        auth = {"authentication": SASL, "sasl_mechanism": EXTERNAL, "sasl_credentials": ""}
    else:
        auth = {"authentication": ANONYMOUS}
    conn = Connection(server, client_strategy=SYNC, receive_timeout=src.timeout,
                      read_only=True, auto_referrals=False, check_names=False,
                      raise_exceptions=False, return_empty_attributes=False, **auth)
    try:
        conn.open()
        if src.start_tls and end.scheme == "ldap" and not conn.start_tls():
            raise Unreachable(f"StartTLS failed: {_result_text(conn.result)}")
    except LDAPException as err:
        unbind_quietly(conn)
        raise Unreachable(_socket_reason(err)) from None
    _bind_ldap3(conn, uri, src)
    return conn


def _bind_ldap3(conn, uri: str, src: LdapSource) -> None:  # type: ignore[no-untyped-def]
    from ldap3.core.exceptions import LDAPCommunicationError, LDAPException

    try:
        ok = conn.bind()
    except LDAPCommunicationError as err:
        unbind_quietly(conn)
        raise Unreachable(_socket_reason(err)) from None
    except LDAPException as err:
        unbind_quietly(conn)
        raise DirectoryError(f"{uri}: bind failed: {err}") from None
    if not ok:
        result = conn.result or {}
        unbind_quietly(conn)
        who = src.bind_dn or ("SASL EXTERNAL" if uri.lower().startswith("ldapi") else "anonymous")
        raise DirectoryError(f"{uri}: bind as {who} failed: {_result_text(result)}")


def _socket_reason(err: Exception) -> str:
    text = str(err)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return ("TLS certificate verification failed (is ca_file the CA that signed the "
                f"server's certificate?): {text}")
    if "hostname" in text.lower() and "match" in text.lower():
        return f"TLS host name does not match the certificate: {text}"
    return text


def _result_text(result: Optional[dict]) -> str:
    if not result:
        return "no result"
    code = result.get("result")
    desc = result.get("description") or RESULT_NAMES.get(code or -1, "error")
    msg = (result.get("message") or "").strip()
    return f"{desc} ({code})" + (f": {msg}" if msg else "")


def _search_ldap3(  # type: ignore[no-untyped-def]
    conn, uri: str, src: LdapSource, base: str, filt: str, attrs: List[str]
) -> Iterator[RawEntry]:
    """Paged search: ldap3 encodes and sends each request, `ldap_wire` decodes the answer.

    The next page is requested as soon as a page has arrived (its cookie is in the Done at
    its end), and only then are its entries decoded: the server prepares page n+1 while we
    decode page n. Every page's result code is checked before any of its entries is used.
    """
    from ldap3.core.exceptions import LDAPCommunicationError

    reader = PageReader()
    names: Dict[bytes, str] = {}
    count = 0
    try:
        msgid: Optional[int] = _send_search(conn, uri, src, base, filt, attrs, None)
        while msgid is not None:
            page = _receive_page(conn, reader, msgid)
            count += page.entries
            done = page.done
            text = _result_text({"result": done.code, "message": done.message})
            check_result(uri, base, filt, done.code, text, count, src.bind_dn)
            msgid = None
            if done.cookie:
                msgid = _send_search(conn, uri, src, base, filt, attrs, done.cookie)
            entries: List[RawEntry] = []
            decode_page(page.data, 0, page.msgid, names, entries)
            yield from entries
    except (LDAPCommunicationError, OSError, Disconnected) as err:
        raise Unreachable(f"connection lost while reading: {err}") from None
    except WireError as err:
        raise DirectoryError(f"{uri}: malformed LDAP response: {err}") from None


def _send_search(  # type: ignore[no-untyped-def]
    conn, uri: str, src: LdapSource, base: str, filt: str, attrs: List[str],
    cookie: Optional[bytes],
) -> int:
    """Encode (ldap3, filter included) and send one page request; its message ID."""
    from ldap3 import DEREF_ALWAYS, SUBTREE
    from ldap3.core.exceptions import LDAPInvalidFilterError
    from ldap3.operation.search import search_operation
    from ldap3.protocol.rfc2696 import paged_search_control

    try:
        request = search_operation(base, filt, SUBTREE, DEREF_ALWAYS, attrs, 0, 0, False,
                                   True, True, None, check_names=False)
    except LDAPInvalidFilterError as err:
        raise DirectoryError(f"{uri}: invalid search filter {filt!r}: {err}") from None
    control = paged_search_control(False, src.page_size, cookie)
    msgid: int = conn.strategy.send("searchRequest", request, [control])
    conn.strategy._outstanding.pop(msgid, None)  # answered here, not through ldap3
    return msgid


def _receive_page(conn, reader: PageReader, msgid: int) -> Page:  # type: ignore[no-untyped-def]
    """Receive until the page answering `msgid` is whole (its SearchResultDone included)."""
    while True:
        data = conn.socket.recv(RECV_SIZE)
        if not data:
            raise Disconnected("the server closed the connection")
        page = reader.feed(data, msgid)
        if page is not None:
            return page


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


# --------------------------------------------------------------------------------------------
# interpretation (pure)


def _first(values: Optional[List[bytes]]) -> Optional[str]:
    if not values:
        return None
    return values[0].decode("utf-8", errors="replace")


def _pick_name(dn: str, values: List[bytes]) -> str:
    """The name among several values: the one in the entry's RDN if any (as SSSD does)."""
    names = [v.decode("utf-8", errors="replace") for v in values]
    if len(names) > 1:
        rdn = dn.split(",", 1)[0].split("=", 1)[-1].strip().lower()
        for name in names:
            if name.lower() == rdn:
                return name
    return names[0]


@dataclass
class _Seen:
    """Detects one name with two IDs and one ID with two names within the source."""

    by_name: Dict[str, Tuple[int, str]] = field(default_factory=dict)
    by_id: Dict[int, Tuple[str, str]] = field(default_factory=dict)

    def clash(self, name: str, ident: int, dn: str, kind: str, id_word: str) -> Optional[str]:
        if name in self.by_name:
            first_id, first_dn = self.by_name[name]
            return f"{kind} {name!r} also defined by {first_dn} ({id_word} {first_id})"
        if ident in self.by_id:
            first_name, first_dn = self.by_id[ident]
            return (f"{id_word} {ident} of {kind} {name!r} already used by {first_name!r}"
                    f" ({first_dn})")
        self.by_name[name] = (ident, dn)
        self.by_id[ident] = (name, dn)
        return None


def interpret_users(
    src: LdapSource, where: str, entries: Iterable[RawEntry], today: int
) -> Tuple[List[User], Dict[str, str]]:
    """Users, and a map normalised DN -> user name (for DN-valued group members).

    Most entries take `_plain_user` (a few dict lookups); anything unusual takes
    `_checked_user`, which states every problem. Both give the same User for the same entry.
    """
    a = src.attributes
    keys = (a.name.lower(), a.uid.lower(), a.gid.lower())
    by_dn = src.member_attribute.lower() != "memberuid"  # the DN map is needed only then
    problems: List[Problem] = []
    users: List[User] = []
    dn_to_user: Dict[str, str] = {}
    seen = _Seen()
    by_name, by_id = seen.by_name, seen.by_id
    shells: Dict[bytes, bool] = {}
    for dn, attrs in entries:
        user = _plain_user(attrs, keys, shells, today)
        if user is None:
            user = _checked_user(src, where, dn, attrs, today, problems)
            if user is None:
                continue
        name, uid = user.name, user.uid
        if name in by_name or uid in by_id:
            problems.append(Problem(where, dn, seen.clash(name, uid, dn, "user", "uid") or ""))
            continue
        by_name[name] = (uid, dn)
        by_id[uid] = (name, dn)
        users.append(user)
        if by_dn:
            dn_to_user[normalize_dn(dn)] = name
    if problems:
        raise InvalidInput(problems)
    return users, dn_to_user


def _plain_user(
    attrs: Dict[str, List[bytes]], keys: Tuple[str, str, str], shells: Dict[bytes, bool],
    today: int,
) -> Optional[User]:
    """The user of an ordinary entry, or None to send it through `_checked_user`.

    Ordinary: one name, one plain decimal UID and GID in range, a valid name, and no lock
    attribute other than loginShell and a plain shadowExpire. Shell verdicts are cached: a
    directory has few distinct shells.
    """
    try:
        (raw_name,) = attrs[keys[0]]
        (raw_uid,) = attrs[keys[1]]
        (raw_gid,) = attrs[keys[2]]
    except (KeyError, ValueError):
        return None
    if not (raw_uid.isdigit() and raw_gid.isdigit()):  # bytes: ASCII digits only
        return None
    if "nsaccountlock" in attrs or "pwdaccountlockedtime" in attrs:
        return None
    uid, gid = int(raw_uid), int(raw_gid)
    name = raw_name.decode("utf-8", errors="replace")
    if uid > MAX_ID or gid > MAX_ID or name_problem(name):
        return None
    disabled = False
    shell = attrs.get("loginshell")
    if shell:
        nologin = shells.get(shell[0])
        if nologin is None:
            nologin = shells[shell[0]] = is_nologin(shell[0].decode("utf-8", errors="replace"))
        disabled = nologin
    expire = attrs.get("shadowexpire")
    if expire and not disabled:
        if not expire[0].isdigit():  # -1, signs, spaces, garbage: the checked path
            return None
        disabled = today >= int(expire[0])
    return User(name, uid, gid, SOURCE, disabled)


def _checked_user(
    src: LdapSource, where: str, dn: str, attrs: Dict[str, List[bytes]], today: int,
    problems: List[Problem],
) -> Optional[User]:
    """The user of any entry, with every problem it has appended; None when it has one."""
    a = src.attributes
    name_v = attrs.get(a.name.lower())
    uid = _id(where, dn, a.uid, attrs.get(a.uid.lower()), problems)
    gid = _id(where, dn, a.gid, attrs.get(a.gid.lower()), problems)
    if not name_v:
        problems.append(Problem(where, dn, f"missing attribute {a.name}"))
        return None
    name = _pick_name(dn, name_v)
    bad = name_problem(name)
    if bad:
        problems.append(Problem(where, dn, f"attribute {a.name}: {bad}"))
        return None
    if uid is None or gid is None:
        return None
    disabled = _disabled(where, dn, attrs, today, problems)
    return User(name, uid, gid, SOURCE, disabled)


def _id(
    where: str, dn: str, attr: str, values: Optional[List[bytes]], problems: List[Problem]
) -> Optional[int]:
    text = _first(values)
    if text is None:
        problems.append(Problem(where, dn, f"missing attribute {attr}"))
        return None
    value = parse_id(text)
    if value is None:
        problems.append(Problem(where, dn, f"attribute {attr}: {text!r} is not an integer "
                                           "in 0..4294967294"))
    return value


def _disabled(
    where: str, dn: str, attrs: Dict[str, List[bytes]], today: int, problems: List[Problem]
) -> bool:
    shell = _first(attrs.get("loginshell"))
    if shell is not None and is_nologin(shell):
        return True
    if attrs.get("pwdaccountlockedtime"):
        return True
    lock = _first(attrs.get("nsaccountlock"))
    if lock is not None and lock.strip().lower() == "true":
        return True
    expire = _first(attrs.get("shadowexpire"))
    if expire is None:
        return False
    try:
        days = int(expire.strip())
    except ValueError:
        problems.append(Problem(where, dn, f"attribute shadowExpire: {expire!r} is not an integer"))
        return False
    return days >= 0 and today >= days  # pam_unix: expired from that day on; -1 never


def normalize_dn(dn: str) -> str:
    """Compare DNs the way servers do for the common case: case- and space-insensitive."""
    if " " not in dn and "\\" not in dn and '"' not in dn and "+" not in dn:
        return dn.lower()  # the usual server-returned form: nothing else to normalise
    if "\\" in dn or '"' in dn or "+" in dn:
        from ldap3.utils.dn import parse_dn

        try:
            return ",".join(f"{t.strip()}={v.strip()}" for t, v, _sep in parse_dn(dn)).lower()
        except Exception:  # noqa: BLE001 - an unparsable DN simply matches nothing
            return dn.lower()
    return ",".join("=".join(p.strip() for p in rdn.split("=", 1)) for rdn in dn.split(",")).lower()


def _member_dn(value: bytes) -> str:
    """A member value as a DN; uniqueMember may carry an optional `#'0101'B` UID suffix."""
    text = value.decode("utf-8", errors="replace")
    if text.endswith("'B") and "#'" in text:
        text = text[: text.rindex("#'")]
    return text


def interpret_groups(
    src: LdapSource,
    where: str,
    entries: Iterable[RawEntry],
    dn_to_user: Dict[str, str],
    known_names: Iterable[str] = (),
) -> List[Group]:
    """Groups with members as user names; DN members resolved through nested groups.

    `known_names` (user names already validated) spares re-checking each memberUid value.
    """
    a = src.attributes
    k_name, k_gid, k_member = a.group_name.lower(), a.gid.lower(), src.member_attribute.lower()
    by_dn = k_member != "memberuid"
    problems: List[Problem] = []
    rows: List[Tuple[str, str, int, List[bytes]]] = []  # dn, name, gid, member values
    seen = _Seen()
    for dn, attrs in entries:
        names = attrs.get(k_name)
        gid = _id(where, dn, a.gid, attrs.get(k_gid), problems)
        if not names:
            problems.append(Problem(where, dn, f"missing attribute {a.group_name}"))
            continue
        name = _pick_name(dn, names)
        bad = name_problem(name)
        if bad:
            problems.append(Problem(where, dn, f"attribute {a.group_name}: {bad}"))
            continue
        if gid is None:
            continue
        clash = seen.clash(name, gid, dn, "group", "gid")
        if clash:
            problems.append(Problem(where, dn, clash))
            continue
        rows.append((dn, name, gid, attrs.get(k_member) or []))
    if not by_dn:
        known = set(dn_to_user.values()) | set(known_names)
        groups = [_uid_group(where, row, known, problems) for row in rows]
    else:
        groups = _dn_groups(rows, dn_to_user)
    if problems:
        raise InvalidInput(problems)
    return groups


def _uid_group(
    where: str, row: Tuple[str, str, int, List[bytes]], known: Set[str], problems: List[Problem]
) -> Group:
    dn, name, gid, values = row
    texts = b"\0".join(values).decode("utf-8", errors="replace").split("\0")
    if len(texts) == len(values):  # no NUL inside a value: decoded in one C call
        members = set(texts)
        if all(name_problem(m) is None for m in members - known):
            return Group(name, gid, frozenset(members), SOURCE)
    members = set()  # some value is bad: name each, in order
    for value in values:
        member = value.decode("utf-8", errors="replace")
        bad = None if member in known else name_problem(member)
        if bad:
            problems.append(Problem(where, dn, f"memberUid: {bad}"))
        else:
            members.add(member)
    return Group(name, gid, frozenset(members), SOURCE)


def _dn_groups(
    rows: List[Tuple[str, str, int, List[bytes]]], dn_to_user: Dict[str, str]
) -> List[Group]:
    """Resolve DN members: users directly, groups transitively (a visited set breaks cycles)."""
    group_index = {normalize_dn(dn): i for i, (dn, _n, _g, _v) in enumerate(rows)}
    direct_users: List[Set[str]] = []
    sub_groups: List[List[int]] = []
    for _dn, _name, _gid, values in rows:
        users: Set[str] = set()
        subs: List[int] = []
        for value in values:
            key = normalize_dn(_member_dn(value))
            user = dn_to_user.get(key)
            if user is not None:
                users.add(user)
            elif key in group_index:
                subs.append(group_index[key])
        direct_users.append(users)
        sub_groups.append(subs)
    groups: List[Group] = []
    for i, (_dn, name, gid, _values) in enumerate(rows):
        members: Set[str] = set()
        visited = {i}
        stack = [i]
        while stack:
            j = stack.pop()
            members |= direct_users[j]
            for k in sub_groups[j]:
                if k not in visited:
                    visited.add(k)
                    stack.append(k)
        groups.append(Group(name, gid, frozenset(members), SOURCE))
    return groups
