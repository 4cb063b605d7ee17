"""Sub-ID changes reaching running users: user namespaces still made with an old mapping.

Rootless Podman keeps a *pause process* per user whose user namespace was made, with
newuidmap/newgidmap, from the ranges /etc/subuid and /etc/subgid held at that moment. Until it
ends, every `podman` of that user joins it: a revoked range stays usable, a new one is unused.

What is read: `/proc/PID/uid_map` and `gid_map` of every process (seen from the initial user
namespace, the outside IDs are host IDs), the namespace's owner (`NS_GET_OWNER_UID` on
`/proc/PID/ns/user`), and the installed /etc/subuid and /etc/subgid. A mapping is *stale* when
it maps a host range that is not inside the owner's current ranges (changed or withdrawn); the
owner's own ID mapped alone (`0 UID 1`) needs no sub-ID and never is.

`migrate` ends the stale pause process of a user who runs nothing else in it (the next
`podman` makes a fresh one from the current files), and only names, without touching them,
users whose containers (jobs) still hold the old mapping: `podman system migrate` would stop
those containers, so it is never run for them.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import struct
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Mapping, Optional, Set, Tuple

if TYPE_CHECKING:
    from hpcpolicy.node.options import SyncOptions, SyncResult

NS_GET_OWNER_UID = 0xB704  # _IO(0xb7, 0x4), linux/nsfs.h
IDENTITY = b"0 0 4294967295"
PAUSE_COMMS = ("catatonit", "podman")
Range = Tuple[int, int]  # (start, count)


@dataclass(frozen=True)
class NsProcess:
    """A live process inside a user namespace other than the initial one."""

    pid: int
    owner: int  # the namespace owner's uid (host)
    ns: str  # `user:[inode]`
    comm: str
    args: List[str]
    uid_map: Tuple[Tuple[int, int, int], ...]  # (inside, outside, count)
    gid_map: Tuple[Tuple[int, int, int], ...]

    @property
    def is_pause(self) -> bool:
        """Rootless Podman's pause process: `catatonit -P`, or podman's own pause."""
        if self.comm == "catatonit":
            return "-P" in self.args[1:]
        return self.comm == "podman" and self.args[1:2] == ["pause"]

    @property
    def container(self) -> Optional[str]:
        """The container name conmon was started for (`-n NAME`), if this is conmon."""
        if self.comm != "conmon":
            return None
        for flag in ("-n", "--name"):
            if flag in self.args[:-1]:
                return self.args[self.args.index(flag) + 1]
        return None


@dataclass
class StaleUser:
    """A user whose running user namespaces map ranges they no longer have."""

    uid: int
    user: str
    pids: List[int] = field(default_factory=list)
    pause: List[int] = field(default_factory=list)
    containers: List[str] = field(default_factory=list)  # names, or `pid N (comm)`

    def as_dict(self) -> Dict[str, object]:
        return {"user": self.user, "uid": self.uid, "pids": sorted(self.pids),
                "containers": sorted(self.containers)}


# ----------------------------------------------------------------------------- reading


def _read(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None  # the process ended meanwhile, or is not ours to read


def _parse_map(data: bytes) -> Tuple[Tuple[int, int, int], ...]:
    out = []
    for line in data.splitlines():
        parts = line.split()
        if len(parts) == 3 and all(p.isdigit() for p in parts):
            out.append((int(parts[0]), int(parts[1]), int(parts[2])))
    return tuple(out)


def _owner(pid_dir: str) -> Optional[int]:
    try:
        fd = os.open(os.path.join(pid_dir, "ns", "user"), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        buf = bytearray(4)
        fcntl.ioctl(fd, NS_GET_OWNER_UID, buf)
        return int(struct.unpack("I", bytes(buf))[0])
    except OSError:
        return None
    finally:
        os.close(fd)


def _zombie(stat: bytes) -> bool:
    tail = stat.rsplit(b")", 1)[-1].split()
    return bool(tail) and tail[0] in (b"Z", b"X")


def scan(proc: str = "/proc") -> List[NsProcess]:
    """Every live process whose user namespace is not the initial one (identity map)."""
    out: List[NsProcess] = []
    try:
        names = os.listdir(proc)
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        pid_dir = os.path.join(proc, name)
        raw = _read(os.path.join(pid_dir, "uid_map"))
        if raw is None or raw.split(b"\n", 1)[0].split() == IDENTITY.split():
            continue
        stat = _read(os.path.join(pid_dir, "stat")) or b""
        if _zombie(stat):
            continue
        owner = _owner(pid_dir)
        ns = _readlink(os.path.join(pid_dir, "ns", "user"))
        if owner is None or ns is None:
            continue
        args = [a.decode("utf-8", "replace") for a in
                (_read(os.path.join(pid_dir, "cmdline")) or b"").split(b"\0") if a]
        comm = (_read(os.path.join(pid_dir, "comm")) or b"").decode("utf-8", "replace").strip()
        gid_raw = _read(os.path.join(pid_dir, "gid_map")) or b""
        out.append(NsProcess(int(name), owner, ns, comm, args, _parse_map(raw),
                             _parse_map(gid_raw)))
    return out


def _readlink(path: str) -> Optional[str]:
    try:
        return os.readlink(path)
    except OSError:
        return None


# ----------------------------------------------------------------------------- judging


def parse_subid(data: bytes) -> Dict[str, List[Range]]:
    """{owner field (name or uid): [(start, count)]} of a subuid/subgid file."""
    out: Dict[str, List[Range]] = {}
    for line in data.decode("utf-8", "replace").splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            out.setdefault(parts[0], []).append((int(parts[1]), int(parts[2])))
    return out


def _user_of(uid: int) -> Tuple[str, Optional[int]]:
    """(name, primary gid) of a uid, or (str(uid), None) when this host cannot name it."""
    import pwd

    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return str(uid), None
    return entry.pw_name, entry.pw_gid


def _ranges(table: Mapping[str, List[Range]], uid: int, name: str) -> List[Range]:
    return table.get(str(uid), []) + (table.get(name, []) if name != str(uid) else [])


def _inside(start: int, count: int, ranges: Iterable[Range]) -> bool:
    return any(lo <= start and start + count <= lo + n for lo, n in ranges)


def _stale_map(mapping: Iterable[Tuple[int, int, int]], own: Set[int],
               ranges: List[Range]) -> bool:
    for _inside_id, outside, count in mapping:
        if count == 1 and outside in own:
            continue  # the owner's own ID, mapped without any sub-ID
        if not _inside(outside, count, ranges):
            return True
    return False


def stale_users(procs: Iterable[NsProcess], subuid: bytes, subgid: bytes) -> List[StaleUser]:
    """Users with processes in user namespaces that map ranges the files no longer give them."""
    uids, gids = parse_subid(subuid), parse_subid(subgid)
    found: Dict[int, StaleUser] = {}
    names: Dict[int, Tuple[str, Optional[int]]] = {}
    for proc in procs:
        if proc.owner == 0:
            continue  # root needs no sub-IDs for its own namespaces
        if proc.owner not in names:
            names[proc.owner] = _user_of(proc.owner)
        name, gid = names[proc.owner]
        own_gids = {proc.owner} | ({gid} if gid is not None else set())
        if not (_stale_map(proc.uid_map, {proc.owner}, _ranges(uids, proc.owner, name)) or
                _stale_map(proc.gid_map, own_gids, _ranges(gids, proc.owner, name))):
            continue
        entry = found.setdefault(proc.owner, StaleUser(proc.owner, name))
        entry.pids.append(proc.pid)
        if proc.is_pause:
            entry.pause.append(proc.pid)
        elif proc.container is not None:
            entry.containers.append(proc.container)
    for entry in found.values():
        others = [p for p in procs if p.owner == entry.uid and p.pid in entry.pids
                  and not p.is_pause and p.container is None]
        if others and not entry.containers:
            entry.containers = [f"pid {p.pid} ({p.comm})" for p in others[:5]]
    return sorted(found.values(), key=lambda s: s.uid)


# ----------------------------------------------------------------------------- migrating


def _gone(pid: int) -> bool:
    stat = _read(f"/proc/{pid}/stat")
    return stat is None or _zombie(stat)


def end_pause(pids: Iterable[int], grace: float = 3.0) -> List[int]:
    """SIGTERM each pause process, SIGKILL what is left after `grace`; the pids that ended."""
    pids = list(pids)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError as err:
            if err.errno != errno.ESRCH:
                raise
    _wait_gone(pids, grace)
    for pid in pids:
        if not _gone(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError as err:
                if err.errno != errno.ESRCH:
                    raise
    _wait_gone(pids, 1.0)
    return [p for p in pids if _gone(p)]


def _wait_gone(pids: List[int], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not all(_gone(p) for p in pids):
        time.sleep(0.05)


def migrate(stale: Iterable[StaleUser]) -> Tuple[List[StaleUser], List[StaleUser]]:
    """(users whose stale pause process was ended, users left alone: containers running)."""
    ended: List[StaleUser] = []
    kept: List[StaleUser] = []
    for user in stale:
        if user.containers:
            kept.append(user)
        elif user.pause and set(end_pause(user.pause)) == set(user.pause):
            ended.append(user)
        else:
            kept.append(user)  # stale, but no pause process to end: say so, touch nothing
    return ended, kept


# ----------------------------------------------------------------------------- node sync


SUBID_FILES = ("etc/subuid", "etc/subgid")
MIGRATE_NOTE = ("sub-ID ranges changed: users with running rootless Podman keep the old ranges "
                "until their pause process ends (`hpcpolicy node sync --migrate-users` on the "
                "node ends those without running containers)")


def report(opts: SyncOptions, root: str, subid_changed: bool,
           previous: Optional[Mapping[str, Any]], result: SyncResult) -> None:
    """Name users whose running user namespaces still map old sub-ID ranges; with
    --migrate-users, end the stale pause process of those who run no container."""
    enabled = root == "/" if opts.userns is None else opts.userns
    if not enabled:
        if subid_changed:
            result.notes.append(MIGRATE_NOTE)
        return
    earlier = bool(previous and previous.get("stale_userns"))
    if not (subid_changed or earlier or opts.migrate_users):
        return

    def installed(rel: str) -> bytes:
        from hpcpolicy.node import install

        return install.read_installed(install.target_path(root, rel)) or b""

    stale = stale_users(scan(opts.proc), installed(SUBID_FILES[0]), installed(SUBID_FILES[1]))
    if opts.migrate_users:
        ended, stale = migrate(stale)
        result.migrated = [u.as_dict() for u in ended]
        for user in ended:
            result.notes.append(f"ended the stale pause process of {user.user} (pids "
                                f"{', '.join(map(str, sorted(user.pause)))}): its next podman "
                                "uses the new ranges")
    result.stale_userns = [u.as_dict() for u in stale]
    for user in stale:
        if user.containers:
            result.notes.append(
                f"{user.user} runs containers that still map old sub-ID ranges "
                f"({', '.join(sorted(user.containers)[:5])}): left running; the old ranges "
                "stay in use until they end")
        else:
            result.notes.append(
                f"{user.user}: user namespace still maps old sub-ID ranges (pids "
                f"{', '.join(map(str, sorted(user.pids)[:5]))}); end it with "
                "`hpcpolicy node sync --migrate-users` (interactive)")
