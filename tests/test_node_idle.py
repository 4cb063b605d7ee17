"""The sync with nothing to do: decided from the node's record, the tree is never read.

Proved with strace on the real CLI (a fresh process, as the timer runs it): a no-change sync
opens nothing of the generation but its link; an access-only generation (same files, new
number) reads no file of the tree; a file changed on the node behind the record's back
(content and mtime put back) is still found and repaired, because ctime cannot be faked.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
from node_fixtures import BASE_TREE, Deploy, deploy, node_root

from hpcpolicy.node.sync import SyncOptions, sync

__all__ = ["deploy", "node_root"]

OPEN = re.compile(r'open(?:at2?)?\((?:AT_FDCWD, )?"([^"]+)", ([A-Z_|]+)')


def traced(tmp: Path, deploy: Deploy, root: Path, *extra: str) -> Dict[str, Any]:
    """Run `hpcpolicy node sync` under strace; its JSON and every path it opened (not dirs)."""
    if shutil.which("strace") is None:
        pytest.skip("strace not installed")
    log = tmp / f"strace-{len(list(tmp.glob('strace-*')))}.log"
    cmd = ["strace", "-f", "-qq", "-e", "trace=open,openat,openat2", "-o", str(log),
           sys.executable, "-m", "hpcpolicy", "node", "sync", "--from", str(deploy.root),
           "--root", str(root), "--format", "json", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if "PTRACE" in proc.stderr or "Operation not permitted" in proc.stderr:
        pytest.skip(f"strace cannot trace here: {proc.stderr[:200]}")
    opened: List[str] = []
    for line in log.read_text().splitlines():
        match = OPEN.search(line)
        if match and "O_DIRECTORY" not in match.group(2) and "ENOENT" not in line:
            opened.append(match.group(1))
    return {"rc": proc.returncode, "doc": json.loads(proc.stdout), "opened": opened,
            "err": proc.stderr}


def under(paths: List[str], top: Path) -> List[str]:
    return [p for p in paths if os.path.realpath(p).startswith(os.path.realpath(top) + "/")]


def test_no_change_sync_reads_only_the_link(tmp_path: Path, deploy: Deploy,
                                            node_root: Path) -> None:
    name = deploy.publish()
    sync(SyncOptions(str(deploy.root), str(node_root)))
    run = traced(tmp_path, deploy, node_root)
    assert run["rc"] == 0, run["err"]
    assert run["doc"]["changed"] is False and run["doc"]["generation"] == name
    assert "up to date" in run["doc"]["msg"]
    assert under(run["opened"], deploy.root) == [], under(run["opened"], deploy.root)
    # and it did not import the verification code either
    assert not [p for p in run["opened"] if p.endswith(("verify.py", "manifest.py"))]


def test_access_only_generation_reads_no_tree_file(tmp_path: Path, deploy: Deploy,
                                                    node_root: Path) -> None:
    deploy.publish()
    sync(SyncOptions(str(deploy.root), str(node_root)))
    new = deploy.publish()  # the same files again under a new number (an access change)
    run = traced(tmp_path, deploy, node_root)
    assert run["rc"] == 0, run["err"]
    assert run["doc"]["generation"] == new and run["doc"]["changes"] == []
    read = under(run["opened"], deploy.gen_dir(new))
    assert read and all(os.path.basename(p).startswith("manifest.json") for p in read), read
    again = traced(tmp_path, deploy, node_root)  # recorded: the next one is idle again
    assert under(again["opened"], deploy.root) == []


def test_changed_generation_reads_only_what_differs(tmp_path: Path, deploy: Deploy,
                                                    node_root: Path) -> None:
    deploy.publish()
    sync(SyncOptions(str(deploy.root), str(node_root)))
    new = deploy.publish({"default": {**BASE_TREE, "etc/subuid": b"1001:524288:65536\n"}})
    run = traced(tmp_path, deploy, node_root)
    assert run["rc"] == 0, run["err"]
    assert run["doc"]["changes"] == [{"path": "etc/subuid", "action": "modified"}]
    tree = [os.path.relpath(p, deploy.gen_dir(new) / "tree")
            for p in under(run["opened"], deploy.gen_dir(new) / "tree")]
    assert sorted(set(tree)) == ["etc/subuid"], tree  # verified, read, installed: only it


def test_file_changed_behind_the_record_is_repaired(tmp_path: Path, deploy: Deploy,
                                                    node_root: Path) -> None:
    """Same size, content changed, mtime put back: ctime still tells, the sync repairs it."""
    deploy.publish()
    sync(SyncOptions(str(deploy.root), str(node_root)))
    target = node_root / "etc/subuid"
    before = os.stat(target)
    forged = BASE_TREE["etc/subuid"].replace(b"1001:", b"6666:")
    assert len(forged) == before.st_size
    with open(target, "r+b") as handle:  # in place: same inode
        handle.write(forged)
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(target).st_ino == before.st_ino and os.stat(target).st_size == before.st_size
    run = traced(tmp_path, deploy, node_root)
    assert run["rc"] == 0, run["err"]
    assert run["doc"]["changes"] == [{"path": "etc/subuid", "action": "modified"}]
    assert any("locally modified" in n for n in run["doc"]["notes"])
    assert target.read_bytes() == BASE_TREE["etc/subuid"]
    assert traced(tmp_path, deploy, node_root)["doc"]["changes"] == []


def test_touched_but_equal_file_is_rehashed_not_rewritten(deploy: Deploy,
                                                          node_root: Path) -> None:
    deploy.publish()
    sync(SyncOptions(str(deploy.root), str(node_root)))
    target = node_root / "etc/subgid"
    ino = os.stat(target).st_ino
    os.utime(target, None)  # only the times change
    result = sync(SyncOptions(str(deploy.root), str(node_root)))
    assert result.changes == [] and os.stat(target).st_ino == ino
    state = json.loads((node_root / "var/lib/hpcpolicy/installed.json").read_text())
    assert state["stat"]["etc/subgid"][1] == os.stat(target).st_mtime_ns  # record refreshed


def test_a_changed_setting_is_no_idle_sync(deploy: Deploy, node_root: Path,
                                           tmp_path: Path) -> None:
    """Another class, or a signature now required, means the generation is looked at again."""
    gpu = {**BASE_TREE, "etc/enroot/enroot.conf": b"x\n"}
    deploy.publish({"default": dict(BASE_TREE), "gpu": gpu})
    sync(SyncOptions(str(deploy.root), str(node_root)))
    changed = sync(SyncOptions(str(deploy.root), str(node_root), node_class="gpu"))
    assert changed.node_class == "gpu"
    assert {c["path"] for c in changed.changes} == {"etc/enroot/enroot.conf"}
    signers = tmp_path / "allowed_signers"
    signers.write_text("")
    with pytest.raises(Exception, match="signature"):
        sync(SyncOptions(str(deploy.root), str(node_root), node_class="gpu",
                         allowed_signers=str(signers)))


CONSOLE = str(Path(sys.executable).parent / "hpcpolicy")


def _console(*args: str, importtime: bool = False) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, *(["-X", "importtime"] if importtime else []), CONSOLE, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


def test_idle_answer_before_argparse_equals_the_cli(cli: Any, deploy: Deploy,
                                                    node_root: Path) -> None:
    """The console script answers an idle `node sync` without importing argparse or the rest
    of the CLI (`cli/quick.py`), and prints exactly what the full CLI prints for it."""
    if not os.path.exists(CONSOLE):
        pytest.skip("no console script next to this interpreter")
    deploy.publish()
    sync(SyncOptions(str(deploy.root), str(node_root)))
    base = ("node", "sync", "--from", str(deploy.root), f"--root={node_root}")
    for fmt in ("json", "text"):
        quick = _console(*base, "--format", fmt, importtime=True)
        full = cli(*base, "--format", fmt)
        assert quick.returncode == full.rc == 0, quick.stderr[-500:]
        assert quick.stdout == full.out
        imported = {line.rsplit("|", 1)[-1].strip() for line in quick.stderr.splitlines()}
        assert {"hpcpolicy.node.sync", "hpcpolicy.node.idle"} <= imported  # the library call
        assert not {"argparse", "logging", "hpcpolicy.cli.main", "hpcpolicy.node.full",
                    "dataclasses"} & imported
    # what the quick path leaves to argparse: an abbreviation, an option it does not take,
    # and an error, all answered by the full CLI through its funnel
    for extra in (("--form", "json"), ("--lock-timeout", "5", "--format", "json")):
        run = _console(*base, *extra)
        assert run.returncode == 0 and json.loads(run.stdout)["changed"] is False, run.stderr
    bad = _console("node", "sync", "--from", str(deploy.root), "--root", "/nonexistent-root",
                   "--format", "json")
    assert bad.returncode == 2 and "--root" in json.loads(bad.stdout)["msg"]
