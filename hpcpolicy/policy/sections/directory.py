"""[directory]: where users and groups come from (files, LDAP) and who counts as a user."""

from __future__ import annotations

import re
from typing import Any, Dict, Optional

from hpcpolicy.errors import ProblemCollector
from hpcpolicy.policy.model import Directory, FilesSource, LdapAttributes, LdapSource
from hpcpolicy.policy.schema import (
    Field,
    array,
    boolean,
    integer,
    one_of,
    read_table,
    string,
)
from hpcpolicy.policy.sections.common import MAX_ID, path, resolved_path, sub_table

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])"
_URI_RE = re.compile(rf"ldaps?://{_HOST}(?::(?P<port>[0-9]{{1,5}}))?/?|ldapi://[A-Za-z0-9%._-]*/?")
_ATTRIBUTE_RE = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,127}|[0-2](?:\.[0-9]+)+")
PASSWORD_HINT = "never write a password in site.toml: use bind_password_file (a root-only file)"
LDAP_HINTS = {k: PASSWORD_HINT for k in ("bind_password", "password", "bindpw", "bind_pw")}


def _uri(value: str) -> Optional[str]:
    match = _URI_RE.fullmatch(value)
    if match is None:
        return "must be an ldap://, ldaps:// or ldapi:// URI with a host (and optional port)"
    port = match.groupdict().get("port")
    if port is not None and not 1 <= int(port) <= 65535:
        return f"port {port} is not between 1 and 65535"
    return None


def _dn(value: str) -> Optional[str]:
    if not value.strip():
        return "must not be empty"
    if "=" not in value or len(value) > 1024:
        return "is not an LDAP DN (e.g. ou=people,dc=example,dc=org)"
    return None


def _filter(value: str) -> Optional[str]:
    """A parenthesised filter whose parentheses balance (escapes are hex, \\28 \\29)."""
    depth = 0
    for ch in value:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0:
            break
    if not (value.startswith("(") and value.endswith(")")) or depth != 0 or len(value) > 4096:
        return "must be an LDAP filter in balanced parentheses, e.g. (objectClass=posixAccount)"
    return None


def _attribute(value: str) -> Optional[str]:
    if _ATTRIBUTE_RE.fullmatch(value) is None:
        return "is not an LDAP attribute name"
    return None


ATTRIBUTE_FIELDS = {
    name: Field(string(_attribute), getattr(LdapAttributes(), name))
    for name in ("name", "uid", "gid", "group_name", "home")
}

_L = LdapSource(uri=())
LDAP_FIELDS = {
    "uri": Field(array(string(_uri), nonempty=True, unique=True)),
    "start_tls": Field(boolean(), _L.start_tls),
    "ca_file": Field(path(), _L.ca_file),
    "bind_dn": Field(string(_dn), None),
    "bind_password_file": Field(path(), None),
    "user_base": Field(string(_dn)),
    "user_filter": Field(string(_filter), _L.user_filter),
    "group_base": Field(string(_dn)),
    "group_filter": Field(string(_filter), _L.group_filter),
    "member_attribute": Field(one_of("memberUid", "member", "uniqueMember"), _L.member_attribute),
    "attributes": Field(sub_table(ATTRIBUTE_FIELDS, LdapAttributes), LdapAttributes()),
    "page_size": Field(integer(1, 10000), _L.page_size),
    "timeout": Field(integer(1, 3600), _L.timeout),
    "deadline": Field(integer(1, 86400), _L.deadline),
}


def files_fields(base_dir: str) -> Dict[str, Field]:
    """passwd/group files; relative paths are relative to the site file (docs/decisions.md)."""
    return {
        "passwd": Field(resolved_path(base_dir), FilesSource.passwd),
        "group": Field(resolved_path(base_dir), FilesSource.group),
    }


_D = Directory()


def fields(base_dir: str) -> Dict[str, Field]:
    """The [directory] schema (file paths resolve against `base_dir`)."""
    return {
        "sources": Field(
            array(one_of("files", "ldap"), nonempty=True, unique=True,
                  empty_hint="name \"files\", \"ldap\" or both"),
            _D.sources,
        ),
        "min_uid": Field(integer(0, MAX_ID), _D.min_uid),
        "max_uid": Field(integer(0, MAX_ID), None),
        "exclude_disabled": Field(boolean(), _D.exclude_disabled),
        "files": Field(sub_table(files_fields(base_dir), FilesSource), FilesSource()),
        "ldap": Field(sub_table(LDAP_FIELDS, LdapSource, LDAP_HINTS), None),
    }


def _check_ldap(ldap: LdapSource, out: ProblemCollector) -> bool:
    ok = True
    if ldap.start_tls and any(u.startswith("ldaps://") for u in ldap.uri):
        out.add("directory.ldap.start_tls", "cannot be used with an ldaps:// URI (TLS already)")
        ok = False
    if ldap.bind_password_file is not None and ldap.bind_dn is None:
        out.add("directory.ldap.bind_password_file", "needs bind_dn (absent bind_dn: anonymous)")
        ok = False
    if ldap.bind_dn is not None and ldap.bind_password_file is None:
        out.add("directory.ldap.bind_dn", "needs bind_password_file (an empty password would "
                "be an unauthenticated bind)")
        ok = False
    return ok


def _check(d: Directory, out: ProblemCollector) -> bool:
    ok = True
    if d.min_uid == 0:
        out.add("directory.min_uid", "must be at least 1: 0 makes root eligible for sub-IDs "
                "(system accounts end at 999 on most distributions: 1000 is the usual value)")
        ok = False
    if d.max_uid is not None and d.max_uid < d.min_uid:
        out.add("directory.max_uid", f"must be >= directory.min_uid ({d.min_uid})")
        ok = False
    if "ldap" in d.sources and d.ldap is None:
        out.add("directory.ldap", 'is required when directory.sources names "ldap"')
        ok = False
    if d.ldap is not None and not _check_ldap(d.ldap, out):
        ok = False
    return ok


def parse(raw: Any, out: ProblemCollector, base_dir: str) -> Optional[Directory]:
    values = read_table(raw, "directory", fields(base_dir), out)
    if values is None:
        return None
    directory = Directory(**values)
    return directory if _check(directory, out) else None
