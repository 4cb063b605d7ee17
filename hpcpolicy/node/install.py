"""Put files under a node root without ever writing through a symlink.

Rules, and why:

* every directory between `--root` and a file must be a real directory (lstat, never stat): a
  symlinked `/etc/containers` planted by somebody would otherwise receive root-owned files
  wherever it points. Such a path is refused (UnsafePath) before anything is installed.
* missing directories are created 0755, root-owned;
* the file itself is replaced by a temp file in the same directory, fsynced, then renamed: a
  symlink at the target is replaced as a link, never followed. A sync stages every file of a
  generation first and renames them only when all were written, so a full disk fails the sync
  with every file still old (never some old, some new);
* the first file hpcpolicy replaces at a path is kept as `PATH.hpcpolicy-orig` (a hard link to
  the original inode, so mode, owner and content are kept exactly); it is never overwritten.
  When a later generation drops the path, the original is put back (renamed over it), because
  the package's file is what the node had before hpcpolicy took the path over; without an
  original the file is removed.
* a replaced file's SELinux label is carried over to the new file (Ansible's atomic_move does
  the same), since a renamed-in file otherwise gets its directory's default type.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass
from typing import List, Optional, Set, Tuple

from hpcpolicy.errors import RuntimeFailure, UnsafePath
from hpcpolicy.fsutil import atomic_write, fsync_dir, make_dirs, refuse_symlinked_parents
from hpcpolicy.fsutil import stage_file as stage_write

ORIG_SUFFIX = ".hpcpolicy-orig"
FILE_MODE = 0o644
DIR_MODE = 0o755
SELINUX_XATTR = "security.selinux"


def target_path(root: str, rel: str) -> str:
    """ROOT + node path (`etc/subuid`), refusing anything that could leave ROOT."""
    parts = rel.split("/")
    if rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise UnsafePath(f"{rel}: not a safe node path")
    return os.path.join(root, *parts)


def _owner() -> Optional[int]:
    """Root-owned files when we are root; as an unprivileged test user, our own."""
    return 0 if os.geteuid() == 0 else None


def check_parents(root: str, rel: str) -> None:
    """Every existing directory from ROOT down to the file's parent must be a real directory."""
    refuse_symlinked_parents(root, rel)


def make_parents(root: str, rel: str) -> List[str]:
    """Create the missing directories of `rel` under ROOT, 0755 root-owned, never via a link;
    return those created (outermost first)."""
    return make_dirs(root, os.path.dirname(rel), DIR_MODE, owner=_owner(), sync=True)


def read_installed(path: str) -> Optional[bytes]:
    """The bytes at `path` if it is a regular file; None when absent or not a regular file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def mode_owner_ok(path: str) -> bool:
    """True when `path` is a regular file with the mode and owner we install (0644, root)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode) or stat.S_IMODE(st.st_mode) != FILE_MODE:
        return False
    owner = _owner()
    return owner is None or (st.st_uid, st.st_gid) == (owner, owner)


def installed_ok(path: str, sha256: str) -> bool:
    """True when `path` is exactly what we install: regular, right bytes, 0644, root-owned."""
    if not mode_owner_ok(path):
        return False
    data = read_installed(path)
    import hashlib  # here: an idle node sync imports this module but never hashes

    return data is not None and hashlib.sha256(data).hexdigest() == sha256


def keep_original(path: str) -> bool:
    """Keep what is at `path` as PATH.hpcpolicy-orig, unless one is kept already."""
    if not os.path.lexists(path) or os.path.lexists(path + ORIG_SUFFIX):
        return False
    if os.path.isdir(path) and not os.path.islink(path):
        raise UnsafePath(f"{path}: is a directory; cannot install a file there")
    os.link(path, path + ORIG_SUFFIX, follow_symlinks=False)
    return True


def _label_of(path: str) -> Optional[bytes]:
    """The SELinux label of a regular file being replaced (None: no file, link, or no label)."""
    if not os.path.isfile(path) or os.path.islink(path):
        return None
    try:
        return os.getxattr(path, SELINUX_XATTR, follow_symlinks=False)
    except OSError:
        return None


