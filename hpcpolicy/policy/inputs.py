"""The one checked way to read a file that `apply` (or any command) takes as input.

Every input file named by the site file or the command line -- the site file itself, the
`[directory.files]` passwd and group files, `signed_by` keyrings, Apptainer ECL files and
their keyrings, the LDAP bind password file, `subid import` and `subid check` files -- is read
through `read_input`, so that each one gets the same guards:

* `fsutil.read_regular`: opened with O_NONBLOCK (a FIFO, so also a shell's `<(...)`, cannot
  hang the command); `fstat` of the open descriptor (not of the path, which could be swapped)
  must show a regular file (FIFOs, devices -- `/dev/zero` would eat all memory --, sockets
  and directories are exit 2); read with a size cap (exit 2, never a MemoryError);
* with a `Trust`, the ownership rule: apply runs as root or the deploy owner and publishes what
  it reads to every node, so a file that someone else could have written decides what root
  installs. Refused (exit 2) when writable by group or others, or owned by anyone but root,
  the deploy owner or the operator running the command.

Every refusal is an `InvalidInput` naming the file and the key path that named it.
New inputs (e.g. an ECL file or its keyring) call `read_input` with a `Trust` from
`trust_for(policy.site.deploy_owner)`; keyrings then go through `policy.keyring.check_public`.
"""

from __future__ import annotations

import errno
import os
import pwd
import stat
from dataclasses import dataclass
from typing import FrozenSet, Optional, Tuple

from hpcpolicy.errors import InvalidInput, Problem
from hpcpolicy.fsutil import FileTooLarge, NotRegularFile, file_kind, read_regular

MiB = 1024 * 1024
SITE_MAX = 16 * MiB
DIRECTORY_FILE_MAX = 1024 * MiB  # passwd/group of a 1M-user site are ~100 MiB
KEYRING_MAX = 16 * MiB
SECRET_MAX = 64 * 1024
SUBID_FILE_MAX = 64 * MiB  # the bound nodes apply to etc/subuid and etc/subgid


@dataclass(frozen=True)
class Trust:
    """Who may own an input file: uids, and how to name them in a message."""

    owners: FrozenSet[int]
    who: str


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def trust_for(deploy_owner: Optional[str] = None) -> Trust:
    """root, the deploy owner (a name or a uid; unknown names are skipped) and our euid."""
    owners = {0, os.geteuid()}
    names = ["root"]
    if deploy_owner and deploy_owner != "root":
        uid: Optional[int] = int(deploy_owner) if deploy_owner.isdigit() else None
        if uid is None:
            try:
                uid = pwd.getpwnam(deploy_owner).pw_uid
            except KeyError:
                uid = None
        if uid is not None:
            owners.add(uid)
            names.append(f"the deploy owner {deploy_owner}")
    if os.geteuid() != 0:
        names.append(f"the operator {user_name(os.geteuid())}")
    return Trust(frozenset(owners), ", ".join(names[:-1]) + " or " + names[-1]
                 if len(names) > 1 else names[0])


def trust_problem(path: str, st: os.stat_result, trust: Trust) -> Optional[str]:
    """Why `st` breaks the ownership rule, or None when it keeps it."""
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        return (f"{path} is writable by group or others (mode {mode:04o}): whoever can write "
                f"it decides what is published; chmod go-w it")
    if st.st_uid not in trust.owners:
        return (f"{path} is owned by {user_name(st.st_uid)} (uid {st.st_uid}): only "
                f"{trust.who} may own a file this command reads")
    return None


def read_checked(path: str, *, file: str, key: str, max_size: int,
                 trust: Optional[Trust] = None, nofollow: bool = False
                 ) -> Tuple[bytes, os.stat_result]:
    """The bytes of the regular file `path`, and its fstat; InvalidInput on any refusal.

    `file`/`key`: what named the path (the site file and the key path, or "" for a path on
    the command line).
    FileNotFoundError and PermissionError propagate: callers differ on what a missing file is.
    """
    where = (file, key)
    try:
        data, st = read_regular(path, max_size, nofollow)
    except NotRegularFile as err:
        raise InvalidInput([Problem(*where, f"{path} is {err}, not a regular file")]) from None
    except FileTooLarge:
        raise InvalidInput([Problem(*where, f"{path} is larger than {max_size} bytes")]
                           ) from None
    except OSError as err:
        if err.errno == errno.ELOOP and nofollow:
            raise InvalidInput([Problem(*where, f"{path} is a symlink; name the file itself")]
                               ) from None
        if isinstance(err, (FileNotFoundError, PermissionError)):
            raise
        raise InvalidInput([Problem(*where, f"{path}: cannot read: {err.strerror or err}")]
                           ) from None
    if trust is not None:
        why = trust_problem(path, st, trust)
        if why:
            raise InvalidInput([Problem(*where, why)])
    return data, st


def read_input(path: str, *, file: str, key: str, max_size: int,
               trust: Optional[Trust] = None, nofollow: bool = False) -> bytes:
    """`read_checked` without the stat: the usual call."""
    return read_checked(path, file=file, key=key, max_size=max_size, trust=trust,
                        nofollow=nofollow)[0]


def check_anchor(path: str, *, file: str, key: str) -> None:
    """A trust anchor read by a library (a CA file): regular and not world-writable."""
    try:
        st = os.stat(path)
    except OSError as err:
        raise InvalidInput([Problem(file, key, f"{path}: {err.strerror or err}")]) from None
    if not stat.S_ISREG(st.st_mode):
        raise InvalidInput([Problem(file, key, f"{path} is {file_kind(st.st_mode)}, not a "
                                                "regular file")])
    if st.st_mode & 0o002:
        raise InvalidInput([Problem(file, key, (
            f"{path} is writable by anybody (mode {stat.S_IMODE(st.st_mode):04o}): whoever "
            "writes it decides which server is trusted; chmod o-w it"))])
