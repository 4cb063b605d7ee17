"""The lean LDAP response decoder (directory/ldap_wire.py, ldap_pages.py), on bytes built here.

The BER here is written by hand from RFC 4511 (and cross-checked against ldap3's own encoder),
so malformed variants can be made byte by byte. End-to-end use against slapd is covered by
tests/test_directory_ldap.py (ldap3 backend).
"""

from __future__ import annotations

import contextlib
from typing import Dict, List, Optional, Sequence, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpcpolicy.directory import ldap_wire as w
from hpcpolicy.directory.ldap_pages import Page, PageReader
from hpcpolicy.directory.ldap_wire import Disconnected, WireError, decode_page


def tlv(tag: int, content: bytes) -> bytes:
    """One BER element, definite length (long form from 128 bytes on)."""
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(body))) + body + content


def integer(value: int, tag: int = 0x02) -> bytes:
    return tlv(tag, value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True))


def octets(value: bytes) -> bytes:
    return tlv(0x04, value)


def message(msgid: int, op: bytes, controls: Optional[bytes] = None) -> bytes:
    return tlv(0x30, integer(msgid) + op + (tlv(0xA0, controls) if controls is not None else b""))


def entry(msgid: int, dn: str, attrs: Sequence[Tuple[str, Sequence[bytes]]]) -> bytes:
    parts = b"".join(
        tlv(0x30, octets(name.encode()) + tlv(0x31, b"".join(octets(v) for v in values)))
        for name, values in attrs
    )
    return message(msgid, tlv(0x64, octets(dn.encode()) + tlv(0x30, parts)))


def paged(cookie: bytes, critical: bool = False) -> bytes:
    value = octets(tlv(0x30, integer(0) + octets(cookie)))
    crit = tlv(0x01, b"\xff") if critical else b""
    return tlv(0x30, octets(b"1.2.840.113556.1.4.319") + crit + value)


def done(msgid: int, code: int = 0, text: str = "", cookie: Optional[bytes] = None,
         extra_control: bytes = b"", critical: bool = False) -> bytes:
    result = integer(code, 0x0A) + octets(b"") + octets(text.encode())
    controls = None if cookie is None else extra_control + paged(cookie, critical)
    return message(msgid, tlv(0x65, result), controls)


def reference(msgid: int) -> bytes:
    return message(msgid, tlv(0x73, octets(b"ldap://elsewhere/dc=example,dc=org")))


USERS = [
    ("uid=a,ou=people,dc=x", [("uid", [b"a"]), ("uidNumber", [b"1001"]), ("gidNumber", [b"100"])]),
    ("uid=b,ou=people,dc=x", [("UID", [b"b", b"bee"]), ("loginShell", [b"/bin/sh"])]),
    ("uid=c,ou=people,dc=x", [("memberUid", [b"m%05d" % i for i in range(3000)])]),  # long form
    ("uid=d,ou=people,dc=x", [("description", [b"x" * 70000]), ("empty", [])]),
]


def page_bytes(msgid: int = 7, cookie: Optional[bytes] = b"next") -> bytes:
    body = b"".join(entry(msgid, dn, attrs) for dn, attrs in USERS[:2])
    body += reference(msgid) + b"".join(entry(msgid, dn, attrs) for dn, attrs in USERS[2:])
    return body + done(msgid, cookie=cookie)


def expected() -> List[Tuple[str, Dict[str, List[bytes]]]]:
    return [(dn, {k.lower(): list(v) for k, v in attrs}) for dn, attrs in USERS]


def read_page(data: bytes, msgid: int = 7, chunks: Sequence[int] = ()) -> Page:
    """Feed data to a PageReader in pieces cut at `chunks`; the page it returns."""
    reader = PageReader()
    cuts = [0, *sorted(c for c in chunks if 0 < c < len(data)), len(data)]
    page = None
    for start, end in zip(cuts, cuts[1:]):
        got = reader.feed(data[start:end], msgid)
        if got is not None:
            assert page is None and end == len(data), "page completed early"
            page = got
    assert page is not None
    return page


def entries_of(page: Page) -> List[Tuple[str, Dict[str, List[bytes]]]]:
    out: List[Tuple[str, Dict[str, List[bytes]]]] = []
    pos, result = decode_page(page.data, 0, page.msgid, {}, out)
    assert pos == len(page.data) and result == page.done
    return out


