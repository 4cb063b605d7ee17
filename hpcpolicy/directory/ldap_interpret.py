"""Turn LDAP entries into users and groups (pure: no connection, no I/O).

Attribute names from `LdapAttributes`; entries missing a required attribute or carrying a
non-integer ID are `InvalidInput` problems naming the DN and attribute, all collected. Disabled:
nologin shell, `shadowExpire` on or before today (days since epoch, pam_unix semantics; -1 or
absent: never), `nsAccountLock: TRUE`, or any `pwdAccountLockedTime`. Groups: `memberUid` holds
names; `member` / `uniqueMember` hold DNs, mapped to the users read (by DN) and to other groups,
whose members are included transitively (cycles tolerated). DNs naming nothing that was read (a
user outside `user_base` / `user_filter`, a deleted entry) are ignored, as NSS clients do.
The home (`attributes.home`, first value) is kept as stated; an entry without one has none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Set, Tuple

from hpcpolicy.directory.checks import MAX_ID, is_nologin, name_problem, parse_id
from hpcpolicy.directory.ldap_wire import RawEntry
from hpcpolicy.directory.model import Group, User
from hpcpolicy.errors import InvalidInput, Problem, printable
from hpcpolicy.policy.model import LdapSource

SOURCE = "ldap"


def user_attributes(src: LdapSource) -> List[str]:
    a = src.attributes
    return [a.name, a.uid, a.gid, "loginShell", "shadowExpire", "nsAccountLock",
            "pwdAccountLockedTime", a.home]


def group_attributes(src: LdapSource) -> List[str]:
    a = src.attributes
    return [a.group_name, a.gid, src.member_attribute]


def _first(values: Optional[List[bytes]]) -> Optional[str]:
    if not values:
        return None
    return values[0].decode("utf-8", errors="replace")


def _home(values: Optional[List[bytes]]) -> Optional[str]:
    """The home directory of an entry: its first value, None when absent or empty (a home is
    informative, never required, so an odd value is kept as stated rather than refused)."""
    if not values or not values[0]:
        return None
    return values[0].decode("utf-8", errors="replace")


def _pick_name(dn: str, values: List[bytes]) -> str:
    """The name among several values: the one in the entry's RDN if any (as SSSD does)."""
    names = [v.decode("utf-8", errors="replace") for v in values]
    if len(names) > 1:
        rdn = dn.split(",", 1)[0].split("=", 1)[-1].strip().lower()
        for name in names:
            if name.lower() == rdn:
                return name
    return names[0]


@dataclass
class _Seen:
    """Detects one name with two IDs and one ID with two names within the source."""

    by_name: Dict[str, Tuple[int, str]] = field(default_factory=dict)
    by_id: Dict[int, Tuple[str, str]] = field(default_factory=dict)

    def clash(self, name: str, ident: int, dn: str, kind: str, id_word: str) -> Optional[str]:
        if name in self.by_name:
            first_id, first_dn = self.by_name[name]
            return f"{kind} {name!r} also defined by {first_dn} ({id_word} {first_id})"
        if ident in self.by_id:
            first_name, first_dn = self.by_id[ident]
            return (f"{id_word} {ident} of {kind} {name!r} already used by {first_name!r}"
                    f" ({first_dn})")
        self.by_name[name] = (ident, dn)
        self.by_id[ident] = (name, dn)
        return None


def interpret_users(
    src: LdapSource, where: str, entries: Iterable[RawEntry], today: int
) -> Tuple[List[User], Dict[str, str]]:
    """Users, and a map normalised DN -> user name (for DN-valued group members).

    Most entries take `_plain_user` (a few dict lookups); anything unusual takes
    `_checked_user`, which states every problem. Both give the same User for the same entry.
    """
    a = src.attributes
    keys = (a.name.lower(), a.uid.lower(), a.gid.lower(), a.home.lower())
    by_dn = src.member_attribute.lower() != "memberuid"  # the DN map is needed only then
    problems: List[Problem] = []
    users: List[User] = []
    dn_to_user: Dict[str, str] = {}
    seen = _Seen()
    by_name, by_id = seen.by_name, seen.by_id
    shells: Dict[bytes, bool] = {}
    aliases: Dict[str, str] = {}  # the other values of multi-valued names -> their DN
    for dn, attrs in entries:
        user = _plain_user(attrs, keys, shells, today)
        if user is None:
            user = _checked_user(src, where, dn, attrs, today, problems, aliases)
            if user is None:
                continue
        name, uid = user.name, user.uid
        if name in by_name or uid in by_id:
            problems.append(Problem(where, dn, seen.clash(name, uid, dn, "user", "uid") or ""))
            continue
        by_name[name] = (uid, dn)
        by_id[uid] = (name, dn)
        users.append(user)
        if by_dn:
            dn_to_user[normalize_dn(dn)] = name
    if aliases:
        problems += _alias_problems(where, src.attributes.name, aliases, by_name)
    if problems:
        raise InvalidInput(problems)
    return users, dn_to_user


