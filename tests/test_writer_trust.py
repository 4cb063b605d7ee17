"""Writers other than apply (rollback, promote, subid) as attacks (review M3 and L2).

* A user who can create a directory (a sticky shared parent) builds a deploy root with forged
  generations and `state/`, `log/` symlinked to a victim directory; root runs
  `rollback --deploy-root` on it. Nothing may be written, least of all through the links.
* `[site.approval]` must hold whatever way the deploy root is named, and redirecting stdin
  must not turn it off; the recorded operator is never taken from $LOGNAME.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterator

import pytest
from apply_fixtures import write_directory, write_site

from hpcpolicy.deploy import approval
from hpcpolicy.deploy.changelog import read_changes
from hpcpolicy.deploy.site_record import record_path
from hpcpolicy.policy.model import Approval
from tests.conftest import CliResult
from tests.deploy_fixtures import publish, synthetic_trees, write_site_record

CliRun = Callable[..., CliResult]
NOBODY = 65534


def _as_nobody(*cmd: str) -> None:
    subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                    *cmd], check=True, timeout=60)


FORGE = r"""
import hashlib, json, os, sys
root = sys.argv[1]
for n, c in ((1, b"a\n"), (2, b"b\n")):
    name = "%06d-0000000%d" % (n, n); p = "etc/containers/policy.json"
    f = os.path.join(root, "generations", name, "tree", p)
    os.makedirs(os.path.dirname(f)); open(f, "wb").write(c); os.chmod(f, 0o644)
    e = [{"path": p, "sha256": hashlib.sha256(c).hexdigest(), "size": len(c), "mode": "0644"}]
    m = {"format": 1, "generation": name, "number": n, "created": "x", "operator": "x",
         "host": "x", "site": "x", "policy_sha256": "x", "requirements": {}, "files": e,
         "classes": {"default": {"tree": "tree", "files": e}}}
    open(os.path.join(root, "generations", name, "manifest.json"), "w").write(json.dumps(m))
os.symlink("generations/000002-00000002", os.path.join(root, "current"))
"""


SYSTEM_PYTHON = "/usr/bin/python3"  # the test venv's Python may not be readable by nobody


@pytest.fixture
def forged() -> Iterator[Dict[str, Path]]:
    """A user-made deploy root under a sticky dir; state/ and log/ point at `victim`."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip("no /usr/bin/python3 for the unprivileged steps")
    base = Path(tempfile.mkdtemp(prefix="hpcpolicy-forge-", dir="/tmp"))
    base.chmod(0o755)
    try:
        victim = base / "victim"
        victim.mkdir()
        sticky = base / "scratch"
        sticky.mkdir()
        sticky.chmod(0o1777)
        script = base / "forge.py"
        script.write_text(FORGE)
        script.chmod(0o644)
        root = sticky / "d"
        _as_nobody("sh", "-c", f"umask 022; mkdir {root} && {SYSTEM_PYTHON} {script} {root} "
                   f"&& ln -s {victim} {root}/log && ln -s {victim} {root}/state")
        yield {"root": root, "victim": victim}
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_rollback_of_a_user_made_root_without_a_record_is_refused(
        cli: CliRun, forged: Dict[str, Path]) -> None:
    res = cli("rollback", "--deploy-root", forged["root"])
    assert res.rc == 2 and "give --site SITE" in res.err
    assert list(forged["victim"].iterdir()) == []
    assert os.readlink(forged["root"] / "current") == "generations/000002-00000002"


def test_a_record_forged_by_the_user_is_not_believed(
        cli: CliRun, forged: Dict[str, Path]) -> None:
    _as_nobody("sh", "-c", f"rm {forged['root']}/state && mkdir {forged['root']}/state")
    doc = {"format": 1, "site": "x", "deploy_owner": str(NOBODY), "approval": None,
           "keep": 3, "gc_grace": 0, "signing": False}
    _as_nobody(SYSTEM_PYTHON, "-c", "import json, sys; open(sys.argv[1], 'w').write(sys.argv[2])",
               record_path(str(forged["root"])), json.dumps(doc))
    res = cli("rollback", "--deploy-root", forged["root"])
    assert res.rc == 2 and f"written by uid {NOBODY}" in res.err
    assert list(forged["victim"].iterdir()) == []


def test_symlinked_state_in_a_recorded_root_is_refused(cli: CliRun, tmp_path: Path) -> None:
    root = tmp_path / "deploy"
    publish(root, synthetic_trees(0, policy="reject"))
    publish(root, synthetic_trees(1, policy="accept"))
    write_site_record(root)
    victim = tmp_path / "victim"
    victim.mkdir()
    for name in ("state", "log"):
        os.rename(root / name, victim / name)
        os.symlink(victim / name, root / name)
        before = sorted(p.name for p in (victim / name).iterdir())
        res = cli("rollback", "--deploy-root", root)
        assert res.rc in (1, 2) and "symlink" in res.err, res.err
        assert sorted(p.name for p in (victim / name).iterdir()) == before
        os.unlink(root / name)
        os.rename(victim / name, root / name)
    res = cli("promote", "canary", "--deploy-root", root)
    assert "channel 'canary' does not exist" in res.err  # the layout is sound again


