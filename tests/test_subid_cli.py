"""`hpcpolicy subid ...` end to end through the CLI funnel, on a real deploy root in tmp."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

import hpcpolicy.cli.main as cli_main
from hpcpolicy.deploy.changelog import read_changes
from hpcpolicy.subid.ledger import load_ledger
from tests.conftest import REPO, CliResult
from tests.deploy_fixtures import ledger_root

C = 65536
S = 524288


@pytest.fixture(autouse=True)
def only_subid(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parse with the subid command alone, so these tests do not depend on other commands."""
    monkeypatch.setattr(cli_main, "COMMAND_MODULES", ("subid",))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return ledger_root(tmp_path, [1000, 1001, 1002])


def _json(res: CliResult) -> dict:
    lines = res.out.strip().splitlines()
    assert len(lines) == 1, res.out
    return json.loads(lines[0])


def test_needs_site_or_deploy_root(cli: Callable[..., CliResult]) -> None:
    res = cli("subid", "list", "--format", "json")
    assert res.rc == 2
    assert _json(res)["failed"] is True and "--deploy-root" in _json(res)["msg"]


def test_list_and_show(cli: Callable[..., CliResult], root: Path) -> None:
    res = cli("subid", "list", "--deploy-root", root)
    assert res.rc == 0 and "1001  u1001  589824  655359  65536  live" in res.out
    data = _json(cli("subid", "list", "--deploy-root", root, "--format", "json"))
    assert [r["uid"] for r in data["records"]] == [1000, 1001, 1002]
    assert data["failed"] is False and data["changed"] is False
    res = cli("subid", "show", "u1001", "--deploy-root", root)
    assert res.out.startswith("u1001 (uid 1001): 589824-655359 (count 65536), live")
    assert "allocated  589824-655359" in res.out
    assert cli("subid", "show", "nobody", "--deploy-root", root).rc == 2


