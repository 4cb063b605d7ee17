"""The one atomic-write helper (borg's SaveFile pattern) and small safe-file utilities.

Every file hpcpolicy writes, on shared storage or on a node, goes through `atomic_write`:
exclusive temp file in the destination directory, final mode set before the rename, write,
fsync, `os.replace`, fsync of the directory. A crash leaves either the old or the new file,
never a torn one; a stale `.hpcpolicy-tmp-*` file is all that can remain.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from typing import Optional, Union

TMP_PREFIX = ".hpcpolicy-tmp-"

PathLike = Union[str, "os.PathLike[str]"]


def fsync_dir(path: PathLike) -> None:
    """fsync a directory so a rename in it is durable; NFS/Lustre may refuse (EINVAL)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def atomic_write(
    path: PathLike,
    data: bytes,
    mode: int = 0o644,
    uid: Optional[int] = None,
    gid: Optional[int] = None,
    sync: bool = True,
) -> None:
    """Replace `path` with `data` atomically and durably.

    Never writes through a symlink: the rename replaces the link itself.
    """
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            if uid is not None or gid is not None:
                os.fchown(handle.fileno(), -1 if uid is None else uid, -1 if gid is None else gid)
            handle.write(data)
            handle.flush()
            if sync:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if sync:
        fsync_dir(directory)


def atomic_symlink(target: str, link: PathLike) -> None:
    """Point `link` at `target` by renaming a fresh symlink over it (never unlink-then-create)."""
    link = os.fspath(link)
    directory = os.path.dirname(link) or "."
    tmp = os.path.join(directory, f"{TMP_PREFIX}link-{os.getpid()}-{os.urandom(4).hex()}")
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def read_bytes_nofollow(path: PathLike) -> bytes:
    """Read a regular file, refusing a symlink at the last component."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()
