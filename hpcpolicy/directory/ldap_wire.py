"""A small, strict decoder for the LDAP search responses hpcpolicy reads (RFC 4511 BER).

Why: ldap3 builds a full Python structure (pyasn1-style decoding, str conversion, a dict per
entry with `attributes` and `raw_attributes`) for every entry, which made a 100,000-user read
about 10x slower than `ldapsearch`. We need only the DN and the raw values of a few attributes,
so this decodes exactly that, straight from the received bytes. Requests are still encoded by
ldap3 (filters included), and connecting, TLS and binding stay ldap3's.

Pure: no I/O. `ldap_pages.PageReader` collects received bytes into whole pages (looking only
at message headers, with `message_end`, `_op` and `_done` from here) and reads their
SearchResultDone (result code, texts, paged-results cookie); `decode_page` turns the messages
of a page into entries. Anything that does not follow the
grammar (a length beyond its container, an unexpected tag, indefinite lengths, which LDAP
forbids, a message for another request) raises `WireError`: a reader must never guess at a
partial directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, NoReturn, Optional, Tuple, Union

PAGED_OID = b"1.2.840.113556.1.4.319"
MAX_MESSAGE = 256 * 1024 * 1024  # a larger message is an attack or a bug, not a directory

# BER tags (RFC 4511 section 4): universal and [APPLICATION n] constructed
SEQUENCE, SET, INTEGER, OCTETS, ENUMERATED, BOOLEAN = 0x30, 0x31, 0x02, 0x04, 0x0A, 0x01
SEARCH_ENTRY, SEARCH_DONE, SEARCH_REF = 0x64, 0x65, 0x73
EXTENDED_RESPONSE = 0x78  # with messageID 0: an unsolicited notice, e.g. of disconnection
CONTROLS, REFERRAL = 0xA0, 0xA3

# DN and attribute values by lower-cased attribute description.
RawEntry = Tuple[str, Dict[str, List[bytes]]]
Buffer = Union[bytes, bytearray]  # received bytes still being collected, or a whole page


class WireError(Exception):
    """The server sent something that is not a well-formed answer to our search."""


class Disconnected(Exception):
    """The server announced it is closing the connection (Notice of Disconnection)."""


@dataclass(frozen=True)
class Done:
    """The SearchResultDone of one page."""

    code: int
    matched: str
    message: str
    cookie: Optional[bytes]  # None: no paged-results control or an empty cookie (last page)


def _length(buf: Buffer, i: int) -> Tuple[int, int]:
    """Length octets at i -> (length, index after them). Definite form only, at most 4 octets."""
    n = buf[i]
    if n < 0x80:
        return n, i + 1
    k = n & 0x7F
    if k == 0 or k > 4 or i + 1 + k > len(buf):
        raise WireError("indefinite or oversized BER length")
    return int.from_bytes(buf[i + 1 : i + 1 + k], "big"), i + 1 + k


def _tlv(buf: Buffer, i: int, end: int, tag: int, what: str) -> Tuple[int, int]:
    """The element at i must carry `tag` and fit before `end` -> (content start, content end)."""
    if i >= end or buf[i] != tag:
        got = f"0x{buf[i]:02x}" if i < min(end, len(buf)) else "nothing"
        raise WireError(f"expected {what} (tag 0x{tag:02x}), got {got}")
    n, j = _length(buf, i + 1)
    if j + n > end:
        raise WireError(f"{what} is longer than the element that holds it")
    return j, j + n


def _int(buf: Buffer, i: int, end: int, tag: int, what: str) -> Tuple[int, int]:
    j, k = _tlv(buf, i, end, tag, what)
    if not 0 < k - j <= 8:
        raise WireError(f"{what}: bad integer length {k - j}")
    return int.from_bytes(buf[j:k], "big", signed=True), k


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WireError(f"{what} is not UTF-8") from None


def _op(buf: Buffer, i: int, end: int, msgid: int) -> int:
    """Index of the protocolOp after the messageID at i, once it is checked to be `msgid`."""
    got, i = _int(buf, i, end, INTEGER, "messageID")
    if got != msgid or i >= end:
        _foreign(buf, i, end, got)
    return i


def message_end(buf: Buffer, i: int) -> int:
    """Index just past the LDAPMessage starting at i; -1 when its header is not complete yet."""
    if len(buf) - i < 2:
        return -1
    if buf[i] != SEQUENCE:
        raise WireError(f"expected an LDAPMessage (tag 0x30), got 0x{buf[i]:02x}")
    n = buf[i + 1]
    if n < 0x80:
        return i + 2 + n
    k = n & 0x7F
    if k == 0 or k > 4:
        raise WireError("indefinite or oversized BER length")
    if len(buf) - i < 2 + k:
        return -1
    size = int.from_bytes(buf[i + 2 : i + 2 + k], "big")
    if size > MAX_MESSAGE:
        raise WireError(f"message of {size} bytes exceeds the {MAX_MESSAGE}-byte limit")
    return i + 2 + k + size


def decode_page(
    buf: bytes, pos: int, msgid: int, names: Dict[bytes, str], out: List[RawEntry],
    refs: Optional[List[str]] = None,
) -> Tuple[int, Optional[Done]]:
    """Decode the whole messages in buf from pos: entries appended to `out`.

    Returns (index of the first incomplete message, the Done when it came). `names` caches
    attribute descriptions (bytes -> lower-cased str) across pages. References are not
    chased; their URIs are appended to `refs` (when given) so the caller can say so.
    """
    try:
        return _decode_page(buf, pos, msgid, names, out, refs)
    except IndexError:  # a header cut short inside its message; bounds are checked elsewhere
        raise WireError("truncated BER element") from None


def _decode_page(
    buf: bytes, pos: int, msgid: int, names: Dict[bytes, str], out: List[RawEntry],
    refs: Optional[List[str]] = None,
) -> Tuple[int, Optional[Done]]:
    size = len(buf)
    expect = _integer(msgid)  # the messageID element as the server normally encodes it
    skip = len(expect)
    while pos < size:
        if size - pos < 3:  # no LDAPMessage is that short: wait for the rest
            return pos, None
        if buf[pos] != SEQUENCE:
            raise WireError(f"expected an LDAPMessage (tag 0x30), got 0x{buf[pos]:02x}")
        n = buf[pos + 1]
        if n < 0x80:
            i = pos + 2
        elif n == 0x81:  # most entries: 128..255 bytes
            n, i = buf[pos + 2], pos + 3
        else:
            end = message_end(buf, pos)
            if end < 0:
                return pos, None
            i = pos + 2 + (n & 0x7F)
            n = end - i
        end = i + n
        if end > size:
            return pos, None
        if buf.startswith(expect, i) and i + skip < end:
            i += skip
        else:  # another message, or the same ID encoded unusually (BER allows padding)
            i = _op(buf, i, end, msgid)
        tag = buf[i]
        if tag == SEARCH_ENTRY:
            n = buf[i + 1]
            if n < 0x80:
                j = i + 2
            elif n == 0x81:
                n, j = buf[i + 2], i + 3
            else:
                n, j = _length(buf, i + 1)
            if j + n != end:
                raise WireError("SearchResultEntry length does not match its message")
            out.append(_entry(buf, j, end, names))
        elif tag == SEARCH_DONE:
            done = _done(buf, i, end)
            return end, done
        elif tag != SEARCH_REF:
            raise WireError(f"unexpected protocolOp 0x{tag:02x} in a search response")
        elif refs is not None:
            refs.extend(reference_uris(buf, i, end))
        pos = end
    return pos, None


def reference_uris(buf: Buffer, i: int, end: int) -> List[str]:
    """The URIs of a SearchResultReference ([APPLICATION 19] SEQUENCE OF LDAPURL)."""
    j, k = _tlv(buf, i, end, SEARCH_REF, "SearchResultReference")
    uris = []
    while j < k:
        a, j = _tlv(buf, j, k, OCTETS, "referral URI")
        uris.append(_text(bytes(buf[a:j]), "referral URI"))
    if not uris:
        raise WireError("SearchResultReference without a URI")
    return uris


def _integer(value: int) -> bytes:
    """DER INTEGER element of a message ID (0 .. 2**31-1)."""
    body = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True)
    return bytes((INTEGER, len(body))) + body


def _foreign(buf: Buffer, i: int, end: int, got: int) -> NoReturn:
    """A message for another ID: a Notice of Disconnection, or a protocol violation."""
    if i >= end:
        raise WireError("LDAPMessage without a protocolOp")
    if got == 0 and buf[i] == EXTENDED_RESPONSE:
        j, k = _tlv(buf, i, end, EXTENDED_RESPONSE, "ExtendedResponse")
        code, matched, message, _ = _result(buf, j, k)
        raise Disconnected(f"server sent a notice of disconnection: code {code}"
                           + (f": {message}" if message else ""))
    raise WireError(f"response for message {got} while reading a search")


def _entry(buf: bytes, i: int, end: int, names: Dict[bytes, str]) -> RawEntry:
    """SearchResultEntry content: objectName, then a SEQUENCE OF (type, SET OF value).

    The hot path of a full read (one call per user, and one `_attributes` call per entry, never
    a call per attribute): TLV headers are decoded inline, tags are literals (0x04 OCTET
    STRING, 0x30 SEQUENCE, 0x31 SET), and every length is checked against its container.
    """
    if i >= end or buf[i] != 0x04:
        raise WireError("SearchResultEntry without an objectName")
    n = buf[i + 1]
    if n < 0x80:
        i += 2
    else:
        n, i = _length(buf, i + 1)
    k = i + n
    if k >= end:
        raise WireError("objectName runs past its entry")
    dn = _text(buf[i:k], "objectName")
    if buf[k] != 0x30:
        raise WireError(f"entry {dn}: expected its attributes (tag 0x30)")
    n = buf[k + 1]
    if n < 0x80:
        j = k + 2
    elif n == 0x81:
        n, j = buf[k + 2], k + 3
    else:
        n, j = _length(buf, k + 1)
    if j + n != end:
        raise WireError(f"entry {dn}: attribute list length does not match the entry")
    return dn, _attributes(buf, j, end, dn, names)


def _attributes(buf: bytes, j: int, end: int, dn: str, names: Dict[bytes, str]
                ) -> Dict[str, List[bytes]]:
    """The attribute list's content (j..end): SEQUENCEs of (type, SET OF value), by type."""
    attrs: Dict[str, List[bytes]] = {}
    while j < end:
        if buf[j] != 0x30:
            raise WireError(f"entry {dn}: expected an attribute (tag 0x30)")
        n = buf[j + 1]
        if n < 0x80:
            j += 2
        else:
            n, j = _length(buf, j + 1)
        aend = j + n
        if aend > end or j >= aend or buf[j] != 0x04:
            raise WireError(f"entry {dn}: malformed attribute")
        n = buf[j + 1]
        if n < 0x80:
            j += 2
        else:
            n, j = _length(buf, j + 1)
        t = j + n
        if t >= aend or buf[t] != 0x31:
            raise WireError(f"entry {dn}: attribute without a value set")
        raw = buf[j:t]
        name = names.get(raw)
        if name is None:
            name = names[raw] = _text(raw, "attribute type").lower()
        n = buf[t + 1]
        if n < 0x80:
            v = t + 2
        else:
            n, v = _length(buf, t + 1)
        if v + n != aend:
            raise WireError(f"entry {dn}: value set of {name} does not match its attribute")
        if v < aend and buf[v] == 0x04 and buf[v + 1] == aend - v - 2:
            attrs[name] = [buf[v + 2 : aend]]  # the usual single short value
        else:
            attrs[name] = _values(buf, v, aend, dn, name)
        j = aend
    return attrs


