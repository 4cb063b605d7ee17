"""Is this file an OpenPGP *public* keyring? A small packet walker (RFC 4880 / RFC 9580).

A keyring named by `signed_by` (or an ECL keyring) is published world-readable to shared storage
and every node, so it must hold public material only: public keys and subkeys, user IDs, user
attributes and signatures (packet tags 6, 14, 13, 17, 2). A secret key, or any file that is
not a keyring at all (a private SSH key, /etc/shadow), must never get that far.

Why our own walker: the obvious library, PGPy, imports `imghdr`, which Python 3.13 removed, and
the question here is only "which packet types are in it", not cryptography. The walker reads
ASCII armour (`PUBLIC KEY BLOCK` only; CRC-24 checked when present) or binary packets, old and
new header formats, including partial body lengths and an old-format indeterminate length.
Messages never quote the file's bytes: it may be a secret.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Iterator, List, Optional, Tuple

ALLOWED = {6: "public key", 14: "public subkey", 13: "user ID", 17: "user attribute",
           2: "signature"}
SECRET = {5: "secret key", 7: "secret subkey"}
_NAMES = {1: "public-key encrypted session key", 3: "symmetric-key encrypted session key",
          4: "one-pass signature", 8: "compressed data", 9: "symmetrically encrypted data",
          10: "marker", 11: "literal data", 12: "trust", 18: "encrypted and integrity "
          "protected data", 19: "modification detection code", 20: "AEAD encrypted data",
          21: "padding"}

_BEGIN = re.compile(rb"^-----BEGIN PGP ([A-Z ,0-9/]+)-----\s*$")
_END = re.compile(rb"^-----END PGP ([A-Z ,0-9/]+)-----\s*$")
_HEADER = re.compile(rb"^[\x21-\x39\x3b-\x7e]+: ")
CRC24_INIT = 0xB704CE
CRC24_POLY = 0x1864CFB


class NotPublicKeyring(ValueError):
    """Why the bytes are not an OpenPGP public keyring (safe to show: no content quoted)."""


def _crc24_table() -> List[int]:
    table = []
    for byte in range(256):
        crc = byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= CRC24_POLY
        table.append(crc & 0xFFFFFF)
    return table


_CRC24_TABLE = _crc24_table()


def crc24(data: bytes) -> int:
    """The armour checksum (RFC 4880 6.1), a byte at a time through a table."""
    crc = CRC24_INIT
    table = _CRC24_TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFF) ^ table[(crc >> 16) ^ byte]
    return crc


def _is_armour(data: bytes) -> bool:
    return data.lstrip().startswith(b"-----BEGIN ")


def binary(data: bytes) -> bytes:
    """A keyring's packets: de-armoured when it is ASCII armour, else the data as it is."""
    return dearmour(data) if _is_armour(data) else data


def dearmour(data: bytes) -> bytes:
    """The packets of every `PUBLIC KEY BLOCK` in `data` (only whitespace outside them)."""
    out: List[bytes] = []
    lines = data.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line:
            continue
        begin = _BEGIN.match(line)
        if begin is None:
            raise NotPublicKeyring(f"line {i}: text outside an ASCII-armour block")
        kind = begin.group(1).decode()
        if kind != "PUBLIC KEY BLOCK":
            secret = "PRIVATE" in kind or "SECRET" in kind
            raise NotPublicKeyring(
                f"line {i}: armour 'PGP {kind}'" + (": a secret key" if secret else "")
                + "; only 'PGP PUBLIC KEY BLOCK' is a public keyring")
        i, packets = _armour_body(lines, i, kind)
        out.append(packets)
    if not out:
        raise NotPublicKeyring("empty armour")
    return b"".join(out)


def _armour_body(lines: List[bytes], i: int, kind: str) -> Tuple[int, bytes]:
    """(index after the END line, decoded body) of the block whose BEGIN line precedes `i`."""
    while i < len(lines) and _HEADER.match(lines[i].strip()):
        i += 1  # armour headers (Version:, Comment:) up to the blank line
    body: List[bytes] = []
    checksum: Optional[bytes] = None
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        end = _END.match(line)
        if end is not None:
            if end.group(1).decode() != kind:
                raise NotPublicKeyring(f"line {i}: END line does not match its BEGIN line")
            return i, _decode_body(body, checksum, i)
        if line.startswith(b"=") and len(line) == 5:
            checksum = line[1:]
        elif line:
            if checksum is not None:
                raise NotPublicKeyring(f"line {i}: data after the armour checksum")
            body.append(line)
    raise NotPublicKeyring("armour block without its END line (truncated?)")


