"""Garbage collection of generations, and the memory it needs: when each stopped being current.

`state/current-history.json` records, for every channel, the generation it names and the one
it replaced, and for every generation the instant it stopped being named by any channel. It is
written BEFORE a link is switched: a crash in between leaves a history that is ahead of the
link, which is harmless (the generation still named is protected as a link target anyway, and
the next switch rewrites the entry).

GC keeps the `keep` newest generations and never deletes: any channel's target, the generation
a channel's target replaced, or anything that stopped being current less than `gc_grace`
seconds ago (a node may be in the middle of reading it). A generation whose stop time is not
known (an orphan left by a crash after the rename, a history lost) gets "now" recorded and so a
full grace period. Deletion renames to `generations/.tmp-gc-*` first, so a half-deleted
generation never carries a generation name.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional, Set

from hpcpolicy.deploy.store import STATE
from hpcpolicy.fsutil import TMP_PREFIX as FILE_TMP_PREFIX
from hpcpolicy.fsutil import atomic_write, fsync_dir
from hpcpolicy.generation.naming import (
    CHANNELS,
    TMP_PREFIX,
    channels,
    generations_dir,
    list_generations,
    number_of,
)

HISTORY = "current-history.json"


def stamp(when: datetime) -> str:
    """ISO-8601 UTC to the second, `Z` suffix (the ledger's format too)."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_stamp(text: str) -> Optional[datetime]:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except (TypeError, ValueError):
        return None


def history_path(deploy_root: str) -> str:
    return os.path.join(deploy_root, STATE, HISTORY)


def load_history(deploy_root: str) -> Dict[str, Any]:
    """The history document; an unreadable one counts as empty (GC then only gets safer)."""
    try:
        with open(history_path(deploy_root), "rb") as handle:
            doc = json.loads(handle.read())
    except (OSError, ValueError):
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    for key in ("links", "stopped"):
        if not isinstance(doc.get(key), dict):
            doc[key] = {}
    doc["format"] = 1
    return doc


def save_history(deploy_root: str, doc: Dict[str, Any]) -> None:
    os.makedirs(os.path.join(deploy_root, STATE), mode=0o755, exist_ok=True)
    data = (json.dumps(doc, sort_keys=True, indent=1) + "\n").encode()
    atomic_write(history_path(deploy_root), data, mode=0o644)


def record_switch(
    deploy_root: str, channel: str, old: Optional[str], new: str, now: datetime
) -> None:
    """Note that `channel` moves from `old` to `new` (call right BEFORE switching the link)."""
    doc = load_history(deploy_root)
    links = channels(deploy_root)
    links[channel] = new
    doc["links"][channel] = {"generation": new, "replaced": old, "since": stamp(now)}
    if old and old != new and old not in links.values():
        doc["stopped"][old] = stamp(now)
    doc["stopped"].pop(new, None)
    save_history(deploy_root, doc)


def replaced_by_link(deploy_root: str, channel: str, doc: Dict[str, Any]) -> Optional[str]:
    """The generation `channel`'s current target replaced (history, else the one before it)."""
    target = channels(deploy_root).get(channel)
    entry = doc["links"].get(channel)
    if isinstance(entry, dict) and entry.get("generation") == target:
        replaced = entry.get("replaced")
        return replaced if isinstance(replaced, str) else None
    if target is None:
        return None
    older = [n for n in list_generations(deploy_root) if number_of(n) < number_of(target)]
    return older[-1] if older else None


def protected(deploy_root: str, keep: int, doc: Dict[str, Any]) -> Set[str]:
    """Generations GC must keep whatever their age."""
    names = list_generations(deploy_root)
    keep_set = set(names[-keep:]) if keep > 0 else set()
    links = channels(deploy_root)
    keep_set |= {n for n in links.values() if n}
    for channel in links:
        replaced = replaced_by_link(deploy_root, channel, doc)
        if replaced:
            keep_set.add(replaced)
    return keep_set


def _remove(deploy_root: str, name: str) -> None:
    gens = generations_dir(deploy_root)
    doomed = os.path.join(gens, f"{TMP_PREFIX}gc-{name}-{os.urandom(4).hex()}")
    os.rename(os.path.join(gens, name), doomed)
    fsync_dir(gens)
    shutil.rmtree(doomed, ignore_errors=True)


def collect(deploy_root: str, keep: int, grace: int, now: datetime) -> List[str]:
    """Delete what may go; return the names deleted (oldest first). Call under the lock."""
    doc = load_history(deploy_root)
    keep_set = protected(deploy_root, keep, doc)
    removed: List[str] = []
    dirty = False
    for name in list_generations(deploy_root):
        if name in keep_set:
            continue
        stopped = parse_stamp(doc["stopped"].get(name, ""))
        if stopped is None:
            doc["stopped"][name] = stamp(now)  # unknown: the grace period starts now
            dirty = True
            continue
        if now - stopped < timedelta(seconds=grace):
            continue
        _remove(deploy_root, name)
        doc["stopped"].pop(name, None)
        removed.append(name)
        dirty = True
    if dirty:
        save_history(deploy_root, doc)
    return removed


def clean_stale(deploy_root: str) -> List[str]:
    """Remove what killed runs left: `generations/.tmp-*` dirs and atomic-write temp files.

    Only under the lock: then no other writer can be using them.
    """
    removed: List[str] = []
    gens = generations_dir(deploy_root)
    for entry in _listdir(gens):
        if entry.startswith(TMP_PREFIX):
            path = os.path.join(gens, entry)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
            removed.append(path)
    for sub in ("", STATE, "log", CHANNELS):
        directory = os.path.join(deploy_root, sub)
        for entry in _listdir(directory):
            if entry.startswith(FILE_TMP_PREFIX):
                os.unlink(os.path.join(directory, entry))
                removed.append(os.path.join(directory, entry))
    return removed


def _listdir(path: str) -> List[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []
