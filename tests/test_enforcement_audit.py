"""The audit's view of the enforcement settings: Apptainer limits per class (enforcing only in
setuid mode without user namespaces, and only for what they express: image files), site image
stores audited like collections, read-only binds with mounts below them named as a bypass.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Optional

import pytest
from audit_fixtures import make_policy, rule, snapshot

from hpcpolicy.audit import enforce
from hpcpolicy.audit.decide import (
    AuditDecision,
    Observation,
    PathState,
    Target,
    decide_one,
    make_context,
)
from hpcpolicy.policy.model import ApptainerLimits, Bind, Collection, NodeClass, Policy, Storage

LIMITS = ApptainerLimits(container_paths=("/c",), allow_container=("sif",))
SETUID = (("setuid", True), ("user_namespaces", False))


def _policy(local: str = "allow") -> Policy:
    base = make_policy(rules=[rule("registry.example.org/hpc")], local=local,
                       runtimes=("apptainer", "singularity", "podman"),
                       collections=[Collection("/c", "licence")])
    rt = replace(base.runtime, apptainer_limits=LIMITS,
                 storage=Storage(additional_image_stores=("/srv/store",)))
    return replace(base, runtime=rt,
                   node_classes=(NodeClass("login", "login1", SETUID),))


def _decide(policy: Policy, node_class: str, user: str, kind: str, value: str,
            state: Optional[PathState] = None) -> AuditDecision:
    snap = snapshot()
    ctx = make_context(policy, snap, node_class)
    obs = Observation({value: state} if state else {})
    return decide_one(ctx, snap.users[user], Target(kind, value, value), obs)


def _entry(d: AuditDecision, mechanism: str) -> Any:
    (found,) = [e for e in d.enforced_by if e.mechanism == mechanism]
    return found


def test_limits_are_advisory_where_user_namespaces_exist() -> None:
    d = _decide(_policy("deny"), "default", "alice", "path", "/elsewhere/x.sif")
    e = _entry(d, "apptainer")
    assert not d.allowed and e.enforces is False
    assert "advisory" in e.note and "setuid = false, user_namespaces = true" in e.note
    assert "NOT enforced" in e.note


def test_limits_enforce_a_file_they_refuse_on_a_setuid_class() -> None:
    d = _decide(_policy("deny"), "login", "alice", "path", "/elsewhere/x.sif")
    for runtime in ("apptainer", "singularity"):
        e = _entry(d, runtime)
        assert not d.allowed and e.enforces is True
        assert "outside limit container paths (/c)" in e.note


def test_limits_refusing_an_allowed_file_are_a_contradiction() -> None:
    d = _decide(_policy("allow"), "login", "alice", "path", "/elsewhere/x.sif")
    e = _entry(d, "apptainer")
    assert d.allowed and e.enforces is False and e.gap == "contradiction"
    # a member's squashfs image in the collection: allowed by the group, refused by kind
    member = _decide(_policy(), "login", "bob", "path", "/c/tool.sqsh",
                     PathState("/c/tool.sqsh", "file", 0o640, 0, 4242))
    e = _entry(member, "apptainer")
    assert e.gap == "contradiction" and "allow container squashfs = no" in e.note


def test_limits_do_not_express_per_user_decisions() -> None:
    """A non-member's SIF inside the limits' paths: they let it run for everybody."""
    d = _decide(_policy(), "login", "alice", "path", "/c/tool.sif",
                PathState("/c/tool.sif", "file", 0o640, 0, 4242))
    e = _entry(d, "apptainer")
    assert not d.allowed and e.enforces is False and "cannot tell users apart" in e.note


def test_registry_references_say_what_the_limits_decide() -> None:
    login = _entry(_decide(_policy(), "login", "alice", "reference",
                           "registry.example.org/hpc/tool:1"), "apptainer")
    assert login.enforces is False and "not registry references" in login.note
    default = _entry(_decide(_policy(), "default", "alice", "reference",
                             "registry.example.org/hpc/tool:1"), "singularity")
    assert "advisory" in default.note


def test_no_limits_keep_the_plain_no_control_entries() -> None:
    policy = replace(_policy(), runtime=replace(_policy().runtime, apptainer_limits=None))
    e = _entry(_decide(policy, "login", "alice", "path", "/elsewhere/x.sif"), "apptainer")
    assert "runs any image file the user can read" in e.note


def test_store_drift_lines() -> None:
    good = PathState("/srv/store", "dir", 0o755, 0, 0)
    assert enforce.store_drift("/srv/store", good, {}) == []
    bad = enforce.store_drift("/srv/store", PathState("/srv/store", "dir", 0o770, 5001, 0),
                              {5001: "alice"})
    assert any("owned by alice" in b for b in bad)
    assert any("group or others write" in b for b in bad)
    assert any("not every user can read" in b for b in bad)
    assert "not present" in enforce.store_drift("/srv/store", None, {})[0]


# --- the real CLI on a real store and a real submount (private mount namespace) -------------

SITE = """schema = 1
[site]
name = "audit-enforce"
deploy_root = "/srv/hpcpolicy"
runtimes = ["podman", "enroot"]
[directory.files]
passwd = "{base}/passwd"
group = "{base}/group"
[[bind]]
source = "/srv/data"
readonly = true
[images]
default = "deny"
[runtime.storage]
additional_image_stores = ["/srv/store"]
"""


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root and unshare for a private mount namespace")
def test_audit_reports_store_drift_and_a_writable_submount(tmp_path: Path) -> None:
    (tmp_path / "passwd").write_text("alice:x:5001:5001::/home/alice:/bin/sh\n")
    (tmp_path / "group").write_text("alice:x:5001:\n")
    site = tmp_path / "site.toml"
    site.write_text(SITE.format(base=tmp_path))
    script = ("set -e; mount -t tmpfs -o mode=0755 tmpfs /srv; mkdir -p /srv/store /srv/data/sub;"
              " chmod 0777 /srv/store; mount -t tmpfs tmpfs /srv/data/sub; exec \"$@\"")
    argv = [sys.executable, "-m", "hpcpolicy", "audit", str(site), "--format", "json"]
    res = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                          "sh", *argv], capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    doc: Dict[str, Any] = json.loads(res.stdout)
    by_kind = {(f["kind"], f["mechanism"]): f for f in doc["findings"]}
    store = by_kind[("drift", "image-store")]
    assert store["image"] == "/srv/store" and "0777" in store["msg"] and store["remedy"]
    for runtime in ("podman", "enroot"):
        bypass = by_kind[("bypass", runtime)]
        assert bypass["image"] == "/srv/data" and "/srv/data/sub" in bypass["msg"]
    # the same site outside the namespace: no submount, the store is not there
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    doc = json.loads(res.stdout)
    kinds = {(f["kind"], f["mechanism"]) for f in doc["findings"]}
    assert ("bypass", "podman") not in kinds
    assert any(f["mechanism"] == "image-store" and "not present" in f["msg"]
               for f in doc["findings"])


def test_readonly_bind_findings_from_mount_points() -> None:
    policy = replace(make_policy(runtimes=("podman", "enroot", "apptainer")), binds=(
        Bind("/data", "/data", readonly=True, runtimes=("podman", "enroot")),))
    found = enforce.readonly_bind_findings(policy, "default", ["/", "/data", "/data/x"])
    assert [(f["kind"], f["mechanism"]) for f in found] == [("bypass", "podman"),
                                                            ("bypass", "enroot")]
    assert enforce.readonly_bind_findings(policy, "default", ["/", "/data"]) == []


def test_old_releases_match_limit_paths_by_string_prefix() -> None:
    """Before Apptainer 1.5.1 `/c` admits `/c2/x.sif`: no enforcement is claimed for it."""
    old = _policy("deny")
    e = _entry(_decide(old, "login", "alice", "path", "/c2/x.sif"), "apptainer")
    assert e.enforces is False  # site.apptainer_version defaults to 1.3
    fixed = replace(old, site=replace(old.site, apptainer_version="1.5.1"))
    e = _entry(_decide(fixed, "login", "alice", "path", "/c2/x.sif"), "apptainer")
    assert e.enforces is True and "outside limit container paths" in e.note


def test_an_activated_ecl_refuses_sif_files_outside_its_directories() -> None:
    ecl_text = (b'activated = true\n[[execgroup]]\nmode = "whitelist"\ndirpath = "/c/signed"\n'
                b'keyfp = ["406952CC9A5CC86027C628C3C89A52B86179D0A5"]\n')
    base = _policy("deny")
    limits = replace(LIMITS, ecl="keys/ecl.toml", ecl_path="/site/keys/ecl.toml")
    policy = replace(base, runtime=replace(base.runtime, apptainer_limits=limits),
                     inputs={"/site/keys/ecl.toml": ecl_text})
    state = PathState("/c/x.sif", "file", 0o640, 0, 4242)
    e = _entry(_decide(policy, "login", "alice", "path", "/c/x.sif", state), "apptainer")
    assert e.enforces is True and "in no execgroup of the activated ECL" in e.note
    signed = PathState("/c/signed/x.sif", "file", 0o640, 0, 4242)
    e = _entry(_decide(policy, "login", "alice", "path", "/c/signed/x.sif", signed), "apptainer")
    assert e.enforces is False and "checks SIF signatures" in e.note
    # a catch-all group admits every directory: no refusal by directory
    catch_all = ecl_text.replace(b'"/c/signed"', b'""')
    policy = replace(policy, inputs={"/site/keys/ecl.toml": catch_all})
    e = _entry(_decide(policy, "login", "alice", "path", "/c/x.sif", state), "apptainer")
    assert "in no execgroup" not in e.note
