"""The calls behind the commands, made as a site's own Python script makes them: each gives what
the CLI's `--format json` reports, because the CLI is only argparse and text around it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hpcpolicy.deploy import ledger_ops
from hpcpolicy.deploy.publish import apply_site
from hpcpolicy.deploy.review import render_site
from hpcpolicy.deploy.rollback import rollback_site
from hpcpolicy.deploy.status import generations_of, status_of
from hpcpolicy.deploy.validate import validate_site
from hpcpolicy.errors import RuntimeFailure, UsageError
from tests.test_e2e_admin import make_site


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return make_site(tmp_path)


def test_a_script_runs_the_day_the_cli_runs(cli: Any, site: Path, tmp_path: Path) -> None:
    checked = validate_site(str(site), offline=False)
    assert checked.snapshot is not None and checked.summary["site"]
    first = apply_site(str(site))
    assert first.changed and first.generation
    status = status_of(site=str(site))
    assert status["generation"] == first.generation
    assert json.loads(cli("status", "--site", site, "--format", "json").out)["generation"] \
        == first.generation
    assert [g["generation"] for g in generations_of(deploy_root=str(tmp_path / "shared"))] \
        == [first.generation]
    listing = ledger_ops.records(site=str(site))
    assert listing is not None and "alice" in [r["name"] for r in listing["records"]]
    done = ledger_ops.change("revoke", "alice", site=str(site))
    assert done.record["state"] == "revoked"
    assert json.loads(cli("subid", "show", "alice", "--site", site, "--format", "json").out)[
        "record"]["state"] == "revoked"
    second = apply_site(str(site))
    assert second.changed and second.generation != first.generation
    with pytest.raises(RuntimeFailure, match="nothing to roll back to"):
        rollback_site(site=str(site))  # sub-ID files never go back: the same files as now
    rendered = render_site(str(site), str(tmp_path / "review"))
    assert "etc/subuid" in rendered.files and (tmp_path / "review/etc/subuid").is_file()


def test_no_default_deploy_root(site: Path) -> None:
    with pytest.raises(UsageError, match="give --site SITE or --deploy-root DIR"):
        status_of()
    with pytest.raises(UsageError, match="give --site SITE or --deploy-root DIR"):
        ledger_ops.change("revoke", "alice")