def test_list_without_ledger(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    res = cli("subid", "list", "--deploy-root", tmp_path)
    assert res.rc == 0 and "no sub-ID ledger yet" in res.out
    (tmp_path / "generations" / "000001-aaaaaaaa").mkdir(parents=True)
    res = cli("subid", "list", "--deploy-root", tmp_path)
    assert res.rc == 1 and "restore the ledger" in res.err


def test_revoke_grant_reclaim_record_in_ledger_and_log(cli: Callable[..., CliResult],
                                                        root: Path) -> None:
    res = cli("subid", "revoke", "u1001", "--deploy-root", root, "--format", "json")
    data = _json(res)
    assert res.rc == 0 and data["changed"] is True and data["record"]["state"] == "revoked"
    assert "next `hpcpolicy apply`" in data["msg"]
    assert load_ledger(str(root), None).records[1001].state == "revoked"  # type: ignore[union-attr]
    again = cli("subid", "revoke", "u1001", "--deploy-root", root)
    assert again.rc == 2 and "already revoked" in again.err
    assert cli("subid", "reclaim", "u1000", "--deploy-root", root).rc == 2  # live
    assert cli("subid", "grant", "1001", "--deploy-root", root).rc == 0
    assert cli("subid", "revoke", "u1002", "--deploy-root", root).rc == 0
    assert cli("subid", "reclaim", "u1002", "--deploy-root", root).rc == 0
    led = load_ledger(str(root), None)
    assert led is not None and led.records[1001].state == "left"
    assert led.records[1002].state == "reclaimed" and led.records[1002].withheld
    log = read_changes(str(root))
    assert [e["action"] for e in log] == ["subid revoke", "subid grant", "subid revoke",
                                          "subid reclaim"]
    assert log[0]["user"] == "u1001" and log[0]["range"] == "589824-655359"


def test_change_waits_for_the_lock_then_fails(cli: Callable[..., CliResult], root: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from hpcpolicy.deploy.lock import DeployLock\n"
         f"with DeployLock({str(root)!r}, 5, purpose='test holder'):\n"
         "    print('held', flush=True)\n"
         "    time.sleep(30)\n"],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        start = time.monotonic()
        res = cli("subid", "revoke", "u1001", "--deploy-root", root, "--lock-timeout", "0.5")
        assert time.monotonic() - start >= 0.5
        assert res.rc == 1 and "test holder" in res.err
    finally:
        holder.kill()
        holder.wait()
    assert load_ledger(str(root), None).records[1001].state == "live"  # type: ignore[union-attr]


def test_import_all_or_nothing_then_partial(cli: Callable[..., CliResult], root: Path,
                                            tmp_path: Path) -> None:
    uid = tmp_path / "subuid"
    gid = tmp_path / "subgid"
    text = f"2000:{S + 10 * C}:{C}\nalice:{S + 11 * C}:{C}\n"
    uid.write_text(text)
    gid.write_text(text)
    res = cli("subid", "import", uid, gid, "--deploy-root", root)
    assert res.rc == 2 and "resolving names needs the directory" in res.err
    assert "nothing imported" in res.err
    assert 2000 not in load_ledger(str(root), None).records  # type: ignore[union-attr]
    data = _json(cli("subid", "import", uid, gid, "--deploy-root", root, "--partial",
                     "--format", "json"))
    assert data["adopted"] == ["2000"] and len(data["skipped"]) == 2 and data["changed"]
    led = load_ledger(str(root), None)
    assert led is not None and led.records[2000].start == S + 10 * C
    assert read_changes(str(root))[-1]["action"] == "subid import"


def test_import_needs_site_for_a_new_ledger(cli: Callable[..., CliResult],
                                            tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    (tmp_path / "new").mkdir(mode=0o755)
    res = cli("subid", "import", tmp_path / "f", tmp_path / "f", "--deploy-root",
              tmp_path / "new")
    assert res.rc == 2 and "give --site" in res.err


def test_check(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.write_text(f"1000:{S}:{C}\n")
    res = cli("subid", "check", good)
    assert res.rc == 0 and "no problems" in res.out
    bad = tmp_path / "bad"
    bad.write_text(f"# hand-edited\n1000:{S}:{C}\n1001:{S + 5}:{C}\nx:1:0\n")
    res = cli("subid", "check", bad, "--format", "json")
    data = _json(res)
    assert res.rc == 2 and data["failed"] is True and len(data["problems"]) == 3
    assert data["problems"][0] == f"{bad}: line 1: comment line (Apptainer deletes it on " \
                                  "rewrite; not every parser skips it)"
    res = cli("subid", "check", bad)
    assert res.rc == 2 and f"{bad}: line 3: 1001:{S + 5}:{C} overlaps" in res.out
    assert cli("subid", "check", tmp_path / "missing").rc == 1


def _site(tmp_path: Path, name: str = "cluster-a") -> Path:
    etc = tmp_path / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        "alice:x:1001:1001::/home/alice:/bin/sh\nbob:x:1002:1002::/home/bob:/bin/sh\n"
        "carol:x:1003:1003::/home/carol:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\nalice:x:1001:\nbob:x:1002:\ncarol:x:1003:\n"
                               "containers:x:2000:alice,bob\n")
    site = tmp_path / f"{name}.toml"
    site.write_text(
        f'schema = 1\n[site]\nname = "{name}"\ndeploy_root = "{tmp_path / "deploy"}"\n'
        f'[directory]\nsources = ["files"]\n'
        f'[directory.files]\npasswd = "{etc / "passwd"}"\ngroup = "{etc / "group"}"\n'
        f'[subid]\neligible_groups = ["containers"]\n')
    return site


def test_site_import_by_name_then_plan_keeps_ranges(cli: Callable[..., CliResult],
                                                     tmp_path: Path) -> None:
    pytest.importorskip("hpcpolicy.policy.load", reason="policy loader not built yet")
    from hpcpolicy.deploy.plan import build
    from hpcpolicy.policy.load import load

    site = _site(tmp_path)
    res = cli("subid", "list", "--site", site)
    assert res.rc == 1 and "does not exist" in res.err  # a wrong path is not an empty ledger
    (tmp_path / "deploy").mkdir()
    res = cli("subid", "list", "--site", site)
    assert res.rc == 0 and "no sub-ID ledger yet" in res.out
    files = tmp_path / "legacy"
    files.write_text(f"alice:{S + 7 * C}:{C}\ncarol:{S + 9 * C}:{C}\n")
    data = _json(cli("subid", "import", files, files, "--site", site, "--format", "json"))
    assert data["adopted"] == ["alice", "carol"] and data["skipped"] == []
    res = cli("subid", "show", "carol", "--site", site)
    assert res.rc == 0 and "left" in res.out  # not in `containers`: kept, no line
    plan = build(load(str(site)))
    assert plan.trees["default"]["etc/subuid"] == (
        f"1002:{S}:{C}\n1001:{S + 7 * C}:{C}\n".encode())
    other = _site(tmp_path, "cluster-b")
    res = cli("subid", "list", "--site", other)
    assert res.rc == 1 and "ledger of site 'cluster-a', not 'cluster-b'" in res.err
    clash = tmp_path / "clash"
    clash.write_text(f"1:{S + 7 * C}:{C}\n")
    res = cli("subid", "check", clash, "--site", site)
    assert res.rc == 0  # no real id inside
    clash.write_text(f"x:1000:{C}\n")
    res = cli("subid", "check", clash, "--site", site)
    assert res.rc == 2 and "contains 4 real id(s), e.g. 1001" in res.out


def test_apply_publishes_revoke_grant_and_guards_mass_withdrawal(
        cli: Callable[..., CliResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("hpcpolicy.policy.load", reason="policy loader not built yet")
    monkeypatch.setattr(cli_main, "COMMAND_MODULES", ("subid", "apply"))
    site = _site(tmp_path)
    (tmp_path / "deploy").mkdir(mode=0o755)
    subuid = tmp_path / "deploy" / "current" / "tree" / "etc" / "subuid"
    assert cli("apply", site).rc == 0
    first = subuid.read_text()
    assert first == f"1001:{S}:{C}\n1002:{S + C}:{C}\n"
    assert cli("subid", "revoke", "bob", "--site", site).rc == 0
    assert cli("apply", site).rc == 0
    assert subuid.read_text() == f"1001:{S}:{C}\n"
    assert cli("subid", "grant", "bob", "--site", site).rc == 0
    assert cli("apply", site).rc == 0
    assert subuid.read_text() == first  # same range back
    group = tmp_path / "etc" / "group"
    group.write_text(group.read_text().replace("containers:x:2000:alice,bob",
                                               "containers:x:2000:"))
    res = cli("apply", site)
    assert res.rc == 1 and "withdraw the sub-ID ranges of 2 of 2 users" in res.err
    assert subuid.read_text() == first  # nothing published
    assert cli("apply", site, "--allow-revoke").rc == 0
    assert subuid.read_text() == ""
