"""check_deploy_root: ownership and mode of the root and every parent, symlink tricks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hpcpolicy.deploy.store import LAYOUT_DIRS, check_deploy_root, ensure_layout, resolve_owner
from hpcpolicy.errors import RuntimeFailure, UnsafePath

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chown to other users needs root")

NOBODY = 65534


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """A safe private parent: root-owned 0755 (tmp_path's own parents are checked too)."""
    os.chmod(tmp_path, 0o755)
    return tmp_path


def make(path: Path, mode: int = 0o755, uid: int = 0) -> Path:
    path.mkdir(exist_ok=True)
    os.chmod(path, mode)
    os.chown(path, uid, 0)
    return path


def test_safe_root_accepted(base: Path) -> None:
    root = make(base / "deploy")
    check_deploy_root(str(root), "root", write=True)
    check_deploy_root(str(root), "root", write=False)


def test_missing_root_ok_for_write_not_read(base: Path) -> None:
    check_deploy_root(str(base / "new" / "deploy"), "root", write=True)
    with pytest.raises(RuntimeFailure, match="does not exist"):
        check_deploy_root(str(base / "new"), "root", write=False)


def test_group_writable_root(base: Path) -> None:
    root = make(base / "deploy", 0o775)
    with pytest.raises(UnsafePath, match=r"deploy: .*writable by group \(mode 0775\)"):
        check_deploy_root(str(root), "root", write=True)


def test_world_writable_parent(base: Path) -> None:
    parent = make(base / "shared", 0o777)
    root = make(parent / "deploy")
    with pytest.raises(UnsafePath, match=r"shared is writable by group and other"):
        check_deploy_root(str(root), "root", write=False)


def test_sticky_root_owned_parent_accepted(base: Path) -> None:
    parent = make(base / "tmplike", 0o1777)
    root = make(parent / "deploy")
    check_deploy_root(str(root), "root", write=True)


def test_sticky_parent_owned_by_other_refused(base: Path) -> None:
    parent = make(base / "tmplike", 0o1777, uid=NOBODY)
    root = make(parent / "deploy")
    with pytest.raises(UnsafePath, match="tmplike is owned by uid 65534"):
        check_deploy_root(str(root), "root", write=True)


def test_sticky_root_itself_refused(base: Path) -> None:
    root = make(base / "deploy", 0o1777)
    with pytest.raises(UnsafePath, match="writable by group and other"):
        check_deploy_root(str(root), "root", write=True)


def test_owned_by_another_user(base: Path) -> None:
    root = make(base / "deploy", uid=NOBODY)
    with pytest.raises(UnsafePath, match="owned by uid 65534"):
        check_deploy_root(str(root), "root", write=True)


def test_deploy_owner_accepted_by_name_and_number(base: Path) -> None:
    root = make(base / "deploy", uid=NOBODY)
    check_deploy_root(str(root), "nobody", write=True)
    check_deploy_root(str(root), str(NOBODY), write=True)
    assert resolve_owner("nobody") == NOBODY


def test_unknown_owner(base: Path) -> None:
    with pytest.raises(RuntimeFailure, match="not a known user"):
        check_deploy_root(str(base), "no-such-user-xyz", write=True)


def test_symlink_into_unsafe_directory(base: Path) -> None:
    evil = make(base / "evil", 0o777)
    real = make(evil / "deploy")
    link = base / "deploy"
    link.symlink_to(real)
    with pytest.raises(UnsafePath, match="evil is writable"):
        check_deploy_root(str(link), "root", write=True)


def test_symlink_held_in_unsafe_directory(base: Path) -> None:
    safe = make(base / "safe")
    real = make(safe / "deploy")
    evil = make(base / "evil", 0o777)
    (evil / "link").symlink_to(real)
    with pytest.raises(UnsafePath, match="evil is writable"):
        check_deploy_root(str(evil / "link"), "root", write=True)


def test_symlink_chain_through_unsafe_directory(base: Path) -> None:
    safe = make(base / "safe")
    real = make(safe / "deploy")
    evil = make(base / "evil", 0o777)
    (evil / "hop").symlink_to(real)
    (safe / "entry").symlink_to(evil / "hop")
    with pytest.raises(UnsafePath, match="evil is writable"):
        check_deploy_root(str(safe / "entry"), "root", write=True)


def test_safe_symlink_accepted(base: Path) -> None:
    real = make(make(base / "safe") / "deploy")
    (base / "link").symlink_to(real)
    check_deploy_root(str(base / "link"), "root", write=False)


def test_dangling_symlink_and_relative(base: Path) -> None:
    (base / "dangling").symlink_to(base / "nowhere")
    with pytest.raises(UnsafePath, match="dangling"):
        check_deploy_root(str(base / "dangling"), "root", write=True)
    with pytest.raises(UnsafePath, match="absolute"):
        check_deploy_root("relative/path", "root", write=True)


def test_root_is_a_file(base: Path) -> None:
    (base / "file").write_text("x")
    with pytest.raises(UnsafePath, match="not a directory"):
        check_deploy_root(str(base / "file"), "root", write=True)


def test_ensure_layout_modes(base: Path) -> None:
    old = os.umask(0o077)
    try:
        ensure_layout(str(base / "deploy"))
    finally:
        os.umask(old)
    for name in LAYOUT_DIRS:
        assert (base / "deploy" / name).stat().st_mode & 0o777 == 0o755
