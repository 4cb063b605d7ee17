"""verify_generation against real generations written by the publisher, then tampered with."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from hpcpolicy.errors import UsageError, VerificationError
from hpcpolicy.generation.manifest import load_manifest, parse_sysctl, safe_node_path
from hpcpolicy.generation.naming import (
    channel_generation,
    format_name,
    list_generations,
    parse_name,
    resolve,
    trees_sha256,
)
from hpcpolicy.generation.verify import verify_generation
from tests.deploy_fixtures import publish, synthetic_trees


@pytest.fixture
def gen(tmp_path: Path) -> Path:
    name = publish(tmp_path, synthetic_trees(0, ("gpu",)))
    return tmp_path / "generations" / name


def test_published_generation_verifies(gen: Path) -> None:
    manifest = verify_generation(str(gen))
    assert manifest["generation"] == gen.name and manifest["number"] == 1
    assert set(manifest["classes"]) == {"default", "gpu"}
    assert manifest["classes"]["gpu"]["tree"] == "class/gpu/tree"
    assert manifest["files"] == manifest["classes"]["default"]["files"]
    assert {f["mode"] for f in manifest["files"]} == {"0644"}
    assert (gen / "class" / "gpu" / "tree" / "etc" / "enroot" / "mounts.d").is_dir()
    assert gen.name.endswith(trees_sha256(synthetic_trees(0, ("gpu",)))[:8])
    assert oct((gen / "tree" / "etc").stat().st_mode & 0o777) == "0o755"


def test_current_link_is_relative(gen: Path) -> None:
    root = gen.parent.parent
    assert os.readlink(root / "current") == f"generations/{gen.name}"
    assert channel_generation(str(root)) == gen.name


def _expect(gen: Path, pattern: str) -> None:
    with pytest.raises(VerificationError, match=pattern):
        verify_generation(str(gen))


def test_edited_file(gen: Path) -> None:
    path = gen / "tree" / "etc" / "subuid"
    os.chmod(path, 0o644)
    data = path.read_bytes()
    path.write_bytes(data.replace(b"1001", b"1002"))  # same size, other content
    _expect(gen, r"tree/etc/subuid: sha256 differs")


def test_mode_changed(gen: Path) -> None:
    os.chmod(gen / "tree" / "etc" / "subgid", 0o666)
    _expect(gen, r"etc/subgid: size .* mode 0666")


def test_added_file(gen: Path) -> None:
    (gen / "tree" / "etc" / "sudoers").write_text("ALL ALL=(ALL) NOPASSWD: ALL\n")
    _expect(gen, r"etc/sudoers: not in the manifest")


def test_added_empty_dir_and_top_level(gen: Path) -> None:
    (gen / "tree" / "etc" / "cron.d").mkdir()
    _expect(gen, r"cron.d/: not in the manifest")
    (gen / "tree" / "etc" / "cron.d").rmdir()
    (gen / "extra").write_text("x")
    _expect(gen, r"extra: not in the manifest")


def test_removed_file(gen: Path) -> None:
    (gen / "class" / "gpu" / "tree" / "etc" / "subuid").unlink()
    _expect(gen, r"class/gpu/tree/etc/subuid: listed in the manifest but missing")


def test_symlink_swapped_in(gen: Path, tmp_path: Path) -> None:
    target = gen / "tree" / "etc" / "subuid"
    (tmp_path / "evil").write_bytes(target.read_bytes())
    target.unlink()
    target.symlink_to(tmp_path / "evil")
    _expect(gen, r"etc/subuid: not a regular file")


def test_symlinked_directory(gen: Path, tmp_path: Path) -> None:
    etc = gen / "tree" / "etc"
    shutil.copytree(etc, tmp_path / "copy")
    shutil.rmtree(etc)
    etc.symlink_to(tmp_path / "copy")
    _expect(gen, r"a symlink where a directory should be|missing|not a regular")


def test_manifest_edited(gen: Path) -> None:
    path = gen / "manifest.json"
    doc = json.loads(path.read_text())
    doc["files"][0]["sha256"] = "f" * 64
    doc["classes"]["default"]["files"][0]["sha256"] = "f" * 64
    os.chmod(path, 0o644)
    path.write_text(json.dumps(doc))
    _expect(gen, r"sha256 differs")


def test_manifest_with_escaping_path(gen: Path) -> None:
    path = gen / "manifest.json"
    doc = json.loads(path.read_text())
    doc["classes"]["default"]["files"][0]["path"] = "../../etc/shadow"
    doc["files"] = doc["classes"]["default"]["files"]
    path.write_text(json.dumps(doc))
    _expect(gen, r"malformed or unsafe file entry")


def test_manifest_of_another_generation(gen: Path) -> None:
    other = gen.parent / format_name(7, "0" * 8)
    shutil.copytree(gen, other)
    _expect(other, r"describes 000001-.*not this directory")


def test_manifest_symlink_and_garbage(gen: Path, tmp_path: Path) -> None:
    path = gen / "manifest.json"
    (tmp_path / "m.json").write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(tmp_path / "m.json")
    _expect(gen, r"manifest.json: cannot read")
    path.unlink()
    path.write_text("{not json")
    _expect(gen, r"not valid JSON")
    path.write_text('{"format": 1}')
    _expect(gen, r"missing keys")


def test_load_manifest_and_helpers(gen: Path) -> None:
    assert load_manifest(str(gen))["site"] == "test"
    assert parse_sysctl(b"# c\n; c\nuser.max_user_namespaces=15000\n-kernel/foo = 1\nbad\n") == {
        "user.max_user_namespaces": "15000", "kernel.foo": "1"}
    assert not safe_node_path("a//b") and not safe_node_path("/etc/x")
    assert not safe_node_path("a/./b") and not safe_node_path("a\nb")
    assert safe_node_path("etc/subuid")


def test_naming(tmp_path: Path) -> None:
    assert format_name(42, "3f2a9c1b" + "0" * 56) == "000042-3f2a9c1b"
    assert parse_name("000042-3f2a9c1b") == (42, "3f2a9c1b")
    assert parse_name(".tmp-000042-3f2a9c1b") is None and parse_name("42") is None
    first = publish(tmp_path, synthetic_trees(0))
    second = publish(tmp_path, synthetic_trees(1))
    (tmp_path / "generations" / ".tmp-123-abcd").mkdir()
    assert list_generations(str(tmp_path)) == [first, second]
    assert resolve(str(tmp_path), "2") == second and resolve(str(tmp_path), first) == first
    with pytest.raises(UsageError, match="no generation '9'"):
        resolve(str(tmp_path), "9")


def test_link_pointing_elsewhere_refused(tmp_path: Path) -> None:
    publish(tmp_path, synthetic_trees(0))
    (tmp_path / "current").unlink()
    (tmp_path / "current").symlink_to("/etc")
    with pytest.raises(Exception, match="not to a generation"):
        channel_generation(str(tmp_path))
