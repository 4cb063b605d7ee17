"""DeployLock: serialises real processes, times out naming the holder, refuses localflock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpcpolicy.deploy.changelog import append_change, changes_path, read_changes
from hpcpolicy.deploy.lock import DeployLock, mount_of, refuse_local_locks
from hpcpolicy.errors import LockTimeout, UnsafePath

HOLDER = """
import sys, time
from hpcpolicy.deploy.lock import DeployLock
with DeployLock(sys.argv[1], purpose="test holder"):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    open(sys.argv[1] + "/released-by-holder", "w").close()
"""


def hold(root: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root), str(seconds)],
        stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
    return proc


def test_timeout_names_holder(tmp_path: Path) -> None:
    proc = hold(tmp_path, 30)
    try:
        with pytest.raises(LockTimeout) as info, DeployLock(str(tmp_path), timeout=0.2):
            pass
        text = str(info.value)
        assert f"pid {proc.pid}" in text and "test holder" in text and "since 20" in text
        assert info.value.exit_code == 1
    finally:
        proc.kill()
        proc.wait()


def test_waits_for_release(tmp_path: Path) -> None:
    proc = hold(tmp_path, 0.3)
    try:
        with DeployLock(str(tmp_path), timeout=20, purpose="waiter"):
            assert (tmp_path / "released-by-holder").exists()  # only after the holder let go
            info = json.loads((tmp_path / ".lock").read_text())
            assert info["pid"] == os.getpid() and info["purpose"] == "waiter"
    finally:
        proc.wait()
    assert (tmp_path / ".lock").read_text() == ""  # holder info cleared on release


def test_lock_is_released_when_holder_is_killed(tmp_path: Path) -> None:
    proc = hold(tmp_path, 60)
    proc.kill()
    proc.wait()
    with DeployLock(str(tmp_path), timeout=5):
        pass


def test_nested_hold_keeps_the_lock(tmp_path: Path) -> None:
    with DeployLock(str(tmp_path)):
        with DeployLock(str(tmp_path)):
            pass
        # the inner exit must not have dropped the process's POSIX lock
        check = subprocess.run(
            [sys.executable, "-c",
             "import sys; from hpcpolicy.deploy.lock import DeployLock\n"
             "DeployLock(sys.argv[1], timeout=0).acquire()", str(tmp_path)],
            capture_output=True, text=True,
        )
        assert check.returncode != 0 and "LockTimeout" in check.stderr


def test_lock_file_symlink_refused(tmp_path: Path) -> None:
    (tmp_path / ".lock").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafePath, match="symlink"), DeployLock(str(tmp_path)):
        pass


def test_localflock_lustre_refused(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 0:21 / / rw shared:1 - ext4 /dev/sda1 rw\n"
        "40 22 0:40 / /lus\\040tre rw,relatime shared:2 - lustre 10.0.0.1@tcp:/fs "
        "rw,localflock,lazystatfs\n"
        "41 22 0:41 / /lustre2 rw,relatime - lustre 10.0.0.1@tcp:/fs rw,flock\n"
    )
    with pytest.raises(UnsafePath, match="localflock"):
        refuse_local_locks("/lus tre/hpcpolicy", str(info))
    refuse_local_locks("/lustre2/hpcpolicy", str(info))  # flock: fine
    refuse_local_locks("/lus", str(info))  # a prefix by string only: not on that mount
    assert mount_of("/lus tre/x", str(info)) == ("/lus tre", "lustre",
                                                  ["rw", "relatime", "rw", "localflock",
                                                   "lazystatfs"])


def test_real_mountinfo_parses(tmp_path: Path) -> None:
    mount = mount_of(str(tmp_path))
    assert mount is not None and mount[0].startswith("/")


def test_changelog_appends_and_defaults(tmp_path: Path) -> None:
    append_change(str(tmp_path), {"action": "apply", "generation": "000001-aaaaaaaa"})
    append_change(str(tmp_path), {"action": "rollback", "operator": "alice", "note": "a\nb"})
    lines = Path(changes_path(str(tmp_path))).read_text().splitlines()
    assert len(lines) == 2
    entries = read_changes(str(tmp_path))
    assert entries[0]["action"] == "apply" and entries[0]["time"].endswith("+00:00")
    assert entries[0]["host"] and entries[0]["operator"]
    assert entries[1]["operator"] == "alice" and entries[1]["note"] == "a\nb"
    assert (Path(changes_path(str(tmp_path))).stat().st_mode & 0o777) == 0o644


def test_changelog_survives_torn_last_line(tmp_path: Path) -> None:
    append_change(str(tmp_path), {"action": "apply"})
    with open(changes_path(str(tmp_path)), "ab") as handle:
        handle.write(b'{"action": "tor')  # a crash in the middle of a write
    append_change(str(tmp_path), {"action": "after"})
    assert [e["action"] for e in read_changes(str(tmp_path))] == ["apply", "after"]


def test_changelog_empty(tmp_path: Path) -> None:
    assert read_changes(str(tmp_path)) == []


def test_timeout_zero_fails_fast(tmp_path: Path) -> None:
    proc = hold(tmp_path, 30)
    try:
        start = time.monotonic()
        with pytest.raises(LockTimeout), DeployLock(str(tmp_path), timeout=0):
            pass
        assert time.monotonic() - start < 5
    finally:
        proc.kill()
        proc.wait()