def _values(buf: bytes, v: int, end: int, dn: str, name: str) -> List[bytes]:
    """The OCTET STRINGs of a value set (several values, long ones or none)."""
    values: List[bytes] = []
    while v < end:
        if buf[v] != 0x04:
            raise WireError(f"entry {dn}: expected a value of {name} (tag 0x04)")
        n = buf[v + 1]
        if n < 0x80:
            v += 2
        else:
            n, v = _length(buf, v + 1)
        if v + n > end:
            raise WireError(f"entry {dn}: a value of {name} runs past its set")
        values.append(buf[v : v + n])
        v += n
    return values


def _result(buf: Buffer, i: int, end: int) -> Tuple[int, str, str, int]:
    """LDAPResult components -> (resultCode, matchedDN, diagnosticMessage, index after them)."""
    code, i = _int(buf, i, end, ENUMERATED, "resultCode")
    j, k = _tlv(buf, i, end, OCTETS, "matchedDN")
    matched = buf[j:k].decode("utf-8", errors="replace")
    j, i = _tlv(buf, k, end, OCTETS, "diagnosticMessage")
    message = buf[j:i].decode("utf-8", errors="replace")
    return code, matched, message, i


def _done(buf: Buffer, i: int, end: int) -> Done:
    """SearchResultDone (at i) and the message's controls after it, up to `end`."""
    j, k = _tlv(buf, i, end, SEARCH_DONE, "SearchResultDone")
    code, matched, message, j = _result(buf, j, k)
    if j < k and _tlv(buf, j, k, REFERRAL, "referral")[1] != k:  # code 10: refused later
        raise WireError("trailing bytes after the referral of a SearchResultDone")
    cookie = _cookie(buf, k, end) if k < end else None
    return Done(code, matched, message, cookie)


