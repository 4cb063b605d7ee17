"""Collections judged by the real permissions of real files (chown to test uids/gids: root)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Tuple

import pytest

from hpcpolicy.audit.decide import (
    FILE_PERMISSIONS,
    AuditDecision,
    Target,
    audit,
    make_context,
    parse_target,
    paths_to_observe,
    select_users,
)
from hpcpolicy.audit.observe import observe, stat_path
from hpcpolicy.policy.model import Collection
from tests.audit_fixtures import LICENCE_GID, OTHER_GID, make_policy, snapshot

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown to test ids")


def make_collection(base: Path, dir_mode: int = 0o750, file_mode: int = 0o640,
                    gid: int = LICENCE_GID) -> Path:
    coll = base / "vasp"
    (coll / "6.4").mkdir(parents=True)
    for rel in ("vasp-6.3.sif", "6.4/vasp-6.4.sif"):
        (coll / rel).write_bytes(b"SIF")
        os.chown(coll / rel, 0, gid)
        os.chmod(coll / rel, file_mode)
    for d in (coll, coll / "6.4"):
        os.chown(d, 0, gid)
        os.chmod(d, dir_mode)
    return coll


def run(coll: Path, image: str = "", users: Tuple[str, ...] = ()) -> List[AuditDecision]:
    p = make_policy(collections=[Collection(str(coll), "licence")])
    ctx = make_context(p, snapshot())
    targets = [parse_target(image)] if image else [Target("collection", str(coll), str(coll))]
    walk, single = paths_to_observe(p, targets)
    chosen = [u for u in select_users(ctx) if not users or u.name in users]
    return audit(ctx, chosen, targets, observe(walk, single))


def perm(d: AuditDecision) -> Tuple[bool, str]:
    (e,) = d.enforced_by
    assert e.mechanism == FILE_PERMISSIONS and not e.user_can_override
    return e.enforces, e.note


def test_well_kept_collection_is_enforced(tmp_path: Path) -> None:
    coll = make_collection(tmp_path)
    ds = {d.user: d for d in run(coll)}
    assert {u: d.allowed for u, d in ds.items()} == {"alice": False, "bob": True, "carol": False}
    assert all(perm(d)[0] for d in ds.values())
    assert "read none of its 2 image files" in perm(ds["carol"])[1]
    assert "read 2 of 2 image files" in perm(ds["bob"])[1]
    assert not any(d.drift for d in ds.values())
    assert ds["bob"].rule == str(coll) and "bob is in group licence" in ds["bob"].reason


def test_world_readable_collection_is_not_enforced_and_drifts(tmp_path: Path) -> None:
    coll = make_collection(tmp_path, dir_mode=0o755, file_mode=0o644)
    ds = {d.user: d for d in run(coll)}
    enforced, note = perm(ds["carol"])
    assert not enforced and ds["carol"].unenforced_denial
    assert "can read 2 of 2 image files" in note and "others may read" in note
    drift = ds["carol"].drift
    assert f"{coll}: others may list or enter it (mode 0755)" in drift
    assert f"{coll}/vasp-6.3.sif: readable by others (mode 0644)" in drift
    assert ds["bob"].drift == drift  # drift is about the files, whoever asks


def test_closed_directory_still_enforces_but_file_mode_is_drift(tmp_path: Path) -> None:
    coll = make_collection(tmp_path, dir_mode=0o750, file_mode=0o644)
    ds = {d.user: d for d in run(coll)}
    assert perm(ds["carol"])[0]  # others cannot enter the directory
    assert f"{coll}/6.4/vasp-6.4.sif: readable by others (mode 0644)" in ds["carol"].drift


def test_wrong_group_owner_lets_its_members_in(tmp_path: Path) -> None:
    coll = make_collection(tmp_path, gid=OTHER_GID)  # carol is in "other"
    ds = {d.user: d for d in run(coll)}
    enforced, note = perm(ds["carol"])
    assert not enforced and "group-owned by other, one of the user's groups" in note
    enforced, note = perm(ds["bob"])
    assert not enforced and "cannot list and enter" in note  # the licence group is locked out
    assert any(f"group owner other (gid {OTHER_GID}), policy: licence (gid {LICENCE_GID})" in line
               for line in ds["bob"].drift)


def test_group_without_read_is_drift(tmp_path: Path) -> None:
    coll = make_collection(tmp_path, file_mode=0o600)
    (bob,) = run(coll, users=("bob",))
    enforced, note = perm(bob)
    assert not enforced and "read 0 of 2" in note
    assert f"{coll}/vasp-6.3.sif: group licence cannot read it (mode 0600)" in bob.drift


def test_owner_reads_own_file(tmp_path: Path) -> None:
    coll = make_collection(tmp_path, dir_mode=0o751)  # others may enter, not list
    os.chown(coll / "vasp-6.3.sif", 5003, LICENCE_GID)  # carol owns one file
    (carol,) = run(coll, users=("carol",))
    enforced, note = perm(carol)
    assert not enforced and "can read 1 of 2" in note and "the user owns" in note


def test_image_path_in_collection(tmp_path: Path) -> None:
    coll = make_collection(tmp_path, dir_mode=0o755, file_mode=0o640)
    ds = {d.user: d for d in run(coll, f"{coll}/6.4/../6.4/vasp-6.4.sif")}
    carol = ds["carol"]
    assert carol.image == f"{coll}/6.4/vasp-6.4.sif" and carol.kind == "collection"
    assert carol.reason.startswith(f"{coll}/6.4/vasp-6.4.sif is in collection {coll}: ")
    assert perm(carol) == (True, f"the user cannot read {coll}/6.4/vasp-6.4.sif (mode 0640)")
    assert perm(ds["bob"])[0]
    assert f"{coll}: others may list or enter it (mode 0755)" in carol.drift
    os.chmod(coll / "6.4" / "vasp-6.4.sif", 0o644)
    (carol,) = run(coll, f"{coll}/6.4/vasp-6.4.sif", ("carol",))
    enforced, note = perm(carol)
    assert not enforced and "NOT enforced" in note


def test_missing_image_file(tmp_path: Path) -> None:
    coll = make_collection(tmp_path)
    (bob,) = run(coll, f"{coll}/nope.sif", ("bob",))
    enforced, note = perm(bob)
    assert not enforced and "not present on this host" in note


def test_symlink_and_acl_reported(tmp_path: Path) -> None:
    coll = make_collection(tmp_path)
    (coll / "link.sif").symlink_to("/etc/hostname")
    (carol,) = run(coll, users=("carol",))
    assert f"{coll}/link.sif: a symlink; its target's permissions decide (not followed)" in \
        carol.drift
    try:
        os.setxattr(coll / "vasp-6.3.sif", "system.posix_acl_access",
                    bytes.fromhex("02000000" "01000600ffffffff" "04000400ffffffff"
                                  "08000400e8030000" "10000400ffffffff" "20000000ffffffff"))
    except OSError:
        pytest.skip("no POSIX ACL support on this file system")
    assert stat_path(str(coll / "vasp-6.3.sif")).acl
    (carol,) = run(coll, users=("carol",))
    assert any("carries a POSIX ACL" in line for line in carol.drift)


def test_walk_limit_is_reported(tmp_path: Path) -> None:
    coll = make_collection(tmp_path)
    for i in range(30):
        (coll / f"extra{i}.sif").write_bytes(b"")
    p = make_policy(collections=[Collection(str(coll), "licence")])
    ctx = make_context(p, snapshot())
    obs = observe([str(coll)], [], limit=10)
    assert len(obs.states) == 10 and str(coll) in obs.truncated
    (bob,) = audit(ctx, select_users(ctx, "bob"), [Target("collection", str(coll), str(coll))],
                   obs)
    assert any("only part of the collection was examined" in line for line in bob.drift)
