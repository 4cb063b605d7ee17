"""The ledger against what nodes were told: a restored or lost ledger must not re-hand ranges.

The ledger is the allocator's memory; the generations on shared storage are what nodes
actually installed. If the ledger lost a record (restored from a backup older than the latest
allocation, rebuilt, edited by hand), the allocator would see that range as free, give it to a
new user, and move its owner: two users then own the same sub-IDs over time, and the new one
can reach files the old one created in containers.

So before allocating, every `etc/subuid`/`etc/subgid` line of the generation each channel
names (`current` and `channels/*`, every node class) must be held by the ledger for the same
user with the same start and count, in any state -- a reclaimed range keeps its tombstone
record, so a line still published for it is not a loss. Otherwise the apply stops (exit 1)
naming the users; `hpcpolicy subid import` of the current generation's files is the remedy.

That cannot see a ledger that lost only *reserved* ranges (users who left: their lines are in
no published file). So every generation's manifest also records the ledger it was published
with (`ledger`: revision and a digest of its records), and the ledger must not be older than
the newest one any channel's generation records (lower revision), nor differ from it at the
same revision (edited or swapped outside hpcpolicy). Every hpcpolicy change to the ledger
raises its revision, so no legitimate sequence trips this. Generations without the field
(published before it existed) are skipped.
"""

from __future__ import annotations

import hashlib
import logging
import operator
import os
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple

from hpcpolicy.errors import RuntimeFailure, VerificationError
from hpcpolicy.fsutil import read_bytes_nofollow
from hpcpolicy.generation.manifest import class_files
from hpcpolicy.generation.naming import channels, generations_dir, tree_dir
from hpcpolicy.generation.verify import verify_generation
from hpcpolicy.subid.ledger import Ledger, Record

log = logging.getLogger(__name__)

SUBID_FILES = ("etc/subuid", "etc/subgid")
Line = Tuple[str, int, int]  # user key (uid digits or name), start, count


Published = List[Tuple[str, str, Dict[str, Any]]]  # (channel, generation, verified manifest)


_DIGESTED = operator.attrgetter("uid", "start", "count", "state")


def ledger_digest(ledger: Ledger) -> str:
    """sha256 over one `uid:start:count:state` line per record, sorted by uid: what the
    allocator relies on, independent of the file's formatting and history (C-level passes:
    it runs on every apply, over every record)."""
    records = ledger.records
    rows = map(_DIGESTED, map(records.__getitem__, sorted(records)))
    return hashlib.sha256("".join(map("%d:%d:%d:%s\n".__mod__, rows)).encode()).hexdigest()


def ledger_fields(ledger: Ledger) -> Dict[str, Any]:
    """The manifest's `ledger` field: the ledger a generation was published with."""
    return {"revision": ledger.revision, "sha256": ledger_digest(ledger)}


def published_manifests(deploy_root: str) -> Published:
    """The verified manifest of the generation each channel names (each generation once).

    A generation that fails verification is skipped (logged): its files are not what the site
    published, and `apply` replaces it with a fresh one anyway.
    """
    out: Published = []
    seen: Set[str] = set()
    for channel, name in sorted(channels(deploy_root).items()):
        if name is None or name in seen:
            continue
        seen.add(name)
        top = os.path.join(generations_dir(deploy_root), name)
        try:
            out.append((channel, name, verify_generation(top)))
        except VerificationError as err:
            log.warning("generation %s (channel %s) fails verification, not compared with the "
                        "ledger: %s", name, channel, err)
    return out


def recorded(manifest: Mapping[str, Any]) -> Optional[Tuple[int, str]]:
    """(revision, digest) a manifest records; None when it records none (older publisher)."""
    field = manifest.get("ledger")
    if not isinstance(field, dict):
        return None
    revision, digest = field.get("revision"), field.get("sha256")
    if isinstance(revision, bool) or not isinstance(revision, int) or not isinstance(digest, str):
        return None
    return revision, digest


def newest_recorded(published: Published) -> Optional[Tuple[int, str, str]]:
    """(revision, digest, generation) of the highest ledger revision any channel records."""
    best: Optional[Tuple[int, str, str]] = None
    for _, name, manifest in published:
        rec = recorded(manifest)
        if rec is not None and (best is None or rec[0] > best[0]):
            best = (rec[0], rec[1], name)
    return best


def behind(ledger: Optional[Ledger], published: Published) -> Optional[Tuple[int, str, str]]:
    """The newest recorded (revision, digest, generation) when `ledger` is older than it or
    differs from it at the same revision; None when the ledger is up to date."""
    best = newest_recorded(published)
    if best is None:
        return None
    have = ledger.revision if ledger is not None else 0
    if have > best[0]:
        return None
    if have == best[0] and ledger is not None and ledger_digest(ledger) == best[1]:
        return None
    return best


