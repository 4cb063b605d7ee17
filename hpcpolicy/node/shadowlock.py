"""shadow-utils' own lock on /etc/subuid and /etc/subgid, so `usermod`/`useradd` never interleave.

The protocol is commonio's `do_lock_file` (shadow lib/commonio.c), which every shadow tool uses:

1. write the pid (decimal, NUL-terminated) to `FILE.PID`, created fresh;
2. `link(FILE.PID, FILE.lock)`: success with a link count of 2 means the lock is ours;
3. on EEXIST read the pid in `FILE.lock`; if that process is alive the lock is busy, otherwise
   the lock is stale: unlink it and try the link once more;
4. always unlink `FILE.PID`.

link() is atomic even on NFS, which is why shadow uses it instead of O_EXCL. shadow retries 15
times a second apart; we wait up to a timeout and then fail (exit 1) naming the holder, because
a node sync must never replace /etc/subuid under a running `usermod`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from types import TracebackType
from typing import List, Optional, Sequence, Type

from hpcpolicy.errors import LockTimeout, RuntimeFailure, check_seconds

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".lock"
POLL = 0.05  # seconds between attempts
INVALID = 0  # "holder" of a lock file without a valid pid


def lock_path(path: str) -> str:
    return path + LOCK_SUFFIX


def _read_pid(lock: str) -> Optional[int]:
    """The pid recorded in a lock file, None when unreadable or not a positive number."""
    try:
        with open(lock, "rb") as handle:
            raw = handle.read(64)
    except OSError:
        return None
    text = raw.split(b"\0", 1)[0].strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def pid_alive(pid: int) -> bool:
    """kill(pid, 0): EPERM means the process exists (owned by somebody else)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_pid_file(pid_file: str) -> None:
    fd = os.open(pid_file, os.O_CREAT | os.O_TRUNC | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, f"{os.getpid()}".encode() + b"\0")
    finally:
        os.close(fd)


def _link_is_ours(pid_file: str) -> bool:
    """commonio's check_link_count: the link count must be exactly 2 (ours and the lock)."""
    return os.lstat(pid_file).st_nlink == 2


def try_lock(path: str) -> Optional[int]:
    """One attempt at shadow's lock on `path`; None when taken, else who holds it.

    The holder is a live pid, or INVALID when the lock holds no valid pid: shadow refuses to
    break such a lock, and so do we. A lock holding a dead pid is broken, as shadow does.
    """
    lock = lock_path(path)
    pid_file = f"{path}.{os.getpid()}"
    _write_pid_file(pid_file)
    try:
        for _attempt in range(2):
            try:
                os.link(pid_file, lock)
            except FileExistsError:
                holder = _read_pid(lock)
                if holder is None:
                    return INVALID
                if pid_alive(holder):
                    return holder
                log.warning("%s: breaking stale lock (pid %d is gone)", lock, holder)
                _unlink(lock)
                continue
            if _link_is_ours(pid_file):
                return None
            raise RuntimeFailure(f"{lock}: link count is not 2 after taking the lock")
        return _read_pid(lock) or INVALID
    finally:
        _unlink(pid_file)


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def unlock(path: str) -> None:
    """Release the lock if it is still ours (never remove somebody else's)."""
    lock = lock_path(path)
    if _read_pid(lock) == os.getpid():
        _unlink(lock)


def _holder_text(holder: int) -> str:
    if holder == INVALID:
        return ("holds no valid pid (shadow will not break it either: remove it by hand if no "
                "shadow tool runs)")
    return f"held by pid {holder} (usermod/useradd?)"


class ShadowLocks:
    """Hold shadow's locks on several files (in the given order, as `usermod` does).

    `timeout` bounds the whole wait; LockTimeout (exit 1) names the file and the holder.
    """

    def __init__(self, paths: Sequence[str], timeout: float = 15.0) -> None:
        self.paths = list(paths)
        self.timeout = check_seconds(timeout, "--lock-timeout")
        self.held: List[str] = []

    def acquire(self) -> None:
        deadline = time.monotonic() + self.timeout
        for path in self.paths:
            self._acquire_one(path, deadline)
            self.held.append(path)

    def _acquire_one(self, path: str, deadline: float) -> None:
        while True:
            try:
                holder = try_lock(path)
            except OSError as err:
                self.release()
                where = err.filename or path
                raise RuntimeFailure(f"{where}: cannot take shadow's lock: {err.strerror}") \
                    from None
            if holder is None:
                return
            if time.monotonic() >= deadline:
                self.release()
                raise LockTimeout(f"{lock_path(path)}: {_holder_text(holder)}; gave up after "
                                  f"{self.timeout:g} s, nothing installed")
            time.sleep(POLL)

    def release(self) -> None:
        for path in reversed(self.held):
            try:
                unlock(path)
            except OSError as err:
                if err.errno != errno.ENOENT:
                    log.warning("%s: cannot release: %s", lock_path(path), err.strerror)
        self.held = []

    def __enter__(self) -> ShadowLocks:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.release()
