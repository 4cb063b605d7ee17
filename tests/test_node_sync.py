"""`hpcpolicy node sync` against real generations from the real publisher, into tmp node roots."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest
from node_fixtures import (
    APPTAINER,
    BASE_TREE,
    SUBUID,
    Deploy,
    allowed_signers_for,
    deploy,
    make_signing_key,
    node_root,
    snapshot,
)
from pytest_subprocess import FakeProcess

from hpcpolicy.errors import UnsafePath, UsageError, VerificationError
from hpcpolicy.node import full as node_sync
from hpcpolicy.node import source
from hpcpolicy.node.install import ORIG_SUFFIX
from hpcpolicy.node.state import STATE_FILE
from hpcpolicy.node.sync import SyncOptions, sync

__all__ = ["deploy", "node_root"]  # fixtures, imported for pytest

ORIG_POLICY = b'{"default": [{"type": "insecureAcceptAnything"}]}\n'
ORIG_SUBUID = b"olduser:100000:65536\n"
LOCK_DIR = "var/lib/hpcpolicy"


def run_sync(cli: Callable[..., Any], deploy: Deploy, root: Path, *extra: str) -> Any:
    res = cli("node", "sync", "--from", deploy.root, "--root", root, "--format", "json", *extra)
    doc = json.loads(res.out)
    assert {"changed", "failed", "msg", "generation", "changes"} <= set(doc), doc
    assert doc["failed"] == (res.rc != 0)
    res.doc = doc
    return res


def node_files(root: Path) -> Dict[str, Any]:
    """The node's snapshot without the sync lock file (taking a lock installs nothing)."""
    return {k: v for k, v in snapshot(root).items()
            if not k.startswith("var")}


# ----------------------------------------------------------------------------- install


def test_first_sync_installs_and_keeps_originals(cli: Any, deploy: Deploy,
                                                 node_root: Path) -> None:
    name = deploy.publish()
    res = run_sync(cli, deploy, node_root)
    assert res.rc == 0, res.err
    assert res.doc["changed"] is True and res.doc["generation"] == name
    assert res.doc["class"] == "default"
    actions = {c["path"]: c["action"] for c in res.doc["changes"]}
    assert actions == {
        "etc/apptainer/apptainer.conf": "added", "etc/containers/policy.json": "modified",
        "etc/subgid": "added", "etc/subuid": "modified",
        "etc/sysctl.d/90-hpcpolicy.conf": "added"}
    for rel, data in BASE_TREE.items():
        path = node_root / rel
        st = os.lstat(path)
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o644
        assert (st.st_uid, st.st_gid) == (0, 0)
        assert path.read_bytes() == data
    assert (node_root / ("etc/subuid" + ORIG_SUFFIX)).read_bytes() == ORIG_SUBUID
    assert (node_root / ("etc/containers/policy.json" + ORIG_SUFFIX)).read_bytes() == ORIG_POLICY
    assert not (node_root / ("etc/subgid" + ORIG_SUFFIX)).exists()
    assert stat.S_IMODE(os.stat(node_root / "etc/apptainer").st_mode) == 0o755
    assert any("--migrate-users" in n for n in res.doc["notes"])
    assert any("not applied" in n for n in res.doc["notes"])  # --root is not /
    state = json.loads((node_root / STATE_FILE).read_text())
    assert state["generation"] == name and set(state["files"]) == set(BASE_TREE)
    assert state["requirements"]["sysctls"] == {"user.max_user_namespaces": "15000"}


def test_second_sync_changes_nothing(cli: Any, deploy: Deploy, node_root: Path) -> None:
    deploy.publish()
    assert run_sync(cli, deploy, node_root).rc == 0
    before = snapshot(node_root)
    res = run_sync(cli, deploy, node_root)
    assert res.rc == 0 and res.doc["changed"] is False and res.doc["changes"] == []
    assert "nothing to do" in res.doc["msg"]
    assert snapshot(node_root) == before  # not even the state file was rewritten
    text = cli("node", "sync", "--from", deploy.root, "--root", node_root)
    assert text.rc == 0 and "nothing to do" in text.out


