"""Optional LDAP backend on python-ldap (libldap): BER decoding in C.

Used by `ldap.read_ldap` when `import ldap` works; ldap3 stays the always-available backend.
Same contract as `ldap_ldap3.session_ldap3` (stated in `ldap_session`: entries streamed page
by page, the next page requested before this one is handed out): transport failures raise
`Unreachable` (try the next URI), answers that refuse raise `DirectoryError`, and every page's
result code is checked, so a size limit can never truncate silently. TLS is always verified
(`OPT_X_TLS_DEMAND`, host name included, against `ca_file` or the system store).

python-ldap needs libldap/libsasl headers to build (Debian: libldap2-dev libsasl2-dev), which is
why it is not a required dependency.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Dict, Iterator, List, Optional, Tuple

import ldap  # noqa: F401 - ImportError here selects the ldap3 backend
from ldap.controls import SimplePagedResultsControl

from hpcpolicy.directory.ldap_ldap3 import connect_ldap3
from hpcpolicy.directory.ldap_session import (
    RESULT_NAMES,
    ReadState,
    SearchFn,
    Unreachable,
    check_result,
    parse_uri,
    unbind_quietly,
)
from hpcpolicy.directory.ldap_wire import RawEntry
from hpcpolicy.errors import DirectoryError
from hpcpolicy.policy.model import LdapSource

_TRANSPORT = (ldap.SERVER_DOWN, ldap.TIMEOUT, ldap.CONNECT_ERROR)



@contextlib.contextmanager
def session(uri: str, src: LdapSource, password: Optional[str],
            state: ReadState) -> Iterator[SearchFn]:
    """One bound libldap connection; searches stream entries page by page."""
    conn = _connect(uri, src, password, state.bound(src.timeout))
    try:
        yield lambda base, filt, attrs: _search(conn, uri, src, base, filt, attrs, state)
    finally:
        _unbind(conn)


def _text(err: Exception) -> str:
    """desc + info of a python-ldap error, one line."""
    info: Any = err.args[0] if err.args else {}
    if not isinstance(info, dict):
        return str(err)
    code = info.get("result")
    fallback = str(info.get("desc", type(err).__name__))
    desc = RESULT_NAMES.get(int(code), fallback) if code is not None else fallback
    detail = str(info.get("info", "") or "").strip()
    text = desc + (f" ({code})" if code is not None else "")
    if "certificate verify failed" in detail.lower():
        return ("TLS certificate verification failed (is ca_file the CA that signed the "
                f"server's certificate?): {detail}")
    return text + (f": {detail}" if detail else "")


def _unbind(conn: Any) -> None:
    # closing a broken connection must not mask the real result
    with contextlib.suppress(ldap.LDAPError):
        conn.unbind_s()


def _connect(uri: str, src: LdapSource, password: Optional[str], wait: float) -> Any:
    end = parse_uri(uri)
    use_tls = end.scheme == "ldaps" or (src.start_tls and end.scheme == "ldap")
    if use_tls and src.ca_file and not os.path.isfile(src.ca_file):
        raise DirectoryError(f"directory.ldap.ca_file {src.ca_file}: no such file")
    conn = ldap.initialize(uri)
    conn.set_option(ldap.OPT_PROTOCOL_VERSION, 3)
    conn.set_option(ldap.OPT_REFERRALS, 0)
    conn.set_option(ldap.OPT_NETWORK_TIMEOUT, wait)
    conn.set_option(ldap.OPT_TIMEOUT, wait)
    conn.timeout = wait  # synchronous *_s calls
    if use_tls:
        conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
        if src.ca_file:
            conn.set_option(ldap.OPT_X_TLS_CACERTFILE, src.ca_file)
        conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)  # must come last: applies the TLS options
    try:
        if src.start_tls and end.scheme == "ldap":
            conn.start_tls_s()
        _bind(conn, uri, src, password, end.scheme)
    except _TRANSPORT as err:
        _unbind(conn)
        reason = _text(err)
        if use_tls:
            reason = _tls_diagnosis(uri, src, password, wait) or reason
        raise Unreachable(reason) from None
    except ldap.LDAPError as err:
        _unbind(conn)
        who = src.bind_dn or ("SASL EXTERNAL" if end.scheme == "ldapi" else "anonymous")
        raise DirectoryError(f"{uri}: bind as {who} failed: {_text(err)}") from None
    return conn


def _tls_diagnosis(uri: str, src: LdapSource, password: Optional[str],
                   wait: float) -> Optional[str]:
    """Why TLS failed, in words: Debian's GnuTLS libldap says only "Can't contact LDAP server".

    Repeats the connection with the ldap3 backend (Python's ssl module), whose error names the
    verification failure. None when that connection works (then libldap's text stands).
    """
    try:
        conn = connect_ldap3(uri, src, password, wait)
    except Unreachable as err:
        return str(err)
    except DirectoryError:
        return None
    unbind_quietly(conn)
    return None


def _bind(conn: Any, uri: str, src: LdapSource, password: Optional[str], scheme: str) -> None:
    if src.bind_dn is not None:
        conn.simple_bind_s(src.bind_dn, password or "")
    elif scheme == "ldapi":
        conn.sasl_external_bind_s()
    else:
        conn.simple_bind_s("", "")


def _search(
    conn: Any, uri: str, src: LdapSource, base: str, filt: str, attrs: List[str],
    state: ReadState,
) -> Iterator[RawEntry]:
    """Paged search; each page collected in C (`result3(all=1)`), result code checked.

    The next page is requested before this page's entries are handed out, so the server
    prepares it while they are interpreted.
    """
    control = SimplePagedResultsControl(True, size=src.page_size, cookie="")
    count = 0
    lower: Dict[str, str] = {}
    msgid: Optional[int] = _send(conn, uri, base, filt, attrs, control)
    while msgid is not None:
        data, controls = _page(conn, uri, src, base, filt, msgid, count, state)
        msgid = None
        cookie = _cookie(controls)
        if cookie:
            control.cookie = cookie
            msgid = _send(conn, uri, base, filt, attrs, control)
        for dn, values in data:
            if dn is None:  # a search reference: (None, [URI, ...]), not chased
                state.referrals += [(base, _ref_text(r)) for r in values or ()]
            else:
                count += 1
                yield dn, {lower.get(k) or lower.setdefault(k, k.lower()): v
                           for k, v in values.items()}


def _send(conn: Any, uri: str, base: str, filt: str, attrs: List[str], control: Any) -> int:
    try:
        return int(conn.search_ext(base, ldap.SCOPE_SUBTREE, filt, attrs, serverctrls=[control]))
    except _TRANSPORT as err:
        raise Unreachable(f"connection lost while reading: {_text(err)}") from None
    except ldap.FILTER_ERROR as err:
        raise DirectoryError(f"{uri}: invalid search filter {filt!r}: {_text(err)}") from None


def _ref_text(ref: Any) -> str:
    return ref.decode("utf-8", "replace") if isinstance(ref, bytes) else str(ref)


def _page(
    conn: Any, uri: str, src: LdapSource, base: str, filt: str, msgid: int, count: int,
    state: ReadState,
) -> Tuple[List[Any], List[Any]]:
    """(entries, response controls) of one page; its result code checked. The wait for the
    whole page is `timeout`, cut at the read's deadline."""
    wait = state.bound(src.timeout)
    try:
        _rtype, data, _msgid, controls = conn.result3(msgid, all=1, timeout=wait)
    except ldap.TIMEOUT:
        state.timed_out(wait, src.timeout)  # the deadline: DirectoryError, no failover
        raise Unreachable(f"no complete answer within {src.timeout} s") from None
    except _TRANSPORT as err:
        raise Unreachable(f"connection lost while reading: {_text(err)}") from None
    except ldap.LDAPError as err:
        info = err.args[0] if err.args and isinstance(err.args[0], dict) else {}
        code = info.get("result", -1)
        check_result(uri, base, filt, code, _text(err), count, src.bind_dn)
        raise  # check_result raises for every non-zero code
    return data, controls


def _cookie(controls: List[Any]) -> Optional[bytes]:
    for ctrl in controls or ():
        if ctrl.controlType == SimplePagedResultsControl.controlType:
            return ctrl.cookie or None
    return None
