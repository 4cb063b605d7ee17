"""rollback (sub-ID files never go back), promote (canary -> current), status/generations."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hpcpolicy.deploy.changelog import read_changes
from hpcpolicy.deploy.published import read_trees
from hpcpolicy.deploy.rollback import promote, rollback
from hpcpolicy.deploy.status import generations, status
from hpcpolicy.deploy.store import Target
from hpcpolicy.errors import RuntimeFailure, UsageError
from hpcpolicy.generation.naming import channel_generation, list_generations
from hpcpolicy.generation.verify import verify_generation
from tests.deploy_fixtures import NOW, publish, synthetic_trees


def trees_of(root: Path, name: str) -> dict:
    manifest = verify_generation(str(root / "generations" / name))
    return read_trees(str(root), name, manifest)


def test_rollback_keeps_todays_subids(tmp_path: Path) -> None:
    g1 = publish(tmp_path, synthetic_trees(0, policy="reject"))
    g2 = publish(tmp_path, synthetic_trees(1, policy="insecureAcceptAnything"))
    result = rollback(Target(str(tmp_path)), operator="bob", now=NOW, diff=True)
    assert result.changed and result.previous == g2
    assert result.generation == channel_generation(str(tmp_path)) != g1
    new, old, now = (trees_of(tmp_path, n)["default"] for n in (result.generation, g1, g2))
    assert new["etc/containers/policy.json"] == old["etc/containers/policy.json"]
    assert new["etc/subuid"] == now["etc/subuid"] != old["etc/subuid"]
    assert new["etc/subgid"] == now["etc/subgid"]
    assert result.changes == [{"path": "etc/containers/policy.json", "action": "modified"}]
    assert result.diff and "reject" in result.diff[0]["after"]
    entry = read_changes(str(tmp_path))[-1]
    assert entry["action"] == "rollback" and entry["rollback_to"] == g1
    assert entry["operator"] == "bob"
    manifest = verify_generation(str(tmp_path / "generations" / result.generation))
    assert manifest["action"] == "rollback" and manifest["rollback_to"] == g1


def test_rollback_by_number_and_nothing_to_do(tmp_path: Path) -> None:
    publish(tmp_path, synthetic_trees(0))
    g2 = publish(tmp_path, synthetic_trees(1))  # differs only in sub-IDs
    result = rollback(Target(str(tmp_path)), "1", now=NOW)
    assert not result.changed and result.generation == g2
    assert list_generations(str(tmp_path))[-1] == g2
    with pytest.raises(UsageError, match="no generation '7'"):
        rollback(Target(str(tmp_path)), "7", now=NOW)


def test_rollback_per_class(tmp_path: Path) -> None:
    publish(tmp_path, synthetic_trees(0, ("gpu",), policy="reject"))
    g2 = publish(tmp_path, synthetic_trees(3, (), policy="other"))
    result = rollback(Target(str(tmp_path)), "1", now=NOW)
    trees = trees_of(tmp_path, result.generation or "")
    current = trees_of(tmp_path, g2)["default"]
    assert set(trees) == {"default", "gpu"}
    # gpu did not exist now: its sub-ID files come from today's default tree
    assert trees["gpu"]["etc/subuid"] == current["etc/subuid"]
    assert {"path": "class/gpu/etc/subuid", "action": "added"} in result.changes


def test_rollback_errors(tmp_path: Path) -> None:
    with pytest.raises(RuntimeFailure, match="nothing published"):
        rollback(Target(str(tmp_path)), now=NOW)
    publish(tmp_path, synthetic_trees(0))
    with pytest.raises(RuntimeFailure, match="no generation before"):
        rollback(Target(str(tmp_path)), now=NOW)


def test_rollback_of_signed_history_needs_the_key(tmp_path: Path) -> None:
    publish(tmp_path, synthetic_trees(0))
    g2 = publish(tmp_path, synthetic_trees(1, policy="x"))
    (tmp_path / "generations" / g2 / "manifest.json.sig").write_text("sig")
    with pytest.raises(RuntimeFailure, match="signed .*but no signing key"):
        rollback(Target(str(tmp_path)), now=NOW)


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen missing")
def test_signed_publish_verifies_with_allowed_signers(tmp_path: Path) -> None:
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    pub = (tmp_path / "key.pub").read_text().split()
    allowed = tmp_path / "allowed"
    allowed.write_text(f'admin namespaces="hpcpolicy" {pub[0]} {pub[1]}\n')
    root = tmp_path / "deploy"
    target = Target(str(root), signing_key=str(key))
    name = publish(root, synthetic_trees(0), target=target)
    gen = root / "generations" / name
    assert (gen / "manifest.json.sig").is_file()
    verify_generation(str(gen), str(allowed))
    g2 = publish(root, synthetic_trees(1, policy="x"), target=target)
    result = rollback(target, now=NOW)  # signed history, key known: fine
    verify_generation(str(root / "generations" / (result.generation or "")), str(allowed))
    # a manifest swapped for another generation's (a replay) fails the signature check
    other = root / "generations" / g2
    os.chmod(other / "manifest.json", 0o644)
    (other / "manifest.json.sig").write_bytes((gen / "manifest.json.sig").read_bytes())
    with pytest.raises(Exception, match="(?i)signature|verif"):
        verify_generation(str(other), str(allowed))


def test_promote_canary(tmp_path: Path) -> None:
    g1 = publish(tmp_path, synthetic_trees(0))
    canary = publish(tmp_path, synthetic_trees(0, policy="x"), channel="canary")
    assert channel_generation(str(tmp_path)) == g1
    result = promote(Target(str(tmp_path)), "canary", operator="carol", now=NOW)
    assert result.changed and result.generation == canary and result.previous == g1
    assert result.changes == [{"path": "etc/containers/policy.json", "action": "modified"}]
    assert channel_generation(str(tmp_path)) == canary
    again = promote(Target(str(tmp_path)), "canary", now=NOW)
    assert not again.changed
    g3 = publish(tmp_path, synthetic_trees(1))
    assert channel_generation(str(tmp_path)) == g3
    with pytest.raises(RuntimeFailure, match="older than current"):
        promote(Target(str(tmp_path)), "canary", now=NOW)
    with pytest.raises(RuntimeFailure, match="does not exist"):
        promote(Target(str(tmp_path)), "beta", now=NOW)
    assert read_changes(str(tmp_path))[-1]["action"] == "promote"


def test_status_and_generations(tmp_path: Path) -> None:
    g1 = publish(tmp_path, synthetic_trees(0, ("gpu",)))
    g2 = publish(tmp_path, synthetic_trees(1, ("gpu",)), channel="canary")
    doc = status(str(tmp_path))
    assert doc["generation"] == g1 and doc["generations"] == 2
    assert doc["current"]["classes"] == {"default": 4, "gpu": 5}
    assert doc["current"]["subid_users"] == 1 and doc["current"]["operator"] == "alice"
    assert doc["channels"]["canary"]["generation"] == g2
    listed = generations(str(tmp_path))
    assert [e["generation"] for e in listed] == [g2, g1]
    assert listed[1]["current"] and listed[0]["channels"] == ["canary"]
