"""LDAP directory reader (work in progress: full reader follows)."""

from __future__ import annotations

from typing import List, Optional, Tuple

from hpcpolicy.directory.model import Group, User
from hpcpolicy.errors import DirectoryError
from hpcpolicy.policy.model import LdapSource


def describe(src: LdapSource) -> str:
    """The URIs of a source, for messages."""
    return ",".join(src.uri)


def read_ldap(src: LdapSource, now: Optional[float] = None) -> Tuple[List[User], List[Group]]:
    """Users and groups of an LDAP source."""
    raise DirectoryError("the LDAP reader is not implemented yet")
