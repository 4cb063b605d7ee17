"""Does a generation directory hold exactly what its manifest says? (node sync, GC, tests)

Checked: the manifest's shape and (given an allowed-signers file) its signature, over the very
bytes then parsed; that it names this directory; every listed file is a regular file (never a
symlink) with the listed size, mode and sha256; every directory on the way is a real directory;
nothing unlisted anywhere in the generation; every path is one hpcpolicy manages, within its
size bound; the node is recent enough (`min_node_version`). Given `owners` (a node), every
entry read must also be owned by one of them and not writable by group or other. Any difference
raises VerificationError naming the file, because a node must install all of a generation or
none of it.
"""

from __future__ import annotations

import hashlib
import os
import stat
from typing import AbstractSet, Any, Dict, List, Optional, Set

from hpcpolicy.errors import VerificationError
from hpcpolicy.generation.manifest import (
    ACCESS,
    FileEntry,
    access_entry,
    check_managed,
    class_files,
    parse_manifest,
    read_manifest_bytes,
)
from hpcpolicy.generation.naming import CLASS_DIR, DEFAULT_CLASS, MANIFEST, TREE, tree_dir

SIG_NAME = MANIFEST + ".sig"
_CHUNK = 1 << 20


def check_owned(path: str, st: os.stat_result, owners: Optional[Set[int]]) -> None:
    """Refuse an entry of the generation that someone outside `owners` could change."""
    if owners is None:
        return
    if st.st_uid not in owners:
        raise VerificationError(f"{path}: owned by uid {st.st_uid}, not root or the deploy owner; "
                                "refusing the generation")
    if not stat.S_ISLNK(st.st_mode) and st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise VerificationError(f"{path}: writable by group or other "
                                f"(mode {stat.S_IMODE(st.st_mode):04o}); refusing the generation")


def _lstat(path: str) -> os.stat_result:
    try:
        return os.lstat(path)
    except OSError as err:
        raise VerificationError(f"{path}: cannot read: {err.strerror}") from None


