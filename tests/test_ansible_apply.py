"""`hpcpolicy.site.hpcpolicy_apply` under the real ansible-playbook, on a files-only site.

What an administrator relies on: check mode writes nothing, the real run publishes, a second
run reports no change (recap changed=0), diff mode shows each file's change the Ansible way, and
a bad site fails the task with the CLI's messages on one line.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Dict

import tomli_w

from tests.ansible_fixtures import Ansible, ansible, apply_task, generation_of
from tests.test_e2e_admin import make_site

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["ansible"]  # fixture, imported for pytest


def add_bind(site: Path, source: str) -> None:
    data: Dict[str, Any] = tomllib.loads(site.read_text())
    data["bind"].append({"source": source})
    site.write_bytes(tomli_w.dumps(data).encode())


def test_check_then_apply_then_idempotent(ansible: Ansible, tmp_path: Path) -> None:
    site = make_site(tmp_path)
    shared = tmp_path / "shared"

    dry = ansible.play(apply_task(site), "--check", "--diff")
    assert dry.rc == 0, dry.show()
    assert dry.recap["changed"] == 1
    planned = dry.result
    assert planned["changed"] is True and planned["check"] is True
    assert {c["action"] for c in planned["changes"]} == {"added"}
    assert "--- before: etc/subuid" in dry.out and "+++ after: etc/subuid" in dry.out
    assert not (shared / "current").exists(), "check mode published a generation"
    assert not (shared / "state" / "subid-ledger.json").exists(), "check mode saved the ledger"

    real = ansible.play(apply_task(site))
    assert real.rc == 0, real.show()
    assert real.recap["changed"] == 1
    done = real.result
    assert done["changed"] is True and done["check"] is False
    assert done["generation"] == generation_of(shared)
    assert done["changes"] == planned["changes"]
    assert "--- before:" not in real.out, "no --diff: no diff shown"

    again = ansible.play(apply_task(site))
    assert again.rc == 0, again.show()
    assert again.recap["changed"] == 0
    assert again.result["changed"] is False
    assert again.result["changes"] == []
    assert again.result["generation"] == done["generation"]
    assert [p.name for p in (shared / "generations").iterdir()] == [done["generation"]]


def test_diff_of_a_change_in_check_mode(ansible: Ansible, cli: Any, tmp_path: Path) -> None:
    site = make_site(tmp_path)
    shared = tmp_path / "shared"
    assert cli("apply", site).rc == 0
    first = generation_of(shared)
    add_bind(site, "/data")

    dry = ansible.play(apply_task(site), "--check", "--diff")
    assert dry.rc == 0, dry.show()
    assert dry.recap["changed"] == 1
    result = dry.result
    assert result["previous"] == first and result["check"] is True
    assert {"path": "etc/apptainer/apptainer.conf", "action": "modified"} in result["changes"]
    assert "+bind path = /data" in dry.out
    for change in result["changes"]:  # Ansible printed one diff per changed file
        path = change["path"]
        assert f"--- before: {path}\n+++ after: {path}\n" in dry.out
    assert generation_of(shared) == first, "check mode switched current"
    assert len(list((shared / "generations").iterdir())) == 1


def test_bad_site_fails_with_every_problem_on_one_line(ansible: Ansible, cli: Any,
                                                       tmp_path: Path) -> None:
    site = make_site(tmp_path, site={"bogus": 1}, directory={"min_uid": "x"})
    run = ansible.play(apply_task(site))
    assert run.rc == 2, run.show()
    assert run.recap["failed"] == 1
    failure = run.failure
    cli_json = json.loads(cli("apply", site, "--format", "json").out)
    assert failure["errors"] == cli_json["errors"]
    assert len(failure["errors"]) == 2
    assert "\n" not in failure["msg"]
    assert failure["msg"] == "; ".join(cli_json["errors"])
    assert "site.bogus: unknown key" in failure["msg"]
    assert failure["changed"] is False
    assert failure["generation"] is None and failure["changes"] == []
    assert not (tmp_path / "shared" / "current").exists()


def test_approval_site_needs_signing_key_instead_of_a_prompt(ansible: Ansible,
                                                             tmp_path: Path) -> None:
    """Ansible has no terminal: the module must refuse, not hang on a password prompt."""
    site = make_site(tmp_path)
    data: Dict[str, Any] = tomllib.loads(site.read_text())
    data["site"]["approval"] = {"pam_service": "hpcpolicy", "admin_group": "hpcadmin"}
    site.write_bytes(tomli_w.dumps(data).encode())
    run = ansible.play(apply_task(site))
    assert run.rc == 2, run.show()
    assert "needs [site] signing_key" in run.failure["msg"]
    assert not (tmp_path / "shared" / "current").exists()


def test_deploy_root_and_channel_options(ansible: Ansible, tmp_path: Path) -> None:
    site = make_site(tmp_path, make_root=False)
    other = tmp_path / "other-root"
    os.mkdir(other, 0o755)
    run = ansible.play(apply_task(site, deploy_root=str(other), channel="canary",
                                  lock_timeout=5))
    assert run.rc == 0, run.show()
    result = run.result
    assert result["channel"] == "canary"
    assert generation_of(other, "channels/canary") == result["generation"]
    assert not (other / "current").exists(), "a canary apply must leave stable alone"
    assert not (tmp_path / "shared").exists()