def _decode_body(body: List[bytes], checksum: Optional[bytes], line: int) -> bytes:
    try:
        packets = base64.b64decode(b"".join(body), validate=True)
    except (binascii.Error, ValueError):
        raise NotPublicKeyring(f"armour block ending at line {line}: bad base64") from None
    if checksum is not None:
        try:
            want = int.from_bytes(base64.b64decode(checksum, validate=True), "big")
        except (binascii.Error, ValueError):
            raise NotPublicKeyring(f"armour block ending at line {line}: bad checksum line"
                                   ) from None
        if crc24(packets) != want:
            raise NotPublicKeyring(f"armour block ending at line {line}: CRC-24 checksum "
                                   "mismatch (damaged or edited)")
    return packets


def _new_length(data: bytes, pos: int) -> Tuple[int, int, bool]:
    """(body length, position after the length, partial?) of a new-format length at `pos`."""
    if pos >= len(data):
        raise NotPublicKeyring(f"offset {pos}: truncated packet length")
    first = data[pos]
    if first < 192:
        return first, pos + 1, False
    if first < 224:
        if pos + 1 >= len(data):
            raise NotPublicKeyring(f"offset {pos}: truncated packet length")
        return ((first - 192) << 8) + data[pos + 1] + 192, pos + 2, False
    if first == 255:
        if pos + 5 > len(data):
            raise NotPublicKeyring(f"offset {pos}: truncated packet length")
        return int.from_bytes(data[pos + 1:pos + 5], "big"), pos + 5, False
    return 1 << (first & 0x1F), pos + 1, True


def _packet(data: bytes, pos: int) -> Tuple[int, int, int, bool]:
    """(tag, body start, position of the next packet, whether partial lengths split the body)
    of the packet at `pos`; unsplit, the body is `data[start:next]`."""
    head = data[pos]
    if not head & 0x80:
        raise NotPublicKeyring(f"offset {pos}: not an OpenPGP packet header")
    if head & 0x40:  # new format
        tag = head & 0x3F
        length, pos, partial = _new_length(data, pos + 1)
        start, split = pos, partial
        while True:
            if pos + length > len(data):
                raise NotPublicKeyring(f"offset {pos}: packet body runs past the end "
                                       "(truncated)")
            pos += length
            if not partial:
                return tag, start, pos, split
            length, pos, partial = _new_length(data, pos)
    tag = (head >> 2) & 0x0F
    kind = head & 0x03
    pos += 1
    if kind == 3:  # indeterminate: to the end of the data
        return tag, pos, len(data), False
    size = 1 << kind
    if pos + size > len(data):
        raise NotPublicKeyring(f"offset {pos}: truncated packet length")
    length = int.from_bytes(data[pos:pos + size], "big")
    pos += size
    if pos + length > len(data):
        raise NotPublicKeyring(f"offset {pos}: packet body runs past the end (truncated)")
    return tag, pos, pos + length, False


def packets(data: bytes) -> Iterator[Tuple[int, Optional[bytes]]]:
    """(tag, body) of every packet, in order; the body is None when partial lengths split it.
    NotPublicKeyring when the framing is broken (after the packets before the break)."""
    pos = 0
    while pos < len(data):
        tag, start, pos, split = _packet(data, pos)
        yield tag, None if split else data[start:pos]


def packet_tags(data: bytes) -> List[int]:
    """The tag of every packet, in order; NotPublicKeyring when the framing is broken."""
    return [tag for tag, _body in packets(data)]


def _name(tag: int) -> str:
    return ALLOWED.get(tag) or SECRET.get(tag) or _NAMES.get(tag) or "unknown"


def check_public(data: bytes) -> List[int]:
    """Packet tags of a valid public keyring, else NotPublicKeyring saying why."""
    if not data.strip():
        raise NotPublicKeyring("empty")
    if _is_armour(data):
        packets = dearmour(data)
    elif data[0] & 0x80:
        packets = data
    else:
        raise NotPublicKeyring("not an OpenPGP keyring (neither ASCII armour nor binary "
                               "OpenPGP packets)")
    tags = packet_tags(packets)
    secret = sorted({t for t in tags if t in SECRET})
    if secret:
        raise NotPublicKeyring(
            f"holds a {_name(secret[0])} (packet type {secret[0]}): a keyring is published "
            "to every node, so it must hold public keys only (export with `gpg --export`)")
    other = sorted({t for t in tags if t not in ALLOWED})
    if other:
        names = ", ".join(f"{t} ({_name(t)})" for t in other)
        raise NotPublicKeyring(f"holds packet types a public keyring has not: {names}")
    if not tags or tags[0] != 6:
        raise NotPublicKeyring("does not start with a public key packet")
    return tags