def _alias_problems(where: str, attr: str, aliases: Dict[str, str],
                    by_name: Dict[str, Tuple[int, str]]) -> List[Problem]:
    """An entry whose extra name values include another account's name: `getpwnam` of that
    name would have two answers on a node, so the name cannot be trusted for sub-IDs."""
    out = []
    for alias, dn in aliases.items():
        owner = by_name.get(alias)
        if owner is not None and owner[1] != dn:
            out.append(Problem(where, dn, f"attribute {attr} also holds {alias!r}, the name of "
                               f"the user at {owner[1]}: two entries answer for {alias!r}"))
    return out


def _plain_user(
    attrs: Dict[str, List[bytes]], keys: Tuple[str, str, str, str], shells: Dict[bytes, bool],
    today: int,
) -> Optional[User]:
    """The user of an ordinary entry, or None to send it through `_checked_user`.

    Ordinary: one name, one plain decimal UID and GID in range, a valid name, and no lock
    attribute other than loginShell and a plain shadowExpire. Shell verdicts are cached: a
    directory has few distinct shells.
    """
    try:
        (raw_name,) = attrs[keys[0]]
        (raw_uid,) = attrs[keys[1]]
        (raw_gid,) = attrs[keys[2]]
    except (KeyError, ValueError):
        return None
    if not (raw_uid.isdigit() and raw_gid.isdigit()):  # bytes: ASCII digits only
        return None
    if "nsaccountlock" in attrs or "pwdaccountlockedtime" in attrs:
        return None
    uid, gid = int(raw_uid), int(raw_gid)
    name = raw_name.decode("utf-8", errors="replace")
    if uid > MAX_ID or gid > MAX_ID or name_problem(name):
        return None
    disabled = False
    shell = attrs.get("loginshell")
    if shell:
        nologin = shells.get(shell[0])
        if nologin is None:
            nologin = shells[shell[0]] = is_nologin(shell[0].decode("utf-8", errors="replace"))
        disabled = nologin
    expire = attrs.get("shadowexpire")
    if expire and not disabled:
        if not expire[0].isdigit():  # -1, signs, spaces, garbage: the checked path
            return None
        disabled = today >= int(expire[0])
    home = attrs.get(keys[3])  # `_home`, inlined: one call less per entry
    return User(name, uid, gid, SOURCE, disabled,
                home[0].decode("utf-8", "replace") if home and home[0] else None)


def _checked_user(
    src: LdapSource, where: str, dn: str, attrs: Dict[str, List[bytes]], today: int,
    problems: List[Problem], aliases: Optional[Dict[str, str]] = None,
) -> Optional[User]:
    """The user of any entry, with every problem it has appended; None when it has one.
    The names of a multi-valued name attribute other than the one picked go to `aliases`."""
    a = src.attributes
    name_v = attrs.get(a.name.lower())
    uid = _id(where, dn, a.uid, attrs.get(a.uid.lower()), problems)
    gid = _id(where, dn, a.gid, attrs.get(a.gid.lower()), problems)
    if not name_v:
        problems.append(Problem(where, dn, f"missing attribute {a.name}"))
        return None
    name = _pick_name(dn, name_v)
    bad = name_problem(name)
    if bad:
        problems.append(Problem(where, dn, f"attribute {a.name}: {bad}"))
        return None
    seen_names = {} if aliases is None else aliases
    for value in name_v:
        other = value.decode("utf-8", errors="replace")
        if other != name:
            if other in seen_names and seen_names[other] != dn:
                problems.append(Problem(where, dn, f"attribute {a.name} holds {other!r}, "
                                        f"which {seen_names[other]} holds too"))
            seen_names.setdefault(other, dn)
    if uid is None or gid is None:
        return None
    disabled = _disabled(where, dn, attrs, today, problems)
    return User(name, uid, gid, SOURCE, disabled, _home(attrs.get(a.home.lower())))


def _id(
    where: str, dn: str, attr: str, values: Optional[List[bytes]], problems: List[Problem]
) -> Optional[int]:
    text = _first(values)
    if text is None:
        problems.append(Problem(where, dn, f"missing attribute {attr}"))
        return None
    if values is not None and len(values) > 1:  # NSS would take one of them: which?
        shown = ", ".join(printable(repr(v.decode("utf-8", "replace")), 40) for v in values[:5])
        problems.append(Problem(where, dn, f"attribute {attr} has {len(values)} values "
                                           f"({shown}): an account has exactly one"))
        return None
    value = parse_id(text)
    if value is None:
        shown = printable(repr(text), 40)
        problems.append(Problem(where, dn, f"attribute {attr}: {shown} is not an integer "
                                           "in 0..4294967294"))
    return value


def _disabled(
    where: str, dn: str, attrs: Dict[str, List[bytes]], today: int, problems: List[Problem]
) -> bool:
    shell = _first(attrs.get("loginshell"))
    if shell is not None and is_nologin(shell):
        return True
    if attrs.get("pwdaccountlockedtime"):
        return True
    lock = _first(attrs.get("nsaccountlock"))
    if lock is not None and lock.strip().lower() == "true":
        return True
    expire = _first(attrs.get("shadowexpire"))
    if expire is None:
        return False
    try:
        days = int(expire.strip())
    except ValueError:
        shown = printable(repr(expire), 40)
        problems.append(Problem(where, dn, f"attribute shadowExpire: {shown} is not an integer"))
        return False
    return days >= 0 and today >= days  # pam_unix: expired from that day on; -1 never


