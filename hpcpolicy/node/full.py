"""The full `node sync`: verify the channel's generation, then install what differs on the node.

`node.sync.sync` runs it when the node's record does not show an idle sync. Order, and why:

1. refuse a deploy root others could alter (anything not owned by root or the deploy owner
   the node was told about, or writable by group or other); read the channel link once;
2. verify the whole generation (manifest shape, signature when the node has an
   allowed-signers file, every file and nothing else, only paths hpcpolicy manages within
   their size bounds, a new enough node), pick the class; refuse a generation older than the
   one last installed from the same site and deploy root (unless --allow-older);
3. read every file of the class into memory and check it again: from here on nothing is read
   from shared storage, so a generation that changes or vanishes fails HERE, with nothing
   installed;
4. take the node's sync lock (one sync at a time), compare with what is on the node (bytes,
   mode and owner, not only the state file: a locally edited file is put back), and refuse
   any symlinked directory on the way to any target, still before installing anything;
5. take shadow's locks when /etc/subuid or /etc/subgid change (also before the first write, so
   a lock timeout installs nothing); write every new file as a temp file beside its target,
   and only when all were written rename them into place (a full disk installs nothing);
   remove dropped files, record the state;
6. apply a changed sysctl file with `sysctl -p FILE` (only when --root is /).

A sync interrupted during the renames of step 5 leaves every file either old or new (each
rename is atomic) and the state of the previous sync; the next sync compares bytes and
completes the job.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Collection, Dict, Iterator, List, Mapping, Optional

from hpcpolicy.errors import (
    HpcPolicyError,
    LockTimeout,
    RuntimeFailure,
    UnsafePath,
    UsageError,
    VerificationError,
)
from hpcpolicy.fsutil import poll_lock
from hpcpolicy.generation import diff as diffs
from hpcpolicy.generation.manifest import SYSCTL_FILE, class_files
from hpcpolicy.generation.naming import parse_name
from hpcpolicy.generation.verify import SIG_NAME, verify_generation
from hpcpolicy.node import install, source
from hpcpolicy.node.idle import basis_of
from hpcpolicy.node.options import UNCHECKED_NOTE, SyncOptions, SyncResult
from hpcpolicy.node.record import intact_hashes, records
from hpcpolicy.node.shadowlock import ShadowLocks
from hpcpolicy.node.state import (
    FORMAT,
    SYNC_LOCK,
    floor_of,
    installed_files,
    load_state,
    same_state,
    save_state,
    with_floor,
)
from hpcpolicy.node.userns import report as userns_report

log = logging.getLogger(__name__)

SUBID_FILES = ("etc/subuid", "etc/subgid")
SYSCTL = "sysctl"
SYSCTL_TIMEOUT = 60.0


@dataclass
class _Planned:
    path: str
    action: str  # added | modified | removed
    data: Optional[bytes]  # None for removed
    before: Optional[bytes]
    note: str = ""


# ----------------------------------------------------------------------------- locking


@contextmanager
def sync_lock(root: str, timeout: float) -> Iterator[None]:
    """One `node sync` at a time on a node root (flock on var/lib/hpcpolicy/sync.lock)."""
    path = install.target_path(root, SYNC_LOCK)
    try:
        install.make_parents(root, SYNC_LOCK)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as err:  # a read-only or full node root: nothing was installed
        raise RuntimeFailure(f"{path}: cannot create the sync lock ({err.strerror}); "
                             "nothing installed") from None
    try:
        if not poll_lock(fd, timeout, fcntl.flock):
            raise LockTimeout(f"{path}: another node sync runs for more than {timeout:g} s")
        yield
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- planning


def _plan_file(root: str, rel: str, data: bytes, previous: Mapping[str, str]) -> Optional[_Planned]:
    path = install.target_path(root, rel)
    install.check_parents(root, rel)
    if os.path.isdir(path) and not os.path.islink(path):
        raise UnsafePath(f"{path}: is a directory; cannot install a file there")
    sha = hashlib.sha256(data).hexdigest()
    if install.installed_ok(path, sha):
        return None
    before = install.read_installed(path)
    if not os.path.lexists(path):
        return _Planned(rel, "added", data, None)
    note = ""
    if rel in previous:
        now = hashlib.sha256(before).hexdigest() if before is not None else None
        if now != previous[rel]:
            note = f"{rel}: locally modified since the last sync; restored"
        elif not install.mode_owner_ok(path):
            note = f"{rel}: mode or owner changed locally; restored"
        # else: the file of the previous generation, untouched: a routine update, no note
    return _Planned(rel, "modified", data, before, note)


def _plan_removal(root: str, rel: str) -> Optional[_Planned]:
    path = install.target_path(root, rel)
    orig = path + install.ORIG_SUFFIX
    if not os.path.lexists(path) and not os.path.lexists(orig):
        return None
    install.check_parents(root, rel)
    if rel in install.NEVER_RESTORED:
        return _Planned(rel, "removed", b"", install.read_installed(path),
                        f"{rel}: emptied (sub-IDs are no longer published); the file from "
                        f"before hpcpolicy stays in {rel}{install.ORIG_SUFFIX}, unchecked")
    after = install.read_installed(orig) if os.path.lexists(orig) else None
    return _Planned(rel, "removed", after, install.read_installed(path),
                    f"{rel}: original restored" if os.path.lexists(orig) else "")


def plan(root: str, files: Mapping[str, bytes], previous: Mapping[str, str],
         unchanged: Collection[str] = ()) -> List[_Planned]:
    """What must change on the node; raises UnsafePath before anything is written.

    `unchanged`: paths the new generation keeps with the same hash and whose installed file
    still equals the node's record: nothing to compare, nothing was read for them.
    """
    out: List[_Planned] = []
    for rel in sorted(files):
        item = _plan_file(root, rel, files[rel], previous)
        if item is not None:
            out.append(item)
    for rel in sorted(set(previous) - set(files) - set(unchanged)):
        item = _plan_removal(root, rel)
        if item is not None:
            out.append(item)
    return sorted(out, key=lambda p: p.path)


# ----------------------------------------------------------------------------- applying


def _apply(root: str, items: List[_Planned], previous: Mapping[str, str], timeout: float) -> None:
    subid = [i for i in items if i.path in SUBID_FILES]
    locks = ShadowLocks([install.target_path(root, p) for p in SUBID_FILES], timeout)
    if subid:
        install.make_parents(root, SUBID_FILES[0])
        locks.acquire()
    try:
        staged = _stage(root, items)
        install.commit(staged, {i.path for i in items if i.path not in previous})
        for item in items:
            if item.action == "removed":
                install.remove_file(root, item.path)
    finally:
        locks.release()


def _stage(root: str, items: List[_Planned]) -> List[install.Staged]:
    """Every new file written beside its target; on any failure none is left, none installed."""
    staged: List[install.Staged] = []
    try:
        for item in items:
            if item.action != "removed":
                assert item.data is not None
                try:
                    staged.append(install.stage_file(root, item.path, item.data))
                except OSError as err:
                    raise RuntimeFailure(
                        f"{install.target_path(root, item.path)}: cannot write the new file "
                        f"({err.strerror}); nothing installed, every file is as before") from None
    except BaseException:
        install.discard(staged)
        raise
    return staged


def run_sysctl(path: str) -> Optional[str]:
    """`sysctl -e -p FILE`; the reason it failed, or None.

    `-e`: procps 4.0 exits 1 on a `-key` line whose key the kernel lacks, although the dash
    asks exactly to ignore it (systemd-sysctl honours it); the file only holds our own keys.
    """
    try:
        proc = subprocess.run([SYSCTL, "-e", "-p", path], capture_output=True, text=True,
                              timeout=SYSCTL_TIMEOUT, check=False, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return f"{SYSCTL} not found: install procps, then run sysctl -p {path}"
    except subprocess.TimeoutExpired:
        return f"{SYSCTL} -p {path} timed out"
    if proc.returncode != 0:
        why = (proc.stderr or proc.stdout or "").strip().splitlines()
        return f"{SYSCTL} -p {path} failed (exit {proc.returncode}): " + \
            (why[0] if why else "no message")
    return None


def live_root(root: str) -> bool:
    """Only a sync into / may change the running kernel's settings."""
    return root == "/"


