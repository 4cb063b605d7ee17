"""`hpcpolicy apply SITE` end to end: real site files, JSON shape on every path, concurrency."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict

import pytest

from hpcpolicy.deploy.changelog import read_changes
from hpcpolicy.generation.naming import channel_generation, list_generations, number_of
from hpcpolicy.generation.verify import verify_generation
from tests.apply_fixtures import ledger_ranges, subuid_ranges, write_directory, write_site
from tests.deploy_fixtures import listing

Cli = Callable[..., Any]


def as_json(result: Any) -> Dict[str, Any]:
    lines = result.out.splitlines()
    assert len(lines) == 1, result.out
    doc = json.loads(lines[0])
    assert isinstance(doc["changed"], bool) and isinstance(doc["failed"], bool)
    assert isinstance(doc["msg"], str) and "generation" in doc and "changes" in doc
    return doc


@pytest.fixture
def site(tmp_path: Path) -> Path:
    os.chmod(tmp_path, 0o755)
    files = write_directory(tmp_path / "dir", 4)
    return write_site(tmp_path / "site", tmp_path / "deploy", files)


def root_of(site: Path) -> Path:
    return site.parent.parent / "deploy"


def test_apply_json_success_then_idempotent(cli: Cli, site: Path) -> None:
    res = cli("apply", site, "--format", "json")
    doc = as_json(res)
    assert res.rc == 0 and doc["changed"] and not doc["failed"]
    assert doc["generation"].startswith("000001-") and doc["previous"] is None
    assert {"path": "etc/subuid", "action": "added"} in doc["changes"]
    assert "diff" not in doc
    again = as_json(cli("apply", site, "--format", "json"))
    assert not again["changed"] and again["generation"] == doc["generation"]
    assert again["changes"] == []
    assert list_generations(str(root_of(site))) == [doc["generation"]]


def test_apply_text_check_diff(cli: Cli, site: Path, tmp_path: Path) -> None:
    assert cli("apply", site).rc == 0
    before = listing(root_of(site))
    text = site.read_text().replace('source = "/scratch"', 'source = "/project"')
    site.write_text(text)
    res = cli("apply", site, "--check", "--diff")
    assert res.rc == 0 and res.out.startswith("would publish a new generation")
    assert "+++ b/etc/enroot/mounts.d/90-hpcpolicy.fstab" in res.out
    assert "+/project" in res.out or "/project" in res.out
    assert listing(root_of(site)) == before
    doc = as_json(cli("apply", site, "--check", "--diff", "--format", "json"))
    assert doc["changed"] and doc["check"] and doc["diff"]
    assert all({"path", "before", "after"} <= set(d) for d in doc["diff"])


def test_json_error_paths(cli: Cli, site: Path, tmp_path: Path) -> None:
    # usage error (argparse): exit 2, one JSON object
    res = cli("apply", "--format", "json")
    assert res.rc == 2 and json.loads(res.out)["failed"]
    # invalid site: exit 2, every problem listed, nothing written
    bad = tmp_path / "bad.toml"
    bad.write_text(site.read_text().replace("[site]", "[site]\nbogus = 1"))
    res = cli("apply", bad, "--format", "json")
    doc = as_json(res)
    assert res.rc == 2 and doc["failed"] and doc["generation"] is None and doc["errors"]
    assert list(root_of(site).iterdir()) == []
    # unsafe deploy root: exit 1
    os.chmod(root_of(site), 0o777)
    res = cli("apply", site, "--format", "json")
    doc = as_json(res)
    assert res.rc == 1 and "writable by group and other" in doc["msg"]
    assert doc["changes"] == [] and "Traceback" not in res.err


def test_revoke_guard_exit_1(cli: Cli, site: Path, tmp_path: Path) -> None:
    assert cli("apply", site).rc == 0
    write_directory(tmp_path / "dir", 1)  # 3 of 4 users gone: an LDAP outage look-alike
    res = cli("apply", site, "--format", "json")
    doc = as_json(res)
    assert res.rc == 1 and "--allow-revoke" in doc["msg"]
    res = cli("apply", site, "--allow-revoke", "--format", "json")
    assert res.rc == 0 and as_json(res)["changed"]


def test_lock_timeout_cli_names_holder(cli: Cli, site: Path) -> None:
    assert cli("apply", site).rc == 0
    code = ("import sys, time\nfrom hpcpolicy.deploy.lock import DeployLock\n"
            "with DeployLock(sys.argv[1], purpose='maintenance'):\n"
            "    print('in', flush=True); time.sleep(30)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(root_of(site))],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "in\n"
        site.write_text(site.read_text().replace('"/scratch"', '"/other"'))
        res = cli("apply", site, "--lock-timeout", "0.2", "--format", "json")
        doc = as_json(res)
        assert res.rc == 1 and f"pid {holder.pid}" in doc["msg"]
        assert "maintenance" in doc["msg"]
    finally:
        holder.kill()
        holder.wait()


def test_concurrent_applies_are_serialised(tmp_path: Path) -> None:
    """Five real `hpcpolicy apply` processes, five site files, one deploy root."""
    os.chmod(tmp_path, 0o755)
    root = tmp_path / "deploy"
    sites = []
    for i in range(5):
        files = write_directory(tmp_path / f"dir{i}", 3, ((f"only{i}", 50000 + i),))
        sites.append(write_site(tmp_path / f"site{i}", root, files, binds=(f"/data{i}",)))
    procs = [subprocess.Popen([sys.executable, "-m", "hpcpolicy", "apply", str(s),
                               "--allow-revoke", "--format", "json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for s in sites]
    docs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        docs.append(json.loads(out))
    assert all(d["changed"] for d in docs)
    names = list_generations(str(root))
    assert sorted(number_of(d["generation"]) for d in docs) == [1, 2, 3, 4, 5]
    assert len(names) >= 3  # keep/grace: nothing deleted within the default grace period
    current = channel_generation(str(root))
    verify_generation(str(root / "generations" / current))
    # the end state is exactly one of the sites: the last one to take the lock
    last = max(docs, key=lambda d: number_of(d["generation"]))
    assert current == last["generation"]
    winner = [d["generation"] for d in docs].index(current)
    fstab = (root / "current/tree/etc/enroot/mounts.d/90-hpcpolicy.fstab").read_text()
    assert f"/data{winner}" in fstab and all(f"/data{i} " not in fstab
                                             for i in range(5) if i != winner)
    # no ledger entry lost: every site's own user got a range, still reserved
    ledger = ledger_ranges(str(root))
    assert {50000 + i for i in range(5)} <= set(ledger)
    published = {uid for uid, _, _ in subuid_ranges(
        (root / "current/tree/etc/subuid").read_bytes())}
    assert 50000 + winner in published
    # each apply saw its predecessor: previous chains through all five
    previous = {d["previous"] for d in docs}
    assert previous == {None} | {d["generation"] for d in docs} - {current}
    assert [e["action"] for e in read_changes(str(root))] == ["apply"] * 5


# ---------------------------------------------------------------- a missing deploy root


def _tree(top: Path) -> list:
    return sorted(str(p.relative_to(top)) for p in top.rglob("*"))


def test_apply_never_creates_a_missing_deploy_root(cli: Cli, tmp_path: Path) -> None:
    """A share that is not mounted (or a mistyped path) is a missing root: exit 1, naming it,
    and nothing is created (no fresh ledger that would hand out ranges again)."""
    files = write_directory(tmp_path / "dir", 2)
    site = write_site(tmp_path / "site", tmp_path / "share" / "hpcpolicy", files, make_root=False)
    (tmp_path / "share").mkdir(mode=0o755)
    before = _tree(tmp_path)
    for extra in ((), ("--check",)):
        res = cli("apply", site, "--format", "json", *extra)
        doc = as_json(res)
        assert res.rc == 1 and doc["failed"] and doc["generation"] is None
        missing = f"deploy root {tmp_path}/share/hpcpolicy: does not exist (not mounted?)"
        assert missing in doc["msg"]
        assert "--init" in doc["msg"] and "Traceback" not in res.err
    res = cli("apply", site)  # text: the same one line on stderr
    assert res.rc == 1 and "not mounted?" in res.err and res.out == ""
    assert _tree(tmp_path) == before


def test_init_creates_the_root_and_publishes_generation_1(cli: Cli, tmp_path: Path) -> None:
    files = write_directory(tmp_path / "dir", 2)
    root = tmp_path / "share" / "hpcpolicy"
    site = write_site(tmp_path / "site", root, files, make_root=False)
    (tmp_path / "share").mkdir(mode=0o755)
    old = os.umask(0o077)  # a strict umask must not decide the root's mode
    try:
        check = cli("apply", site, "--init", "--check", "--format", "json")
        assert check.rc == 0 and as_json(check)["changed"] and not root.exists()
        res = cli("apply", site, "--init", "--format", "json")
    finally:
        os.umask(old)
    doc = as_json(res)
    assert res.rc == 0 and doc["changed"] and doc["generation"].startswith("000001-")
    st = root.stat()
    assert st.st_mode & 0o7777 == 0o755 and st.st_uid == os.geteuid()
    assert (root / "current").resolve().name == doc["generation"]
    # on an initialised root --init is a no-op: nothing new published, nothing changed
    again = cli("apply", site, "--init", "--format", "json")
    assert again.rc == 0 and not as_json(again)["changed"]
    assert sorted(p.name for p in (root / "generations").iterdir()) == [doc["generation"]]


def test_init_never_creates_missing_parents(cli: Cli, tmp_path: Path) -> None:
    files = write_directory(tmp_path / "dir", 2)
    site = write_site(tmp_path / "site", tmp_path / "share" / "hpcpolicy", files, make_root=False)
    res = cli("apply", site, "--init", "--format", "json")
    doc = as_json(res)
    assert res.rc == 1 and f"its parent {tmp_path}/share does not exist" in doc["msg"]
    assert not (tmp_path / "share").exists()


def test_subid_import_refuses_a_missing_root_unless_init(cli: Cli, tmp_path: Path) -> None:
    files = write_directory(tmp_path / "dir", 2)
    root = tmp_path / "share" / "hpcpolicy"
    site = write_site(tmp_path / "site", root, files, make_root=False)
    (tmp_path / "share").mkdir(mode=0o755)
    (tmp_path / "subuid").write_text("2000:524288:65536\n")
    (tmp_path / "subgid").write_text("2000:524288:65536\n")
    args = ("subid", "import", tmp_path / "subuid", tmp_path / "subgid", "--site", site)
    res = cli(*args)
    assert res.rc == 1 and "not mounted?" in res.err and not root.exists()
    res = cli(*args, "--init")
    assert res.rc == 0, res.err
    assert root.stat().st_mode & 0o777 == 0o755 and (root / "state/subid-ledger.json").is_file()