def normalize_dn(dn: str) -> str:
    """Compare DNs the way servers do for the common case: case- and space-insensitive."""
    if " " not in dn and "\\" not in dn and '"' not in dn and "+" not in dn:
        return dn.lower()  # the usual server-returned form: nothing else to normalise
    if "\\" in dn or '"' in dn or "+" in dn:
        from ldap3.utils.dn import parse_dn

        try:
            return ",".join(f"{t.strip()}={v.strip()}" for t, v, _sep in parse_dn(dn)).lower()
        except Exception:  # noqa: BLE001 - an unparsable DN simply matches nothing
            return dn.lower()
    return ",".join("=".join(p.strip() for p in rdn.split("=", 1)) for rdn in dn.split(",")).lower()


def _member_dn(value: bytes) -> str:
    """A member value as a DN; uniqueMember may carry an optional `#'0101'B` UID suffix."""
    text = value.decode("utf-8", errors="replace")
    if text.endswith("'B") and "#'" in text:
        text = text[: text.rindex("#'")]
    return text


def interpret_groups(
    src: LdapSource,
    where: str,
    entries: Iterable[RawEntry],
    dn_to_user: Dict[str, str],
    known_names: Iterable[str] = (),
) -> List[Group]:
    """Groups with members as user names; DN members resolved through nested groups.

    `known_names` (user names already validated) spares re-checking each memberUid value.
    """
    a = src.attributes
    k_name, k_gid, k_member = a.group_name.lower(), a.gid.lower(), src.member_attribute.lower()
    by_dn = k_member != "memberuid"
    problems: List[Problem] = []
    rows: List[Tuple[str, str, int, List[bytes]]] = []  # dn, name, gid, member values
    seen = _Seen()
    for dn, attrs in entries:
        names = attrs.get(k_name)
        gid = _id(where, dn, a.gid, attrs.get(k_gid), problems)
        if not names:
            problems.append(Problem(where, dn, f"missing attribute {a.group_name}"))
            continue
        name = _pick_name(dn, names)
        bad = name_problem(name)
        if bad:
            problems.append(Problem(where, dn, f"attribute {a.group_name}: {bad}"))
            continue
        if gid is None:
            continue
        clash = seen.clash(name, gid, dn, "group", "gid")
        if clash:
            problems.append(Problem(where, dn, clash))
            continue
        rows.append((dn, name, gid, attrs.get(k_member) or []))
    if not by_dn:
        known = set(dn_to_user.values()) | set(known_names)
        groups = [_uid_group(where, row, known, problems) for row in rows]
    else:
        groups = _dn_groups(rows, dn_to_user)
    if problems:
        raise InvalidInput(problems)
    return groups


def _uid_group(
    where: str, row: Tuple[str, str, int, List[bytes]], known: Set[str], problems: List[Problem]
) -> Group:
    dn, name, gid, values = row
    texts = b"\0".join(values).decode("utf-8", errors="replace").split("\0")
    if len(texts) == len(values):  # no NUL inside a value: decoded in one C call
        members = set(texts)
        if all(name_problem(m) is None for m in members - known):
            return Group(name, gid, frozenset(members), SOURCE)
    members = set()  # some value is bad: name each, in order
    for value in values:
        member = value.decode("utf-8", errors="replace")
        bad = None if member in known else name_problem(member)
        if bad:
            problems.append(Problem(where, dn, f"memberUid: {bad}"))
        else:
            members.add(member)
    return Group(name, gid, frozenset(members), SOURCE)


def _dn_groups(
    rows: List[Tuple[str, str, int, List[bytes]]], dn_to_user: Dict[str, str]
) -> List[Group]:
    """Resolve DN members: users directly, groups transitively (a visited set breaks cycles)."""
    group_index = {normalize_dn(dn): i for i, (dn, _n, _g, _v) in enumerate(rows)}
    direct_users: List[Set[str]] = []
    sub_groups: List[List[int]] = []
    for _dn, _name, _gid, values in rows:
        users: Set[str] = set()
        subs: List[int] = []
        for value in values:
            key = normalize_dn(_member_dn(value))
            user = dn_to_user.get(key)
            if user is not None:
                users.add(user)
            elif key in group_index:
                subs.append(group_index[key])
        direct_users.append(users)
        sub_groups.append(subs)
    groups: List[Group] = []
    for i, (_dn, name, gid, _values) in enumerate(rows):
        members: Set[str] = set()
        visited = {i}
        stack = [i]
        while stack:
            j = stack.pop()
            members |= direct_users[j]
            for k in sub_groups[j]:
                if k not in visited:
                    visited.add(k)
                    stack.append(k)
        groups.append(Group(name, gid, frozenset(members), SOURCE))
    return groups
