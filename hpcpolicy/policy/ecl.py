"""Apptainer's / SingularityCE's execution control list (ecl.toml), checked before it is shipped.

The runtimes' own reader (`internal/pkg/syecl/syecl.go`: `EclConfig`, `ValidateConfig`) is
lenient where it matters: Apptainer skips the whole ECL on a TOML or type error (it fails
open), unknown keys are ignored, and a directory that does not exist only fails at run time.
So the file is checked here against that schema, strictly:

* top level: `activated` (bool), `legacyinsecure` (bool), `[[execgroup]]` tables; nothing else;
* each execgroup: `tagname` (string), `mode` (`whitelist`, `whitestrict` or `blacklist`),
  `dirpath` (an absolute, normalised directory, or "" for the catch-all group), `keyfp` (40-hex
  OpenPGP v4 fingerprints); a dirpath appears in one group only, so at most one catch-all.

A dirpath is matched exactly (not recursively) against the image's directory, and must exist on
every node with symlinks resolved: `node doctor` checks that, from the dirpaths recorded in the
manifest. Pure.
"""

from __future__ import annotations

import hashlib
import re
import sys
from typing import Any, Dict, List, Optional, Set, Tuple

from hpcpolicy.policy import keyring, paths

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9/3.10 only
    import tomli as tomllib

MODES = ("whitelist", "whitestrict", "blacklist")
_FP_RE = re.compile(r"[0-9A-Fa-f]{40}")
_TOP = ("activated", "legacyinsecure", "execgroup")
_GROUP = ("tagname", "mode", "dirpath", "keyfp")

Problem = Tuple[str, str]  # (key path inside the ECL, message)


def _group(raw: Any, where: str, out: List[Problem]) -> Optional[str]:
    if not isinstance(raw, dict):
        out.append((where, "expected a table ([[execgroup]])"))
        return None
    for key in raw:
        if key not in _GROUP:
            out.append((f"{where}.{key}", f"unknown key (an execgroup has {', '.join(_GROUP)})"))
    if not isinstance(raw.get("tagname", ""), str):
        out.append((f"{where}.tagname", "expected a string"))
    mode = raw.get("mode")
    if mode not in MODES:
        out.append((f"{where}.mode", f"must be one of {', '.join(MODES)}, got {mode!r}"))
    fps = raw.get("keyfp", [])
    if not isinstance(fps, list):
        out.append((f"{where}.keyfp", "expected an array of fingerprints"))
    else:
        for i, fp in enumerate(fps, 1):
            if not isinstance(fp, str) or not _FP_RE.fullmatch(fp):
                out.append((f"{where}.keyfp[{i}]", "expected a 40-hex-digit OpenPGP fingerprint"))
    if mode in ("whitelist", "whitestrict") and isinstance(fps, list) and not fps:
        out.append((f"{where}.keyfp", f"a {mode} group without fingerprints refuses every image"))
    dirpath = raw.get("dirpath", "")
    if not isinstance(dirpath, str):
        out.append((f"{where}.dirpath", "expected a string"))
        return None
    if dirpath:
        bad = paths.check_path(dirpath)
        if bad:
            out.append((f"{where}.dirpath", f"{bad} (the ECL compares it with the image's "
                        "directory exactly)"))
    return dirpath


def check(data: bytes) -> Tuple[List[Problem], List[str]]:
    """(problems, directories the ECL names) of an ecl.toml's bytes."""
    out: List[Problem] = []
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        return [("", "not valid UTF-8")], []
    except tomllib.TOMLDecodeError as err:
        return [("", f"TOML syntax error: {err} (Apptainer would silently skip the ECL)")], []
    for key in doc:
        if key not in _TOP:
            out.append((key, f"unknown key (the ECL has {', '.join(_TOP)})"))
    for key in ("activated", "legacyinsecure"):
        if key in doc and not isinstance(doc[key], bool):
            out.append((key, "expected true or false"))
    groups = doc.get("execgroup", [])
    if not isinstance(groups, list):
        out.append(("execgroup", "expected an array of tables ([[execgroup]])"))
        groups = []
    seen: dict = {}
    dirs: List[str] = []
    for i, raw in enumerate(groups, 1):
        where = f"execgroup[{i}]"
        dirpath = _group(raw, where, out)
        if dirpath is None:
            continue
        if dirpath in seen:
            what = "the catch-all dirpath \"\"" if not dirpath else f"dirpath {dirpath!r}"
            out.append((f"{where}.dirpath", f"{what} is already in execgroup[{seen[dirpath]}] "
                        "(a directory may appear in one execgroup only)"))
        else:
            seen[dirpath] = i
            if dirpath:
                dirs.append(dirpath)
    if doc.get("activated") is True and not groups:
        out.append(("execgroup", "an activated ECL without execgroups refuses every SIF image"))
    return out, dirs


def parsed(data: bytes) -> Dict[str, Any]:
    """A checked ECL as a document."""
    return dict(tomllib.loads(data.decode("utf-8")))


def activated(data: bytes) -> bool:
    """Whether a checked ECL is switched on."""
    return parsed(data).get("activated") is True


def key_fingerprints(packets: bytes) -> Set[str]:
    """Upper-case v4 fingerprints (SHA-1 of 0x99, length, body) of every public key and
    subkey packet of a de-armoured keyring that `policy.keyring.check_public` accepted
    (up to a packet split by partial lengths or broken framing)."""
    out: Set[str] = set()
    try:
        for tag, body in keyring.packets(packets):
            if body is None:
                break
            if tag in (6, 14) and body[:1] == b"\x04":
                digest = hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body)
                out.add(digest.hexdigest().upper())
    except keyring.NotPublicKeyring:
        pass
    return out


def unknown_signers(data: bytes, fingerprints: Set[str]) -> List[Problem]:
    """Whitelist/whitestrict fingerprints the keyring lacks: the ECL can never validate them,
    so every image such a group needs them for is refused."""
    out: List[Problem] = []
    doc: Dict[str, Any] = tomllib.loads(data.decode("utf-8"))
    for i, group in enumerate(doc.get("execgroup", []), 1):
        if group.get("mode") not in ("whitelist", "whitestrict"):
            continue
        for j, fp in enumerate(group.get("keyfp", []), 1):
            if fp.upper() not in fingerprints:
                out.append((f"execgroup[{i}].keyfp[{j}]", f"{fp} is not a key of ecl_keyring: "
                            "signatures by it cannot be validated, so the group refuses what "
                            "it should admit"))
    return out
