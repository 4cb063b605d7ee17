"""apply(): publish, idempotence, --check writes nothing, diff, ledger-only change, guards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpcpolicy.deploy.changelog import read_changes
from hpcpolicy.deploy.publish import apply
from hpcpolicy.errors import LockTimeout, RevokeGuard, UnsafePath
from hpcpolicy.generation.naming import channel_generation, list_generations
from hpcpolicy.generation.verify import verify_generation
from tests.apply_fixtures import (
    ledger_ranges,
    make_policy,
    subuid_ranges,
    write_directory,
)
from tests.deploy_fixtures import NOW, listing


@pytest.fixture
def site(tmp_path: Path) -> tuple:
    files = write_directory(tmp_path / "dir", 5)
    root = tmp_path / "deploy"
    root.mkdir(mode=0o755)
    return root, files


def gens(root: Path) -> list:
    return list_generations(str(root))


def test_first_apply_publishes_everything(site: tuple) -> None:
    root, files = site
    result = apply(make_policy(str(root), files), operator="alice", now=NOW)
    assert result.changed and result.generation == channel_generation(str(root))
    assert result.generation.startswith("000001-") and result.previous is None
    assert {"path": "etc/subuid", "action": "added"} in result.changes
    assert result.ledger_saved and result.subid["live"] == 5
    gen = root / "generations" / result.generation
    manifest = verify_generation(str(gen))
    assert manifest["operator"] == "alice" and manifest["site"] == "test"
    req = manifest["requirements"]
    assert req["bind_sources"] == {"default": ["/scratch"]}
    assert req["sysctls"]["user.max_user_namespaces"] == "15000"
    assert req["setuid_allowed"] is False and req["subid_enabled"] is True
    published = subuid_ranges((gen / "tree" / "etc" / "subuid").read_bytes())
    ledger = ledger_ranges(str(root))
    assert len(published) == 5
    assert all(ledger[uid][:2] == (start, count) for uid, start, count in published)
    log = read_changes(str(root))
    assert [e["action"] for e in log] == ["apply"] and log[0]["generation"] == result.generation
    for sub in ("generations", "state", "log"):
        assert (root / sub).stat().st_mode & 0o777 == 0o755


def test_second_apply_changes_nothing(site: tuple) -> None:
    root, files = site
    policy = make_policy(str(root), files)
    first = apply(policy, now=NOW)
    before = listing(root)
    again = apply(policy, now=NOW)
    assert not again.changed and again.generation == first.generation
    assert again.changes == [] and not again.ledger_saved
    assert gens(root) == [first.generation] and len(read_changes(str(root))) == 1
    # only the lock file's holder info was touched
    assert [e for e in listing(root) if e[0] != ".lock"] == [e for e in before if e[0] != ".lock"]


def test_change_publishes_new_generation_with_diff(site: tuple) -> None:
    root, files = site
    first = apply(make_policy(str(root), files), now=NOW)
    result = apply(make_policy(str(root), files, binds=("/scratch", "/project")), diff=True,
                   now=NOW)
    assert result.changed and result.previous == first.generation
    assert result.generation.startswith("000002-")
    paths = {c["path"] for c in result.changes}
    assert "etc/enroot/mounts.d/90-hpcpolicy.fstab" in paths and "etc/subuid" not in paths
    fstab = next(d for d in result.diff if d["path"].endswith("90-hpcpolicy.fstab"))
    assert "/project" in fstab["after"] and "/project" not in fstab["before"]
    assert gens(root) == [first.generation, result.generation]


def test_check_writes_nothing(site: tuple) -> None:
    root, files = site
    apply(make_policy(str(root), files), now=NOW)
    before = listing(root)
    result = apply(make_policy(str(root), write_directory(root.parent / "d2", 7),
                               binds=("/x",)), check=True, diff=True, now=NOW)
    assert result.changed and result.check and result.diff
    assert {"path": "etc/subuid", "action": "modified"} in result.changes
    assert listing(root) == before  # not even the lock file


def test_check_on_a_new_root_creates_nothing(site: tuple) -> None:
    root, files = site
    root.rmdir()
    result = apply(make_policy(str(root), files), check=True, init=True, now=NOW)
    assert result.changed and not root.exists()


def test_rename_changes_no_file_but_access(site: tuple, tmp_path: Path) -> None:
    """A renamed user keeps their uid-keyed sub-ID lines (no node file changes), but one user
    left the directory and another joined: an access change, published as a new generation."""
    root, files = site
    first = apply(make_policy(str(root), files), now=NOW)
    passwd = Path(files[0])
    passwd.write_text(passwd.read_text().replace("user00001:", "renamed1:"))
    group = Path(files[1])
    group.write_text(group.read_text().replace("user00001", "renamed1"))
    result = apply(make_policy(str(root), files), now=NOW)
    assert result.changed and result.ledger_saved and result.changes == []
    assert gens(root) == [first.generation, result.generation]
    moves = {(c["before"], c["after"], tuple(c["sample"])) for c in result.access_changes}
    assert {b for b, _, s in moves if s == ("user00001",)} <= {"allowed", "denied"}
    assert {a for _, a, s in moves if s == ("user00001",)} == {"absent"}
    assert {b for b, _, s in moves if s == ("renamed1",)} == {"absent"}
    doc = json.loads((root / "state" / "subid-ledger.json").read_text())
    assert "renamed1" in {r["name"] for r in doc["records"]}
    logged = read_changes(str(root))[-1]
    assert logged["action"] == "apply" and logged["access_changes"]
    assert all("sample" not in c for c in logged["access_changes"])  # no names in the log
    again = apply(make_policy(str(root), files), now=NOW)
    assert not again.changed and again.access_changes == []


def test_revoke_guard_stops_and_writes_nothing(site: tuple, tmp_path: Path) -> None:
    root, files = site
    apply(make_policy(str(root), files), now=NOW)
    ledger_before = (root / "state" / "subid-ledger.json").read_bytes()
    fewer = write_directory(tmp_path / "fewer", 2)
    with pytest.raises(RevokeGuard, match="withdraw the sub-ID ranges of 3 of 5"):
        apply(make_policy(str(root), fewer), now=NOW)
    assert (root / "state" / "subid-ledger.json").read_bytes() == ledger_before
    assert len(gens(root)) == 1
    result = apply(make_policy(str(root), fewer), allow_revoke=True, now=NOW)
    assert result.changed and result.subid["withdrawn"] == 3
    # withdrawn ranges stay reserved in the ledger
    assert sum(1 for s in ledger_ranges(str(root)).values() if s[2] != "live") == 3


def test_node_classes(site: tuple) -> None:
    root, files = site
    policy = make_policy(str(root), files, classes=(("gpu", "gpu[01-04]"),))
    result = apply(policy, now=NOW)
    manifest = verify_generation(str(root / "generations" / result.generation))
    assert manifest["classes"]["gpu"]["tree"] == "class/gpu/tree"
    assert {"path": "class/gpu/etc/subuid", "action": "added"} in result.changes
    assert (root / "generations" / result.generation / "class/gpu/tree/etc/subuid").is_file()


def test_canary_channel_then_promote(site: tuple) -> None:
    from hpcpolicy.deploy.rollback import promote
    from hpcpolicy.deploy.store import Target

    root, files = site
    stable = apply(make_policy(str(root), files), now=NOW)
    canary = apply(make_policy(str(root), files, binds=("/new",)), channel="canary", now=NOW)
    assert canary.changed and canary.channel == "canary"
    assert channel_generation(str(root)) == stable.generation
    assert channel_generation(str(root), "canary") == canary.generation
    again = apply(make_policy(str(root), files, binds=("/new",)), channel="canary", now=NOW)
    assert not again.changed
    promoted = promote(Target.from_policy(make_policy(str(root), files)), "canary", now=NOW)
    assert promoted.changed and channel_generation(str(root)) == canary.generation


def test_tampered_current_is_replaced(site: tuple) -> None:
    root, files = site
    policy = make_policy(str(root), files)
    first = apply(policy, now=NOW)
    path = root / "generations" / first.generation / "tree" / "etc" / "subgid"
    path.write_text("6666:100000:65536\n")
    result = apply(policy, now=NOW)
    assert result.changed and result.generation != first.generation
    verify_generation(str(root / "generations" / result.generation))


def test_gc_runs_after_publish(site: tuple) -> None:
    root, files = site
    for i in range(6):
        apply(make_policy(str(root), files, binds=(f"/b{i}",), keep=3, gc_grace=0), now=NOW)
    assert len(gens(root)) == 3 and gens(root)[-1].startswith("000006-")


def test_stale_tmp_dirs_removed(site: tuple) -> None:
    root, files = site
    apply(make_policy(str(root), files), now=NOW)
    (root / "generations" / ".tmp-1-dead" / "tree").mkdir(parents=True)
    apply(make_policy(str(root), files), now=NOW)
    assert not (root / "generations" / ".tmp-1-dead").exists()


def test_unsafe_root_refused_before_anything(site: tuple) -> None:
    root, files = site
    root.parent.chmod(0o777)
    try:
        with pytest.raises(UnsafePath, match="writable by group and other"):
            apply(make_policy(str(root), files), now=NOW)
        assert list(root.iterdir()) == []
    finally:
        root.parent.chmod(0o755)


def test_lock_timeout_names_holder(site: tuple) -> None:
    root, files = site
    apply(make_policy(str(root), files), now=NOW)
    code = ("import sys, time\nfrom hpcpolicy.deploy.lock import DeployLock\n"
            "with DeployLock(sys.argv[1], purpose='subid revoke by dave'):\n"
            "    print('in', flush=True); time.sleep(30)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "in\n"
        with pytest.raises(LockTimeout, match=f"pid {holder.pid} .*subid revoke by dave"):
            apply(make_policy(str(root), files, binds=("/z",)), lock_timeout=0.3, now=NOW)
    finally:
        holder.kill()
        holder.wait()
    assert len(gens(root)) == 1


def test_bad_channel_name(site: tuple) -> None:
    from hpcpolicy.errors import UsageError

    root, files = site
    with pytest.raises(UsageError, match="invalid channel"):
        apply(make_policy(str(root), files), channel="../x", now=NOW)
    assert list(root.iterdir()) == []


def test_umask_does_not_leak_into_modes(site: tuple) -> None:
    root, files = site
    old = os.umask(0o077)
    try:
        result = apply(make_policy(str(root), files), now=NOW)
    finally:
        os.umask(old)
    verify_generation(str(root / "generations" / result.generation))
    assert (root / "generations" / result.generation).stat().st_mode & 0o777 == 0o755
    assert (root / "generations" / result.generation / "tree").stat().st_mode & 0o777 == 0o755


def test_site_without_subids_still_binds_the_root(site: tuple) -> None:
    from dataclasses import replace

    from hpcpolicy.policy.model import SubId

    root, files = site
    policy = replace(make_policy(str(root), files), subid=SubId(enabled=False))
    first = apply(policy, now=NOW)
    assert first.changed and first.ledger_saved  # an empty ledger naming the site
    assert "etc/subuid" not in {c["path"] for c in first.changes}
    again = apply(policy, now=NOW)
    assert not again.changed
    other = replace(policy, site=replace(policy.site, name="other-site"))
    with pytest.raises(Exception, match="ledger of site 'test'"):
        apply(other, now=NOW)


def test_check_needs_no_lock(site: tuple) -> None:
    root, files = site
    apply(make_policy(str(root), files), now=NOW)
    code = ("import sys, time\nfrom hpcpolicy.deploy.lock import DeployLock\n"
            "with DeployLock(sys.argv[1]):\n    print('in', flush=True); time.sleep(30)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "in\n"
        result = apply(make_policy(str(root), files, binds=("/q",)), check=True,
                       lock_timeout=0, now=NOW)
        assert result.changed and result.check
    finally:
        holder.kill()
        holder.wait()
