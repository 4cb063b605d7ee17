"""Stale user namespaces against real rootless Podman of throwaway users.

Two throwaway users exist only in a private mount namespace (passwd, group, subuid, subgid
bind-mounted over /etc there; the host's /etc is never touched). User A runs `podman unshare`
once, which leaves rootless Podman's pause process (`catatonit -P`) holding A's user namespace;
user B runs a real container (`podman run --rootfs` of a static busybox, runc, cgroupfs).
Then a new generation moves A's range and withdraws B's: `node sync` must name both, and
`--migrate-users` must end A's pause process and leave B's container running.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from node_fixtures import BASE_TREE, Deploy, deploy

from hpcpolicy.node import userns
from hpcpolicy.node.sync import SyncOptions, sync

__all__ = ["deploy"]

A, B = 4391, 4392
OLD = f"{A}:600000:65536\n{B}:700000:65536\n".encode()
NEW = f"{A}:800000:65536\n".encode()  # A's range moved, B's withdrawn
TOOLS = ("podman", "runc", "conmon", "busybox", "newuidmap", "newgidmap", "setpriv", "unshare")


def _uid_of(pid: str) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def _kill_users(uids: List[int]) -> None:
    """End every process of the throwaway users (only this test starts them)."""
    for _ in range(3):
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and _uid_of(p) in uids]
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if not pids:
            return
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


@pytest.fixture
def podman_users() -> Iterator[Path]:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if os.geteuid() != 0 or missing:
        pytest.skip(f"needs root and {missing or TOOLS}")
    work = Path(tempfile.mkdtemp(prefix="hpcpolicy-userns-", dir="/tmp"))
    os.chmod(work, 0o755)  # the users must reach their homes (pytest's tmp is 0700)
    etc = work / "etc"
    etc.mkdir()
    (etc / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n" + "".join(
            f"hpcns{u}:x:{u}:{u}::{work}/home{u}:/bin/sh\n" for u in (A, B)))
    (etc / "group").write_text("root:x:0:\n" + "".join(f"hpcns{u}:x:{u}:\n" for u in (A, B)))
    (etc / "subuid").write_bytes(OLD)
    (etc / "subgid").write_bytes(OLD)
    for name in ("passwd", "group", "subuid", "subgid"):
        os.chmod(etc / name, 0o644)
    for uid in (A, B):
        for sub in (f"home{uid}", f"run{uid}"):
            (work / sub).mkdir(mode=0o700)
            os.chown(work / sub, uid, uid)
    rootfs = work / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy2(shutil.which("busybox") or "", rootfs / "bin" / "busybox")
    (rootfs / "bin" / "sleep").symlink_to("busybox")
    for dirpath, _dirs, files in os.walk(rootfs):
        os.lchown(dirpath, B, B)
        for name in files:
            os.lchown(os.path.join(dirpath, name), B, B)

    def as_user(uid: int, cmd: str) -> str:
        env = (f"env -i HOME={work}/home{uid} XDG_RUNTIME_DIR={work}/run{uid} "
               "PATH=/usr/sbin:/usr/bin:/sbin:/bin")
        return f"(cd {work}/home{uid} && setpriv --reuid={uid} --regid={uid} --init-groups " \
               f"{env} {cmd})"

    binds = "\n".join(f"mount --bind {etc}/{n} /etc/{n}"
                      for n in ("passwd", "group", "subuid", "subgid"))
    script = textwrap.dedent(f"""\
        set -e
        {binds}
        {as_user(A, "podman unshare true")}
        {as_user(B, "podman --runtime runc --cgroup-manager cgroupfs run -d --name job-b "
                 f"--network none --rootfs {rootfs} /bin/sleep 600")}
        """)
    try:
        proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                               script], capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, f"podman set-up failed:\n{proc.stdout}\n{proc.stderr}"
        yield work
    finally:
        _kill_users([A, B])
        shutil.rmtree(work, ignore_errors=True)


def _ours(entries: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Only the throwaway users: other namespaces on this host are stale against our files too
    (their owners have no line in them), and a real node sync names them as it should."""
    return [e for e in entries if e["uid"] in (A, B)]


def _processes(uid: int) -> Dict[str, List[int]]:
    found: Dict[str, List[int]] = {}
    for proc in userns.scan():
        if proc.owner == uid:
            kind = "pause" if proc.is_pause else proc.comm
            found.setdefault(kind, []).append(proc.pid)
    return found