def test_ber_here_matches_ldap3s_encoder() -> None:
    """The hand-written encoder agrees with an independent one (ldap3 / pyasn1)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from ldap3.protocol.rfc4511 import (
            LDAPMessage,
            MessageID,
            PartialAttribute,
            PartialAttributeList,
            ProtocolOp,
            SearchResultEntry,
            Vals,
        )
        from ldap3.utils.asn1 import encode
    attrs = PartialAttributeList()
    for i, (name, values) in enumerate(USERS[2][1]):
        vals = Vals()
        for j, v in enumerate(values):
            vals.setComponentByPosition(j, v)
        attr = PartialAttribute()
        attr["type"] = name
        attr["vals"] = vals
        attrs.setComponentByPosition(i, attr)
    res = SearchResultEntry()
    res["object"] = USERS[2][0]
    res["attributes"] = attrs
    msg = LDAPMessage()
    msg["messageID"] = MessageID(300)
    msg["protocolOp"] = ProtocolOp().setComponentByName("searchResEntry", res)
    assert encode(msg) == entry(300, USERS[2][0], USERS[2][1])


def test_page_entries_references_and_cookie() -> None:
    page = read_page(page_bytes())
    assert page.entries == 4 and page.done == w.Done(0, "", "", b"next")
    assert entries_of(page) == expected()  # the reference is skipped


def test_referral_result_and_trailing_bytes() -> None:
    referral = tlv(0xA3, octets(b"ldap://other/dc=x"))
    ok = tlv(0x65, integer(10, 0x0A) + octets(b"") + octets(b"go away") + referral)
    assert read_page(tlv(0x30, integer(4) + ok), 4).done.code == 10
    bad = tlv(0x65, integer(10, 0x0A) + octets(b"") + octets(b"") + referral + b"\x05\x00")
    with pytest.raises(WireError, match="trailing bytes after the referral"):
        PageReader().feed(tlv(0x30, integer(4) + bad), 4)


def test_last_page_and_other_controls() -> None:
    other = tlv(0x30, octets(b"1.2.3.4") + octets(b"opaque"))
    data = entry(9, "cn=x", [("cn", [b"x"])]) + done(9, cookie=b"", extra_control=other)
    assert read_page(data, 9).done.cookie is None  # empty cookie: the last page
    data = entry(9, "cn=x", [("cn", [b"x"])]) + done(9, 4, "size limit")
    page = read_page(data, 9)
    assert (page.done.code, page.done.message, page.done.cookie) == (4, "size limit", None)
    assert read_page(done(9, cookie=b"c", critical=True), 9).done.cookie == b"c"


def test_unusual_message_id_encoding_and_large_ids() -> None:
    padded = tlv(0x30, b"\x02\x02\x00\x07" + tlv(0x65, integer(0, 0x0A) + octets(b"") * 2))
    assert read_page(padded, 7).done.code == 0  # 7 as 00 07: legal BER
    big = 2**31 - 1
    assert entries_of(read_page(entry(big, "cn=x", [("cn", [b"x"])]) + done(big), big))


def test_leftover_bytes_start_the_next_page() -> None:
    data = page_bytes(7) + page_bytes(8, cookie=None)
    reader = PageReader()
    first = reader.feed(data, 7)
    assert first is not None and entries_of(first) == expected()
    second = reader.feed(b"", 8)
    assert second is not None and second.done.cookie is None and entries_of(second) == expected()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=1, max_value=80000), max_size=12))
def test_any_split_of_the_stream_gives_the_same_page(cuts: List[int]) -> None:
    data = page_bytes()
    page = read_page(data, chunks=cuts)
    assert page.data == data and entries_of(page) == expected()


def test_every_split_of_a_small_page() -> None:
    data = entry(3, "cn=é", [("cn", [b"\xc3\xa9"])]) + reference(3) + done(3, cookie=b"k")
    for cut in range(1, len(data)):
        page = read_page(data, 3, chunks=[cut])
        assert entries_of(page) == [("cn=é", {"cn": [b"\xc3\xa9"]})]


def test_notice_of_disconnection_and_foreign_messages() -> None:
    notice = message(0, tlv(0x78, integer(52, 0x0A) + octets(b"") + octets(b"shutting down")
                            + tlv(0x8A, b"1.3.6.1.4.1.1466.20036")))
    with pytest.raises(Disconnected, match="code 52: shutting down"):
        PageReader().feed(entry(5, "cn=x", [("cn", [b"x"])]) + notice, 5)
    with pytest.raises(WireError, match="response for message 6"):
        PageReader().feed(done(6), 5)
    with pytest.raises(WireError, match="unexpected protocolOp 0x61"):
        PageReader().feed(message(5, tlv(0x61, integer(0, 0x0A) + octets(b"") * 2)), 5)


GOOD = entry(1, "cn=x", [("cn", [b"x"])])


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x31\x00", "expected an LDAPMessage"),
        (b"\x30\x80" + GOOD[2:] + b"\x00\x00", "indefinite"),
        (b"\x30\x85\x00\x00\x00\x00\x05", "oversized"),
        (b"\x30\x84\x7f\xff\xff\xff", "exceeds the"),
        (message(1, b""), "without a protocolOp"),
        (GOOD.replace(b"\x04\x04cn=x", b"\x04\x7fcn=x"), "objectName runs past"),
        (GOOD.replace(b"\x04\x04cn=x", b"\x0c\x04cn=x"), "without an objectName"),
        (GOOD.replace(b"\x31\x03\x04\x01x", b"\x31\x03\x04\x05x"), "runs past its set"),
        (GOOD.replace(b"\x31\x03\x04\x01x", b"\x31\x03\x02\x01x"), "expected a value of cn"),
        (GOOD.replace(b"\x31\x03\x04\x01x", b"\x30\x03\x04\x01x"), "without a value set"),
        (GOOD.replace(b"\x04\x04cn=x", b"\x04\x04cn=\xff"), "objectName is not UTF-8"),
        (message(1, tlv(0x64, octets(b"cn=x") + tlv(0x30, b"") + b"\x00\x00")),
         "does not match the entry"),
        (message(1, tlv(0x64, octets(b"cn=x") + tlv(0x30, tlv(0x30, octets(b"cn")
                                                              + tlv(0x31, b"") + b"\x05\x00")))),
         "value set of cn does not match"),
    ],
)
def test_malformed_entries_are_refused(data: bytes, match: str) -> None:
    with pytest.raises(WireError, match=match):
        page = PageReader().feed(data + done(1), 1)
        assert page is not None
        decode_page(page.data, 0, 1, {}, [])


@pytest.mark.parametrize(
    ("tail", "match"),
    [
        (tlv(0xA0, tlv(0x30, octets(b"1.2.840.113556.1.4.319"))), "without a value"),
        (tlv(0xA0, tlv(0x30, octets(b"1.2.840.113556.1.4.319") + octets(b"\x30\x00"))),
         "expected paged-results size"),
        (tlv(0xA0, b"\x30\x00") + b"\x00", "trailing bytes"),
        (tlv(0xA1, b""), "expected controls"),
        (tlv(0xA0, tlv(0x30, octets(b"1.2.840.113556.1.4.319") + octets(
            tlv(0x30, integer(0) + octets(b"c") + b"\x05\x00")))), "trailing bytes in the paged"),
        (tlv(0xA3, octets(b"ldap://x")) + b"\x05\x00", "expected controls"),
    ],
)
def test_malformed_done_is_refused(tail: bytes, match: str) -> None:
    result = tlv(0x65, integer(0, 0x0A) + octets(b"") + octets(b""))
    if tail.startswith(b"\xa3"):  # a referral belongs inside the SearchResultDone
        result = tlv(0x65, integer(10, 0x0A) + octets(b"") + octets(b"") + tail[:-2])
        tail = tail[-2:]
    with pytest.raises(WireError, match=match):
        PageReader().feed(tlv(0x30, integer(1) + result + tail), 1)


def _decode_all(data: bytes, msgid: int) -> None:
    reader = PageReader()
    page = reader.feed(data, msgid)
    if page is not None:
        decode_page(page.data, 0, msgid, {}, [])


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_corrupted_pages_fail_only_with_wire_errors(data: st.DataObject) -> None:
    """Flip, drop or insert bytes anywhere: the decoder refuses (WireError) or decodes; it
    never crashes with another exception or loops."""
    good = bytearray(entry(2, "uid=z,dc=x", [("uid", [b"z"]), ("gidNumber", [b"5", b"6"])])
                     + reference(2) + done(2, cookie=b"abc"))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(good) - 1))
        action = data.draw(st.sampled_from(["flip", "drop", "insert"]))
        if action == "flip":
            good[at] = data.draw(st.integers(0, 255))
        elif action == "drop":
            del good[at]
        else:
            good.insert(at, data.draw(st.integers(0, 255)))
    with contextlib.suppress(WireError, Disconnected):
        _decode_all(bytes(good), 2)