def _cookie(buf: Buffer, i: int, end: int) -> Optional[bytes]:
    """The paged-results cookie among the response controls ([0] SEQUENCE OF Control)."""
    j, k = _tlv(buf, i, end, CONTROLS, "controls")
    if k != end:
        raise WireError("trailing bytes after the controls")
    cookie: Optional[bytes] = None
    while j < k:
        c, cend = _tlv(buf, j, k, SEQUENCE, "Control")
        t, tend = _tlv(buf, c, cend, OCTETS, "controlType")
        oid = buf[t:tend]
        if tend < cend and buf[tend] == BOOLEAN:
            _b, tend = _tlv(buf, tend, cend, BOOLEAN, "criticality")
        if oid == PAGED_OID:
            if tend >= cend:
                raise WireError("paged-results control without a value")
            v, vend = _tlv(buf, tend, cend, OCTETS, "controlValue")
            s, send = _tlv(buf, v, vend, SEQUENCE, "paged-results value")
            _size, n = _int(buf, s, send, INTEGER, "paged-results size")
            q, qend = _tlv(buf, n, send, OCTETS, "paged-results cookie")
            if vend != cend or send != vend or qend != send:
                raise WireError("trailing bytes in the paged-results control")
            cookie = bytes(buf[q:qend]) or None
        j = cend
    return cookie
