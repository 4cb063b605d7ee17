"""The sub-ID ledger: every range ever handed out, kept on shared storage.

The ledger is what makes ranges stable forever: a user who leaves keeps a tombstone (their range
is never given to anyone else) and gets the same range back on return. Records are keyed by uid,
because a rename keeps the uid (and the files a user owns inside containers are owned by
sub-IDs derived from it); the name is remembered for messages and for `key = "name"`.

`Ledger` is pure data with JSON (de)serialisation that validates everything, so a tampered
or hand-edited ledger is refused before it can cause an overlap. `load_ledger` / `save_ledger`
are the only I/O.
"""

from __future__ import annotations

import json
import operator
import os
import re
from dataclasses import dataclass, field, replace
from operator import attrgetter
from typing import Any, Dict, List, NamedTuple, Optional, Set, Tuple

from hpcpolicy.errors import InvalidInput, Problem, RuntimeFailure, join_path, os_failure
from hpcpolicy.fsutil import atomic_write, read_bytes_nofollow

SCHEMA = 1
LEDGER_RELPATH = os.path.join("state", "subid-ledger.json")
ID_LIMIT = 4294967295  # (uid_t)-1: no sub-ID may reach it

LIVE = "live"  # has a line in /etc/subuid
LEFT = "left"  # no longer eligible: no line, range reserved for their return
REVOKED = "revoked"  # withdrawn by `subid revoke`: no line, range reserved
RECLAIMED = "reclaimed"  # range freed by `subid reclaim`: may be given to someone else
STATES = (LIVE, LEFT, REVOKED, RECLAIMED)
_STATE_SET = frozenset(STATES)

_NAME_RE = re.compile(r"^[^\x00-\x20\x7f:/]{1,256}\Z")  # \Z: `$` would pass "alice\n"
_SITE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_BY_UID = attrgetter("uid")
_BY_START = attrgetter("start")
_BY_COUNT = attrgetter("count")
_BY_STATE = attrgetter("state")
_BY_NAME = attrgetter("name")


class Event(NamedTuple):
    """One line of a record's history."""

    at: str
    action: str  # allocated, left, restored, revoked, granted, reclaimed, renamed, imported
    detail: str = ""


class Record(NamedTuple):
    """One uid's range and its state. `withheld`: a reclaimed record that was revoked first,
    so a return must not silently undo the revocation (cleared by `grant`).

    A NamedTuple rather than a frozen dataclass: equally immutable, and about 5x cheaper to
    build, which matters when 100,000 users are allocated at once."""

    uid: int
    name: str
    start: int
    count: int  # type: ignore[assignment]  # shadows tuple.count, on purpose
    state: str
    created: str
    changed: str
    withheld: bool = False
    history: Tuple[Event, ...] = ()

    @property
    def last(self) -> int:
        return self.start + self.count - 1

    @property
    def holds_range(self) -> bool:
        """Whether the range is still reserved for this uid (everything but reclaimed)."""
        return self.state != RECLAIMED

    def evolve(self, at: str, action: str, detail: str = "", **changes: Any) -> Record:
        """A copy with `changes` applied and one history event appended."""
        return self._replace(
            changed=at, history=self.history + (Event(at, action, detail),), **changes
        )


