"""The node's trust boundaries, each test written as the attack it stops.

Unprivileged steps run as `nobody` through `setpriv` with the system Python (the venv under
/root is not readable by nobody); the node is a temp directory given as `--root`; the disk-full
case mounts a small tmpfs in a private mount namespace. Nothing touches this machine's /etc.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest
from node_fixtures import (
    BASE_TREE,
    SUBUID,
    Deploy,
    allowed_signers_for,
    deploy,
    make_signing_key,
    node_root,
    snapshot,
)

from hpcpolicy.deploy.store import ensure_layout
from hpcpolicy.generation import manifest as manifest_module
from hpcpolicy.node.state import STATE_FILE

__all__ = ["deploy", "node_root"]  # fixtures, imported for pytest

NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
SYSTEM_PYTHON = "/usr/bin/python3"

# What an attacker writes: a generation in the shape nodes expect, with any files at all.
# argv: deploy root, generation name, JSON {node path: text, or "@N" for N bytes of '#'}.
FORGE = r"""
import hashlib, json, os, sys
root, name, files = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
gen = os.path.join(root, "generations", name)
entries = []
for path, text in sorted(files.items()):
    data = b"#" * int(text[1:]) if text.startswith("@") else text.encode()
    target = os.path.join(gen, "tree", path)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "wb") as handle:
        handle.write(data)
    os.chmod(target, 0o644)
    entries.append({"path": path, "sha256": hashlib.sha256(data).hexdigest(),
                    "size": len(data), "mode": "0644"})
manifest = {"format": 1, "generation": name, "number": int(name.split("-")[0]),
            "created": "2026-01-01T00:00:00Z", "operator": "x", "host": "x", "site": "x",
            "policy_sha256": "0" * 64, "requirements": {}, "files": entries,
            "classes": {"default": {"tree": "tree", "files": entries}}}
with open(os.path.join(gen, "manifest.json"), "w") as handle:
    json.dump(manifest, handle)
