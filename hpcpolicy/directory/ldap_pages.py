"""Received bytes -> whole pages of a paged LDAP search, looking only at message headers.

Why: the next page can be requested as soon as this page's cookie is known, before its entries
are decoded (`ldap_wire.decode_page`), so the server works on page n+1 while we decode page n.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from hpcpolicy.directory.ldap_wire import (
    SEARCH_DONE,
    SEARCH_ENTRY,
    SEARCH_REF,
    Done,
    WireError,
    _done,
    _integer,
    _op,
    message_end,
)


@dataclass(frozen=True)
class Page:
    """One whole page: its messages (entries, references, then the Done) and their count."""

    data: bytes
    msgid: int
    entries: int
    done: Done


class PageReader:
    """Collects received bytes until a page is whole, looking only at message headers."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._scanned = 0  # messages before this offset are whole entries or references
        self._entries = 0

    def feed(self, data: bytes, msgid: int) -> Optional[Page]:
        """Add received bytes; the page once its SearchResultDone has arrived."""
        self._buf += data
        try:
            return self._scan(msgid)
        except IndexError:
            raise WireError("truncated BER element") from None

    def _scan(self, msgid: int) -> Optional[Page]:
        buf, pos, size = self._buf, self._scanned, len(self._buf)
        expect = _integer(msgid)
        skip = len(expect)
        while True:
            end = message_end(buf, pos)
            if end < 0 or end > size:
                self._scanned = pos
                return None
            n = buf[pos + 1]
            i = pos + 2 if n < 0x80 else pos + 2 + (n & 0x7F)
            if buf.startswith(expect, i) and i + skip < end:
                i += skip
            else:
                i = _op(buf, i, end, msgid)
            tag = buf[i]
            if tag == SEARCH_ENTRY:
                self._entries += 1
            elif tag == SEARCH_DONE:
                return self._page(_done(buf, i, end), end, msgid)
            elif tag != SEARCH_REF:
                raise WireError(f"unexpected protocolOp 0x{tag:02x} in a search response")
            pos = end

    def _page(self, done: Done, end: int, msgid: int) -> Page:
        page = Page(bytes(self._buf[:end]), msgid, self._entries, done)
        del self._buf[:end]
        self._scanned = self._entries = 0
        return page
