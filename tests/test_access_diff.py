"""`hpcpolicy diff` and the access record of every generation, end to end through `main`:
after a rule change, a group-membership change, an access-only change and a rollback."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, Dict, List

from hpcpolicy.generation.verify import verify_generation
from tests.test_e2e_admin import as_json, edit, make_site

BIO = "registry.example.org/bio:latest"


def diff(cli: Any, site: Path, *argv: str) -> Dict[str, Any]:
    res = cli("diff", *argv, "--site", site, "--format", "json")
    assert res.rc == 0, res.err
    return as_json(res.out)


def moves(doc: Dict[str, Any]) -> List[tuple]:
    return sorted((c["image"], c["before"], c["after"], c["users"], tuple(c["sample"]))
                  for c in doc["changes"])


def test_access_record_and_diff(cli: Any, tmp_path: Path) -> None:
    site = make_site(tmp_path)
    root = tmp_path / "shared"
    assert cli("apply", site).rc == 0
    gen1 = os.readlink(root / "current").split("/")[-1]
    access = root / "generations" / gen1 / "access.json"
    st = os.lstat(access)
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_uid == os.geteuid()
    manifest = verify_generation(str(root / "generations" / gen1))
    assert manifest["access"]["path"] == "access.json"
    assert "access.json" not in {f["path"] for f in manifest["files"]}  # never installed
    doc = json.loads(access.read_text())
    assert doc["format"] == 1 and "alice" in json.dumps(doc["profiles"])

    # 1. a group-membership change alone: carol joins bio; node files stay the same
    edit(tmp_path / "group", "bio:x:2001:alice", "bio:x:2001:alice,carol")
    res = cli("apply", site, "--format", "json")
    out = as_json(res.out)
    assert res.rc == 0 and out["changed"] and out["changes"] == []
    assert [(c["image"], c["before"], c["after"], c["sample"]) for c in out["access_changes"]] \
        == [(BIO, "denied", "allowed", ["carol"])]
    assert moves(diff(cli, site)) == [(BIO, "denied", "allowed", 1, ("carol",))]
    text = cli("apply", site, "--check")
    assert "no change" in text.out  # and it is stable

    # 2. a rule change: the bio rule now covers vasp-licence too (bob); a bind changes too
    edit(site, '    "bio",\n]', '    "bio",\n    "vasp-licence",\n]')
    edit(site, 'source = "/scratch"', 'source = "/scratch2"')
    res = cli("apply", site)
    assert res.rc == 0 and "who may run what" in res.out and "bob" in res.out
    assert moves(diff(cli, site)) == [(BIO, "denied", "allowed", 1, ("bob",))]
    # FROM and TO by number: from the first generation, both changes together
    both = diff(cli, site, "1", "3")
    assert [(c["image"], c["before"], c["after"]) for c in both["changes"]] == \
        [(BIO, "denied", "allowed")] * len(both["changes"])
    assert sum(c["users"] for c in both["changes"]) == 2

    # 3. rollback (to the newest generation whose files differ: generation 2) with today's
    # directory: bob loses the bio image again, carol (still in bio) keeps it
    res = cli("rollback", "--site", site, "--format", "json")
    out = as_json(res.out)
    assert res.rc == 0, res.err
    assert [(c["image"], c["before"], c["after"], c["sample"]) for c in out["access_changes"]] \
        == [(BIO, "allowed", "denied", ["bob"])]
    assert moves(diff(cli, site)) == [(BIO, "allowed", "denied", 1, ("bob",))]
    log = [json.loads(line) for line in (root / "log/changes.jsonl").read_text().splitlines()]
    assert log[-1]["action"] == "rollback" and log[-1]["access_changes"][0]["users"] == 1
    # the audit's provenance names the current generation when the deploy root is here
    current = os.readlink(root / "current").split("/")[-1]
    audit = as_json(cli("audit", site, "--format", "json").out)
    assert audit["provenance"]["generation"].startswith(f"{current} is current")
    # the rollback needs the directory: a bare --deploy-root is a usage error
    res = cli("rollback", "2", "--deploy-root", root, "--format", "json")
    assert res.rc == 2 and "needs --site" in as_json(res.out)["msg"]


def test_diff_bad_input(cli: Any, tmp_path: Path) -> None:
    site = make_site(tmp_path)
    assert cli("apply", site).rc == 0
    edit(tmp_path / "group", "bio:x:2001:alice", "bio:x:2001:alice,carol")
    assert cli("apply", site).rc == 0
    for argv, code, needle in ((["99"], 2, "no generation '99'"),
                               (["--class", "gpu"], 2, "--class gpu"),
                               (["1", "1"], 0, "no access change")):
        res = cli("diff", *argv, "--site", site, "--format", "json")
        out = as_json(res.out)
        assert res.rc == code and needle in out["msg"], (argv, res.out, res.err)
    # a generation without access.json (published before it existed) is exit 1
    root = tmp_path / "shared"
    gen1 = sorted(os.listdir(root / "generations"))[0]
    gen = root / "generations" / gen1
    manifest = json.loads((gen / "manifest.json").read_text())
    del manifest["access"]
    (gen / "manifest.json").write_text(json.dumps(manifest, sort_keys=True, indent=1) + "\n")
    (gen / "access.json").unlink()
    res = cli("diff", "1", "--site", site, "--format", "json")
    assert res.rc == 1 and "has no access.json" in as_json(res.out)["msg"]


def test_access_only_generation_installs_nothing_on_a_node(cli: Any, tmp_path: Path) -> None:
    """A group change alone publishes a generation whose node files are the same: a node
    installs nothing, and never installs access.json."""
    site = make_site(tmp_path)
    root, node = tmp_path / "shared", tmp_path / "node"
    node.mkdir()
    assert cli("apply", site).rc == 0
    sync = ("node", "sync", "--from", root, "--root", node, "--no-reload",
            "--deploy-owner", str(os.geteuid()), "--format", "json")
    first = cli(*sync)
    assert first.rc == 0, first.err
    edit(tmp_path / "group", "bio:x:2001:alice", "bio:x:2001:alice,carol")
    res = cli("apply", site, "--format", "json")
    assert as_json(res.out)["changes"] == [] and as_json(res.out)["access_changes"]
    again = as_json(cli(*sync).out)
    assert not again["failed"] and again["changes"] == [], again
    assert again["generation"] == as_json(res.out)["generation"]
    assert not list(node.rglob("access.json"))
