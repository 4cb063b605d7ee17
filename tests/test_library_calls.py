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


def test_audit_and_diff_give_what_the_cli_prints(cli: Any, site: Path) -> None:
    """`audit.run` and `access_diff_of` are the commands' one call each: their message and
    JSON object are what `--format json` prints (the audit's clock aside)."""
    from hpcpolicy import audit
    from hpcpolicy.deploy.access_diff import access_diff_of

    def clockless(doc: Any) -> Any:
        doc["provenance"].pop("time")
        return doc

    for options, argv in (({}, []), ({"image": "registry.example.org/bio:latest"},
                                     ["--image", "registry.example.org/bio:latest"]),
                          ({"user": "alice"}, ["--user", "alice"]),
                          ({"user": "alice", "image": "docker.io/library/example:latest",
                            "explain": True},
                           ["--user", "alice", "--image", "docker.io/library/example:latest",
                            "--explain"])):
        result = audit.run(str(site), **options)
        printed = json.loads(cli("audit", site, *argv, "--format", "json").out)
        assert printed.pop("msg") == result.msg and result.msg
        assert (printed.pop("changed"), printed.pop("failed")) == (False, False)
        mine = result.as_dict()
        if result.report is not None:
            printed, mine = clockless(printed), clockless(mine)
        assert printed == json.loads(json.dumps(mine)), argv
    apply_site(str(site))
    group = site.parent / "group"
    group.write_text(group.read_text().replace("bio:x:2001:alice", "bio:x:2001:alice,bob"))
    apply_site(str(site))
    doc = access_diff_of(str(site), None)
    assert doc["changes"] and "bob" in json.dumps(doc["changes"])
    printed = json.loads(cli("diff", "--site", site, "--format", "json").out)
    assert printed == json.loads(json.dumps(doc))


def test_audit_refuses_what_apply_refuses(cli: Any, site: Path) -> None:
    """The audit reads the directory the one checked way apply does: a group the site names
    that the directory lacks and a real user inside the sub-ID space are the same problems,
    all at once, exit 2, and nothing is audited."""
    group, passwd = site.parent / "group", site.parent / "passwd"
    group.write_text(group.read_text().replace("bio:x:2001:alice\n", ""))
    passwd.write_text(passwd.read_text() + "big:x:600000:2000::/home/big:/bin/bash\n")
    audited = cli("audit", site, "--format", "json")
    applied = cli("apply", site, "--check", "--format", "json")
    assert audited.rc == applied.rc == 2
    a, b = json.loads(audited.out), json.loads(applied.out)
    assert a["msg"] == b["msg"] and "bio" in a["msg"] and "600000" in a["msg"]
    assert a["errors"] == b["errors"] and len(a["errors"]) == 2
    assert "Traceback" not in audited.err


def test_validate_is_one_call_with_this_hosts_view(cli: Any, tmp_path: Path) -> None:
    """`validate_here` is the whole of `hpcpolicy validate`: the file, its directory and what
    this host shows (a store below a user's home is refused, read from the directory)."""
    from hpcpolicy.audit.local_view import validate_here
    from hpcpolicy.errors import InvalidInput

    (tmp_path / "good").mkdir()
    (tmp_path / "bad").mkdir()
    good = make_site(tmp_path / "good")
    done = validate_here(str(good))
    printed = json.loads(cli("validate", good, "--format", "json").out)
    assert printed["warnings"] == done.warnings + done.directory_warnings
    bad = make_site(tmp_path / "bad", runtime={"storage": {
        "additional_image_stores": ["/shared/home/alice/store"]}})
    passwd = tmp_path / "bad/passwd"
    passwd.write_text(passwd.read_text().replace(":/home/alice:", ":/shared/home/alice:"))
    assert validate_here(str(bad), offline=True).policy.runtime.storage is not None
    with pytest.raises(InvalidInput) as info:
        validate_here(str(bad))
    printed = json.loads(cli("validate", bad, "--format", "json").out)
    assert printed["errors"] == [str(p) for p in info.value.problems]
    assert "below the home of alice" in printed["msg"]