@dataclass(frozen=True)
class Ledger:
    """All records of one site. Never mutated: operations return a new Ledger."""

    site: str
    records: Dict[int, Record] = field(default_factory=dict)
    revision: int = 0  # incremented by every saved change; helps spot lost updates
    updated: str = ""
    schema: int = SCHEMA

    def by_name(self, name: str) -> List[Record]:
        return [r for r in self.records.values() if r.name == name]

    def find(self, user: str) -> Optional[Record]:
        """A record by name or numeric uid (names win: a numeric name is still a name)."""
        named = self.by_name(user)
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            raise InvalidInput(
                f"{len(named)} ledger records carry the name {user!r} "
                f"(uids {', '.join(str(r.uid) for r in named)}): name the uid instead",
                path="user",
            )
        if user.isdigit():
            return self.records.get(int(user))
        return None

    def with_records(self, records: Dict[int, Record], now: str) -> Ledger:
        return replace(self, records=records, revision=self.revision + 1, updated=now)

    def held(self) -> List[Record]:
        """Records whose range is reserved (not reclaimed), sorted by start."""
        return sorted((r for r in self.records.values() if r.state != RECLAIMED), key=_BY_START)

    def validate(self, file: str = LEDGER_RELPATH,
                 changed: Optional[Set[int]] = None) -> List[Problem]:
        """Every problem with this ledger: bad values, overlaps, ranges reaching 2^32-1.

        `changed`: only these uids' values are checked (the rest were checked on load);
        overlaps are always checked across all records.
        """
        problems: List[Problem] = []
        if not _SITE_RE.match(self.site):
            problems.append(Problem(file, "site", f"invalid site name {self.site!r}"))
        records = self.records
        checked = (list(records.values()) if changed is None
                   else [records[uid] for uid in changed if uid in records])
        if not _records_ok(checked):  # the fast path sorts nothing, builds no path
            for i, rec in enumerate(sorted(records.values(), key=_BY_UID), 1):
                if (changed is not None and rec.uid not in changed) or _record_ok(rec):
                    continue
                problems.extend(_record_problems(rec, file, join_path("records", i)))
        held = self.held()
        starts = [r.start for r in held]
        ends = [r.start + r.count for r in held]
        if not any(map(operator.lt, starts[1:], ends)):  # the fast path: no range overlaps
            return problems
        for prev, cur in zip(held, held[1:]):
            if cur.start <= prev.last:
                problems.append(Problem(file, "records", (
                    f"range {cur.start}-{cur.last} of uid {cur.uid} ({cur.name}) overlaps "
                    f"{prev.start}-{prev.last} of uid {prev.uid} ({prev.name})")))
        return problems

    def to_json(self) -> bytes:
        doc = {
            "schema": self.schema,
            "site": self.site,
            "revision": self.revision,
            "updated": self.updated,
            "records": [_record_to_dict(r) for r in sorted(self.records.values(), key=_BY_UID)],
        }
        # compact: json's C encoder; `indent` falls back to the pure-Python one (4x slower at
        # 30,000 records). People read the ledger through `hpcpolicy subid list|show`.
        return (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode()

    @staticmethod
    def from_json(data: bytes, file: str) -> Ledger:
        """Parse and validate; raise InvalidInput naming the file and key of every problem."""
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            raise InvalidInput(f"not valid JSON: {err}", file=file) from None
        if not isinstance(doc, dict):
            raise InvalidInput("must be a JSON object", file=file)
        problems: List[Problem] = []
        _check_keys(doc, {"schema", "site", "revision", "updated", "records"}, file, "", problems)
        if doc.get("schema") != SCHEMA:
            problems.append(Problem(file, "schema", f"unsupported schema {doc.get('schema')!r}"
                                                    f" (this hpcpolicy reads {SCHEMA})"))
        site = _typed(doc, "site", str, file, "", problems) or ""
        revision = _typed(doc, "revision", int, file, "", problems) or 0
        updated = _typed(doc, "updated", str, file, "", problems) or ""
        raw = doc.get("records")
        records: Dict[int, Record] = {}
        if not isinstance(raw, list):
            problems.append(Problem(file, "records", "must be a list"))
            raw = []
        for i, item in enumerate(raw, 1):
            rec = _plain_record(item)  # the fast path: builds no key path
            if rec is None:
                rec = _record_from_dict(item, file, join_path("records", i), problems)
            if rec is None:
                continue
            if rec.uid in records:
                problems.append(Problem(file, join_path("records", i, "uid"),
                                        f"uid {rec.uid} appears twice"))
            records[rec.uid] = rec
        if problems:
            raise InvalidInput(problems)
        ledger = Ledger(site, records, revision, updated)
        problems = ledger.validate(file)
        if problems:
            raise InvalidInput(problems)
        return ledger


def _records_ok(records: List[Record]) -> bool:
    """`all(map(_record_ok, records))`, one field at a time over all records (C-level passes
    instead of a Python call per record: a first allocation checks 30,000 new records)."""
    if not records:
        return True
    uids = list(map(_BY_UID, records))
    starts = list(map(_BY_START, records))
    counts = list(map(_BY_COUNT, records))
    return (min(uids) >= 0 and max(uids) < ID_LIMIT and min(counts) >= 1 and min(starts) >= 1
            and max(map(operator.add, starts, counts)) <= ID_LIMIT
            and set(map(_BY_STATE, records)) <= _STATE_SET
            and all(map(_NAME_RE.match, map(_BY_NAME, records))))


def _record_ok(rec: Record) -> bool:
    return (0 <= rec.uid < ID_LIMIT and rec.count >= 1 and rec.start >= 1
            and rec.start + rec.count <= ID_LIMIT and rec.state in STATES
            and _NAME_RE.match(rec.name) is not None)


def _record_problems(rec: Record, file: str, path: str) -> List[Problem]:
    out: List[Problem] = []
    if not 0 <= rec.uid < ID_LIMIT:
        out.append(Problem(file, join_path(path, "uid"), f"uid {rec.uid} out of range"))
    if not _NAME_RE.match(rec.name):
        out.append(Problem(file, join_path(path, "name"), f"unsafe user name {rec.name!r}"))
    if rec.count < 1:
        out.append(Problem(file, join_path(path, "count"), "must be >= 1"))
    if rec.start < 1 or rec.start + rec.count > ID_LIMIT:
        out.append(Problem(file, join_path(path, "start"), (
            f"range {rec.start}-{rec.last} must lie within 1-{ID_LIMIT - 1}")))
    if rec.state not in STATES:
        out.append(Problem(file, join_path(path, "state"),
                           f"unknown state {rec.state!r} (one of {', '.join(STATES)})"))
    return out


def _record_to_dict(rec: Record) -> Dict[str, Any]:
    return {
        "uid": rec.uid,
        "name": rec.name,
        "start": rec.start,
        "count": rec.count,
        "state": rec.state,
        "withheld": rec.withheld,
        "created": rec.created,
        "changed": rec.changed,
        "history": [{"at": e.at, "action": e.action, "detail": e.detail} for e in rec.history],
    }


_RECORD_KEYS = {"uid", "name", "start", "count", "state", "withheld", "created", "changed",
                "history"}


_HISTORY_KEYS = {"at", "action", "detail"}


def _plain_record(item: Any) -> Optional[Record]:
    """The record when `item` is exactly well-formed (the keys, JSON types and history a saved
    ledger has), else None and `_record_from_dict` says what is wrong. Values are checked
    later by `Ledger.validate`, as for the detailed path."""
    if type(item) is not dict or item.keys() != _RECORD_KEYS:
        return None
    uid, name, start, count = item["uid"], item["name"], item["start"], item["count"]
    state, created, changed = item["state"], item["created"], item["changed"]
    raw = item["history"]
    if not (type(uid) is int and type(start) is int and type(count) is int
            and type(name) is str and type(state) is str and type(created) is str
            and type(changed) is str and type(item["withheld"]) is bool and type(raw) is list):
        return None
    history = []
    for event in raw:
        if type(event) is not dict or event.keys() != _HISTORY_KEYS:
            return None
        at, action, detail = event["at"], event["action"], event["detail"]
        if not (type(at) is str and type(action) is str and type(detail) is str):
            return None
        history.append(Event(at, action, detail))
    return Record(uid, name, start, count, state, created, changed, item["withheld"],
                  tuple(history))


def _record_from_dict(item: Any, file: str, path: str, problems: List[Problem]
                      ) -> Optional[Record]:
    if not isinstance(item, dict):
        problems.append(Problem(file, path, "must be an object"))
        return None
    before = len(problems)
    _check_keys(item, _RECORD_KEYS, file, path, problems)
    uid = _typed(item, "uid", int, file, path, problems)
    name = _typed(item, "name", str, file, path, problems)
    start = _typed(item, "start", int, file, path, problems)
    count = _typed(item, "count", int, file, path, problems)
    state = _typed(item, "state", str, file, path, problems)
    withheld = _typed(item, "withheld", bool, file, path, problems)
    created = _typed(item, "created", str, file, path, problems)
    changed = _typed(item, "changed", str, file, path, problems)
    history = _history(item.get("history"), file, join_path(path, "history"), problems)
    if len(problems) != before:
        return None
    assert uid is not None and name is not None and start is not None and count is not None
    assert state is not None and withheld is not None and created is not None
    assert changed is not None
    return Record(uid, name, start, count, state, created, changed, withheld, history)


def _history(raw: Any, file: str, path: str, problems: List[Problem]) -> Tuple[Event, ...]:
    if not isinstance(raw, list):
        problems.append(Problem(file, path, "must be a list"))
        return ()
    out: List[Event] = []
    for i, item in enumerate(raw, 1):
        p = join_path(path, i)
        if not isinstance(item, dict):
            problems.append(Problem(file, p, "must be an object"))
            continue
        _check_keys(item, {"at", "action", "detail"}, file, p, problems)
        at = _typed(item, "at", str, file, p, problems)
        action = _typed(item, "action", str, file, p, problems)
        detail = _typed(item, "detail", str, file, p, problems)
        if at is not None and action is not None and detail is not None:
            out.append(Event(at, action, detail))
    return tuple(out)


def _check_keys(doc: Dict[str, Any], allowed: set, file: str, path: str,
                problems: List[Problem]) -> None:
    for key in sorted(set(doc) - allowed):
        problems.append(Problem(file, join_path(path, key) if path else key, "unknown key"))


def _typed(doc: Dict[str, Any], key: str, kind: type, file: str, path: str,
           problems: List[Problem]) -> Any:
    """doc[key] if it has type `kind` (a bool is not an int here), else a problem and None."""
    where = join_path(path, key) if path else key
    if key not in doc:
        problems.append(Problem(file, where, "missing"))
        return None
    value = doc[key]
    if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
        problems.append(Problem(file, where, f"must be {kind.__name__}, not {value!r}"))
        return None
    return value


# ------------------------------------------------------------------------------------- I/O


def ledger_path(deploy_root: str) -> str:
    return os.path.join(deploy_root, LEDGER_RELPATH)


def _has_generations(deploy_root: str) -> bool:
    try:
        return any(not e.startswith(".") for e in os.listdir(os.path.join(deploy_root,
                                                                         "generations")))
    except FileNotFoundError:
        return False
    except OSError as err:
        raise os_failure(err, f"{deploy_root}/generations", "cannot list") from None


def load_ledger(deploy_root: str, site_name: Optional[str]) -> Optional[Ledger]:
    """The ledger of `site_name`, or None for a deploy root that never published anything.

    `site_name` None (a `--deploy-root` without a site file) accepts any site.

    A missing ledger next to existing generations, or a ledger of another site, is refused:
    a wrong path must never start a fresh ledger and reallocate everyone.
    """
    path = ledger_path(deploy_root)
    try:
        data = read_bytes_nofollow(path)
    except FileNotFoundError:
        if _has_generations(deploy_root):
            raise RuntimeFailure(
                f"{path}: missing, but {deploy_root} has generations: restore the ledger from "
                "a backup or snapshot of the shared storage (or rebuild it with `hpcpolicy subid "
                "import` from the current generation's etc/subuid and etc/subgid); refusing to "
                "start a fresh ledger that would reallocate every range") from None
        return None
    except OSError as err:
        raise os_failure(err, path, "cannot read") from None
    ledger = Ledger.from_json(data, path)
    if site_name is not None and ledger.site != site_name:
        raise RuntimeFailure(
            f"{path}: ledger of site {ledger.site!r}, not {site_name!r}: wrong deploy root?")
    return ledger


def save_ledger(deploy_root: str, ledger: Ledger) -> None:
    """Validate, then write durably (fsync of file and directory) via atomic_write."""
    path = ledger_path(deploy_root)
    problems = ledger.validate(path)
    if problems:
        raise InvalidInput(problems)
    state = os.path.dirname(path)
    try:
        os.makedirs(state, mode=0o755, exist_ok=True)
        atomic_write(path, ledger.to_json(), mode=0o644)
    except OSError as err:
        raise os_failure(err, path, "cannot write") from None