def check_ledger_revision(deploy_root: str, ledger: Optional[Ledger],
                          published: Published) -> None:
    """RuntimeFailure (exit 1) when the ledger is older than, or at the same revision differs
    from, the newest ledger a published generation records."""
    best = behind(ledger, published)
    if best is None:
        return
    revision, digest, name = best
    have = ledger.revision if ledger is not None else 0
    same = [n for _, n, m in published if recorded(m) == (revision, digest)]
    gens = ", ".join(same) or name
    if have < revision:
        why = (f"the sub-ID ledger is at revision {have}, but generation {gens} was published "
               f"with ledger revision {revision}: it is an older ledger (restored from a "
               "backup?)")
    else:
        why = (f"the sub-ID ledger (revision {have}) differs from the ledger revision {revision} "
               f"generation {gens} was published with: it was edited or replaced outside "
               "hpcpolicy")
    raise RuntimeFailure(
        f"{deploy_root}: {why}. It may have lost the ranges reserved for users who left, and "
        "allocating now could hand them to someone else. Nothing was changed. Restore the "
        f"newest ledger (revision {revision} or later), or adopt what is published with "
        f"`hpcpolicy subid import {deploy_root}/current/tree/etc/subuid "
        f"{deploy_root}/current/tree/etc/subgid --site SITE`: the import recovers every range "
        "nodes still list, but not the ranges reserved for users who left (they are in no "
        "published file), which new users may then be given")


def published_files(deploy_root: str,
                    published: Optional[Published] = None) -> Dict[bytes, List[str]]:
    """The distinct contents of every sub-ID file any channel's generation publishes -> where
    ("000042-3f2a9c1b: etc/subuid"); subuid and subgid are usually the same bytes: read once.
    """
    out: Dict[bytes, List[str]] = {}
    if published is None:
        published = published_manifests(deploy_root)
    for _, name, manifest in published:
        top = os.path.join(generations_dir(deploy_root), name)
        for node_class in manifest["classes"]:
            for entry in class_files(manifest, node_class):
                if entry.path in SUBID_FILES:
                    path = os.path.join(top, tree_dir(node_class), entry.path)
                    out.setdefault(read_bytes_nofollow(path), []).append(f"{name}: {entry.path}")
    return out


def _parse(raw: str) -> Optional[Line]:
    parts = raw.split(":")
    if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
        return parts[0], int(parts[1]), int(parts[2])
    return None


def _holders(ledger: Ledger, key: str) -> List[Record]:
    """The records of the user a published line names: by uid, or by name (also a former one)."""
    if key.isdigit():
        rec = ledger.records.get(int(key))
        return [rec] if rec is not None else []
    renamed_from = f"{key} -> "
    return [r for r in ledger.records.values()
            if r.name == key or any(e.action == "renamed" and e.detail.startswith(renamed_from)
                                    for e in r.history)]


def _held(ledger: Optional[Ledger], line: Line) -> bool:
    key, start, count = line
    holders = _holders(ledger, key) if ledger is not None else []
    return any(r.start == start and r.count == count for r in holders)


def unheld(ledger: Optional[Ledger], files: Dict[bytes, List[str]]) -> Dict[Line, str]:
    """Published lines the ledger does not hold for the same user -> where one was published.

    Fast path: every record's own line (keyed as the file is) as exact text, so a
    steady-state check is one set difference; only the lines left over (renames, odd
    spellings, real losses) are parsed and looked up one by one.
    """
    records = list(ledger.records.values()) if ledger is not None else []
    expected: Dict[bool, Set[str]] = {}  # by uid (True) or by name: built once, when needed
    missing: Dict[Line, str] = {}
    for data, where in files.items():
        text = data.decode("utf-8", errors="replace")
        by_uid = text[:1].isdigit()
        if by_uid not in expected:
            expected[by_uid] = ({f"{r.uid}:{r.start}:{r.count}" for r in records} if by_uid
                                else {f"{r.name}:{r.start}:{r.count}" for r in records})
        for raw in set(text.split("\n")) - expected[by_uid]:
            line = _parse(raw)
            if line is not None and line not in missing and not _held(ledger, line):
                missing[line] = where[0]
    return missing


def check_ledger_holds_published(deploy_root: str, ledger: Optional[Ledger],
                                 published: Optional[Published] = None) -> None:
    """RuntimeFailure (exit 1) when the ledger is older than what was published, or naming
    every user whose published range the ledger lost (`published`: the channels' verified
    manifests when the caller has them already)."""
    if published is None:
        published = published_manifests(deploy_root)
    missing = unheld(ledger, published_files(deploy_root, published))
    if not missing:  # the lost users are named when nodes list them; else the revision
        check_ledger_revision(deploy_root, ledger, published)
        return
    lines = sorted(missing, key=lambda x: (x[1], x[0]))
    shown = ", ".join(f"{k} ({s}-{s + c - 1}, published in {missing[(k, s, c)]})"
                      for k, s, c in lines[:20])
    more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
    raise RuntimeFailure(
        f"{deploy_root}: the sub-ID ledger does not hold ranges nodes were given: {shown}{more}. "
        "Allocating now could hand them to someone else (was the ledger restored from an older "
        "backup?). Nothing was changed. Adopt what is published with `hpcpolicy subid import "
        f"{deploy_root}/current/tree/etc/subuid {deploy_root}/current/tree/etc/subgid --site "
        "SITE`, then apply again")
