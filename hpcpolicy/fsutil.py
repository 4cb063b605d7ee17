"""Every file primitive hpcpolicy writes with (in the manner of borg's `platform/base.py`).

Which write goes where:

* `write_new` - a file that must not exist yet, inside a private directory nobody else reads
  until it is renamed into place (the files of a generation under `generations/.tmp-*`):
  exclusive create, never through a symlink, final mode, write, fsync.
* `atomic_write` - replacing a file others may read at any instant (ledger, state records,
  manifest, files `render --out` and `node sync` install): exclusive temp file in the same
  directory, final mode and owner, write, fsync, `os.replace`, fsync of the directory. A crash
  leaves the old or the new file, never a torn one; a stale `.hpcpolicy-tmp-*` is all that can
  remain. The rename replaces a symlink at the destination; it never writes through it.
* `stage_file` - the first half of `atomic_write`, for a set of files that must all be
  replaced or none (`node sync`): every temp file is written before the first rename.
* `atomic_symlink` - switching a link (`current`, channels): a fresh link renamed over the old.
* `append_line` - a history that only grows (the change log): O_APPEND, never through a
  symlink, fsync; a torn last line from a crash is ended before the new one is added.
* `make_dirs` - the directories below a trusted top: created one component at a time relative
  to the previous one's descriptor (`mkdir`/`open` with `dir_fd`, `O_NOFOLLOW`), so no symlink
  is followed even if one appears meanwhile; final mode regardless of the umask.
* `refuse_symlinked_parents` - the check before writing below a directory another user could
  have prepared: every existing component is a real directory, never a symlink.
* `poll_lock` - a non-blocking lock (lockf or flock) retried until a deadline.

`read_bytes_nofollow` reads a regular file without following a final symlink.
"""

from __future__ import annotations

import errno
import os
import stat
import time

from hpcpolicy.errors import UnsafePath, check_seconds

TYPE_CHECKING = False  # typing's, without importing typing: see node/idle.py
if TYPE_CHECKING:
    from typing import Callable, List, Optional, Union

    PathLike = Union[str, "os.PathLike[str]"]

TMP_PREFIX = ".hpcpolicy-tmp-"
POLL_SECONDS = 0.05


_NOFOLLOW_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _discard(tmp: str) -> None:
    """Remove a temp file of a write that failed (gone already is fine)."""
    try:  # noqa: SIM105 - contextlib would cost an idle node sync 0.4 ms of start-up
        os.unlink(tmp)
    except FileNotFoundError:
        pass


def fsync_dir(path: PathLike) -> None:
    """fsync a directory so a rename in it is durable; NFS/Lustre may refuse (EINVAL)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _fsync_dir_fd(fd)
    finally:
        os.close(fd)


def _fsync_dir_fd(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:  # a regular file takes it whole; loop only for exotic file systems
        view = view[os.write(fd, view):]


def write_new(path: PathLike, data: bytes, mode: int = 0o644, sync: bool = True) -> None:
    """Create `path`, which must not exist, with `data` and `mode`; never through a symlink."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, mode)
    try:
        os.fchmod(fd, mode)  # not subject to the umask
        _write_all(fd, data)
        if sync:
            os.fsync(fd)
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
    tmp = stage_file(path, data, mode, uid, gid, sync)
    try:
        os.replace(tmp, path)
    except BaseException:
        _discard(tmp)
        raise
    if sync:
        fsync_dir(os.path.dirname(path) or ".")


def stage_file(
    path: PathLike,
    data: bytes,
    mode: int = 0o644,
    uid: Optional[int] = None,
    gid: Optional[int] = None,
    sync: bool = True,
) -> str:
    """The first half of `atomic_write`: a complete temp file beside `path`; returns its name.

    For callers that must replace several files or none (a node installing a generation):
    stage them all, and rename only once every write has succeeded, so that a full disk
    cannot leave some files old and some new. On failure nothing is left behind.
    """
    path = os.fspath(path)
    import tempfile  # here: a read-only run (an idle node sync) never needs it

    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=os.path.dirname(path) or ".")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            if uid is not None or gid is not None:
                os.fchown(handle.fileno(), -1 if uid is None else uid, -1 if gid is None else gid)
            handle.write(data)
            handle.flush()
            if sync:
                os.fsync(handle.fileno())
    except BaseException:
        _discard(tmp)
        raise
    return tmp


def atomic_symlink(target: str, link: PathLike) -> None:
    """Point `link` at `target` by renaming a fresh symlink over it (never unlink-then-create)."""
    link = os.fspath(link)
    directory = os.path.dirname(link) or "."
    tmp = os.path.join(directory, f"{TMP_PREFIX}link-{os.getpid()}-{os.urandom(4).hex()}")
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)
    except BaseException:
        _discard(tmp)
        raise
    fsync_dir(directory)