def test_new_generation_modifies_and_removes(cli: Any, deploy: Deploy, node_root: Path) -> None:
    deploy.publish()
    assert run_sync(cli, deploy, node_root).rc == 0
    tree = dict(BASE_TREE)
    tree["etc/subuid"] = SUBUID + b"1003:655360:65536\n"
    del tree["etc/apptainer/apptainer.conf"]
    del tree["etc/containers/policy.json"]
    name = deploy.publish({"default": tree})
    res = run_sync(cli, deploy, node_root, "--diff")
    assert res.rc == 0 and res.doc["generation"] == name
    assert res.doc["changes"] == [
        {"path": "etc/apptainer/apptainer.conf", "action": "removed"},
        {"path": "etc/containers/policy.json", "action": "removed"},
        {"path": "etc/subuid", "action": "modified"}]
    assert not (node_root / "etc/apptainer/apptainer.conf").exists()
    # the package's policy.json comes back; the original of subuid is still the first one
    assert (node_root / "etc/containers/policy.json").read_bytes() == ORIG_POLICY
    assert not (node_root / ("etc/containers/policy.json" + ORIG_SUFFIX)).exists()
    assert (node_root / ("etc/subuid" + ORIG_SUFFIX)).read_bytes() == ORIG_SUBUID
    diff = {d["path"]: d for d in res.doc["diff"]}
    assert diff["etc/subuid"]["after"].endswith("1003:655360:65536\n")
    assert diff["etc/containers/policy.json"]["after"] == ORIG_POLICY.decode()
    assert diff["etc/apptainer/apptainer.conf"]["before"] == APPTAINER.decode()
    state = json.loads((node_root / STATE_FILE).read_text())
    assert set(state["files"]) == set(tree)


def test_local_tampering_is_restored(cli: Any, deploy: Deploy, node_root: Path) -> None:
    deploy.publish()
    assert run_sync(cli, deploy, node_root).rc == 0
    (node_root / "etc/subgid").write_bytes(b"intruder:0:4294967295\n")
    os.chmod(node_root / "etc/apptainer/apptainer.conf", 0o666)
    res = run_sync(cli, deploy, node_root)
    assert res.rc == 0 and res.doc["changed"] is True
    assert res.doc["changes"] == [
        {"path": "etc/apptainer/apptainer.conf", "action": "modified"},
        {"path": "etc/subgid", "action": "modified"}]
    assert any("etc/subgid: locally modified" in n for n in res.doc["notes"])
    assert (node_root / "etc/subgid").read_bytes() == BASE_TREE["etc/subgid"]
    assert stat.S_IMODE(os.stat(node_root / "etc/apptainer/apptainer.conf").st_mode) == 0o644
    assert not (node_root / ("etc/subgid" + ORIG_SUFFIX)).exists()  # ours is no original


def test_check_touches_nothing(cli: Any, deploy: Deploy, node_root: Path) -> None:
    deploy.publish()
    before = snapshot(node_root)
    res = run_sync(cli, deploy, node_root, "--check", "--diff")
    assert res.rc == 0 and res.doc["check"] is True and len(res.doc["changes"]) == 5
    assert res.doc["changed"] is True  # would change (Ansible check-mode semantics)
    assert {d["path"] for d in res.doc["diff"]} == set(BASE_TREE)
    assert snapshot(node_root) == before
    assert not (node_root / LOCK_DIR).exists()


# ----------------------------------------------------------------------------- refusals


def _tamper_edit(deploy: Deploy, name: str) -> None:
    path = deploy.gen_dir(name) / "tree/etc/subuid"
    path.write_bytes(path.read_bytes().replace(b"1001", b"1000"))  # same size


def _tamper_extra(deploy: Deploy, name: str) -> None:
    (deploy.gen_dir(name) / "tree/etc/sudoers").write_bytes(b"ALL ALL=(ALL) NOPASSWD: ALL\n")


def _tamper_manifest(deploy: Deploy, name: str) -> None:
    path = deploy.gen_dir(name) / "manifest.json"
    doc = json.loads(path.read_text())
    doc["requirements"]["setuid_allowed"] = True
    doc["files"][0]["sha256"] = "0" * 64
    path.write_text(json.dumps(doc))


def _tamper_symlink(deploy: Deploy, name: str) -> None:
    path = deploy.gen_dir(name) / "tree/etc/subgid"
    target = deploy.root / "elsewhere"
    target.write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(target)


