"""End-to-end: an administrator's day with the CLI, on a files-only site (SPEC §2-4).

These go through `main(argv)` exactly as a person types the commands, and check the
contract: exit codes, one JSON object with --format json, the deploy-root layout, and
that sub-ID state never goes back.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, Dict

import pytest
import tomli_w

from tests.conftest import REPO

DEMO = REPO / "etc" / "demo"


def make_site(tmp: Path, make_root: bool = True, **overrides: Any) -> Path:
    """A copy of the demo site in `tmp`, deploy root `tmp/shared`, owned by the test's user
    (and, with `make_root`, existing: an initialised deploy root)."""
    try:
        import tomllib
    except ImportError:  # pragma: no cover - Python < 3.11
        import tomli as tomllib  # type: ignore[no-redef]
    site: Dict[str, Any] = tomllib.loads((DEMO / "site.toml").read_text())
    site["site"]["deploy_root"] = str(tmp / "shared")
    site["site"]["deploy_owner"] = str(os.geteuid())
    site["directory"]["files"] = {
        "passwd": str(tmp / "passwd"),
        "group": str(tmp / "group"),
    }
    for section, values in overrides.items():
        site.setdefault(section, {}).update(values)
    (tmp / "passwd").write_text((DEMO / "passwd").read_text())
    (tmp / "group").write_text((DEMO / "group").read_text())
    path = tmp / "site.toml"
    path.write_bytes(tomli_w.dumps(site).encode())
    os.chmod(tmp, 0o755)
    if make_root:
        (tmp / "shared").mkdir(mode=0o755, exist_ok=True)
    return path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def subuid_lines(root: Path) -> list:
    return (root / "current/tree/etc/subuid").read_text().splitlines()


def as_json(out: str) -> Dict[str, Any]:
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected exactly one JSON line, got: {out!r}"
    obj = json.loads(lines[0])
    assert {"changed", "failed", "msg"} <= set(obj)
    return obj


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return make_site(tmp_path)


def test_validate_demo_site_offline(cli: Any) -> None:
    res = cli("validate", DEMO / "site.toml", "--offline")
    assert res.rc == 0, res.err


def test_validate_demo_site_reads_directory(cli: Any) -> None:
    res = cli("validate", DEMO / "site.toml", "--format", "json")
    assert res.rc == 0, res.err
    assert as_json(res.out)["failed"] is False


def test_render_writes_only_out_dir(cli: Any, site: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = cli("render", site, "--out", out)
    assert res.rc == 0, res.err
    assert (out / "etc/apptainer/apptainer.conf").is_file()
    assert (out / "etc/containers/policy.json").is_file()
    assert (out / "etc/subuid").is_file()
    assert list((tmp_path / "shared").iterdir()) == [], "render must write nothing but DIR"


def test_apply_publishes_then_is_idempotent(cli: Any, site: Path, tmp_path: Path) -> None:
    root = tmp_path / "shared"
    first = as_json(cli("apply", site, "--format", "json").out)
    assert first["changed"] is True and first["failed"] is False
    gen = first["generation"]
    assert (root / "current").is_symlink()
    assert os.readlink(root / "current").endswith(gen)
    gdir = root / "generations" / gen
    manifest = json.loads((gdir / "manifest.json").read_text())
    assert manifest["site"] == "demo"
    for name in ("etc/subuid", "etc/subgid", "etc/containers/policy.json",
                 "etc/apptainer/apptainer.conf", "etc/sysctl.d/90-hpcpolicy.conf"):
        path = gdir / "tree" / name
        assert path.is_file(), name
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert {c["action"] for c in first["changes"]} == {"added"}
    assert (root / "state" / "subid-ledger.json").is_file()
    log = (root / "log" / "changes.jsonl").read_text().splitlines()
    assert len(log) == 1

    second = as_json(cli("apply", site, "--format", "json").out)
    assert second["changed"] is False
    assert second["changes"] == []
    assert sorted(p.name for p in (root / "generations").iterdir()) == [gen]


def test_subuid_lines_for_eligible_users_only(cli: Any, site: Path, tmp_path: Path) -> None:
    assert cli("apply", site).rc == 0
    tree = tmp_path / "shared" / "current" / "tree"
    subuid = (tree / "etc/subuid").read_text()
    subgid = (tree / "etc/subgid").read_text()
    assert subuid == subgid
    keys = [line.split(":")[0] for line in subuid.splitlines()]
    # containers = alice bob dave erin svc-backup; dave is nologin (disabled); svc-backup excluded
    assert keys == ["1001", "1002", "1005"]
    starts = [int(line.split(":")[1]) for line in subuid.splitlines()]
    assert all(s >= 524288 for s in starts)
    assert all(line.endswith(":65536") for line in subuid.splitlines())


def test_check_writes_nothing(cli: Any, site: Path, tmp_path: Path) -> None:
    res = cli("apply", site, "--check", "--format", "json")
    assert res.rc == 0, res.err
    obj = as_json(res.out)
    assert obj["changed"] is True
    root = tmp_path / "shared"
    assert not (root / "current").exists()
    assert not (root / "state" / "subid-ledger.json").exists()


def test_diff_reports_changed_lines(cli: Any, site: Path, tmp_path: Path) -> None:
    assert cli("apply", site).rc == 0
    edit(site, 'source = "/scratch"', 'source = "/scratch2"')
    obj = as_json(cli("apply", site, "--diff", "--format", "json").out)
    assert obj["changed"] is True
    paths = {c["path"] for c in obj["changes"]}
    assert any("apptainer.conf" in p for p in paths)
    diffs = {d["path"]: d for d in obj["diff"]}
    entry = next(d for p, d in diffs.items() if "apptainer.conf" in p)
    assert "/scratch2" in entry["after"] and "/scratch2" not in entry["before"]


def test_status_and_generations(cli: Any, site: Path, tmp_path: Path) -> None:
    assert cli("apply", site).rc == 0
    status = as_json(cli("status", "--site", site, "--format", "json").out)
    assert status["failed"] is False
    gens = cli("generations", "--deploy-root", tmp_path / "shared")
    assert gens.rc == 0 and "000001-" in gens.out


def test_status_needs_site_or_root(cli: Any) -> None:
    assert cli("status").rc == 2


def test_rollback_keeps_todays_subuid(cli: Any, site: Path, tmp_path: Path) -> None:
    root = tmp_path / "shared"
    assert cli("apply", site).rc == 0
    # second generation: a new user joins the containers group and a bind changes
    edit(tmp_path / "group", "containers:x:2000:alice", "containers:x:2000:carol,alice")
    edit(site, 'source = "/scratch"', 'source = "/scratch2"')
    assert cli("apply", site).rc == 0
    now_subuid = (root / "current" / "tree" / "etc/subuid").read_text()
    assert "1003:" in now_subuid
    res = cli("rollback", "1", "--site", site, "--format", "json")
    assert res.rc == 0, res.err
    obj = as_json(res.out)
    assert obj["generation"].startswith("000003-")
    tree = root / "current" / "tree"
    assert (tree / "etc/subuid").read_text() == now_subuid
    assert "/scratch2" not in (tree / "etc/apptainer/apptainer.conf").read_text()


def test_left_user_keeps_range_and_gets_it_back(cli: Any, site: Path, tmp_path: Path) -> None:
    root = tmp_path / "shared"
    assert cli("apply", site).rc == 0
    before = (root / "current/tree/etc/subuid").read_text()
    bob = next(line for line in before.splitlines() if line.startswith("1002:"))
    group_path = tmp_path / "group"
    original = group_path.read_text()
    edit(group_path, "containers:x:2000:alice,bob,", "containers:x:2000:alice,")
    assert cli("apply", site, "--allow-revoke").rc == 0
    assert not [s for s in subuid_lines(root) if s.startswith("1002:")]
    # somebody new must not get bob's range
    edit(group_path, "containers:x:2000:alice,", "containers:x:2000:alice,carol,")
    assert cli("apply", site).rc == 0
    carol = next(line for line in subuid_lines(root) if line.startswith("1003:"))
    assert carol.split(":")[1] != bob.split(":")[1]
    group_path.write_text(original)  # bob returns, carol leaves
    assert cli("apply", site, "--allow-revoke").rc == 0
    assert bob in subuid_lines(root)


def test_revoke_guard_trips(cli: Any, site: Path, tmp_path: Path) -> None:
    assert cli("apply", site).rc == 0
    group_path = tmp_path / "group"
    edit(group_path, "containers:x:2000:alice,bob,dave,erin,svc-backup", "containers:x:2000:")
    res = cli("apply", site, "--format", "json")
    assert res.rc == 1
    assert as_json(res.out)["failed"] is True
    assert "--allow-revoke" in res.out + res.err


def test_subid_revoke_grant_published_by_next_apply(cli: Any, site: Path, tmp_path: Path) -> None:
    root = tmp_path / "shared"
    assert cli("apply", site).rc == 0
    line = next(s for s in subuid_lines(root) if s.startswith("1001:"))
    assert cli("subid", "revoke", "alice", "--site", site).rc == 0
    assert cli("apply", site, "--allow-revoke").rc == 0
    assert "1001:" not in (root / "current/tree/etc/subuid").read_text()
    assert cli("subid", "grant", "alice", "--site", site).rc == 0
    assert cli("apply", site).rc == 0
    assert line in subuid_lines(root)
    log = (root / "log/changes.jsonl").read_text().splitlines()
    assert len(log) >= 5


def test_unsafe_deploy_root_refused(cli: Any, site: Path, tmp_path: Path) -> None:
    root = tmp_path / "shared"
    os.chmod(root, 0o777)
    res = cli("apply", site, "--format", "json")
    assert res.rc == 1
    assert as_json(res.out)["failed"] is True
    assert not (root / "current").exists()


def test_invalid_site_writes_nothing(cli: Any, site: Path, tmp_path: Path) -> None:
    edit(site, 'source = "/scratch"', 'source = "/scratch"\ntargte = "/x"')
    res = cli("apply", site, "--format", "json")
    assert res.rc == 2
    obj = as_json(res.out)
    assert obj["failed"] is True
    assert "bind[1]" in obj["msg"] and "targte" in obj["msg"]
    assert "Traceback" not in res.err
    assert not (tmp_path / "shared").exists() or not any((tmp_path / "shared").iterdir())


def test_fresh_ledger_refused_where_generations_exist(cli: Any, site: Path, tmp_path: Path) -> None:
    root = tmp_path / "shared"
    assert cli("apply", site).rc == 0
    (root / "state" / "subid-ledger.json").unlink()
    res = cli("apply", site, "--format", "json")
    assert res.rc in (1, 2)
    assert as_json(res.out)["failed"] is True
    assert "ledger" in res.out


def test_signed_generation_verified_by_node(cli: Any, tmp_path: Path) -> None:
    """[site] signing_key: apply signs the manifest (real ssh-keygen); a node with the
    allowed-signers file installs it, and refuses it once the manifest is altered."""
    import subprocess

    key = tmp_path / "keys" / "signing_key"
    key.parent.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hpcpolicy",
                    "-f", str(key)], check=True)
    pub = (tmp_path / "keys" / "signing_key.pub").read_text().split()
    signers = tmp_path / "allowed_signers"
    signers.write_text(f'hpcpolicy@cluster namespaces="hpcpolicy" {pub[0]} {pub[1]}\n')
    site = make_site(tmp_path, site={"signing_key": str(key)})
    res = cli("apply", site, "--format", "json")
    assert res.rc == 0, res.err
    gen = tmp_path / "shared" / "generations" / as_json(res.out)["generation"]
    assert (gen / "manifest.json.sig").is_file()
    node = tmp_path / "node"
    node.mkdir()
    res = cli("node", "sync", "--from", tmp_path / "shared", "--root", node,
              "--allowed-signers", signers, "--no-reload", "--format", "json")
    assert res.rc == 0, res.err
    assert (node / "etc/subuid").read_bytes() == (gen / "tree/etc/subuid").read_bytes()
    os.chmod(gen / "manifest.json", 0o644)
    manifest = json.loads((gen / "manifest.json").read_text())
    manifest["operator"] = "mallory"
    (gen / "manifest.json").write_text(json.dumps(manifest))
    # a node that holds this generation does not read its manifest again (only the channel
    # link): it keeps the files it verified; a node that reads the altered manifest refuses it
    fresh = tmp_path / "fresh-node"
    fresh.mkdir()
    res = cli("node", "sync", "--from", tmp_path / "shared", "--root", fresh,
              "--allowed-signers", signers, "--no-reload", "--format", "json")
    assert res.rc == 1 and as_json(res.out)["failed"] is True
