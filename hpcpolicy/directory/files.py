"""Read users and groups from passwd(5) and group(5) files.

Decisions (documented for administrators):

* A missing or unreadable configured file is a runtime failure (`DirectoryError`, exit 1): the
  file is named in site.toml, so its absence is an outage, not a typo in the data.
* Malformed lines are invalid input (exit 2). Every bad line is reported at once as
  `FILE:LINE: message`, so an administrator fixes the file in one pass.
* Blank lines and `#` comments are skipped (glibc tolerates them, many sites use them).
* NIS compat lines (`+`, `-`, `+name`, `+@netgroup`) are skipped: they pull entries from NIS,
  which hpcpolicy does not read; configure the network directory as the `ldap` source instead.
* One name with two UIDs, or one UID with two names, in the same file is an error: sub-ID
  ranges are keyed by name or UID and must map to exactly one account. Groups likewise.
* Shadow data (`/etc/shadow` expiry) is not read: the publisher need not be able to read
  password hashes. Local accounts are flagged disabled by their shell only.
"""

from __future__ import annotations

import re
from itertools import repeat
from typing import Dict, List, Optional, Sequence, Tuple

from hpcpolicy.directory.checks import (
    MAX_ID,
    NOLOGIN_SHELLS,
    is_nologin,
    member_list_ok,
    name_ok,
    name_problem,
    parse_id,
)
from hpcpolicy.directory.model import Group, User
from hpcpolicy.errors import DirectoryError, InvalidInput, Problem, printable
from hpcpolicy.policy.inputs import DIRECTORY_FILE_MAX, Trust, read_input
from hpcpolicy.policy.model import FilesSource

SOURCE = "files"


# A record line: (line number, its fields).
_Line = Tuple[int, List[str]]


def read_files(src: FilesSource, trust: Optional[Trust] = None,
               site_file: str = "") -> Tuple[List[User], List[Group]]:
    """Users from `src.passwd` and groups from `src.group`; all problems of both raised together.

    `trust`: the ownership rule of `policy.inputs` (apply passes the site's); `site_file` names
    the site file in its refusals.
    """
    problems: List[Problem] = []
    texts = {}
    for key, path in (("passwd", src.passwd), ("group", src.group)):
        try:
            texts[key] = _read_text(path, trust, site_file, f"directory.files.{key}")
        except InvalidInput as err:
            problems.extend(err.problems)
    if problems:
        raise InvalidInput(problems)
    text, suspect = texts["passwd"]
    users = None if suspect else _plain_users(text)
    if users is None:
        users = _users(src.passwd, _lines(src.passwd, text, suspect, 7, problems), problems)
    text, suspect = texts["group"]
    groups = None if suspect else _plain_groups(text)
    if groups is None:
        groups = _groups(src.group, _lines(src.group, text, suspect, 4, problems), problems)
    if problems:
        raise InvalidInput(problems)
    return users, groups


_UNDECODABLE = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of a bad byte

# ---------------------------------------------------------------------------- fast path
#
# Most files hold nothing but well-formed, distinct entries. Then one regex pass over the
# whole file and a few checks over all entries at once read it; anything else (a comment,
# a blank or NIS line, CRLF, an undecodable byte, a bad name or ID, a duplicate) sends the
# whole file through the line-by-line reader below, which reports every problem precisely.
# The patterns accept a subset of what that reader accepts without a problem, so both paths
# give the same result for every file the fast path takes.

_NAME = r"[^\s:,\x00-\x1f\x7f#+\-][^\s:,\x00-\x1f\x7f]*"  # a name_ok() name; no '#', NIS '+'/'-'
_FIELD = r"[^:\n]*"
_ID = r"[0-9]{1,10}"  # MAX_ID has 10 digits; longer (leading zeros) takes the slow path
_PASSWD_LINE = re.compile(
    rf"^({_NAME}):{_FIELD}:({_ID}):({_ID}):{_FIELD}:({_FIELD}):([^:\n\r]*)$", re.MULTILINE
)
_GROUP_LINE = re.compile(rf"^({_NAME}):{_FIELD}:({_ID}):([^\s:\x00-\x1f\x7f]*)$", re.MULTILINE)