def _check_signature(gen_dir: str, data: bytes, allowed_signers: str) -> str:
    from hpcpolicy.generation.signing import verify_bytes  # ssh-keygen only when asked

    sig_path = os.path.join(gen_dir, SIG_NAME)
    try:
        fd = os.open(sig_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        raise VerificationError(f"{sig_path}: cannot read signature: {err.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        sig = handle.read()
    return verify_bytes(data, sig, allowed_signers, label=os.path.join(gen_dir, MANIFEST))


def file_sha256(path: str) -> str:
    """sha256 of a regular file read without following a symlink at its last component."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_file(tree: str, entry: FileEntry, owners: Optional[Set[int]],
                known: AbstractSet[str] = frozenset()) -> None:
    path = os.path.join(tree, entry.path)
    try:
        st = os.lstat(path)
    except OSError:
        raise VerificationError(f"{path}: listed in the manifest but missing") from None
    if not stat.S_ISREG(st.st_mode):
        raise VerificationError(f"{path}: not a regular file")
    check_owned(path, st, owners)
    if st.st_size != entry.size or stat.S_IMODE(st.st_mode) != entry.mode:
        raise VerificationError(
            f"{path}: size {st.st_size} mode {stat.S_IMODE(st.st_mode):04o}, manifest says "
            f"size {entry.size} mode {entry.mode:04o}")
    if entry.sha256 in known:
        return  # the node holds these very bytes already: it never reads them from here
    try:
        actual = file_sha256(path)
    except OSError as err:
        raise VerificationError(f"{path}: cannot read: {err.strerror}") from None
    if actual != entry.sha256:
        raise VerificationError(f"{path}: sha256 differs from the manifest (altered file)")


def _walk(top: str, owners: Optional[Set[int]]) -> Set[str]:
    """Every entry below `top` (relative; directories end in `/`); a symlinked dir is an error."""
    found: Set[str] = set()

    def fail(err: OSError) -> None:
        raise VerificationError(f"{err.filename}: cannot list: {err.strerror}")

    for dirpath, dirnames, filenames in os.walk(top, onerror=fail):
        for name in dirnames:
            full = os.path.join(dirpath, name)
            if os.path.islink(full):
                raise VerificationError(f"{full}: a symlink where a directory should be")
            check_owned(full, _lstat(full), owners)
            found.add(os.path.relpath(full, top) + "/")
        for name in filenames:
            found.add(os.path.relpath(os.path.join(dirpath, name), top))
    return found


def _check_tree(gen_dir: str, node_class: str, entries: List[FileEntry],
                owners: Optional[Set[int]], known: AbstractSet[str] = frozenset()) -> None:
    tree = os.path.join(gen_dir, tree_dir(node_class))
    if os.path.islink(tree) or not os.path.isdir(tree):
        raise VerificationError(f"{tree}: missing or not a directory")
    check_owned(tree, _lstat(tree), owners)
    expected = {e.path for e in entries}
    for entry in entries:
        parent = os.path.dirname(entry.path)
        while parent:
            expected.add(parent + "/")
            parent = os.path.dirname(parent)
    extra = _walk(tree, owners) - expected
    if extra:
        raise VerificationError(f"{os.path.join(tree, sorted(extra)[0])}: not in the manifest")
    for entry in entries:
        _check_file(tree, entry, owners, known)


def _check_top(gen_dir: str, classes: List[str], owners: Optional[Set[int]],
               access: bool = False) -> None:
    """Only manifest, signature, tree/, class/NAME/tree/ and a listed access.json may exist at
    the top."""
    allowed = {MANIFEST, SIG_NAME, TREE} | ({CLASS_DIR} if len(classes) > 1 else set())
    allowed |= {ACCESS} if access else set()
    for name in sorted(os.listdir(gen_dir)):
        if name not in allowed:
            raise VerificationError(f"{os.path.join(gen_dir, name)}: not in the manifest")
        if name in (MANIFEST, SIG_NAME):
            path = os.path.join(gen_dir, name)
            check_owned(path, _lstat(path), owners)
    if len(classes) <= 1:
        return
    class_root = os.path.join(gen_dir, CLASS_DIR)
    if os.path.islink(class_root):
        raise VerificationError(f"{class_root}: a symlink where a directory should be")
    check_owned(class_root, _lstat(class_root), owners)
    wanted = {c for c in classes if c != DEFAULT_CLASS}
    for name in sorted(os.listdir(class_root)):
        inner = os.path.join(class_root, name)
        if name not in wanted or os.path.islink(inner) or os.listdir(inner) != [TREE]:
            raise VerificationError(f"{inner}: not in the manifest")
        check_owned(inner, _lstat(inner), owners)


def verify_generation(gen_dir: str, allowed_signers: Optional[str] = None,
                      owners: Optional[Set[int]] = None, known: AbstractSet[str] = frozenset(),
                      node: bool = False) -> Dict[str, Any]:
    """Verify a whole generation; return its manifest. VerificationError names the culprit.

    `owners`: the uids a node trusts (root and its deploy owner); None skips ownership checks
    (the publisher, which checked its deploy root itself). `known`: sha256 values a node
    already holds, intact (its record says so): such files are checked for presence, size,
    mode and owner but not re-read, so an access-only generation reads nothing of the trees.
    `node`: the reader is a node, which never reads `access.json` (not for nodes; it can be
    large): its size, mode and owner are checked, its bytes are not.
    """
    if os.path.islink(gen_dir) or not os.path.isdir(gen_dir):
        raise VerificationError(f"{gen_dir}: not a generation directory")
    manifest_path = os.path.join(gen_dir, MANIFEST)
    check_owned(manifest_path, _lstat(manifest_path), owners)
    data = read_manifest_bytes(gen_dir)
    if allowed_signers is not None:
        _check_signature(gen_dir, data, allowed_signers)
    manifest = parse_manifest(data, gen_dir)
    if manifest["generation"] != os.path.basename(os.path.normpath(gen_dir)):
        raise VerificationError(
            f"{os.path.join(gen_dir, MANIFEST)}: describes {manifest['generation']}, "
            "not this directory")
    classes = sorted(manifest["classes"])
    for node_class in classes:
        check_managed(gen_dir, node_class, class_files(manifest, node_class))
    access = access_entry(manifest)
    _check_top(gen_dir, classes, owners, access is not None)
    for node_class in classes:
        _check_tree(gen_dir, node_class, class_files(manifest, node_class), owners, known)
    if access is not None:
        _check_file(gen_dir, access, owners, {access.sha256} if node else frozenset())
    return manifest
