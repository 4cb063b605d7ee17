"""One writer at a time on a deploy root: an fcntl (POSIX record) lock on `DEPLOY_ROOT/.lock`.

Why `lockf` and not `flock`: POSIX record locks go to the server on NFSv4 (and on NFSv3 via
NLM) and are cluster-wide on Lustre mounted with `-o flock`; BSD `flock` is emulated or
local-only on several of them. A Lustre `localflock` mount grants locks per client only, so two
admin hosts could both "hold" it: such a mount is refused.

POSIX locks belong to the process, and closing ANY descriptor of the file drops them. Hence:
the holder's info is written through the locking descriptor itself (never by reopening the
file), and a nested `DeployLock` on the same file in the same process only counts (a second
open/close would silently release the outer lock).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import threading
from datetime import datetime, timezone
from types import TracebackType
from typing import Dict, List, Optional, Tuple, Type

from hpcpolicy.deploy.store import LOCK
from hpcpolicy.errors import (
    LockTimeout,
    UnsafePath,
    check_seconds,
    os_failure,
    printable,
)
from hpcpolicy.fsutil import poll_lock

MOUNTINFO = "/proc/self/mountinfo"

_held: Dict[Tuple[int, int], Tuple[int, int]] = {}  # (dev, ino) -> (fd, depth)
_held_guard = threading.Lock()
# A forked child does not inherit POSIX locks, so it must not believe it holds them.
os.register_at_fork(after_in_child=_held.clear)


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040 ...)."""
    out = field
    for code in ("040", "011", "012", "134"):
        out = out.replace("\\" + code, chr(int(code, 8)))
    return out


def mount_of(path: str, mountinfo: str = MOUNTINFO) -> Optional[Tuple[str, str, List[str]]]:
    """(mount point, fstype, options) of the mount holding `path`, or None if unknown."""
    real = os.path.realpath(path)
    best: Optional[Tuple[str, str, List[str]]] = None
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 6 or len(tail) < 2:
            continue
        point = _unescape(fields[4])
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best[0])):
            options = fields[5].split(",") + (tail[2].split(",") if len(tail) > 2 else [])
            best = (point, tail[0], options)
    return best


def refuse_local_locks(deploy_root: str, mountinfo: str = MOUNTINFO) -> None:
    """UnsafePath when the deploy root is on Lustre mounted with `localflock`."""
    mount = mount_of(deploy_root, mountinfo)
    if mount and mount[1] == "lustre" and "localflock" in mount[2]:
        raise UnsafePath(
            f"deploy root {deploy_root}: Lustre mount {mount[0]} uses localflock, whose locks "
            "hold on one client only; remount with -o flock"
        )


def _holder_text(path: str) -> str:
    """Who holds the lock, from the info the holder wrote into the lock file."""
    try:
        with open(path, encoding="utf-8") as handle:
            info = json.loads(handle.read() or "{}")
    except (OSError, ValueError):
        return "held by an unknown process"
    if not isinstance(info, dict) or not info:
        return "held by an unknown process"
    # the lock file is written by whoever took the lock: its text is shown escaped and cut
    text = f"held by pid {printable(info.get('pid', '?'), 20)} on "
    text += f"{printable(info.get('host', '?'), 100)} since {printable(info.get('since', '?'), 40)}"
    if info.get("purpose"):
        text += f" ({printable(info['purpose'], 200)})"
    return text


class DeployLock:
    """`with DeployLock(root, timeout, purpose):` -- exclusive writer on the deploy root.

    Waits up to `timeout` seconds (polling), then raises LockTimeout naming the holder.
    """

    def __init__(self, deploy_root: str, timeout: float = 60.0, purpose: str = "") -> None:
        self.deploy_root = deploy_root
        self.path = os.path.join(deploy_root, LOCK)
        self.timeout = check_seconds(timeout, "--lock-timeout")
        self.purpose = purpose
        self._key: Optional[Tuple[int, int]] = None

    def __enter__(self) -> DeployLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.release()

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise UnsafePath(f"{self.path}: is a symlink") from None
            raise

    def acquire(self) -> None:
        refuse_local_locks(self.deploy_root)
        if self._enter_nested():
            return
        fd = self._open()
        st = os.fstat(fd)
        self._wait(fd)
        self._write_holder(fd)
        key = (st.st_dev, st.st_ino)
        with _held_guard:
            _held[key] = (fd, 1)
        self._key = key

    def _enter_nested(self) -> bool:
        """Count a nested hold; decided BEFORE opening, as any close would drop the lock."""
        try:
            st = os.lstat(self.path)
        except OSError:
            return False
        key = (st.st_dev, st.st_ino)
        with _held_guard:
            if key not in _held:
                return False
            fd, depth = _held[key]
            _held[key] = (fd, depth + 1)
        self._key = key
        return True

    def _wait(self, fd: int) -> None:
        try:
            held = poll_lock(fd, self.timeout, fcntl.lockf)
        except OSError as err:
            os.close(fd)
            raise os_failure(err, self.path, "cannot lock") from None
        if not held:
            os.close(fd)
            raise LockTimeout(
                f"{self.deploy_root}: lock not acquired within {self.timeout:g} s: "
                f"{_holder_text(self.path)}"
            )

    def _write_holder(self, fd: int) -> None:
        info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "purpose": self.purpose,
        }
        data = (json.dumps(info, sort_keys=True) + "\n").encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)

    def release(self) -> None:
        key, self._key = self._key, None
        if key is None:
            return
        with _held_guard:
            fd, depth = _held[key]
            if depth > 1:
                _held[key] = (fd, depth - 1)
                return
            del _held[key]
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # no stale holder info for the next waiter's message
        fcntl.lockf(fd, fcntl.LOCK_UN)
        os.close(fd)