def _sysctl_step(opts: SyncOptions, root: str, action: Optional[str], due: Optional[str],
                 result: SyncResult) -> None:
    """Apply the sysctl file when it changed or an earlier run failed to (`due`).

    A failure is recorded as pending in the node's state, so every later run tries again and
    fails again (exit 1) until the kernel takes the settings: a timer unit stays failed.
    """
    sysctl_path = install.target_path(root, SYSCTL_FILE)
    if action == "removed":
        result.notes.append(f"/{SYSCTL_FILE} removed: its settings stay in force until reboot")
        return
    if action is None and due is None:
        return
    if not opts.reload or not live_root(root):
        why = "--no-reload" if not opts.reload else f"--root is {root}, not /"
        result.notes.append(f"sysctl not applied ({why}): run sysctl -e -p {sysctl_path}")
        if due is not None:
            result.pending[SYSCTL] = due  # still owed by a run that may apply it
    else:
        error = run_sysctl(sysctl_path)
        if error:
            result.errors.append(error + ("" if action else " (retrying a step that failed "
                                          "before; it is retried at every run until it works)"))
            result.pending[SYSCTL] = error
        else:
            result.notes.append(f"applied sysctl -e -p {sysctl_path}" +
                                ("" if action else " (a step that had failed before)"))