def _all_lines_match(text: str, rows: List[Tuple[str, ...]]) -> bool:
    """Whether every line matched (one match per line; a final newline ends the last line)."""
    lines = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
    return len(rows) == lines


def _plain_ids(names: Sequence[str], id_texts: Sequence[str]) -> Optional[List[int]]:
    """The IDs, when names and IDs are each distinct and every ID <= MAX_ID; else None."""
    ids = list(map(int, id_texts))
    if ids and max(ids) > MAX_ID:
        return None
    if len(set(names)) != len(names) or len(set(ids)) != len(ids):
        return None
    return ids


def _plain_users(text: str) -> Optional[List[User]]:
    rows = _PASSWD_LINE.findall(text)
    if not rows or not _all_lines_match(text, rows):
        return None
    names, uid_texts, gid_texts, homes, shells = zip(*rows)
    uids = _plain_ids(names, uid_texts)
    gids = list(map(int, gid_texts))
    if uids is None or max(gids) > MAX_ID:
        return None
    disabled = [shell.strip() in NOLOGIN_SHELLS for shell in shells]  # is_nologin, inlined
    return list(map(User, names, uids, gids, repeat(SOURCE), disabled,
                    [home or None for home in homes]))


def _plain_groups(text: str) -> Optional[List[Group]]:
    rows = _GROUP_LINE.findall(text)
    if not rows or not _all_lines_match(text, rows):
        return None
    names, gid_texts, member_lists = zip(*rows)
    gids = _plain_ids(names, gid_texts)
    if gids is None:
        return None
    members = (frozenset(m.split(",")) - {""} for m in member_lists)
    return list(map(Group, names, gids, members, repeat(SOURCE)))


# ------------------------------------------------------------------------- line by line


def _read_text(path: str, trust: Optional[Trust], site_file: str, key: str
               ) -> Tuple[str, bool]:
    """The text, and whether it has undecodable bytes (then marked by surrogateescape)."""
    try:
        data = read_input(path, file=site_file, key=key, max_size=DIRECTORY_FILE_MAX,
                          trust=trust)
    except FileNotFoundError:
        raise DirectoryError(f"{path}: configured directory file does not exist") from None
    except OSError as err:
        raise DirectoryError(f"{path}: cannot read: {err.strerror or err}") from None
    try:
        return data.decode("utf-8"), False  # strict: no surrogate can be in the text
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="surrogateescape"), True


def _lines(path: str, text: str, suspect: bool, nfields: int, problems: List[Problem]
           ) -> List[_Line]:
    """Split the file into `nfields`-field records, skipping comments, blanks and NIS lines.

    Fast path: a plain record line (no undecodable byte in the file, starts with neither
    whitespace nor '#', '+', '-', no CR) with the right field count is taken as is; every other
    line goes through `_odd_line`, which skips it or says exactly what is wrong.
    """
    out: List[_Line] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        if (not suspect and raw and raw[0] not in "#+-" and not raw[0].isspace()
                and raw[-1] != "\r"):
            fields = raw.split(":")
            if len(fields) == nfields:
                out.append((number, fields))
                continue
        _odd_line(path, number, raw, nfields, suspect, problems, out)
    return out


def _odd_line(path: str, number: int, raw: str, nfields: int, suspect: bool,
              problems: List[Problem], out: List[_Line]) -> None:
    """A line off the fast path: skipped, reported, or (CRLF, leading blanks) taken."""
    line = raw[:-1] if raw.endswith("\r") else raw
    if not line.strip() or line.lstrip().startswith("#") or line[0] in "+-":
        return
    where = f"{path}:{number}"
    if suspect and _UNDECODABLE.search(line):
        problems.append(Problem(where, "", "not valid UTF-8"))
        return
    fields = line.split(":")
    if len(fields) != nfields:
        problems.append(
            Problem(where, "", f"expected {nfields} ':'-separated fields, found {len(fields)}")
        )
        return
    out.append((number, fields))


