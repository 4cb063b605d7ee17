"""status / generations / rollback / promote through `main`: text, JSON shape, exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict

import pytest

from tests.deploy_fixtures import publish, synthetic_trees, write_site_record

Cli = Callable[..., Any]


def as_json(result: Any) -> Dict[str, Any]:
    lines = result.out.splitlines()
    assert len(lines) == 1, result.out  # exactly one JSON object on stdout
    doc = json.loads(lines[0])
    assert isinstance(doc["changed"], bool) and isinstance(doc["failed"], bool)
    assert isinstance(doc["msg"], str)
    return doc


@pytest.fixture
def root(tmp_path: Path) -> Path:
    deploy = tmp_path / "deploy"
    publish(deploy, synthetic_trees(0, policy="reject"))
    publish(deploy, synthetic_trees(1, policy="accept"))
    write_site_record(deploy)
    return deploy


def test_status_text_and_json(cli: Cli, root: Path) -> None:
    res = cli("status", "--deploy-root", root)
    assert res.rc == 0 and "current:     000002-" in res.out and "by alice" in res.out
    doc = as_json(cli("status", "--deploy-root", root, "--format", "json"))
    assert doc["generation"].startswith("000002-") and not doc["failed"]
    assert doc["channels"]["stable"]["generation"] == doc["generation"]


def test_generations_lists_newest_first(cli: Cli, root: Path) -> None:
    res = cli("generations", "--deploy-root", root)
    lines = res.out.splitlines()
    assert res.rc == 0 and lines[1].startswith("*") and "000002-" in lines[1]
    doc = as_json(cli("generations", "--deploy-root", root, "--format", "json"))
    assert [g["number"] for g in doc["generations"]] == [2, 1]


def test_root_option_required(cli: Cli) -> None:
    for cmd in ("status", "generations", "rollback", "promote canary"):
        res = cli(*cmd.split(), "--format", "json")
        doc = as_json(res)
        assert res.rc == 2 and doc["failed"] and "--site SITE or --deploy-root DIR" in doc["msg"]
        assert "Traceback" not in res.err


def test_rollback_cli(cli: Cli, root: Path) -> None:
    res = cli("rollback", "--deploy-root", root, "--format", "json")
    doc = as_json(res)
    assert res.rc == 0 and doc["changed"] and doc["generation"].startswith("000003-")
    assert doc["changes"] == [{"path": "etc/containers/policy.json", "action": "modified"}]
    res = cli("rollback", "2", "--deploy-root", root, "--diff")
    assert res.rc == 0 and "+++ b/etc/containers/policy.json" in res.out
    assert '+{"default": [{"type": "accept"}]}' in res.out


def test_rollback_json_error_shape(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    res = cli("rollback", "--deploy-root", tmp_path / "empty", "--format", "json")
    assert res.rc == 2 and "give --site SITE" in as_json(res)["msg"]  # no state/site.json
    write_site_record(tmp_path / "empty")
    res = cli("rollback", "--deploy-root", tmp_path / "empty", "--format", "json")
    doc = as_json(res)
    assert res.rc == 1 and doc["failed"] and "nothing published" in doc["msg"]
    assert doc["generation"] is None and doc["changes"] == []
    assert "hpcpolicy: " in res.err
    res = cli("rollback", "99", "--deploy-root", tmp_path / "empty", "--format", "json")
    assert res.rc in (1, 2) and as_json(res)["failed"]


def test_promote_cli(cli: Cli, root: Path) -> None:
    publish(root, synthetic_trees(1, policy="canary"), channel="canary")
    res = cli("status", "--deploy-root", root)
    assert "channel canary: 000003-" in res.out
    doc = as_json(cli("promote", "canary", "--deploy-root", root, "--format", "json"))
    assert doc["changed"] and doc["generation"].startswith("000003-")
    doc = as_json(cli("promote", "canary", "--deploy-root", root, "--format", "json"))
    assert not doc["changed"]
    res = cli("promote", "Bad_Name", "--deploy-root", root, "--format", "json")
    assert res.rc != 0 and as_json(res)["failed"]


def test_unsafe_root_refused_by_status(cli: Cli, root: Path) -> None:
    root.chmod(0o777)
    res = cli("status", "--deploy-root", root, "--format", "json")
    assert res.rc == 1 and "writable by group and other" in as_json(res)["msg"]