@pytest.mark.parametrize("tamper", [_tamper_edit, _tamper_extra, _tamper_manifest,
                                    _tamper_symlink])
def test_tampered_generation_installs_nothing(cli: Any, deploy: Deploy, node_root: Path,
                                              tamper: Callable[[Deploy, str], None]) -> None:
    name = deploy.publish()
    tamper(deploy, name)
    before = snapshot(node_root)
    res = run_sync(cli, deploy, node_root)
    assert res.rc == 1 and res.doc["failed"] is True
    assert res.doc["generation"] == name and res.doc["changes"] == []
    assert snapshot(node_root) == before
    assert "hpcpolicy: " in res.err


def test_signature_required_with_allowed_signers(cli: Any, tmp_path: Path, deploy: Deploy,
                                                 node_root: Path) -> None:
    key = make_signing_key(tmp_path)
    signers = allowed_signers_for(key, tmp_path / "allowed_signers")
    unsigned = deploy.publish()
    before = snapshot(node_root)
    res = run_sync(cli, deploy, node_root, "--allowed-signers", signers)
    assert res.rc == 1 and "signature" in res.doc["msg"]
    assert snapshot(node_root) == before
    deploy.signing_key = str(key)
    signed = deploy.publish({"default": dict(BASE_TREE, **{"etc/enroot/enroot.conf": b"x\n"})})
    assert signed != unsigned
    res = run_sync(cli, deploy, node_root, "--allowed-signers", signers)
    assert res.rc == 0, res.doc
    # a key the node does not trust
    (tmp_path / "other").mkdir()
    other = make_signing_key(tmp_path / "other")
    stranger = allowed_signers_for(other, tmp_path / "stranger_signers")
    deploy.publish({"default": dict(BASE_TREE)})
    before = snapshot(node_root)
    res = run_sync(cli, deploy, node_root, "--allowed-signers", stranger)
    assert res.rc == 1 and snapshot(node_root) == before


def test_unsafe_deploy_root_refused(cli: Any, deploy: Deploy, node_root: Path) -> None:
    deploy.publish()
    before = snapshot(node_root)
    os.chmod(deploy.root, 0o775)
    res = run_sync(cli, deploy, node_root)
    assert res.rc == 1 and "writable by group" in res.doc["msg"]
    os.chmod(deploy.root, 0o755)
    os.chmod(deploy.root / "generations", 0o757)
    res = run_sync(cli, deploy, node_root)
    assert res.rc == 1 and "generations" in res.doc["msg"]
    os.chmod(deploy.root / "generations", 0o755)
    os.chown(deploy.root.parent, 4321, 4321)  # a parent owned by somebody else
    res = run_sync(cli, deploy, node_root)
    assert res.rc == 1 and "owned by uid 4321" in res.doc["msg"]
    assert snapshot(node_root) == before


def test_deploy_root_owned_by_service_account_accepted(deploy: Deploy, node_root: Path) -> None:
    deploy.publish()
    for dirpath, dirnames, filenames in os.walk(deploy.root):
        for name in dirnames + filenames + ["."]:
            os.lchown(os.path.join(dirpath, name), 4321, 4321)
    with pytest.raises(UnsafePath, match="owned by uid 4321"):  # not told about 4321
        sync(SyncOptions(str(deploy.root), str(node_root)))
    result = sync(SyncOptions(str(deploy.root), str(node_root), deploy_owner=4321))
    assert result.changed


def test_symlinked_parent_directory_refused(cli: Any, tmp_path: Path, deploy: Deploy) -> None:
    deploy.publish()
    root = tmp_path / "node"
    elsewhere = tmp_path / "elsewhere"
    (root / "etc").mkdir(parents=True)
    elsewhere.mkdir()
    (root / "etc/containers").symlink_to(elsewhere)
    res = run_sync(cli, deploy, root)
    assert res.rc == 1 and "is a symlink" in res.doc["msg"]
    assert list(elsewhere.iterdir()) == []
    assert not (root / "etc/subuid").exists()  # nothing else installed either


