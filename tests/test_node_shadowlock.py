"""shadow's commonio lock: our own protocol, a live/stale/garbage holder, and the real usermod."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterator

import pytest
from conftest import needs_root
from node_fixtures import BASE_TREE, Deploy, deploy, node_root, snapshot

from hpcpolicy.errors import LockTimeout
from hpcpolicy.node.shadowlock import ShadowLocks, try_lock

__all__ = ["deploy", "node_root"]

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_lock_protocol(tmp_path: Path) -> None:
    target = tmp_path / "subuid"
    target.write_text("")
    with ShadowLocks([str(target)], timeout=1):
        lock = tmp_path / "subuid.lock"
        assert lock.read_bytes() == f"{os.getpid()}".encode() + b"\0"  # as commonio writes it
        assert os.stat(lock).st_nlink == 1  # our pid file is gone, the lock stays
        assert sorted(p.name for p in tmp_path.iterdir()) == ["subuid", "subuid.lock"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["subuid"]


def test_live_holder_times_out(tmp_path: Path, sleeper: subprocess.Popen) -> None:
    target = tmp_path / "subuid"
    lock = tmp_path / "subuid.lock"
    lock.write_bytes(f"{sleeper.pid}".encode() + b"\0")
    with pytest.raises(LockTimeout, match=f"held by pid {sleeper.pid}"):
        ShadowLocks([str(target)], timeout=0.3).acquire()
    assert lock.read_bytes().startswith(str(sleeper.pid).encode())  # never broken
    assert sorted(p.name for p in tmp_path.iterdir()) == ["subuid.lock"]


def test_second_lock_timeout_releases_first(tmp_path: Path, sleeper: subprocess.Popen) -> None:
    (tmp_path / "subgid.lock").write_text(str(sleeper.pid))
    with pytest.raises(LockTimeout):
        ShadowLocks([str(tmp_path / "subuid"), str(tmp_path / "subgid")], timeout=0.2).acquire()
    assert not (tmp_path / "subuid.lock").exists()


def test_stale_lock_is_broken(tmp_path: Path) -> None:
    target = tmp_path / "subuid"
    (tmp_path / "subuid.lock").write_bytes(f"{dead_pid()}".encode() + b"\0")
    assert try_lock(str(target)) is None
    assert (tmp_path / "subuid.lock").read_bytes().startswith(str(os.getpid()).encode())


def test_garbage_lock_is_not_broken(tmp_path: Path) -> None:
    """shadow refuses a lock without a valid pid; so do we (an operator must look)."""
    (tmp_path / "subuid.lock").write_text("not a pid")
    with pytest.raises(LockTimeout, match="no valid pid"):
        ShadowLocks([str(tmp_path / "subuid")], timeout=0.2).acquire()


def test_sync_waits_then_fails_on_live_lock(cli: Any, deploy: Deploy, node_root: Path,
                                            sleeper: subprocess.Popen) -> None:
    deploy.publish()
    (node_root / "etc/subuid.lock").write_text(str(sleeper.pid))
    before = {k: v for k, v in snapshot(node_root).items() if not k.startswith("var")}
    res = cli("node", "sync", "--from", deploy.root, "--root", node_root, "--lock-timeout",
              "0.5", "--format", "json")
    doc = json.loads(res.out)
    assert res.rc == 1 and f"held by pid {sleeper.pid}" in doc["msg"]
    after = {k: v for k, v in snapshot(node_root).items() if not k.startswith("var")}
    assert after == before  # no file installed, not even the ones outside the lock


def test_sync_breaks_stale_lock(cli: Any, deploy: Deploy, node_root: Path) -> None:
    deploy.publish()
    (node_root / "etc/subuid.lock").write_text(str(dead_pid()))
    res = cli("node", "sync", "--from", deploy.root, "--root", node_root)
    assert res.rc == 0, res.err
    assert (node_root / "etc/subuid").read_bytes() == BASE_TREE["etc/subuid"]
    assert not (node_root / "etc/subuid.lock").exists()


# ----------------------------------------------------------------------------- real shadow

NS_SCRIPT = textwrap.dedent("""
    set -e
    cp -a /etc "$WORK/etc"
    mount --bind "$WORK/etc" /etc
    mkdir -p "$WORK/varlib"
    mount --bind "$WORK/varlib" /var/lib
    exec "$PYTHON" "$WORK/inside.py"
""")

INSIDE = textwrap.dedent('''
    import json, subprocess, sys
    from hpcpolicy.node.shadowlock import ShadowLocks
    def run(*cmd):
        p = subprocess.run(list(cmd), capture_output=True, text=True)
        return [p.returncode, p.stderr.strip()]
    out = {}
    out["useradd"] = run("useradd", "-M", "-l", "-s", "/usr/sbin/nologin", "h8lockuser")
    with ShadowLocks(["/etc/subuid", "/etc/subgid"], timeout=2):
        out["locked"] = run("usermod", "--add-subuids", "700000-700009", "h8lockuser")
    out["unlocked"] = run("usermod", "--add-subuids", "700000-700009", "h8lockuser")
    sync = subprocess.run(
        [sys.executable, "-m", "hpcpolicy", "node", "sync", "--from", DEPLOY,
         "--root", "/", "--no-reload", "--format", "json"],
        capture_output=True, text=True)
    out["sync"] = [sync.returncode, sync.stdout, sync.stderr]
    out["subuid"] = open("/etc/subuid").read()
    out["state"] = open("/var/lib/hpcpolicy/installed.json").read() if sync.returncode == 0 else ""
    print(json.dumps(out))
''')


@needs_root
@pytest.mark.skipif(shutil.which("usermod") is None or shutil.which("unshare") is None,
                    reason="needs shadow's usermod and util-linux unshare")
def test_real_usermod_respects_our_lock_and_sync_to_slash(tmp_path: Path, deploy: Deploy) -> None:
    """In a private mount namespace (a copy of /etc bound over /etc): usermod cannot lock
    /etc/subuid while we hold it, can afterwards; and `node sync --root /` installs there."""
    name = deploy.publish()
    host_subuid = Path("/etc/subuid").read_bytes() if Path("/etc/subuid").exists() else None
    work = tmp_path / "ns"
    work.mkdir()
    (work / "inside.py").write_text(INSIDE.replace("DEPLOY", repr(str(deploy.root))))
    env = dict(os.environ, WORK=str(work), PYTHON=sys.executable,
               PYTHONPATH=str(REPO))
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           NS_SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["useradd"][0] == 0, out
    assert out["locked"][0] != 0 and "lock" in out["locked"][1], out["locked"]
    assert out["unlocked"] == [0, ""], out["unlocked"]
    assert out["sync"][0] == 0, out["sync"]
    assert json.loads(out["sync"][1])["generation"] == name
    assert out["subuid"] == BASE_TREE["etc/subuid"].decode()
    assert json.loads(out["state"])["generation"] == name
    # the host saw none of it
    now = Path("/etc/subuid").read_bytes() if Path("/etc/subuid").exists() else None
    assert now == host_subuid
    assert not Path("/var/lib/hpcpolicy/installed.json").exists()
