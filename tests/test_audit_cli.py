"""`hpcpolicy audit` end to end through `cli.main.main` with the demo site (etc/demo)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from hpcpolicy.cli.main import main

DEMO = Path(__file__).resolve().parent.parent / "etc" / "demo" / "site.toml"
TOP_KEYS = {"changed", "failed", "msg", "decisions", "summary", "site", "class"}
REPORT_KEYS = {"changed", "failed", "msg", "summary", "site", "class", "profiles", "images",
               "matrix", "findings", "legend", "provenance"}
DECISION_KEYS = {"user", "image", "allowed", "rule", "reason", "enforced_by", "kind", "class",
                 "node_allowed", "notes", "drift"}


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Tuple[int, str, str]:
    rc = main(["audit", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def as_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Tuple[int, Dict[str, Any]]:
    rc, out, _ = cli(capsys, *argv, "--format", "json")
    lines = out.splitlines()
    assert len(lines) == 1  # exactly one JSON object on every path
    return rc, json.loads(lines[0])


def test_whole_site_json(capsys: pytest.CaptureFixture[str]) -> None:
    """The default report is by access profile: summary, findings, profiles, matrix, legend."""
    rc, doc = as_json(capsys, str(DEMO))
    assert rc == 0 and set(doc) == REPORT_KEYS
    assert (doc["changed"], doc["failed"], doc["site"], doc["class"]) == (False, False, "demo",
                                                                         "default")
    assert set(doc["summary"]) >= {"users", "profiles", "images", "allowed", "denied",
                                   "unenforced_denials"}
    # dave is disabled (nologin): a profile of his own, not eligible
    groups = {tuple(p["groups"]) + (p["eligible"],): p["sample"] for p in doc["profiles"]}
    assert groups == {(True,): ["carol", "erin", "svc-backup"], ("bio", True): ["alice"],
                      ("vasp-licence", True): ["bob"], (False,): ["dave"]}
    assert all("members" not in p for p in doc["profiles"])
    images = [i["image"] for i in doc["images"]]
    assert images == [
        "registry.example.org/hpc:latest", "registry.example.org/hpc/experimental:latest",
        "registry.example.org/bio:latest", "docker.io/library/example:latest",
        "unlisted.example.invalid/example:latest", "/shared/containers/vasp",
    ]
    by_id = {p["id"]: p for p in doc["profiles"]}
    cells = {(m["image"], by_id[m["profile"]]["sample"][0]): m for m in doc["matrix"]}
    assert len(doc["matrix"]) == len(images) * len(doc["profiles"])
    assert cells[("registry.example.org/bio:latest", "alice")]["allowed"]
    bob = cells[("registry.example.org/bio:latest", "bob")]
    assert not bob["allowed"]
    podman = [e for e in bob["enforced_by"] if e["mechanism"] == "containers-policy.json"][0]
    assert podman["enforces"] is False and podman["note"] in doc["legend"]
    assert "NOT enforced" in doc["legend"][podman["note"]]
    kinds = [(f["kind"], f["image"]) for f in doc["findings"]]
    assert kinds[0] == ("unenforced-denial", "registry.example.org/bio:latest")
    assert ("bypass", "unlisted.example.invalid/example:latest") in kinds
    first = doc["findings"][0]
    assert first["users"] == 5 and len(first["profiles"]) == 3 and first["remedy"]
    bypass = [f for f in doc["findings"] if f["kind"] == "bypass"][0]
    assert bypass["remedy"].startswith('set images.local_transports = "deny"')
    rc, doc = as_json(capsys, str(DEMO), "--users")
    assert {tuple(p["members"]) for p in doc["profiles"]} == {
        ("carol", "erin", "svc-backup"), ("alice",), ("bob",), ("dave",)}


def test_decisions_are_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    """--decisions: the whole cross product, one decision object per line, names right."""
    rc, out, _ = cli(capsys, str(DEMO), "--decisions", "--format", "json")
    lines = [json.loads(line) for line in out.splitlines()]
    assert rc == 0 and len(lines) == 6 * 6 and all(set(d) == DECISION_KEYS for d in lines)
    vasp = {d["user"]: d for d in lines if d["kind"] == "collection"}
    assert vasp["bob"]["allowed"] and "bob is in group vasp-licence" in vasp["bob"]["reason"]
    assert "carol is not a member" in vasp["carol"]["reason"]
    assert any("not counted" in n for n in vasp["dave"]["notes"])
    rc, out, err = cli(capsys, str(DEMO), "--decisions")
    assert rc == 2 and "needs --format json" in err


def test_who_may_run_an_image(capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc = as_json(capsys, str(DEMO), "--image", "registry.example.org/bio/blast:2.14")
    assert rc == 0 and doc["msg"] == ("registry.example.org/bio/blast:2.14: 1 of 6 users may "
                                      "run it (1 of 4 access profiles)")
    assert [m["allowed"] for m in doc["matrix"]].count(True) == 1
    rc, out, _ = cli(capsys, str(DEMO), "--image", "registry.example.org/bio/blast:2.14")
    assert rc == 0 and out.index("Findings (1)") < out.index("May run it: 1 users")
    assert "  bio: 1 users (e.g. alice)" in out and "May not run it: 5 users" in out


def test_explain_json_is_one_decision(capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc = as_json(capsys, str(DEMO), "--explain", "--user", "carol", "--image",
                      "registry.example.org/bio/blast:2.14")
    assert rc == 0 and set(doc) == DECISION_KEYS | {"changed", "failed", "msg"}
    assert doc["user"] == "carol" and doc["image"] == "registry.example.org/bio/blast:2.14"
    assert doc["allowed"] is False and doc["rule"] == "default"
    assert [e["mechanism"] for e in doc["enforced_by"]] == ["containers-policy.json",
                                                            "apptainer", "enroot"]
    assert doc["msg"] == "carol may not run registry.example.org/bio/blast:2.14 (default)"


def test_explain_text_and_short_name(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = cli(capsys, str(DEMO), "--explain", "--user", "alice", "--image", "ubuntu")
    assert rc == 0
    assert "image:   docker.io/library/ubuntu:latest" in out and "verdict: ALLOWED" in out
    assert "short name 'ubuntu'" in out


def test_filters_and_formats(capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc = as_json(capsys, str(DEMO), "--group", "bio", "--image", "registry.example.org/bio")
    assert rc == 0 and [p["sample"] for p in doc["profiles"]] == [["alice"]]
    rc, doc = as_json(capsys, str(DEMO), "--user", "bob")
    assert rc == 0 and set(doc) == TOP_KEYS and {d["user"] for d in doc["decisions"]} == {"bob"}
    rc, out, _ = cli(capsys, str(DEMO), "--user", "bob", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rc == 0 and rows and {r["user"] for r in rows} == {"bob"}
    rc, out, _ = cli(capsys, str(DEMO), "--user", "bob", "--format", "html")
    parser = HTMLParser()
    parser.feed(out)
    assert rc == 0 and out.startswith("<!DOCTYPE html>") and out.rstrip().endswith("</html>")
    rc, out, _ = cli(capsys, str(DEMO), "--image", "/shared/containers/vasp/vasp.sif",
                     "--class", "default")
    assert rc == 0 and "/shared/containers/vasp/vasp.sif" in out and "Findings" in out


def test_image_file_outside_collections(capsys: pytest.CaptureFixture[str],
                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mine.sif").write_bytes(b"SIF")
    os.chmod(tmp_path / "mine.sif", 0o600)
    monkeypatch.chdir(tmp_path)
    rc, doc = as_json(capsys, str(DEMO), "--explain", "--user", "carol", "--image", "./mine.sif")
    assert rc == 0 and doc["image"] == str(tmp_path / "mine.sif")
    assert doc["kind"] == "local" and doc["allowed"] and doc["rule"] == "images.local_transports"
    assert any("mode 0600" in n for n in doc["notes"])


@pytest.mark.parametrize("argv,needle", [
    (["--user", "zed"], "--user zed: no such user in the directory (files)"),
    (["--group", "nope"], "--group nope: no such group"),
    (["--image", "Bad/Ref"], "--image Bad/Ref: invalid reference"),
    (["--image", "library://x/y"], "--image library://x/y: invalid image"),
    (["--class", "gpu"], "--class gpu: not a node class"),
    (["--explain", "--user", "bob"], "audit --explain needs --user U and --image REF"),
    (["--explain", "--user", "bob", "--image", "x", "--group", "bio"], "not a member of"),
    (["--format", "yaml"], "invalid choice"),
])  # fmt: skip
def test_invalid_arguments_exit_2(capsys: pytest.CaptureFixture[str], argv: List[str],
                                  needle: str) -> None:
    rc, out, err = cli(capsys, str(DEMO), *argv)
    assert rc == 2 and out == "" and needle in err
    if "--format" not in argv:  # (argparse's own errors also print the usage first)
        assert err.startswith("hpcpolicy: ")
        rc, doc = as_json(capsys, str(DEMO), *argv)
        assert rc == 2 and doc["failed"] is True and needle in doc["msg"]


def site_copy(tmp_path: Path) -> Path:
    for name in ("site.toml", "passwd", "group"):
        shutil.copy(DEMO.parent / name, tmp_path / name)
    return tmp_path / "site.toml"


def test_unreadable_directory_exits_1(capsys: pytest.CaptureFixture[str],
                                      tmp_path: Path) -> None:
    site = site_copy(tmp_path)
    (tmp_path / "passwd").unlink()
    rc, doc = as_json(capsys, str(site))
    assert rc == 1 and doc["failed"] and "does not exist" in doc["msg"]


def test_invalid_site_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    site = site_copy(tmp_path)
    site.write_text(site.read_text().replace('group = "vasp-licence"', 'group = "no-such"'))
    rc, out, err = cli(capsys, str(site))
    assert rc == 2 and "images.collection[1].group: group 'no-such' not found" in err


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown to the licence gid")
def test_collection_drift_is_data_not_failure(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path) -> None:
    site = site_copy(tmp_path)
    coll = tmp_path / "vasp"
    coll.mkdir()
    (coll / "vasp.sif").write_bytes(b"SIF")
    os.chown(coll, 0, 2002)  # vasp-licence in etc/demo/group
    os.chmod(coll, 0o755)
    os.chmod(coll / "vasp.sif", 0o644)
    site.write_text(site.read_text().replace("/shared/containers/vasp", str(coll)))
    rc, doc = as_json(capsys, str(site), "--image", str(coll))
    assert rc == 0 and not doc["failed"]
    gap = [f for f in doc["findings"] if f["kind"] == "unenforced-denial"][0]
    assert gap["mechanism"] == "file-permissions" and gap["users"] == 5  # dave (disabled) too
    assert gap["remedy"] == f"chgrp -R vasp-licence {coll} && chmod -R o-rwx {coll}"
    drift = [f for f in doc["findings"] if f["kind"] == "drift"][0]
    assert f"{coll}/vasp.sif: group owner root (gid 0), policy: vasp-licence (gid 2002)" in \
        drift["msg"]
    assert doc["summary"]["unenforced_denials"] == 5
