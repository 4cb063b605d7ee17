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
"""

from __future__ import annotations

import logging
import os
from typing import Dict, List, Optional, Set, Tuple

from hpcpolicy.errors import RuntimeFailure, VerificationError
from hpcpolicy.fsutil import read_bytes_nofollow
from hpcpolicy.generation.manifest import class_files
from hpcpolicy.generation.naming import channels, generations_dir, tree_dir
from hpcpolicy.generation.verify import verify_generation
from hpcpolicy.subid.ledger import Ledger, Record

log = logging.getLogger(__name__)

SUBID_FILES = ("etc/subuid", "etc/subgid")
Line = Tuple[str, int, int]  # user key (uid digits or name), start, count


def published_lines(deploy_root: str) -> Dict[Line, List[str]]:
    """Every sub-ID line any channel's generation publishes -> where ("current: etc/subuid").

    A generation that fails verification is skipped (logged): its files are not what the site
    published, and `apply` replaces it with a fresh one anyway.
    """
    out: Dict[Line, List[str]] = {}
    seen: Set[str] = set()
    for channel, name in sorted(channels(deploy_root).items()):
        if name is None or name in seen:
            continue
        seen.add(name)
        top = os.path.join(generations_dir(deploy_root), name)
        try:
            manifest = verify_generation(top)
        except VerificationError as err:
            log.warning("generation %s (channel %s) fails verification, not compared with the "
                        "ledger: %s", name, channel, err)
            continue
        for node_class in manifest["classes"]:
            for entry in class_files(manifest, node_class):
                if entry.path not in SUBID_FILES:
                    continue
                path = os.path.join(top, tree_dir(node_class), entry.path)
                for line in _lines(read_bytes_nofollow(path)):
                    out.setdefault(line, []).append(f"{name}: {entry.path}")
    return out


def _lines(data: bytes) -> List[Line]:
    lines = []
    for raw in data.decode("utf-8", errors="replace").splitlines():
        parts = raw.split(":")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            lines.append((parts[0], int(parts[1]), int(parts[2])))
    return lines


def _holders(ledger: Ledger, key: str) -> List[Record]:
    """The records of the user a published line names: by uid, or by name (also a former one)."""
    if key.isdigit():
        rec = ledger.records.get(int(key))
        return [rec] if rec is not None else []
    renamed_from = f"{key} -> "
    return [r for r in ledger.records.values()
            if r.name == key or any(e.action == "renamed" and e.detail.startswith(renamed_from)
                                    for e in r.history)]


def unheld(ledger: Optional[Ledger], lines: Dict[Line, List[str]]) -> List[Line]:
    """Published lines the ledger does not hold for the same user, sorted."""
    missing = []
    for line in lines:
        key, start, count = line
        holders = _holders(ledger, key) if ledger is not None else []
        if not any(r.start == start and r.count == count for r in holders):
            missing.append(line)
    return sorted(missing, key=lambda x: (x[1], x[0]))


def check_ledger_holds_published(deploy_root: str, ledger: Optional[Ledger]) -> None:
    """RuntimeFailure (exit 1) naming every user whose published range the ledger lost."""
    lines = published_lines(deploy_root)
    missing = unheld(ledger, lines)
    if not missing:
        return
    shown = ", ".join(f"{k} ({s}-{s + c - 1}, published in {lines[(k, s, c)][0]})"
                      for k, s, c in missing[:20])
    more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
    raise RuntimeFailure(
        f"{deploy_root}: the sub-ID ledger does not hold ranges nodes were given: {shown}{more}. "
        "Allocating now could hand them to someone else (was the ledger restored from an older "
        "backup?). Nothing was changed. Adopt what is published with `hpcpolicy subid import "
        f"{deploy_root}/current/tree/etc/subuid {deploy_root}/current/tree/etc/subgid --site "
        "SITE`, then apply again")