os.symlink("generations/" + name, os.path.join(root, "current"))
"""

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None or not os.path.exists(SYSTEM_PYTHON),
    reason="needs root, setpriv and /usr/bin/python3 (steps run as nobody)")


@pytest.fixture
def shared() -> Iterator[Path]:
    """A root-owned directory nobody can traverse, with a sticky `scratch/` like /scratch."""
    top = Path(tempfile.mkdtemp(prefix="hpcpolicy-trust-", dir="/tmp"))
    os.chmod(top, 0o755)
    (top / "scratch").mkdir()
    os.chmod(top / "scratch", 0o1777)
    try:
        yield top
    finally:
        shutil.rmtree(top)


def as_nobody(*argv: str) -> None:
    proc = subprocess.run(AS_NOBODY + ["sh", "-c", 'umask 022; exec "$@"', "sh", *argv],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def forge_as_nobody(shared: Path, files: Dict[str, str], name: str = "000001-deadbeef") -> Path:
    """nobody creates the deploy root first (the sticky parent lets them) and fills it."""
    root = shared / "scratch" / "hpcpolicy"
    script = shared / "forge.py"
    script.write_text(FORGE)
    os.chmod(script, 0o644)
    as_nobody("mkdir", str(root))
    as_nobody(SYSTEM_PYTHON, str(script), str(root), name, json.dumps(files))
    assert os.stat(root / "generations" / name / "manifest.json").st_uid == NOBODY
    return root


def sync_json(cli: Any, deploy_root: Path, root: Path, *extra: Any) -> Any:
    res = cli("node", "sync", "--from", deploy_root, "--root", root, "--format", "json", *extra)
    res.doc = json.loads(res.out)
    return res


def node_files(root: Path) -> Dict[str, Any]:
    """The node without its sync lock (taking the lock installs nothing)."""
    return {k: v for k, v in snapshot(root).items() if not k.startswith("var")}


# ----------------------------------------------------------------------------- owner


def test_forged_generation_in_user_owned_root_refused(cli: Any, shared: Path,
                                                      node_root: Path) -> None:
    forged = forge_as_nobody(shared, {"etc/subuid": f"{NOBODY}:0:4294967295\n"})
    before = snapshot(node_root)
    res = sync_json(cli, forged, node_root)
    assert res.rc == 1, res.doc
    assert f"owned by uid {NOBODY}, not root or the deploy owner" in res.doc["msg"]
    assert snapshot(node_root) == before
    # the same root is read once the node is told that nobody is its deploy owner
    res = sync_json(cli, forged, node_root, "--deploy-owner", "nobody")
    assert res.rc == 0, res.doc
    assert (node_root / "etc/subuid").read_text() == f"{NOBODY}:0:4294967295\n"


def test_foreign_file_inside_a_root_owned_deploy_root_refused(cli: Any, shared: Path,
                                                             node_root: Path) -> None:
    deploy = Deploy(shared / "deploy")
    ensure_layout(str(deploy.root))
    name = deploy.publish()
    # as an NFS client writing as another uid would leave it: the directories are fine
    os.chown(deploy.gen_dir(name) / "tree/etc/subuid", NOBODY, NOBODY)
    before = snapshot(node_root)
    res = sync_json(cli, deploy.root, node_root)
    assert res.rc == 1 and "tree/etc/subuid: owned by uid 65534" in res.doc["msg"], res.doc
    assert res.doc["generation"] == name
    assert snapshot(node_root) == before
    os.chown(deploy.gen_dir(name) / "tree/etc/subuid", 0, 0)
    os.chmod(deploy.gen_dir(name) / "manifest.json", 0o666)
    res = sync_json(cli, deploy.root, node_root)
    assert res.rc == 1 and "manifest.json: writable by group or other" in res.doc["msg"]
    os.chmod(deploy.gen_dir(name) / "manifest.json", 0o644)
    os.lchown(deploy.root / "current", NOBODY, NOBODY)  # whoever owns the link can repoint it
    res = sync_json(cli, deploy.root, node_root)
    assert res.rc == 1 and "current is owned by uid 65534" in res.doc["msg"], res.doc
    assert snapshot(node_root) == before


# ----------------------------------------------------------------------------- managed paths


def test_manifest_naming_sudoers_refused(cli: Any, shared: Path, node_root: Path) -> None:
    """Even the deploy owner (or a signing key) cannot make nodes write other paths as root."""
    forged = forge_as_nobody(shared, {"etc/sudoers.d/x": "nobody ALL=(ALL) NOPASSWD: ALL\n",
                                      "etc/subuid": SUBUID.decode()})
    before = snapshot(node_root)
    res = sync_json(cli, forged, node_root, "--deploy-owner", str(NOBODY))
    assert res.rc == 1, res.doc
    assert "etc/sudoers.d/x: not a file hpcpolicy manages" in res.doc["msg"]
    assert res.doc["changes"] == [] and res.doc["generation"] == "000001-deadbeef"
    assert snapshot(node_root) == before  # not even the managed etc/subuid
    assert not (node_root / "etc/sudoers.d").exists()


def test_oversize_file_refused(cli: Any, shared: Path, node_root: Path) -> None:
    forged = forge_as_nobody(shared, {"etc/containers/policy.json": f"@{(1 << 20) + 1}"})
    before = snapshot(node_root)
    res = sync_json(cli, forged, node_root, "--deploy-owner", str(NOBODY))
    assert res.rc == 1, res.doc
    assert "etc/containers/policy.json: 1048577 bytes, over the 1048576 byte bound" \
        in res.doc["msg"]
    assert snapshot(node_root) == before


def test_publisher_refuses_an_unmanaged_path(tmp_path: Path) -> None:
    deploy = Deploy(tmp_path / "deploy")
    ensure_layout(str(deploy.root))
    with pytest.raises(Exception, match="etc/cron.d/x: not a path nodes install"):
        deploy.publish({"default": dict(BASE_TREE, **{"etc/cron.d/x": b"* * * * * root id\n"})})
    assert list((deploy.root / "generations").iterdir()) == []


def test_newer_format_asks_to_upgrade_the_node(cli: Any, deploy: Deploy, node_root: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manifest_module, "MIN_NODE_VERSION", "99.0.0")
    deploy.publish()
    before = snapshot(node_root)
    res = sync_json(cli, deploy.root, node_root)
    assert res.rc == 1 and "upgrade hpcpolicy on this node" in res.doc["msg"], res.doc
    assert snapshot(node_root) == before


def test_manifest_records_what_nodes_compare(deploy: Deploy) -> None:
    deploy.owner = "nobody"
    name = deploy.publish()
    doc = json.loads((deploy.gen_dir(name) / "manifest.json").read_text())
    assert doc["deploy_owner"] == "nobody" and doc["signed"] is False
    assert doc["min_node_version"] == manifest_module.MIN_NODE_VERSION


# ----------------------------------------------------------------------------- replay


def test_replayed_older_signed_generation_refused(cli: Any, shared: Path, tmp_path: Path,
                                                  node_root: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    key = make_signing_key(tmp_path)
    signers = allowed_signers_for(key, tmp_path / "allowed_signers")
    deploy = Deploy(shared / "deploy", signing_key=str(key), owner=str(NOBODY))
    ensure_layout(str(deploy.root))
    bob = b"1002:589824:65536\n"
    old = deploy.publish({"default": dict(BASE_TREE, **{"etc/subuid": SUBUID})})
    deploy.publish({"default": dict(BASE_TREE, **{"etc/subuid": SUBUID.replace(bob, b"")})})
    for dirpath, dirnames, filenames in os.walk(deploy.root):  # the deploy owner's files
        for entry in dirnames + filenames + ["."]:
            os.lchown(os.path.join(dirpath, entry), NOBODY, NOBODY)
    opts = ["--deploy-owner", str(NOBODY), "--allowed-signers", signers]
    assert sync_json(cli, deploy.root, node_root, *opts).rc == 0
    revoked = (node_root / "etc/subuid").read_bytes()
    assert bob not in revoked
    # whoever can repoint `current` brings back the old, validly signed generation
    as_nobody("sh", "-c", f'cd "{deploy.root}" && ln -s generations/{old} cur.new && '
              "mv -T cur.new current")
    before = node_files(node_root)
    res = sync_json(cli, deploy.root, node_root, *opts)
    assert res.rc == 1, res.doc
    assert f"generation {old} is not newer than" in res.doc["msg"]
    assert "--allow-older" in res.doc["msg"] and res.doc["generation"] == old
    assert node_files(node_root) == before
    # disaster recovery: the operator says so, and it is logged
    res = sync_json(cli, deploy.root, node_root, *opts, "--allow-older")
    assert res.rc == 0, res.doc
    assert bob in (node_root / "etc/subuid").read_bytes()
    assert any("--allow-older" in n for n in res.doc["notes"])
    assert "installing it anyway (--allow-older)" in caplog.text
    floors = json.loads((node_root / STATE_FILE).read_text())["floors"]
    assert floors == [{"site": "test-site", "deploy_root": str(deploy.root),
                       "number": 1, "generation": old}]


# ----------------------------------------------------------------------------- trust anchors


def test_allowed_signers_others_can_change_refused(cli: Any, tmp_path: Path, deploy: Deploy,
                                                   node_root: Path) -> None:
    key = make_signing_key(tmp_path)
    signers = allowed_signers_for(key, tmp_path / "allowed_signers")
    deploy.signing_key = str(key)
    deploy.publish()
    before = snapshot(node_root)
    os.chmod(signers, 0o666)  # anyone could add their own key
    res = sync_json(cli, deploy.root, node_root, "--allowed-signers", signers)
    assert res.rc == 2 and "writable by group or other" in res.doc["msg"], res.doc
    os.chmod(signers, 0o644)
    os.chown(signers, NOBODY, NOBODY)
    res = sync_json(cli, deploy.root, node_root, "--allowed-signers", signers)
    assert res.rc == 2 and "owned by uid 65534, not root" in res.doc["msg"], res.doc
    assert snapshot(node_root) == before
    os.chown(signers, 0, 0)
    assert sync_json(cli, deploy.root, node_root, "--allowed-signers", signers).rc == 0


def test_doctor_names_owner_and_signing_mismatches(cli: Any, tmp_path: Path, deploy: Deploy,
                                                   node_root: Path) -> None:
    key = make_signing_key(tmp_path)
    signers = allowed_signers_for(key, tmp_path / "allowed_signers")
    deploy.signing_key, deploy.owner = str(key), "nobody"
    deploy.publish()
    res = sync_json(cli, deploy.root, node_root)  # root-owned root: fine; no signature check
    assert res.rc == 0 and any("does not check the signature" in n for n in res.doc["notes"])

    def checks(*extra: Any) -> Dict[str, Dict[str, str]]:
        out = cli("node", "doctor", "--root", node_root, "--format", "json", *extra)
        return {c["name"]: c for c in json.loads(out.out)["checks"]}

    found = checks()
    assert found["deploy-owner"]["status"] == "WARN"
    assert "records deploy owner nobody" in found["deploy-owner"]["detail"]
    assert found["signatures"]["status"] == "WARN"
    config = tmp_path / "node.toml"
    config.write_text(f'deploy_owner = "nobody"\nallowed_signers = "{signers}"\n')
    found = checks("--config", config)
    assert found["deploy-owner"]["status"] == "OK"
    assert found["signatures"]["status"] == "OK"


# ----------------------------------------------------------------------------- updates


def test_routine_update_has_no_restore_note(deploy: Deploy, node_root: Path) -> None:
    from hpcpolicy.node.sync import SyncOptions, sync

    deploy.publish()
    sync(SyncOptions(str(deploy.root), str(node_root)))
    deploy.publish({"default": dict(BASE_TREE, **{"etc/subuid": SUBUID + b"1003:655360:65536\n"})})
    result = sync(SyncOptions(str(deploy.root), str(node_root)))
    assert result.changes == [{"path": "etc/subuid", "action": "modified"}]
    assert not [n for n in result.notes if "locally" in n]
    # a real local change of mode is still named
    os.chmod(node_root / "etc/subuid", 0o666)
    deploy.publish({"default": dict(BASE_TREE)})
    result = sync(SyncOptions(str(deploy.root), str(node_root)))
    assert "etc/subuid: mode or owner changed locally; restored" in result.notes
    assert stat.S_IMODE(os.stat(node_root / "etc/subuid").st_mode) == 0o644


# ----------------------------------------------------------------------------- disk full

DISK_FULL = r"""
import json, os, subprocess, sys
from hpcpolicy.cli.main import main
deploy_root, node, first, second = sys.argv[1:5]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", node], check=True)