def test_symlinked_ledger_file_is_refused_by_subid_writers(cli: CliRun, tmp_path: Path) -> None:
    root = tmp_path / "deploy"
    publish(root, synthetic_trees(0))
    write_site_record(root)
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text("{}")
    os.symlink(elsewhere, root / "state" / "subid-ledger.json")
    res = cli("subid", "revoke", "bob", "--deploy-root", root)
    assert res.rc == 1 and "not a regular file (a symlink?)" in res.err
    assert elsewhere.read_text() == "{}"


# ------------------------------------------------------------------ approval everywhere


def _recorded_root(tmp_path: Path, **kw: Any) -> Path:
    root = tmp_path / "deploy"
    publish(root, synthetic_trees(0, policy="reject"))
    publish(root, synthetic_trees(1, policy="accept"))
    write_site_record(root, **kw)
    return root


def test_rollback_with_bare_root_under_recorded_approval_asks_or_refuses(
        cli: CliRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _recorded_root(tmp_path, approval=Approval("hpcpolicy-test-absent", "root"))
    current = os.readlink(root / "current")
    res = cli("rollback", "--deploy-root", root)  # stdin is not a terminal under pytest
    assert res.rc == 1 and "no terminal to ask for the password" in res.err
    res = cli("rollback", "--deploy-root", root, "--non-interactive")
    assert res.rc == 1 and "needs [site] signing_key" in res.err
    res = cli("promote", "canary", "--deploy-root", root, "--non-interactive")
    assert res.rc == 1 and "signs nothing" in res.err
    assert os.readlink(root / "current") == current
    # at a terminal, approval is asked: here it stops at the (absent) PAM service file
    monkeypatch.setattr(approval, "interactive_session", lambda: True)
    res = cli("rollback", "--deploy-root", root)
    assert res.rc == 1 and "PAM service file" in res.err and "hpcpolicy-test-absent" in res.err
    assert os.readlink(root / "current") == current


def test_ledger_commands_under_approval_refuse_non_interactive_runs(
        cli: CliRun, tmp_path: Path) -> None:
    root = _recorded_root(tmp_path, approval=Approval("hpcpolicy", "root"))
    for args in (("revoke", "bob"), ("grant", "bob"), ("reclaim", "bob"),
                 ("import", "/dev/null", "/dev/null")):
        res = cli("subid", *args, "--deploy-root", root)
        assert res.rc == 1 and "no terminal" in res.err, (args, res.err)
    assert read_changes(str(root)) == []


def test_apply_with_stdin_redirected_no_longer_skips_approval(tmp_path: Path) -> None:
    key = tmp_path / "signkey"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    d = tmp_path / "dir"
    passwd, group = write_directory(d, 2)
    site = write_site(tmp_path / "site", tmp_path / "root", (passwd, group),
                      signing_key=str(key), approval={"admin_group": "root"})

    def apply(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "hpcpolicy", "apply", str(site), *extra],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=120)

    res = apply()
    assert res.returncode == 1 and "no terminal" in res.stderr
    assert not (tmp_path / "root" / "current").exists()
    res = apply("--non-interactive")
    assert res.returncode == 0, res.stderr
    record = json.loads(Path(record_path(str(tmp_path / "root"))).read_text())
    assert record["signing"] is True and record["approval"]["admin_group"] == "root"
    assert record["deploy_owner"] == str(os.geteuid()) and record["gc_grace"] == 3600
    assert read_changes(str(tmp_path / "root"))[-1]["operator"].endswith(
        "(non-interactive, signed)")


def test_logname_does_not_name_the_operator(tmp_path: Path) -> None:
    root = tmp_path / "deploy"
    d = tmp_path / "dir"
    passwd, group = write_directory(d, 2)
    site = write_site(tmp_path / "site", root, (passwd, group))
    env = dict(os.environ, LOGNAME="mallory", USER="mallory")
    env.pop("SUDO_USER", None)
    run = [sys.executable, "-m", "hpcpolicy"]
    subprocess.run(run + ["apply", str(site)], check=True, env=env, timeout=120,
                   capture_output=True, stdin=subprocess.DEVNULL)
    subprocess.run(run + ["subid", "revoke", "user00001", "--deploy-root", str(root)],
                   check=True, env=env, timeout=120, capture_output=True)
    operators = {c["operator"] for c in read_changes(str(root))}
    assert operators and "mallory" not in " ".join(operators)
    assert approval.operator_name() in operators