def test_stale_pause_and_container_named_then_migrated(podman_users: Path, deploy: Deploy,
                                                        tmp_path: Path, cli: Any) -> None:
    a_procs, b_procs = _processes(A), _processes(B)
    assert "pause" in a_procs and list(a_procs) == ["pause"], a_procs
    assert "pause" in b_procs and "conmon" in b_procs and "sleep" in b_procs, b_procs
    root = tmp_path / "node"
    root.mkdir()
    view = tmp_path / "proc"  # /proc as seen by this test: only the throwaway users' processes,
    view.mkdir()  # so --migrate-users can never end a pause process of anybody else on this host
    for pid in os.listdir("/proc"):
        if pid.isdigit() and _uid_of(pid) in (A, B):
            (view / pid).symlink_to(f"/proc/{pid}")
    opts = dict(deploy_root=str(deploy.root), root=str(root), userns=True, proc=str(view))
    deploy.publish({"default": {**BASE_TREE, "etc/subuid": OLD, "etc/subgid": OLD}})
    first = sync(SyncOptions(**opts))  # type: ignore[arg-type]
    assert _ours(first.stale_userns) == [], first.stale_userns  # they run with current ranges

    deploy.publish({"default": {**BASE_TREE, "etc/subuid": NEW, "etc/subgid": NEW}})
    second = sync(SyncOptions(**opts))  # type: ignore[arg-type]
    stale = {s["uid"]: s for s in _ours(second.stale_userns)}
    assert set(stale) == {A, B}, second.stale_userns
    assert stale[A]["containers"] == [] and set(a_procs["pause"]) <= set(stale[A]["pids"])
    assert stale[B]["containers"] == ["job-b"]
    assert set(b_procs["sleep"]) <= set(stale[B]["pids"])
    assert any("--migrate-users" in n for n in second.notes)

    again = sync(SyncOptions(**opts))  # nothing new, but still stale: named again
    assert {s["uid"] for s in _ours(again.stale_userns)} == {A, B} and again.changes == []

    migrated = sync(SyncOptions(**opts, migrate_users=True))  # type: ignore[arg-type]
    assert [m["uid"] for m in _ours(migrated.migrated)] == [A]
    assert [s["uid"] for s in _ours(migrated.stale_userns)] == [B]
    assert not any(_alive(p) for p in a_procs["pause"]), "A's pause process still runs"
    assert all(_alive(p) for p in b_procs["sleep"] + b_procs["pause"]), "B's job was touched"
    state = json.loads((root / "var/lib/hpcpolicy/installed.json").read_text())
    assert B in state["stale_userns"] and A not in state["stale_userns"]

    refused = cli("node", "sync", "--from", deploy.root, "--root", root, "--migrate-users",
                  "--format", "json")
    assert refused.rc == 2 and "interactive" in json.loads(refused.out)["msg"]


def test_own_id_alone_is_never_stale(deploy: Deploy) -> None:
    """`unshare -r` maps only the user's own ID: no sub-ID, so nothing to migrate; a root-owned
    namespace is never a user's."""
    own = userns.NsProcess(10, 1001, "user:[1]", "sleep", ["sleep"], ((0, 1001, 1),),
                           ((0, 1001, 1),))
    old = userns.NsProcess(11, 1001, "user:[2]", "catatonit", ["catatonit", "-P"],
                           ((0, 1001, 1), (1, 524288, 65536)), ((0, 1001, 1),))
    rooted = userns.NsProcess(12, 0, "user:[3]", "sleep", ["sleep"], ((0, 100000, 65536),),
                              ())
    current = b"1001:524288:65536\n"
    assert userns.stale_users([own, old, rooted], current, current) == []
    (found,) = userns.stale_users([own, old, rooted], b"1001:589824:65536\n", current)
    assert found.uid == 1001 and found.pause == [11] and found.containers == []


def test_migrate_users_refused_under_a_unit(cli: Any, deploy: Deploy, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Ending users' processes is a person's decision: never from the timer's unit."""
    deploy.publish()
    monkeypatch.setenv("INVOCATION_ID", "0123456789abcdef")  # what systemd sets for a unit
    res = cli("node", "sync", "--from", deploy.root, "--root", tmp_path, "--migrate-users",
              "--format", "json")
    assert res.rc == 2 and "systemd unit" in json.loads(res.out)["msg"]
    assert not (tmp_path / "var").exists()  # refused before anything was read or written