def _new_state(opts: SyncOptions, deploy_root: str, manifest: Mapping[str, Any],
               node_class: str, reason: str, root: str, state: Optional[Dict[str, Any]],
               site_signs: bool) -> Dict[str, Any]:
    shas = {e.path: e.sha256 for e in class_files(manifest, node_class)}
    return {
        "format": FORMAT,
        "generation": manifest["generation"],
        "class": node_class,
        "channel": opts.channel,
        "deploy_root": deploy_root,
        "site": manifest.get("site"),
        "synced": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "files": dict(sorted(shas.items())),
        "stat": records(root, sorted(shas)),  # what lstat says of each, right after installing
        "class_reason": reason,
        "idle": basis_of(opts, deploy_root),
        "requirements": manifest.get("requirements", {}),
        "floors": with_floor(state, str(manifest.get("site")), deploy_root,
                             int(manifest["number"]), str(manifest["generation"])),
        "site_deploy_owner": manifest.get("deploy_owner"),
        "site_signs": site_signs,
        "checks_signatures": opts.allowed_signers is not None,
        "pending": {},
        "stale_userns": [],
        "node_toml": opts.node_toml,  # reused by the next runs while the file is unchanged
    }


def _root(path: str) -> str:
    root = os.path.realpath(os.path.abspath(path))
    if not os.path.isdir(root):
        raise UsageError(f"--root {path}: not a directory")
    return root


def full_sync(opts: SyncOptions) -> SyncResult:
    """The sync that reads the generation: verify it, then install what differs."""
    root = _root(opts.root)
    deploy_root = source.check_deploy_root(opts.deploy_root, opts.owners)
    source.check_link(deploy_root, opts.channel, opts.owners)
    name, gen_dir = source.resolve(deploy_root, opts.channel)
    try:
        return _sync_generation(opts, root, deploy_root, gen_dir)
    except HpcPolicyError as err:
        err.details = {**err.details, "generation": name}  # for the json report of the failure
        raise
    except OSError as err:  # e.g. a read-only or full node root: name the path, keep the name
        where = err.filename if err.filename and os.path.isabs(str(err.filename)) else root
        failure = RuntimeFailure(f"{where}: {err.strerror}")
        failure.details = {"generation": name}
        raise failure from None


def site_signs(gen_dir: str, manifest: Mapping[str, Any]) -> bool:
    """Does the site sign its generations? (a signature is published, or the manifest says so)"""
    return bool(manifest.get("signed")) or os.path.lexists(os.path.join(gen_dir, SIG_NAME))


