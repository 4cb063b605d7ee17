"""The ldap3 backend (always available): ldap3 connects, negotiates TLS and binds; the answers
to its search requests are decoded by `ldap_wire` (DN and raw values only), because ldap3's
general decoding made a 100k-user read ~10x slower than `ldapsearch`.

Transport: `ldaps://` and `start_tls = true` always verify the server certificate
(`CERT_REQUIRED` against `ca_file`, or the system store when `ca_file` is unset) and its host
name: ldap3's own default verifies nothing. `ldapi://` without `bind_dn` binds with SASL
EXTERNAL (the peer credentials of this process); otherwise a simple bind with the password, or
anonymous without `bind_dn`.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import warnings
from typing import Dict, Iterator, List, Optional

from hpcpolicy.directory.ldap_pages import Page, PageReader
from hpcpolicy.directory.ldap_session import (
    ReadState,
    SearchFn,
    Unreachable,
    check_result,
    parse_uri,
    result_text,
    unbind_quietly,
)
from hpcpolicy.directory.ldap_wire import Disconnected, RawEntry, WireError, decode_page
from hpcpolicy.errors import DirectoryError
from hpcpolicy.policy.model import LdapSource

RECV_SIZE = 256 * 1024


@contextlib.contextmanager
def session_ldap3(uri: str, src: LdapSource, password: Optional[str],
                  state: ReadState) -> Iterator[SearchFn]:
    """One bound ldap3 connection; its searches decode responses with `ldap_wire`."""
    conn = connect_ldap3(uri, src, password, state.bound(src.timeout))
    try:
        yield lambda base, filt, attrs: _search_ldap3(conn, uri, src, base, filt, attrs, state)
    finally:
        unbind_quietly(conn)


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


def _import_ldap3_quietly() -> None:
    """ldap3 2.9 with pyasn1 >= 0.6 warns (tagMap/typeMap deprecated) at import: not for users."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import ldap3  # noqa: F401


def connect_ldap3(uri: str, src: LdapSource, password: Optional[str],  # type: ignore[no-untyped-def]
                  timeout: Optional[float] = None):
    """An open, bound ldap3 connection; Unreachable on transport failure. `timeout` (default
    `src.timeout`) bounds the connection and each answer."""
    # whole seconds: ldap3 packs them into SO_RCVTIMEO as an integer
    wait = src.timeout if timeout is None else max(1, math.ceil(timeout))
    _import_ldap3_quietly()
    from ldap3 import ANONYMOUS, EXTERNAL, NONE, SASL, SIMPLE, SYNC, Connection, Server
    from ldap3.core.exceptions import LDAPException

    end = parse_uri(uri)
    use_tls = end.scheme == "ldaps" or (src.start_tls and end.scheme == "ldap")
    tls = _tls_ldap3(src) if use_tls else None
    if end.scheme == "ldapi":
        server = Server(f"ldapi://{end.host}", get_info=NONE, connect_timeout=wait)
    else:
        server = Server(end.host, port=end.port, use_ssl=end.scheme == "ldaps", tls=tls,
                        get_info=NONE, connect_timeout=wait)
    if src.bind_dn is not None:
        auth = {"user": src.bind_dn, "password": password, "authentication": SIMPLE}
    elif end.scheme == "ldapi":
        auth = {"authentication": SASL, "sasl_mechanism": EXTERNAL, "sasl_credentials": ""}
    else:
        auth = {"authentication": ANONYMOUS}
    conn = Connection(server, client_strategy=SYNC, receive_timeout=wait,
                      read_only=True, auto_referrals=False, check_names=False,
                      raise_exceptions=False, return_empty_attributes=False, **auth)
    try:
        conn.open()
        if src.start_tls and end.scheme == "ldap" and not conn.start_tls():
            raise Unreachable(f"StartTLS failed: {result_text(conn.result)}")
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
        raise DirectoryError(f"{uri}: bind as {who} failed: {result_text(result)}")


def _socket_reason(err: Exception) -> str:
    text = str(err)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return ("TLS certificate verification failed (is ca_file the CA that signed the "
                f"server's certificate?): {text}")
    if "hostname" in text.lower() and "match" in text.lower():
        return f"TLS host name does not match the certificate: {text}"
    return text


def _search_ldap3(  # type: ignore[no-untyped-def]
    conn, uri: str, src: LdapSource, base: str, filt: str, attrs: List[str], state: ReadState
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
            page = _receive_page(conn, reader, msgid, src, state)
            count += page.entries
            done = page.done
            text = result_text({"result": done.code, "message": done.message})
            check_result(uri, base, filt, done.code, text, count, src.bind_dn)
            msgid = None
            if done.cookie:
                msgid = _send_search(conn, uri, src, base, filt, attrs, done.cookie)
            entries: List[RawEntry] = []
            refs: List[str] = []
            decode_page(page.data, 0, page.msgid, names, entries, refs)
            state.referrals += [(base, ref) for ref in refs]
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


def _receive_page(  # type: ignore[no-untyped-def]
    conn, reader: PageReader, msgid: int, src: LdapSource, state: ReadState
) -> Page:
    """Receive until the page answering `msgid` is whole (its SearchResultDone included).

    Each receive waits at most `timeout`, and never past the read's deadline: a server that
    sends a few bytes just inside every timeout is stopped there."""
    while True:
        wait = state.bound(src.timeout)
        conn.socket.settimeout(wait)
        try:
            data = conn.socket.recv(RECV_SIZE)
        except socket.timeout:
            state.timed_out(wait, src.timeout)  # the deadline: DirectoryError, no failover
            raise
        if not data:
            raise Disconnected("the server closed the connection")
        page = reader.feed(data, msgid)
        if page is not None:
            return page