def _relabel(path: str, label: Optional[bytes]) -> None:
    """Give the new file the replaced file's label, as Ansible's atomic_move does: a file
    created by rename gets its directory's default type, which on SELinux nodes may not be
    the type the original had (e.g. a policy module expecting a specific type)."""
    if label is None:
        return
    try:
        os.setxattr(path, SELINUX_XATTR, label, follow_symlinks=False)
    except OSError as err:
        if err.errno not in (errno.ENOTSUP, errno.EPERM, errno.EACCES, errno.EINVAL):
            raise


@dataclass(frozen=True)
class Staged:
    """A new file written in full beside its target, waiting for its rename."""

    rel: str
    path: str
    tmp: str
    made: Tuple[str, ...] = ()  # directories created for it, outermost first


def stage_file(root: str, rel: str, data: bytes) -> Staged:
    """Write `data` as a temp file beside ROOT/rel (0644, root-owned, fsynced, label carried).

    Nothing at the target changes until `commit`; on any error the temp file and the
    directories created for it are gone.
    """
    path = target_path(root, rel)
    check_parents(root, rel)
    made = tuple(make_parents(root, rel))
    tmp = ""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            raise UnsafePath(f"{path}: is a directory; cannot install a file there")
        owner = _owner()
        tmp = stage_write(path, data, mode=FILE_MODE, uid=owner, gid=owner)
        _relabel(tmp, _label_of(path))
    except BaseException:
        discard([Staged(rel, path, tmp, made)])
        raise
    return Staged(rel, path, tmp, made)


def discard(staged: List[Staged]) -> None:
    """Remove staged temp files, then the directories made for them (a staging step failed:
    nothing is installed, and no empty directory is left either)."""
    for item in staged:
        if item.tmp:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(item.tmp)
    for item in reversed(staged):
        for directory in reversed(item.made):
            with contextlib.suppress(OSError):  # not empty (another's file) or gone: keep it
                os.rmdir(directory)


def commit(staged: List[Staged], keep: Set[str]) -> None:
    """Rename every staged file into place; first keep the originals of the paths in `keep`.

    The originals are linked before the first rename, so a failing link installs nothing.
    """
    try:
        for item in staged:
            if item.rel in keep:
                keep_original(item.path)
    except BaseException:
        discard(staged)
        raise
    for item in staged:
        os.replace(item.tmp, item.path)
    for directory in sorted({os.path.dirname(item.path) for item in staged}):
        fsync_dir(directory)


def install_file(root: str, rel: str, data: bytes, keep: bool) -> None:
    """Install `data` at ROOT/rel atomically, 0644 root-owned; `keep` saves the original."""
    commit([stage_file(root, rel, data)], {rel} if keep else set())


# Files whose pre-hpcpolicy original is never put back: its sub-ID ranges were never checked
# against real IDs or revocations. When they leave the manifest (sub-IDs turned off, a
# re-initialised deploy root) they are emptied and the original stays aside for review.
NEVER_RESTORED = ("etc/subuid", "etc/subgid")


def remove_file(root: str, rel: str) -> str:
    """Drop a file a former generation installed: restore its original, else delete it.

    Returns "restored", "removed", "emptied" (`NEVER_RESTORED`) or "absent".
    """
    path = target_path(root, rel)
    check_parents(root, rel)
    orig = path + ORIG_SUFFIX
    if rel in NEVER_RESTORED:
        if not os.path.lexists(path) and not os.path.lexists(orig):
            return "absent"
        atomic_write(path, b"", mode=0o644)
        return "emptied"
    if os.path.lexists(orig):
        os.rename(orig, path)
        fsync_dir(os.path.dirname(path))
        return "restored"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "absent"
    if stat.S_ISDIR(st.st_mode):
        raise RuntimeFailure(f"{path}: is a directory now; not removing it")
    os.unlink(path)
    fsync_dir(os.path.dirname(path))
    return "removed"