def _users(path: str, lines: List[_Line], problems: List[Problem]) -> List[User]:
    """Fast path for a valid, new account; `_odd_user` re-checks any other line in detail."""
    users: List[User] = []
    by_name: Dict[str, Tuple[int, int]] = {}  # name -> (uid, line)
    by_uid: Dict[int, Tuple[str, int]] = {}  # uid -> (name, line)
    for number, fields in lines:
        name, _pw, uid_s, gid_s, _gecos, home, shell = fields
        uid, gid = parse_id(uid_s), parse_id(gid_s)
        if (uid is not None and gid is not None and name_ok(name) and name not in by_name
                and uid not in by_uid):
            by_name[name] = (uid, number)
            by_uid[uid] = (name, number)
            users.append(User(name, uid, gid, SOURCE, is_nologin(shell), home or None))
        else:
            _odd_user(path, number, fields, by_name, by_uid, problems, users)
    return users


def _odd_user(path: str, number: int, fields: List[str], by_name: Dict[str, Tuple[int, int]],
              by_uid: Dict[int, Tuple[str, int]], problems: List[Problem],
              users: List[User]) -> None:
    where = f"{path}:{number}"
    name, _pw, uid_s, gid_s, _gecos, home, shell = fields
    uid = _id_or_problem(where, "uid", uid_s, problems)
    gid = _id_or_problem(where, "gid", gid_s, problems)
    bad = name_problem(name)
    if bad:
        problems.append(Problem(where, "", bad))
    if bad or uid is None or gid is None:
        return
    clash = _clash(by_name, by_uid, name, uid, number, "user", "uid")
    if clash:
        problems.append(Problem(where, "", clash))
        return
    users.append(User(name, uid, gid, SOURCE, disabled=is_nologin(shell), home=home or None))


def _groups(path: str, lines: List[_Line], problems: List[Problem]) -> List[Group]:
    """Fast path for a valid, new group; `_odd_group` re-checks any other line in detail."""
    groups: List[Group] = []
    by_name: Dict[str, Tuple[int, int]] = {}
    by_gid: Dict[int, Tuple[str, int]] = {}
    for number, fields in lines:
        name, _pw, gid_s, members_s = fields
        gid = parse_id(gid_s)
        if (gid is not None and name_ok(name) and member_list_ok(members_s)
                and name not in by_name and gid not in by_gid):
            by_name[name] = (gid, number)
            by_gid[gid] = (name, number)
            members = frozenset(members_s.split(",")) - {""}
            groups.append(Group(name, gid, members, SOURCE))
        else:
            _odd_group(path, number, fields, by_name, by_gid, problems, groups)
    return groups


def _odd_group(path: str, number: int, fields: List[str], by_name: Dict[str, Tuple[int, int]],
               by_gid: Dict[int, Tuple[str, int]], problems: List[Problem],
               groups: List[Group]) -> None:
    where = f"{path}:{number}"
    name, _pw, gid_s, members_s = fields
    gid = _id_or_problem(where, "gid", gid_s, problems)
    bad = name_problem(name)
    if bad:
        problems.append(Problem(where, "", bad))
    members = [m for m in members_s.split(",") if m]
    bad_members = [msg for msg in map(name_problem, members) if msg]
    for msg in bad_members:
        problems.append(Problem(where, "", f"member {msg}"))
    if bad or bad_members or gid is None:
        return
    clash = _clash(by_name, by_gid, name, gid, number, "group", "gid")
    if clash:
        problems.append(Problem(where, "", clash))
        return
    groups.append(Group(name, gid, frozenset(members), SOURCE))


def _id_or_problem(where: str, what: str, text: str, problems: List[Problem]) -> Optional[int]:
    value = parse_id(text)
    if value is None:
        problems.append(
            Problem(where, "", f"{what} {printable(repr(text), 40)} is not an integer in "
                    "0..4294967294")
        )
    return value


def _clash(
    by_name: Dict[str, Tuple[int, int]],
    by_id: Dict[int, Tuple[str, int]],
    name: str,
    ident: int,
    number: int,
    kind: str,
    id_word: str,
) -> Optional[str]:
    """Record (name, id) or say why it contradicts an earlier line of the same file."""
    if name in by_name:
        first_id, first_line = by_name[name]
        return f"{kind} {name!r} already defined on line {first_line} ({id_word} {first_id})"
    if ident in by_id:
        first_name, first_line = by_id[ident]
        return (
            f"{id_word} {ident} of {kind} {name!r} already used by {first_name!r}"
            f" on line {first_line}"
        )
    by_name[name] = (ident, number)
    by_id[ident] = (name, number)
    return None
