"""`hpcpolicy fleet status` through ClusterShell's real exec and ssh workers.

Nodes are node roots on this machine: ClusterShell's exec worker runs the real
`hpcpolicy node doctor --root DIR/%h` for each, or `cat`s a prepared answer (many nodes, to
exercise the fan-out and the fold); the ssh worker talks to a real sshd on 127.0.0.1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict

from apply_fixtures import write_site
from fleet_fixtures import Sshd, answers, doctor_answer, sshd
from node_fixtures import Deploy, deploy

from hpcpolicy.fleet import fold, status
from hpcpolicy.fleet.status import Raw
from hpcpolicy.node.sync import SyncOptions, sync

__all__ = ["deploy", "sshd"]  # fixtures, imported for pytest

CLI = str(Path(sys.executable).parent / "hpcpolicy")


def fleet(cli: Any, deploy: Deploy, *args: str) -> Any:
    res = cli("fleet", "status", *args, "--deploy-root", deploy.root, "--format", "json")
    res.doc = json.loads(res.out)
    assert {"changed", "failed", "msg", "current", "nodes", "generations", "behind", "failing",
            "unreachable"} <= set(res.doc), res.doc
    assert res.doc["changed"] is False
    assert res.doc["failed"] == (res.rc != 0)
    return res


def test_real_doctor_on_node_roots(cli: Any, deploy: Deploy, tmp_path: Path) -> None:
    """Three node roots synced to two generations and one never synced, asked with the real
    doctor: generations folded, behind relative to the channel, doctor's failures named."""
    nodes = tmp_path / "nodes"
    old = deploy.publish()
    for name in ("n1", "n2"):
        (nodes / name).mkdir(parents=True)
        sync(SyncOptions(str(deploy.root), str(nodes / name)))
    new = deploy.publish({"default": {"etc/subuid": b"1001:524288:65536\n"}})
    (nodes / "n3").mkdir()
    sync(SyncOptions(str(deploy.root), str(nodes / "n3")))
    (nodes / "n4").mkdir()
    res = fleet(cli, deploy, "n[1-4]", "--worker", "exec",
                "--command", f"{CLI} node doctor --root {nodes}/%h --format json")
    doc = res.doc
    assert res.rc == 1  # these bare roots lack newuidmap & co: doctor fails them
    assert doc["current"] == new
    assert doc["generations"] == {old: "n[1-2]", new: "n3"}
    assert doc["behind"] == "n[1-2,4]"
    assert doc["failing"] == "n[1-4]" and doc["unreachable"] == ""
    assert doc["nodes"]["n3"]["generation"] == new
    assert doc["nodes"]["n3"]["channel"] == "stable" and doc["nodes"]["n3"]["class"] == "default"
    assert doc["nodes"]["n4"]["generation"] is None
    assert "newuidmap" in doc["nodes"]["n1"]["msg"]


def test_thousand_nodes_fold(cli: Any, deploy: Deploy, tmp_path: Path) -> None:
    """1,000 nodes through the exec worker: folded node sets; behind alone is exit 0."""
    old = deploy.publish()
    new = deploy.publish({"default": {"etc/subuid": b"1001:524288:65536\n"}})
    canary = deploy.publish({"default": {"etc/subuid": b"1002:524288:65536\n"}},
                            channel="canary")
    docs: Dict[str, Any] = {}
    for i in range(1, 1001):
        if i <= 10:
            docs[f"c{i:04d}"] = doctor_answer(canary, channel="canary")
        elif i <= 900:
            docs[f"c{i:04d}"] = doctor_answer(new)
        else:
            docs[f"c{i:04d}"] = doctor_answer(old)
    command = answers(tmp_path / "answers", docs)
    res = fleet(cli, deploy, "c[0001-1000]", "--worker", "exec", "--command", command,
                "--fanout", "128")
    assert res.rc == 0, res.doc["msg"]
    doc = res.doc
    assert doc["current"] == new and doc["channels"]["canary"] == canary
    assert doc["generations"] == {old: "c[0901-1000]", new: "c[0011-0900]",
                                  canary: "c[0001-0010]"}
    assert doc["behind"] == "c[0901-1000]"  # canary nodes are at their own channel's
    assert doc["failing"] == "" and doc["unreachable"] == ""
    assert len(doc["nodes"]) == 1000
    assert "100 behind" in doc["msg"]


def test_garbage_timeout_and_failures_are_per_node(cli: Any, deploy: Deploy,
                                                   tmp_path: Path) -> None:
    gen = deploy.publish()
    command = answers(tmp_path / "a", {
        "g1": doctor_answer(gen),
        "g2": doctor_answer(gen, failed=True),
        "g3": "Traceback (most recent call last):\n  File ...",
        "g4": '{"changed": false}',
        "g5": "",
    })
    slow = f"if [ %h = g6 ]; then exec sleep 30; fi; {command}"
    res = fleet(cli, deploy, "g[1-6],g7", "--worker", "exec", "--command", slow,
                "--timeout", "3")
    doc = res.doc
    assert res.rc == 1
    assert doc["failing"] == "g[2-5,7]"
    assert doc["unreachable"] == "g6"
    assert doc["nodes"]["g1"]["failed"] is False
    assert "installed-files" in doc["nodes"]["g2"]["msg"]
    assert "Traceback (most recent call last):" in doc["nodes"]["g3"]["msg"]
    assert "not a node doctor answer" in doc["nodes"]["g4"]["msg"]
    assert "no such file" in doc["nodes"]["g7"]["msg"].lower()
    assert "no answer within 3 s" in doc["nodes"]["g6"]["msg"]
    text = cli("fleet", "status", "g[1-5]", "--deploy-root", deploy.root, "--worker", "exec",
               "--command", command)
    assert text.rc == 1 and "failing: g[2-5]" in text.out and "Traceback" not in text.err