def test_symlink_at_target_is_replaced_not_followed(cli: Any, tmp_path: Path,
                                                    deploy: Deploy, node_root: Path) -> None:
    deploy.publish()
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    (node_root / "etc/subgid").symlink_to(victim)
    res = run_sync(cli, deploy, node_root)
    assert res.rc == 0
    assert victim.read_bytes() == b"precious\n"
    assert not (node_root / "etc/subgid").is_symlink()
    assert (node_root / "etc/subgid").read_bytes() == BASE_TREE["etc/subgid"]
    orig = node_root / ("etc/subgid" + ORIG_SUFFIX)
    assert orig.is_symlink() and os.readlink(orig) == str(victim)


def test_directory_at_target_refused(cli: Any, deploy: Deploy, node_root: Path) -> None:
    deploy.publish()
    (node_root / "etc/subgid").mkdir()
    res = run_sync(cli, deploy, node_root)
    assert res.rc == 1 and "is a directory" in res.doc["msg"]
    assert (node_root / "etc/subuid").read_bytes() == ORIG_SUBUID


# ----------------------------------------------------------------------------- races


def test_generation_vanishing_mid_sync_installs_nothing(
        deploy: Deploy, node_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = deploy.publish()
    real = source._read
    calls: List[str] = []

    def vanish(path: str) -> bytes:
        calls.append(path)
        if len(calls) == 2:
            shutil.rmtree(deploy.gen_dir(name))
        return real(path)

    monkeypatch.setattr(source, "_read", vanish)
    before = snapshot(node_root)
    with pytest.raises(VerificationError, match="removed during the sync"):
        sync(SyncOptions(str(deploy.root), str(node_root)))
    assert snapshot(node_root) == before


def test_file_swapped_after_verification_is_not_installed(
        deploy: Deploy, node_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = deploy.publish()
    real = source._read

    def swap(path: str) -> bytes:
        if path.endswith("etc/subuid"):
            Path(path).write_bytes(b"0:0:4294967295\n")
        return real(path)

    monkeypatch.setattr(source, "_read", swap)
    before = snapshot(node_root)
    with pytest.raises(VerificationError, match="differs from the manifest"):
        sync(SyncOptions(str(deploy.root), str(node_root)))
    assert snapshot(node_root) == before
    assert name


def test_current_is_read_once(deploy: Deploy, node_root: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    first = deploy.publish()
    real = source._read
    newer: List[str] = []

    def publish_meanwhile(path: str) -> bytes:
        if not newer:
            newer.append(deploy.publish({"default": dict(BASE_TREE, **{"etc/subuid": b""})}))
        return real(path)

    monkeypatch.setattr(source, "_read", publish_meanwhile)
    result = sync(SyncOptions(str(deploy.root), str(node_root)))
    assert result.generation == first and newer and newer[0] != first
    assert (node_root / "etc/subuid").read_bytes() == SUBUID


def test_concurrent_syncs(deploy: Deploy, node_root: Path) -> None:
    deploy.publish()
    cmd = [sys.executable, "-m", "hpcpolicy", "node", "sync", "--from", str(deploy.root),
           "--root", str(node_root), "--format", "json"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(4)]
    docs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        docs.append(json.loads(out))
    assert sorted(d["changed"] for d in docs) == [False, False, False, True]
    for rel, data in BASE_TREE.items():
        assert (node_root / rel).read_bytes() == data
    assert (node_root / ("etc/subuid" + ORIG_SUFFIX)).read_bytes() == ORIG_SUBUID
    leftovers = [p for p in node_root.rglob("*") if ".hpcpolicy-tmp-" in p.name
                 or p.name.endswith(".lock") and p.name != "sync.lock"]
    assert leftovers == []  # no temp file, no shadow lock left behind


# ----------------------------------------------------------------------------- classes, channels


def _class_trees() -> Dict[str, Dict[str, bytes]]:
    gpu = dict(BASE_TREE)
    gpu["etc/apptainer/apptainer.conf"] = APPTAINER + b"bind path = /opt/nvidia\n"
    return {"default": dict(BASE_TREE), "gpu": gpu}


def test_class_by_flag(cli: Any, deploy: Deploy, node_root: Path) -> None:
    deploy.publish(_class_trees())
    res = run_sync(cli, deploy, node_root, "--class", "gpu")
    assert res.rc == 0 and res.doc["class"] == "gpu" and res.doc["class_reason"] == "--class"
    assert b"/opt/nvidia" in (node_root / "etc/apptainer/apptainer.conf").read_bytes()
    res = run_sync(cli, deploy, node_root, "--class", "nope")
    assert res.rc == 2 and "no such class" in res.doc["msg"]


def test_class_by_hostname(deploy: Deploy, node_root: Path) -> None:
    deploy.publish(_class_trees(), node_sets={"gpu": "gpu[001-128],dgx[01-04]"})
    res = sync(SyncOptions(str(deploy.root), str(node_root), hostname="gpu017.cluster.example"))
    assert res.node_class == "gpu" and "gpu[001-128]" in res.class_reason
    assert b"/opt/nvidia" in (node_root / "etc/apptainer/apptainer.conf").read_bytes()
    res = sync(SyncOptions(str(deploy.root), str(node_root), hostname="cn0001"))
    assert res.node_class == "default" and res.changes == [
        {"path": "etc/apptainer/apptainer.conf", "action": "modified"}]
    assert b"/opt/nvidia" not in (node_root / "etc/apptainer/apptainer.conf").read_bytes()


def test_class_ambiguous_hostname_refused(deploy: Deploy, node_root: Path) -> None:
    trees = _class_trees()
    trees["login"] = dict(BASE_TREE)
    deploy.publish(trees, node_sets={"gpu": "node[1-10]", "login": "node[5-6]"})
    with pytest.raises(Exception, match="several classes"):
        sync(SyncOptions(str(deploy.root), str(node_root), hostname="node5"))
    with pytest.raises(UsageError):
        sync(SyncOptions(str(deploy.root), str(node_root), node_class="absent"))


def test_channel(cli: Any, deploy: Deploy, node_root: Path) -> None:
    stable = deploy.publish()
    canary = deploy.publish({"default": dict(BASE_TREE, **{"etc/subuid": b""})},
                            channel="canary")
    res = run_sync(cli, deploy, node_root, "--channel", "canary")
    assert res.rc == 0 and res.doc["generation"] == canary and res.doc["channel"] == "canary"
    assert (node_root / "etc/subuid").read_bytes() == b""
    res = run_sync(cli, deploy, node_root)  # stable is behind canary: going back is refused
    assert res.rc == 1 and res.doc["generation"] == stable and "--allow-older" in res.doc["msg"]
    res = run_sync(cli, deploy, node_root, "--allow-older")
    assert res.rc == 0 and res.doc["generation"] == stable
    assert (node_root / "etc/subuid").read_bytes() == SUBUID
    res = run_sync(cli, deploy, node_root, "--channel", "nope")
    assert res.rc == 1 and "no generation published" in res.doc["msg"]


def test_no_generation_yet(cli: Any, deploy: Deploy, node_root: Path) -> None:
    res = run_sync(cli, deploy, node_root)
    assert res.rc == 1 and res.doc["generation"] is None


# ----------------------------------------------------------------------------- sysctl


def test_no_reload_note(deploy: Deploy, node_root: Path) -> None:
    deploy.publish()
    res = sync(SyncOptions(str(deploy.root), str(node_root), reload=False))
    assert any("--no-reload" in n for n in res.notes)


def _sysctl_item() -> List[Any]:
    return [node_sync._Planned("etc/sysctl.d/90-hpcpolicy.conf", "modified", b"", None)]


def test_sysctl_applied_on_real_root(fp: FakeProcess) -> None:
    fp.register(["sysctl", "-e", "-p", "/etc/sysctl.d/90-hpcpolicy.conf"], stdout="x = 1\n")
    result = node_sync.SyncResult("000001-00000000", "default", "", "stable", False)
    node_sync._after_install(SyncOptions("/d"), "/", _sysctl_item(), None, result)
    assert result.errors == [] and any("applied sysctl -e -p" in n for n in result.notes)
    assert fp.call_count(["sysctl", "-e", "-p", "/etc/sysctl.d/90-hpcpolicy.conf"]) == 1


def test_sysctl_failure_reported(fp: FakeProcess) -> None:
    fp.register(["sysctl", "-e", "-p", fp.any()], returncode=255,
                stderr="sysctl: permission denied on key \"user.max_user_namespaces\"\n")
    result = node_sync.SyncResult("000001-00000000", "default", "", "stable", False)
    node_sync._after_install(SyncOptions("/d"), "/", _sysctl_item(), None, result)
    assert result.errors and "exit 255" in result.errors[0]
    assert "permission denied" in result.errors[0]


def test_sysctl_missing(fp: FakeProcess) -> None:
    def missing(process: Any) -> None:
        raise FileNotFoundError("sysctl")

    fp.register(["sysctl", "-e", "-p", fp.any()], callback=missing)
    assert "not found" in (node_sync.run_sysctl("/etc/sysctl.d/90-hpcpolicy.conf") or "")


def test_sysctl_failure_exit_code(cli: Any, deploy: Deploy, node_root: Path, fp: FakeProcess,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed `sysctl -p` after installing: files stay installed, exit 1, changes listed."""
    deploy.publish()
    monkeypatch.setattr(node_sync, "live_root", lambda root: True)  # as if --root were /
    sysctl_file = str(node_root / "etc/sysctl.d/90-hpcpolicy.conf")
    fp.register(["sysctl", "-e", "-p", sysctl_file], returncode=1, stderr="sysctl: cannot stat\n",
                occurrences=2)
    res = run_sync(cli, deploy, node_root)
    assert res.rc == 1 and res.doc["changed"] is True and res.doc["errors"]
    assert "sysctl: cannot stat" in res.doc["msg"] and "sysctl: cannot stat" in res.err
    assert len(res.doc["changes"]) == 5
    assert (node_root / "etc/subuid").read_bytes() == SUBUID
    assert fp.call_count(["sysctl", "-e", "-p", sysctl_file]) == 1
    assert res.doc["pending"] == [{"step": "sysctl", "error": res.doc["errors"][0]}]
    again = run_sync(cli, deploy, node_root)  # nothing to install, but the step is still owed
    assert again.rc == 1 and again.doc["changed"] is False, again.doc
    assert "sysctl: cannot stat" in again.doc["msg"] and "up to date" not in again.doc["msg"]
    assert [p["step"] for p in again.doc["pending"]] == ["sysctl"]
    assert fp.call_count(["sysctl", "-e", "-p", sysctl_file]) == 2
    doctor = cli("node", "doctor", "--root", node_root, "--format", "json")
    check = {c["name"]: c for c in json.loads(doctor.out)["checks"]}["pending-steps"]
    assert check["status"] == "FAIL" and "sysctl: cannot stat" in check["detail"]
    fp.register(["sysctl", "-e", "-p", sysctl_file], returncode=0)  # the kernel takes it now
    fixed = run_sync(cli, deploy, node_root)
    assert fixed.rc == 0 and fixed.doc["pending"] == [], fixed.doc
    assert any("had failed before" in n for n in fixed.doc["notes"])
    quiet = run_sync(cli, deploy, node_root)  # nothing owed any more: sysctl is not run again
    assert quiet.rc == 0 and fp.call_count(["sysctl", "-e", "-p", sysctl_file]) == 3


def test_unsafe_node_path_in_plan(node_root: Path) -> None:
    with pytest.raises(UnsafePath):
        node_sync.plan(str(node_root), {"etc/../../x": b""}, {})


def test_selinux_label_carried_over(deploy: Deploy, node_root: Path) -> None:
    label = b"system_u:object_r:etc_t:s0\0"
    target = node_root / "etc/containers/policy.json"
    try:
        os.setxattr(target, "security.selinux", label)
    except OSError as err:
        pytest.skip(f"this filesystem keeps no security.selinux xattr: {err}")
    deploy.publish()
    sync(SyncOptions(str(deploy.root), str(node_root)))
    assert target.read_bytes() == BASE_TREE["etc/containers/policy.json"]
    assert os.getxattr(target, "security.selinux") == label


def test_root_must_be_a_directory(cli: Any, tmp_path: Path, deploy: Deploy) -> None:
    deploy.publish()
    res = run_sync(cli, deploy, tmp_path / "absent")
    assert res.rc == 2 and "not a directory" in res.doc["msg"]
    assert not (tmp_path / "absent").exists()


def test_text_output_and_diff(cli: Any, deploy: Deploy, node_root: Path) -> None:
    deploy.publish()
    res = cli("node", "sync", "--from", deploy.root, "--root", node_root, "--diff")
    assert res.rc == 0
    assert "  modified /etc/subuid" in res.out and "  added    /etc/subgid" in res.out
    assert "-olduser:100000:65536" in res.out and "+1001:524288:65536" in res.out