def check_newer(opts: SyncOptions, state: Optional[Dict[str, Any]], deploy_root: str,
                manifest: Mapping[str, Any], result: SyncResult) -> None:
    """Never go back to a generation older than the one last installed from this site and root.

    Whoever can repoint a channel could otherwise bring back an old signed generation (revoked
    sub-ID ranges, lifted denials) without any key. `rollback` publishes a new, higher number.
    """
    name, number = str(manifest["generation"]), manifest["number"]
    parsed = parse_name(name)
    if not isinstance(number, int) or parsed is None or parsed[0] != number:
        raise VerificationError(f"{name}: manifest number {number!r} does not match its name")
    site = str(manifest.get("site"))
    floor = floor_of(state, site, deploy_root)
    if floor is None or number > floor[0] or name == floor[1]:
        return
    what = (f"generation {name} is not newer than {floor[1]}, which this node installed from "
            f"{deploy_root} (site {site})")
    if not opts.allow_older:
        raise RuntimeFailure(
            f"{what}: refusing to go back (an old generation brings back revoked sub-ID ranges "
            "and lifted image denials; a rollback publishes a new, higher generation). If the "
            "deploy root was re-initialised or this node now follows a channel that is behind, "
            "run `hpcpolicy node sync --allow-older` once")
    log.warning("%s: installing it anyway (--allow-older)", what)
    result.notes.append(f"{what}: installed because of --allow-older")


def _sync_generation(opts: SyncOptions, root: str, deploy_root: str, gen_dir: str) -> SyncResult:
    name = os.path.basename(gen_dir)
    source.check_inner(deploy_root, opts.channel, gen_dir, opts.owners)
    first = load_state(root)
    held = intact_hashes(root, first)  # files untouched since the node wrote them
    manifest = verify_generation(gen_dir, opts.allowed_signers, opts.owners,
                                 known=set(held.values()), node=True)
    node_class, reason = source.select_class(manifest, opts.node_class, opts.hostname)
    keep = {e.path for e in class_files(manifest, node_class) if held.get(e.path) == e.sha256}
    files = source.read_class(gen_dir, manifest, node_class, skip=keep)
    result = SyncResult(name, node_class, reason, opts.channel, opts.check)
    signs = site_signs(gen_dir, manifest)
    if signs and opts.allowed_signers is None:
        result.notes.append(UNCHECKED_NOTE)
    if opts.check:  # no lock, so nothing to read again: the state as first read
        check_newer(opts, first, deploy_root, manifest, result)
        _compare(opts, root, files, installed_files(first), result, keep)
        result.pending = dict((first or {}).get("pending") or {})
        return result
    with sync_lock(root, opts.lock_timeout):
        state = load_state(root)
        check_newer(opts, state, deploy_root, manifest, result)
        previous = installed_files(state)
        # a file touched between the first look and the lock is read after all
        still = set(intact_hashes(root, state)) & keep
        if keep - still:
            files.update(source.read_class(gen_dir, manifest, node_class, only=keep - still))
        items = _compare(opts, root, files, previous, result, still)
        _apply(root, items, previous, opts.lock_timeout)
        _after_install(opts, root, items, state, result)
        new = _new_state(opts, deploy_root, manifest, node_class, reason, root, state, signs)
        new["pending"] = dict(result.pending)
        new["stale_userns"] = sorted(u["uid"] for u in result.stale_userns)
        if not same_state(state, new):
            save_state(root, new)
    return result


def _after_install(opts: SyncOptions, root: str, items: List[_Planned],
                   state: Optional[Mapping[str, Any]], result: SyncResult) -> None:
    """The steps after the files: sysctl, stale user namespaces (each may be pending)."""
    paths = {i.path: i.action for i in items}
    due = dict((state or {}).get("pending") or {})
    _sysctl_step(opts, root, paths.get(SYSCTL_FILE), due.get(SYSCTL), result)
    userns_report(opts, root, any(p in paths for p in SUBID_FILES), state, result)


def _compare(opts: SyncOptions, root: str, files: Mapping[str, bytes],
             previous: Mapping[str, str], result: SyncResult,
             unchanged: Collection[str] = ()) -> List[_Planned]:
    items = plan(root, files, previous, unchanged)
    result.changes = [{"path": i.path, "action": i.action} for i in items]
    result.notes.extend(i.note for i in items if i.note)
    if opts.want_diff:
        result.diff = [diffs.diff_entry(i.path, i.before, i.data) for i in items]
    return items