def test_the_library_call_is_what_the_cli_prints(cli: Any, deploy: Deploy,
                                                 tmp_path: Path) -> None:
    """`fleet.status(...)` is the whole command: its JSON is the CLI's `--format json`, for a
    bare deploy root and for a site file naming it (a site script calls just this)."""
    old = deploy.publish()
    new = deploy.publish({"default": {"etc/subuid": b"1001:524288:65536\n"}})
    command = answers(tmp_path / "a", {"s1": doctor_answer(new), "s2": doctor_answer(old),
                                       "s3": "no json here"})
    res = fleet(cli, deploy, "s[1-3]", "--worker", "exec", "--command", command)
    lib = status("s[1-3]", deploy_root=str(deploy.root), worker="exec", command=command)
    assert res.rc == 1 and lib.failed
    assert lib.as_dict() == res.doc
    assert res.doc["behind"] == "s2" and res.doc["failing"] == "s3"
    (tmp_path / "passwd").write_text("alice:x:1001:1001::/home/alice:/bin/bash\n")
    (tmp_path / "group").write_text("containers:x:2000:alice\n")
    site = write_site(tmp_path / "site", Path(deploy.root),
                      (str(tmp_path / "passwd"), str(tmp_path / "group")), make_root=False)
    by_site = cli("fleet", "status", "s[1-3]", "--site", str(site), "--worker", "exec",
                  "--command", command, "--format", "json")
    lib = status("s[1-3]", site=str(site), worker="exec", command=command)
    assert by_site.rc == 1 and lib.as_dict()["current"] == new
    assert lib.as_dict() == json.loads(by_site.out)


def test_an_unsafe_deploy_root_is_refused_before_any_node_is_asked(
        cli: Any, deploy: Deploy, tmp_path: Path) -> None:
    deploy.publish()
    asked = tmp_path / "asked"
    deploy.root.chmod(0o777)
    try:
        res = fleet(cli, deploy, "u1", "--worker", "exec", "--command", f"touch {asked}")
    finally:
        deploy.root.chmod(0o755)
    assert res.rc == 1 and "deploy root" in res.doc["msg"], res.doc
    assert "Traceback" not in res.err and not asked.exists()


def test_bad_input_is_exit_2_never_a_traceback(cli: Any, deploy: Deploy) -> None:
    deploy.publish()
    for nodeset in ("node[1-", "node[5-2]", ""):
        res = fleet(cli, deploy, nodeset, "--worker", "exec", "--command", "true")
        assert res.rc == 2, res.doc
        assert "node set" in res.doc["msg"] and "Traceback" not in res.err
    res = fleet(cli, deploy, "n1", "--worker", "exec", "--command", "echo %z")
    assert res.rc == 2 and "--command" in res.doc["msg"]
    res = fleet(cli, deploy, "n1", "--worker", "exec", "--channel", "Bad/Name")
    assert res.rc == 2
    res = cli("fleet", "status", "n1", "--format", "json")
    assert res.rc == 2 and "--deploy-root" in json.loads(res.out)["msg"]


def test_fold_is_pure() -> None:
    """The fold alone: a node following an unpublished channel is not behind; ssh 255 is
    unreachable, another exit without JSON is failing."""
    raws = {"a1": Raw(0, json.dumps(doctor_answer("000002-aaaaaaaa")).encode()),
            "a2": Raw(0, json.dumps(doctor_answer("000001-bbbbbbbb", channel="gone")).encode()),
            "a3": Raw(255, b"", b"ssh: connect to host a3 port 22: Connection refused\n"),
            "a4": Raw(1, b"", b"bash: hpcpolicy: command not found\n")}
    result = fold(raws, {"stable": "000002-aaaaaaaa"}, worker="ssh")
    doc = result.as_dict()
    assert doc["behind"] == "" and doc["unreachable"] == "a3" and doc["failing"] == "a4"
    assert "Connection refused" in doc["nodes"]["a3"]["msg"]
    assert "command not found" in doc["nodes"]["a4"]["msg"]


def test_ssh_worker_against_a_real_sshd(cli: Any, deploy: Deploy, tmp_path: Path,
                                        sshd: Sshd) -> None:
    gen = deploy.publish()
    root = tmp_path / "n"
    root.mkdir()
    sync(SyncOptions(str(deploy.root), str(root)))
    res = fleet(cli, deploy, "localhost,nohost.invalid", "--command",
                f"{CLI} node doctor --root {root} --format json", "--timeout", "20")
    doc = res.doc
    assert doc["unreachable"] == "nohost.invalid", (doc, sshd.log.read_text())
    assert doc["nodes"]["localhost"]["generation"] == gen, doc
    assert doc["generations"] == {gen: "localhost"}
    assert res.rc == 1
    lib = status("localhost", deploy_root=str(deploy.root), command=f"cat {root}/var/lib/hpcpolicy/"
                 "installed.json", timeout=20)
    assert lib.nodes["localhost"].state == "failing"  # an answer, but not doctor's JSON