def append_line(path: PathLike, line: bytes, mode: int = 0o644) -> None:
    """Append one newline-terminated record durably; a torn last line is ended first."""
    path = os.fspath(path)
    existed = os.path.lexists(path)
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, mode)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise UnsafePath(f"{path}: is a symlink; refusing to append through it") from None
        raise
    try:
        size = os.fstat(fd).st_size
        torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
        _write_all(fd, (b"\n" if torn else b"") + line)
        os.fsync(fd)
        if not existed:
            os.fchmod(fd, mode)  # the umask must not decide who may read the history
    finally:
        os.close(fd)
    if not existed:
        fsync_dir(os.path.dirname(path) or ".")


def make_dirs(
    top: PathLike, rel: str, mode: int = 0o755, owner: Optional[int] = None,
    sync: bool = False,
) -> List[str]:
    """Create the missing directories of `rel` below `top`; the paths created, top first.

    `top` itself is trusted (the caller checked or created it). Each component is created and
    opened relative to its parent's descriptor with O_NOFOLLOW: an existing symlink or
    non-directory is `UnsafePath`, never followed. `owner` chowns what is created (uid = gid);
    `sync` fsyncs each parent after a creation (otherwise the caller fsyncs what it needs).
    """
    top = os.fspath(top)
    made: List[str] = []
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    current = top
    try:
        for part in [p for p in rel.split("/") if p and p != "."]:
            current = os.path.join(current, part)
            try:
                os.mkdir(part, mode, dir_fd=fd)
                created = True
            except FileExistsError:
                created = False
            try:
                child = os.open(part, _NOFOLLOW_DIR, dir_fd=fd)
            except OSError as err:
                if err.errno in (errno.ELOOP, errno.ENOTDIR):
                    what = "is a symlink" if err.errno == errno.ELOOP else "is not a directory"
                    raise UnsafePath(f"{current}: {what}; refusing to write below it") from None
                raise
            if created:
                os.fchmod(child, mode)  # not subject to the umask
                if owner is not None:
                    os.fchown(child, owner, owner)
                if sync:
                    _fsync_dir_fd(fd)
                made.append(current)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)
    return made


def refuse_symlinked_parents(top: PathLike, rel: str, last: bool = False) -> None:
    """Every existing component of `rel` below `top` (its parents; with `last` the file itself)
    is a real directory (the file: a regular file); else `UnsafePath`. Missing ones are fine."""
    parts = [p for p in rel.split("/") if p]
    current = os.fspath(top)
    for i, part in enumerate(parts):
        current = os.path.join(current, part)
        is_last = i == len(parts) - 1
        if is_last and not last:
            return
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePath(f"{current}: is a symlink; refusing to write through it")
        if not is_last and not stat.S_ISDIR(st.st_mode):
            raise UnsafePath(f"{current}: is not a directory")
        if is_last and not stat.S_ISREG(st.st_mode):
            raise UnsafePath(f"{current}: exists and is not a regular file")


def poll_lock(
    fd: int, timeout: float, lock: Optional[Callable[[int, int], None]] = None
) -> bool:
    """Take an exclusive `lock` (fcntl.lockf, the default, or fcntl.flock) on `fd`, retrying
    until `timeout` seconds have passed; False when it is still held by someone else then."""
    import fcntl  # here: an idle node sync, which only reads, never locks

    lock = fcntl.lockf if lock is None else lock
    deadline = time.monotonic() + check_seconds(timeout, "lock timeout")  # nan: for ever
    while True:
        try:
            lock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as err:
            if err.errno not in (errno.EACCES, errno.EAGAIN):
                raise
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_SECONDS)


def read_bytes_nofollow(path: PathLike, limit: Optional[int] = None) -> bytes:
    """Read a regular file, refusing a symlink at the last component.

    `limit`: read at most that many bytes (the caller compares the length to tell a file that
    is too large, instead of holding all of a hostile one in memory).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        return handle.read() if limit is None else handle.read(limit)


class NotRegularFile(ValueError):
    """What `read_regular` found instead of a regular file (a FIFO, a device, a directory)."""


class FileTooLarge(ValueError):
    """A file larger than the bound `read_regular` was given."""


_KINDS = (
    (stat.S_ISFIFO, "a FIFO (a named pipe, or a shell's <(...))"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISLNK, "a symlink"),
)


def file_kind(mode: int) -> str:
    """What a non-regular st_mode is, for messages."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def read_regular(path: PathLike, max_size: int, nofollow: bool = False
                 ) -> tuple[bytes, os.stat_result]:
    """The bytes of a regular file of at most `max_size` bytes, and its fstat.

    Opened with O_NONBLOCK, so a FIFO cannot hang the caller; judged by `fstat` of the open
    descriptor, so a device (`/dev/zero`) or a directory is refused before anything is read
    (`NotRegularFile`); read with a cap (`FileTooLarge`). OSErrors of open and read propagate.
    `nofollow`: a symlink at the last component is ELOOP.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    if nofollow:
        flags |= os.O_NOFOLLOW
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(file_kind(st.st_mode))
        if st.st_size > max_size:
            raise FileTooLarge(max_size)
        chunks = []
        left = max_size + 1
        while left > 0:
            chunk = os.read(fd, min(left, 4 * 1024 * 1024))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > max_size:  # it grew while we read
        raise FileTooLarge(max_size)
    return data, st
