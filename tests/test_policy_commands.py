"""`validate` against a real passwd/group directory and `render` into a directory."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

SITES = Path(__file__).resolve().parent / "data" / "sites"


@pytest.fixture
def online(tmp_path: Path) -> Path:
    """A copy of tests/data/sites/online (site.toml with its passwd and group files)."""
    dest = tmp_path / "site"
    shutil.copytree(SITES / "online", dest)
    return dest / "site.toml"


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_validate_online_reads_the_directory(cli: Any, online: Path) -> None:
    res = cli("validate", online)
    assert res.rc == 0, res.err
    assert "6 users, 9 groups from files" in res.out
    doc = json.loads(cli("validate", online, "--format", "json").out)
    assert doc["directory"] == {"users": 6, "groups": 9} and doc["offline"] is False


def test_validate_online_finds_missing_groups(cli: Any, online: Path) -> None:
    edit(online, 'groups = ["bio"]', 'groups = ["bio", "chem"]')
    edit(online, 'group = "vasp-licence"', 'group = "vasp"')
    res = cli("validate", online)
    assert res.rc == 2
    assert (f"hpcpolicy: {online}: images.rule[1].groups[2]: group 'chem' not found in the "
            "directory (files)") in res.err
    assert f"hpcpolicy: {online}: images.collection[1].group: group 'vasp' not found" in res.err
    assert cli("validate", online, "--offline").rc == 0


def test_validate_online_refuses_space_over_real_ids(cli: Any, online: Path) -> None:
    passwd = online.parent / "passwd"
    passwd.write_text(passwd.read_text() + "big:x:600000:1001::/home/big:/bin/bash\n")
    res = cli("validate", online)
    assert res.rc == 2
    assert "subid.start: sub-ID space [524288, 1879048191] contains 1 real UID: 600000 (big)" \
        in res.err


def test_validate_online_space_too_small(cli: Any, online: Path) -> None:
    edit(online, "[subid]\n", "[subid]\nstart = 524288\nend = 600000\n")
    res = cli("validate", online)
    assert res.rc == 2
    assert f"hpcpolicy: {online}: subid: " in res.err
    assert "can hold only 1 more range" in res.err and "2 eligible" in res.err


def test_validate_unreadable_directory_is_exit_1(cli: Any, online: Path) -> None:
    (online.parent / "passwd").unlink()
    res = cli("validate", online, "--format", "json")
    assert res.rc == 1
    assert json.loads(res.out)["failed"] is True


def test_render_writes_default_and_class_trees(cli: Any, online: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = cli("render", online, "--out", out, "--deploy-root", tmp_path / "shared",
              "--format", "json")
    assert res.rc == 0, res.err
    doc = json.loads(res.out)
    assert doc["changed"] is True and doc["classes"] == ["default", "gpu"]
    subuid = (out / "etc" / "subuid").read_text().splitlines()
    assert [line.split(":")[0] for line in subuid] == ["1001", "1002"]
    assert "/opt/nvidia" not in (out / "etc/apptainer/apptainer.conf").read_text()
    assert "/opt/nvidia" in (out / "class/gpu/etc/apptainer/apptainer.conf").read_text()
    for path in out.rglob("*"):
        assert (path.stat().st_mode & 0o777) == (0o755 if path.is_dir() else 0o644), path
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == doc["files"]
    assert not (tmp_path / "shared").exists()  # render writes nothing but DIR
    again = json.loads(cli("render", online, "--out", out, "--deploy-root", tmp_path / "shared",
                           "--format", "json").out)
    assert again["changed"] is False and again["changes"] == []


def test_render_one_class_at_node_paths(cli: Any, online: Path, tmp_path: Path) -> None:
    out = tmp_path / "gpu"
    assert cli("render", online, "--out", out, "--class", "gpu").rc == 0
    assert "/opt/nvidia" in (out / "etc/apptainer/apptainer.conf").read_text()
    assert not (out / "class").exists()
    res = cli("render", online, "--out", tmp_path / "x", "--class", "login")
    assert res.rc == 2 and "not a node class" in res.err
    assert not (tmp_path / "x").exists()


def test_render_refuses_symlinks_inside_out(cli: Any, online: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    victim = tmp_path / "victim"
    victim.mkdir()
    out.mkdir()
    os.symlink(victim, out / "etc")
    res = cli("render", online, "--out", out)
    assert res.rc == 1
    assert "symlink" in res.err and "Traceback" not in res.err
    assert list(victim.iterdir()) == []
    (out / "etc").unlink()
    (out / "etc").mkdir()
    os.symlink(victim / "subuid", out / "etc" / "subuid")
    assert cli("render", online, "--out", out).rc == 1
    assert not (victim / "subuid").exists()
    assert not (out / "etc" / "apptainer").exists()  # checked before the first write


def test_render_refuses_root(cli: Any, online: Path) -> None:
    res = cli("render", online, "--out", "/")
    assert res.rc == 2 and "refusing to render into /" in res.err


def test_render_invalid_site_writes_nothing(cli: Any, online: Path, tmp_path: Path) -> None:
    edit(online, 'groups = ["bio"]', 'groups = ["nosuchgroup"]')
    out = tmp_path / "out"
    res = cli("render", online, "--out", out)
    assert res.rc == 2 and "nosuchgroup" in res.err
    assert not out.exists()