def run(gen):
    os.replace(os.path.join(deploy_root, "links", gen), os.path.join(deploy_root, "current"))
    out = os.path.join(os.path.dirname(node), f"out-{gen}.json")
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    saved = os.dup(1)
    os.dup2(fd, 1)
    try:
        rc = main(["node", "sync", "--from", deploy_root, "--root", node, "--format", "json"])
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
    with open(out) as handle:
        return rc, json.loads(handle.read().strip().splitlines()[-1])

results = [run(first), run(second)]
files, dirs = {}, []
for dirpath, subdirs, names in os.walk(node):
    dirs += [os.path.relpath(os.path.join(dirpath, d), node) for d in subdirs]
    for name in names:
        path = os.path.join(dirpath, name)
        with open(path, "rb") as handle:
            files[os.path.relpath(path, node)] = handle.read().decode("latin-1")
print(json.dumps({"results": results, "files": files, "dirs": dirs}))
"""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_disk_full_installs_nothing_of_the_new_generation(tmp_path: Path, deploy: Deploy) -> None:
    gen1 = deploy.publish()
    big = b"".join(b"%d:%d:65536\n" % (1000 + i, 524288 + i * 65536) for i in range(12000))
    gen2 = deploy.publish({"default": dict(BASE_TREE, **{
        "etc/containers/policy.json": b'{"default": [{"type": "insecureAcceptAnything"}]}\n',
        "etc/enroot/mounts.d/90-hpcpolicy.fstab": b"/scratch /scratch none bind\n",  # new dirs
        "etc/subuid": big})})
    links = deploy.root / "links"  # so the driver can point `current` at either generation
    links.mkdir()
    for name in (gen1, gen2):
        (links / name).symlink_to(f"generations/{name}")
    node = tmp_path / "node"
    node.mkdir()
    driver = tmp_path / "driver.py"
    driver.write_text(DISK_FULL)
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable,
                           str(driver), str(deploy.root), str(node), gen1, gen2],
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    (rc1, doc1), (rc2, doc2) = out["results"]
    assert rc1 == 0 and doc1["generation"] == gen1, doc1
    assert rc2 == 1 and doc2["failed"] is True, doc2
    assert doc2["generation"] == gen2  # the JSON names the generation that did not fit
    assert "etc/subuid: cannot write the new file (No space left on device)" in doc2["msg"]
    files = {k: v.encode("latin-1") for k, v in out["files"].items()}
    for rel, data in BASE_TREE.items():  # every file still the first generation's
        assert files[rel] == data, rel
    assert not [k for k in files if ".hpcpolicy-tmp-" in k]
    assert "etc/enroot" not in out["dirs"]  # the directories made for the staged file are gone
    assert json.loads(files[STATE_FILE])["generation"] == gen1


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_read_only_node_root_names_the_path(tmp_path: Path, deploy: Deploy) -> None:
    name = deploy.publish()
    node = tmp_path / "node"
    (node / "var").mkdir(parents=True)
    cli = Path(sys.executable).parent / "hpcpolicy"
    script = ('mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && '
              'exec "$2" node sync --from "$3" --root "$1" --format json')
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                           "sh", str(node), str(cli), str(deploy.root)],
                          capture_output=True, text=True, check=False, timeout=60)
    doc = json.loads(proc.stdout)
    assert proc.returncode == 1 and doc["generation"] == name, doc
    assert doc["msg"] == (f"{node}/var/lib/hpcpolicy/sync.lock: cannot create the sync lock "
                          "(Read-only file system); nothing installed")
    assert "internal error" not in proc.stderr


def test_doctor_checks_the_signature_it_is_told_to(cli: Any, tmp_path: Path, deploy: Deploy,
                                                   node_root: Path) -> None:
    key = make_signing_key(tmp_path)
    signers = allowed_signers_for(key, tmp_path / "allowed_signers")
    config = tmp_path / "node.toml"
    config.write_text(f'allowed_signers = "{signers}"\n')
    deploy.publish()  # unsigned
    assert sync_json(cli, deploy.root, node_root).rc == 0

    def checks(*extra: Any) -> Dict[str, Dict[str, str]]:
        out = cli("node", "doctor", "--root", node_root, "--config", config, "--format", "json",
                  *extra)
        return {c["name"]: c for c in json.loads(out.out)["checks"]}

    found = checks()
    assert found["signatures"]["status"] == "WARN"
    assert "requires signed generations" in found["signatures"]["detail"]
    found = checks("--from", deploy.root)  # the current generation fails the node's check
    assert found["generation"]["status"] == "FAIL"
    assert "signature" in found["generation"]["detail"]
