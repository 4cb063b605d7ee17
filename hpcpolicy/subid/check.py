"""Check any subuid/subgid file for what shadow, newuidmap, podman and Apptainer let through.

No consumer detects overlaps between users, and shadow's `usermod` accepts ranges that cross
2^32 or sit on real UIDs (shadow checks neither), so this is where they are caught.
Also used by `subid import`, which adopts only lines that pass.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import List, Optional, Set, Tuple

from hpcpolicy.errors import Problem

ID_LIMIT = 4294967295  # (uid_t)-1: never a valid id, so no range may reach it


@dataclass(frozen=True)
class Entry:
    """One well-formed `OWNER:START:COUNT` line."""

    line: int
    owner: str
    start: int
    count: int

    @property
    def last(self) -> int:
        return self.start + self.count - 1


def _where(lineno: int) -> str:
    return f"line {lineno}"


def _parse_line(raw: str, lineno: int, file: str) -> Tuple[Optional[Entry], List[Problem]]:
    """(entry or None, problems). A line with problems yields no entry."""
    where = _where(lineno)
    out: List[Problem] = []
    line = raw
    if line.endswith("\r"):
        out.append(Problem(file, where, "CRLF line ending: the count is unreadable to "
                                        "Apptainer and util-linux"))
        line = line[:-1]
    if any((c < " " and c != "\t") or c == "\x7f" for c in line):
        out.append(Problem(file, where, "control character in line"))
        return None, out
    fields = line.split(":")
    if len(fields) != 3:
        out.append(Problem(file, where, f"malformed: {len(fields)} field(s), expected "
                                        "OWNER:START:COUNT"))
        return None, out
    owner, start_s, count_s = fields
    if any(c.isspace() for c in line):
        out.append(Problem(file, where, "whitespace in a field (consumers then fail to "
                                        "resolve the owner or parse the number)"))
    if not owner.strip():
        out.append(Problem(file, where, "empty owner (makes Apptainer's fakeroot code panic)"))
    elif owner.strip().startswith("!"):
        out.append(Problem(file, where, "owner starts with '!' (Apptainer: disabled entry; "
                                        "others: an unknown user)"))
    numbers = []
    for label, text in (("start", start_s.strip()), ("count", count_s.strip())):
        if not text.isascii() or not text.isdigit():
            out.append(Problem(file, where, f"{label} {text!r} is not a decimal number"))
        else:
            numbers.append(int(text))
    if out or len(numbers) != 2:
        return None, out
    start, count = numbers
    if count == 0:
        return None, [Problem(file, where, "zero count")]
    if start + count > ID_LIMIT:
        return None, [Problem(file, where, f"range {start}-{start + count - 1} crosses "
                                           f"{ID_LIMIT} ((uid_t)-1) / 2^32")]
    return Entry(lineno, owner, start, count), []


def parse(text: str, file: str) -> Tuple[List[Entry], List[Problem], List[Problem]]:
    """(entries, errors, warnings). Warnings: comment and blank lines, missing final newline."""
    entries: List[Entry] = []
    errors: List[Problem] = []
    warnings: List[Problem] = []
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    elif text:
        warnings.append(Problem(file, _where(len(lines)), "no newline at end of file"))
    for lineno, raw in enumerate(lines, 1):
        if raw.strip() == "":
            warnings.append(Problem(file, _where(lineno), "blank line (several consumers "
                                                          "reject or drop it)"))
            continue
        if raw.lstrip().startswith("#"):
            warnings.append(Problem(file, _where(lineno), "comment line (Apptainer deletes it "
                                                          "on rewrite; not every parser skips "
                                                          "it)"))
            continue
        entry, problems = _parse_line(raw, lineno, file)
        errors.extend(problems)
        if entry is not None:
            entries.append(entry)
    return entries, errors, warnings


def overlapping_pairs(entries: List[Entry]) -> List[Tuple[Entry, Entry]]:
    """Sort-and-sweep, O(n log n): (entry, an earlier entry it overlaps) pairs."""
    out: List[Tuple[Entry, Entry]] = []
    ordered = sorted(entries, key=lambda e: (e.start, e.count, e.line))
    reach: Optional[Entry] = None  # the entry reaching furthest so far
    for entry in ordered:
        if reach is not None and entry.start <= reach.last:
            out.append((entry, reach))
        if reach is None or entry.last > reach.last:
            reach = entry
    return out


def overlap_problems(entries: List[Entry], file: str) -> List[Problem]:
    """Overlaps between users, overlapping ranges of one user, duplicate lines."""
    return [Problem(file, _where(e.line), _overlap_text(e, other))
            for e, other in overlapping_pairs(entries)]


def _overlap_text(entry: Entry, other: Entry) -> str:
    span = f"{entry.owner}:{entry.start}:{entry.count}"
    if (entry.owner, entry.start, entry.count) == (other.owner, other.start, other.count):
        return f"{span} duplicates line {other.line}"
    if entry.owner == other.owner:
        return (f"{span} overlaps another range of the same owner on line {other.line} "
                "(podman: writing uid_map fails with EINVAL)")
    return (f"{span} overlaps {other.owner}:{other.start}:{other.count} on line {other.line}"
            " (a different owner: no consumer detects this; each can reach the other's files)")


def real_id_problems(entries: List[Entry], real_ids: Set[int], file: str) -> List[Problem]:
    real = sorted(real_ids)
    out: List[Problem] = []
    for entry in entries:
        i = bisect.bisect_left(real, entry.start)
        if i < len(real) and real[i] <= entry.last:
            inside = bisect.bisect_right(real, entry.last) - i
            out.append(Problem(file, _where(entry.line), (
                f"range {entry.start}-{entry.last} contains {inside} real id(s), e.g. "
                f"{real[i]}")))
    return out


def check_text(text: str, file: str, real_uids: Optional[Set[int]] = None) -> List[Problem]:
    """Every problem in one subuid/subgid file, in line order."""
    entries, errors, warnings = parse(text, file)
    problems = errors + warnings + overlap_problems(entries, file)
    if real_uids:
        problems += real_id_problems(entries, real_uids, file)
    return sorted(problems, key=_line_order)


def _line_order(problem: Problem) -> int:
    try:
        return int(problem.path.split()[-1])
    except (ValueError, IndexError):
        return 0


def check_bytes(data: bytes, file: str, real_uids: Optional[Set[int]] = None) -> List[Problem]:
    """check_text for raw file bytes: NUL bytes and non-UTF-8 are problems of their own."""
    problems: List[Problem] = []
    if b"\x00" in data:
        problems.append(Problem(file, "", "NUL byte in file"))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        problems.append(Problem(file, "", f"not UTF-8 (byte {err.start})"))
        text = data.decode("utf-8", errors="replace")
    return problems + check_text(text.replace("\x00", "\ufffd"), file, real_uids)
