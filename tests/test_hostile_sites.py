"""Malformed and malicious site files: each is refused (exit 2) at its exact key path.

Every case runs through the real CLI twice, `validate --offline` and `render --out DIR`: exit 2,
the message names the key path, no traceback, one line per problem, and DIR is never created.
"""

from __future__ import annotations

import copy
import json
import string
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple, Union

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpcpolicy.errors import InvalidInput
from hpcpolicy.policy.load import load_text

BASE: Dict[str, Any] = {
    "schema": 1,
    "site": {"name": "hostile", "deploy_root": "/srv/hpcpolicy"},
    "directory": {"sources": ["files"]},
    "bind": [{"source": "/scratch"}],
    "images": {"rule": [{"scope": "registry.example.org/hpc", "action": "allow"}]},
    "runtime": {},
}
LDAP = {"uri": ["ldaps://ldap.example.org"], "user_base": "ou=people,dc=x",
        "group_base": "ou=groups,dc=x"}

Mutation = Callable[[Dict[str, Any]], None]


def put(dotted: str, value: Any) -> Mutation:
    """Set `a.b.c` (integers index arrays, 0-based here) in the site dict."""

    def mutate(site: Dict[str, Any]) -> None:
        keys: List[Union[str, int]] = [int(k) if k.isdigit() else k for k in dotted.split(".")]
        node: Any = site
        for key in keys[:-1]:
            if isinstance(key, str) and key not in node:
                node[key] = {}
            node = node[key]
        node[keys[-1]] = value

    return mutate


def drop(key: str) -> Mutation:
    def mutate(site: Dict[str, Any]) -> None:
        del site[key]

    return mutate


def both(*mutations: Mutation) -> Mutation:
    def mutate(site: Dict[str, Any]) -> None:
        for m in mutations:
            m(site)

    return mutate


def binds(*tables: Dict[str, Any]) -> Mutation:
    return put("bind", list(tables))


def rules(*tables: Dict[str, Any]) -> Mutation:
    return put("images.rule", list(tables))


def ldap(**over: Any) -> Mutation:
    return both(put("directory.sources", ["ldap"]), put("directory.ldap", {**LDAP, **over}))


R = "registry.example.org/hpc"
CASES: List[Tuple[str, Union[Mutation, str, bytes], str]] = [
    # typos at every level
    ("typo-top", put("sites", {}), "sites"),
    ("typo-site", put("site.keepp", 3), "site.keepp"),
    ("typo-approval", put("site.approval", {"pam_servce": "x"}), "site.approval.pam_servce"),
    ("typo-directory", put("directory.min_uidd", 5), "directory.min_uidd"),
    ("typo-files", put("directory.files", {"paswd": "/etc/passwd"}), "directory.files.paswd"),
    ("typo-ldap", ldap(user_filtr="(a=b)"), "directory.ldap.user_filtr"),
    ("typo-ldap-attr", ldap(attributes={"nam": "uid"}), "directory.ldap.attributes.nam"),
    ("typo-subid", put("subid", {"strat": "uid"}), "subid.strat"),
    ("typo-bind", binds({"source": "/s", "tagret": "/t"}), "bind[1].tagret"),
    ("typo-rule", rules({"scope": R, "acton": "allow"}), "images.rule[1].acton"),
    ("typo-collection", put("images.collection", [{"path": "/c", "grop": "g"}]),
     "images.collection[1].grop"),
    ("typo-runtime", put("runtime.mount_hom", True), "runtime.mount_hom"),
    ("typo-node-class", put("node_class", [{"name": "gpu", "node": "g1"}]), "node_class[1].node"),
    ("misplaced-key", put("subid.min_uid", 1000), "subid.min_uid"),
    ("password-literal", ldap(bind_dn="cn=a,dc=x", bind_password="hunter2"),
     "directory.ldap.bind_password"),
    # wrong types
    ("bool-for-int", put("site.keep", True), "site.keep"),
    ("int-for-bool", put("runtime.setuid", 1), "runtime.setuid"),
    ("float-for-int", put("subid.count", 65536.0), "subid.count"),
    ("string-for-int", put("subid.start", "524288"), "subid.start"),
    ("nan", put("subid.max_revoke", float("nan")), "subid.max_revoke"),
    ("inf", put("subid.max_revoke", float("inf")), "subid.max_revoke"),
    ("max-revoke-range", put("subid.max_revoke", 1.5), "subid.max_revoke"),
    ("bool-for-string", put("images.local_transports", True), "images.local_transports"),
    ("bind-not-array", put("bind", {"source": "/s"}), "bind"),
    ("runtimes-not-array", put("site.runtimes", "podman"), "site.runtimes"),
    # injection in paths
    ("newline-source", binds({"source": "/scratch\n/etc"}), "bind[1].source"),
    ("nul-target", binds({"source": "/s", "target": "/t\x00x"}), "bind[1].target"),
    ("comma-source", binds({"source": "/a,/etc"}), "bind[1].source"),
    ("colon-target", binds({"source": "/s", "target": "/t:/etc"}), "bind[1].target"),
    ("hash-source", binds({"source": "/s#x"}), "bind[1].source"),
    ("quote-target", binds({"source": "/s", "target": '/t"x'}), "bind[1].target"),
    ("envsubst-source", binds({"source": "/home/${USER}"}), "bind[1].source"),
    ("space-source", binds({"source": "/my scratch"}), "bind[1].source"),
    ("nbsp-source", binds({"source": "/my\u00a0scratch"}), "bind[1].source"),
    ("del-source", binds({"source": "/s\x7f"}), "bind[1].source"),
    ("dotdot", binds({"source": "/scratch/../etc"}), "bind[1].source"),
    ("double-slash", binds({"source": "/s", "target": "/a//b"}), "bind[1].target"),
    ("trailing-slash", binds({"source": "/scratch/"}), "bind[1].source"),
    ("relative", binds({"source": "scratch"}), "bind[1].source"),
    ("dot-component", binds({"source": "/a/./b"}), "bind[1].source"),
    ("deploy-root-relative", put("site.deploy_root", "srv/x"), "site.deploy_root"),
    ("signing-key-relative", put("site.signing_key", "key"), "site.signing_key"),
    ("collection-nested", put("images.collection", [{"path": "/c", "group": "g"},
                                                     {"path": "/c/d", "group": "h"}]),
     "images.collection[2].path"),
    ("collection-relative", put("images.collection", [{"path": "c", "group": "g"}]),
     "images.collection[1].path"),
    # forbidden targets
    ("target-etc", binds({"source": "/s", "target": "/etc"}), "bind[1].target"),
    ("target-root", binds({"source": "/s", "target": "/"}), "bind[1].target"),
    ("target-passwd", binds({"source": "/s", "target": "/etc/passwd"}), "bind[1].target"),
    ("target-proc-x", binds({"source": "/s", "target": "/proc/x"}), "bind[1].target"),
    ("target-sys", binds({"source": "/s", "target": "/sys"}), "bind[1].target"),
    ("target-dev-shm", binds({"source": "/s", "target": "/dev/shm"}), "bind[1].target"),
    ("source-as-target-proc", binds({"source": "/proc"}), "bind[1].source"),
    ("duplicate-target", binds({"source": "/a", "target": "/x"}, {"source": "/b", "target": "/x"}),
     "bind[2].target"),
    # injection in names
    ("newline-site-name", put("site.name", "a\nb"), "site.name"),
    ("site-name-upper", put("site.name", "Cluster"), "site.name"),
    ("group-newline", put("subid.eligible_groups", ["bio\nroot"]), "subid.eligible_groups[1]"),
    ("user-colon", put("subid.exclude_users", ["a:0:99"]), "subid.exclude_users[1]"),
    ("numeric-user", put("subid.exclude_users", ["1000"]), "subid.exclude_users[1]"),
    ("admin-group-space", put("site.approval", {"admin_group": "hpc admin"}),
     "site.approval.admin_group"),
    ("quoted-key-newline", put("site.na\nme", "x"), 'site."na\\nme"'),
    # scopes
    ("scope-newline", rules({"scope": R + "\nx", "action": "allow"}), "images.rule[1].scope"),
    ("scope-url", rules({"scope": "http://x", "action": "allow"}), "images.rule[1].scope"),
    ("scope-upper", rules({"scope": "Docker.IO/Lib", "action": "allow"}), "images.rule[1].scope"),
    ("scope-port", rules({"scope": "registry:99999", "action": "allow"}), "images.rule[1].scope"),
    ("scope-empty", rules({"scope": "", "action": "allow"}), "images.rule[1].scope"),
    ("scope-quote", rules({"scope": R + '"', "action": "allow"}), "images.rule[1].scope"),
    ("scope-dup", rules({"scope": R, "action": "allow"}, {"scope": R, "action": "deny"}),
     "images.rule[2].scope"),
    ("scope-dup-groups", rules({"scope": R, "action": "allow", "groups": ["a", "b"]},
                               {"scope": R, "action": "deny", "groups": ["b", "a"]}),
     "images.rule[2].scope"),
    ("signed-and-groups", rules({"scope": R, "action": "allow", "signed_by": "k.gpg"},
                                {"scope": R, "action": "allow", "groups": ["bio"]}),
     "images.rule[2]"),
    ("signed-deny", rules({"scope": R, "action": "deny", "signed_by": "k.gpg"}),
     "images.rule[1].signed_by"),
    ("keyring-missing", rules({"scope": R, "action": "allow", "signed_by": "absent.gpg"}),
     "images.rule[1].signed_by"),
    ("action-bad", rules({"scope": R, "action": "permit"}), "images.rule[1].action"),
    ("default-bad", put("images.default", "alow"), "images.default"),
    ("groups-empty", rules({"scope": R, "action": "allow", "groups": []}),
     "images.rule[1].groups"),
    ("lookaside-javascript", rules({"scope": R, "action": "allow", "signed_by": "k",
                                    "lookaside": "javascript:x"}), "images.rule[1].lookaside"),
    # runtimes and runtime capabilities
    ("unknown-runtime", put("site.runtimes", ["apptainer", "docker"]), "site.runtimes[2]"),
    ("runtimes-empty", put("site.runtimes", []), "site.runtimes"),
    ("runtimes-dup", put("site.runtimes", ["podman", "podman"]), "site.runtimes[2]"),
    ("bind-runtime-unknown", binds({"source": "/s", "runtimes": ["docker"]}),
     "bind[1].runtimes[1]"),
    ("bind-runtime-not-in-site", binds({"source": "/s", "runtimes": ["singularity"]}),
     "bind[1].runtimes[1]"),
    ("readonly-apptainer", binds({"source": "/s", "readonly": True}), "bind[1].readonly"),
    ("optional-podman", binds({"source": "/s", "required": False, "runtimes": ["podman"]}),
     "bind[1].required"),
    ("fakeroot-no-subid", put("subid.enabled", False), "runtime.fakeroot"),
    ("count-small-apptainer", put("subid.count", 1000), "subid.count"),
    ("fakeroot-no-userns", put("runtime.user_namespaces", False), "runtime.fakeroot"),
    ("max-userns-negative", put("runtime.max_user_namespaces", -1), "runtime.max_user_namespaces"),
    ("typed-key-in-passthrough", put("runtime.apptainer", {"mount home": "no"}),
     'runtime.apptainer."mount home"'),
    ("setuid-in-passthrough", put("runtime.singularity", {"allow setuid": "yes"}),
     'runtime.singularity."allow setuid"'),
    ("passthrough-newline", put("runtime.apptainer", {"enable overlay": "try\nallow setuid = yes"}),
     'runtime.apptainer."enable overlay"'),
    ("passthrough-hash", put("runtime.apptainer", {"enable overlay": "try # x"}),
     'runtime.apptainer."enable overlay"'),
    ("passthrough-comma", put("runtime.apptainer", {"enable overlay": "try,no"}),
     'runtime.apptainer."enable overlay"'),
    ("passthrough-unknown", put("runtime.apptainer", {"allow setuidd": "no"}),
     'runtime.apptainer."allow setuidd"'),
    ("passthrough-bind-path", put("runtime.apptainer", {"bind path": "/etc"}),
     'runtime.apptainer."bind path"'),
    ("passthrough-float", put("runtime.apptainer", {"max loop devices": 1.5}),
     'runtime.apptainer."max loop devices"'),
    ("enroot-shell", put("runtime.enroot", {"ENROOT_ROOTFS_WRITABLE": "yes; rm -rf /"}),
     "runtime.enroot.ENROOT_ROOTFS_WRITABLE"),
    ("enroot-unknown", put("runtime.enroot", {"ENROOT_BOGUS": "x"}), "runtime.enroot.ENROOT_BOGUS"),
    ("apptainer-version", put("site.apptainer_version", "0.1"), "site.apptainer_version"),
    # node classes
    ("nodeset-bad", put("node_class", [{"name": "gpu", "nodes": "gpu[001-"}]),
     "node_class[1].nodes"),
    ("nodeset-huge", put("node_class", [{"name": "gpu", "nodes": "n[1-100000000]"}]),
     "node_class[1].nodes"),
    ("nodeset-group", put("node_class", [{"name": "gpu", "nodes": "@gpus"}]),
     "node_class[1].nodes"),
    ("class-default", put("node_class", [{"name": "default", "nodes": "n1"}]),
     "node_class[1].name"),
    ("class-dup", put("node_class", [{"name": "g", "nodes": "n1"}, {"name": "g", "nodes": "n2"}]),
     "node_class[2].name"),
    ("class-unknown", binds({"source": "/s", "classes": ["gpu"]}), "bind[1].classes[1]"),
    # schema and structure
    ("schema-2", put("schema", 2), "schema"),
    ("schema-true", put("schema", True), "schema"),
    ("schema-missing", drop("schema"), "schema"),
    ("site-missing", drop("site"), "site"),
    ("site-name-missing", put("site", {"deploy_root": "/srv/x"}), "site.name"),
    # sub-ID space
    ("end-before-start", put("subid", {"start": 2000000, "end": 1000000}), "subid.end"),
    ("end-2^32-1", put("subid.end", 2**32 - 1), "subid.end"),
    ("end-over-2^32", put("subid.end", 2**32 + 5), "subid.end"),
    ("count-zero", put("subid.count", 0), "subid.count"),
    ("count-bigger-than-space", put("subid", {"start": 100000, "end": 150000}), "subid.count"),
    ("reserved-straddles", put("subid.reserved", [[100000, 600000]]), "subid.reserved[1]"),
    ("reserved-overlap", put("subid.reserved", [[600000, 700000], [650000, 800000]]),
     "subid.reserved[2]"),
    ("reserved-reversed", put("subid.reserved", [[700000, 600000]]), "subid.reserved[1]"),
    ("reserved-not-pair", put("subid.reserved", [[1, 2, 3]]), "subid.reserved[1]"),
    ("reserved-fills-space", put("subid.reserved", [[524288, 1879000000]]), "subid.reserved"),
    ("uid-overflow", both(put("subid.strategy", "uid"), put("directory.max_uid", 10**6)),
     "subid.strategy"),
    ("max-uid-below-min", put("directory.max_uid", 10), "directory.max_uid"),
    # directory and LDAP
    ("sources-dup", put("directory.sources", ["files", "files"]), "directory.sources[2]"),
    ("sources-empty", put("directory.sources", []), "directory.sources"),
    ("sources-unknown", put("directory.sources", ["nis"]), "directory.sources[1]"),
    ("ldap-missing", put("directory.sources", ["ldap"]), "directory.ldap"),
    ("ldap-uri-http", ldap(uri=["http://ldap.example.org"]), "directory.ldap.uri[1]"),
    ("ldap-uri-empty", ldap(uri=[]), "directory.ldap.uri"),
    ("ldap-uri-newline", ldap(uri=["ldap://a\nb"]), "directory.ldap.uri[1]"),
    ("ldap-member-attr", ldap(member_attribute="members"), "directory.ldap.member_attribute"),
    ("ldap-page-size", ldap(page_size=0), "directory.ldap.page_size"),
    ("ldap-timeout", ldap(timeout=0), "directory.ldap.timeout"),
    ("ldap-password-file-relative", ldap(bind_dn="cn=a,dc=x", bind_password_file="secret"),
     "directory.ldap.bind_password_file"),
    ("ldap-filter-unbalanced", ldap(user_filter="(uid=*"), "directory.ldap.user_filter"),
    ("ldap-starttls-ldaps", ldap(start_tls=True), "directory.ldap.start_tls"),
    ("keep-1", put("site.keep", 1), "site.keep"),
    ("gc-grace-negative", put("site.gc_grace", -1), "site.gc_grace"),
    # raw files
    ("syntax", "schema = 1\n[site]\nname = \n", "site.toml:3:8"),
    ("deep-nesting", "schema = 1\nx = " + "[" * 100000 + "]" * 100000 + "\n", "site.toml"),
    ("not-utf8", b"schema = 1\n[site]\nname = \"\xc3\x28\"\n", "site.toml:3:9"),
    ("empty-file", "", "schema"),
]


def _write(tmp_path: Path, case: Union[Mutation, str, bytes]) -> Path:
    site = tmp_path / "site.toml"
    if isinstance(case, bytes):
        site.write_bytes(case)
    elif isinstance(case, str):
        site.write_text(case)
    else:
        doc = copy.deepcopy(BASE)
        case(doc)
        site.write_text(tomli_w.dumps(doc))
    return site


def test_base_site_is_valid(tmp_path: Path, cli: Any) -> None:
    """The cases differ from a valid file by their mistake only."""
    site = _write(tmp_path, lambda d: None)
    assert cli("validate", site, "--offline").rc == 0


def test_enough_cases() -> None:
    assert len(CASES) >= 50
    assert len({name for name, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize("name, case, where", CASES, ids=[c[0] for c in CASES])
def test_hostile_site_refused(tmp_path: Path, cli: Any, name: str,
                              case: Union[Mutation, str, bytes], where: str) -> None:
    site = _write(tmp_path, case)
    # raw-file cases name a location (FILE:LINE:COL) instead of a key path
    prefix = where.replace("site.toml", str(site), 1) if where.startswith("site.toml") else \
        f"{site}: {where}"
    out = tmp_path / "out"
    for args in (["validate", site, "--offline"], ["render", site, "--out", out]):
        res = cli(*args)
        assert res.rc == 2, (args[0], res.err)
        assert "Traceback" not in res.err
        assert f"hpcpolicy: {prefix}" in res.err, res.err
        assert all(line.startswith("hpcpolicy: ") for line in res.err.splitlines()), res.err
        assert not out.exists()
    res = cli("validate", site, "--offline", "--format", "json")
    doc = json.loads(res.out)
    assert doc["failed"] is True and any(e.startswith(prefix) for e in doc["errors"])


def test_procfs_is_not_proc(tmp_path: Path, cli: Any) -> None:
    """Targets compare by path component, never by string prefix."""
    site = _write(tmp_path, binds({"source": "/procfs"}, {"source": "/s", "target": "/sysadmin"},
                                  {"source": "/d", "target": "/devel"},
                                  {"source": "/e", "target": "/etc/hpc"}))
    assert cli("validate", site, "--offline").rc == 0


PATHISH = st.text(alphabet=string.ascii_letters + "/.,:#\"' \n\t\x00\\-_$é", max_size=24)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=st.one_of(PATHISH, st.text(max_size=24)),
       target=st.one_of(PATHISH, st.text(max_size=24)))
def test_any_bind_strings_validate_or_fail_at_their_key(source: str, target: str) -> None:
    doc = copy.deepcopy(BASE)
    doc["bind"] = [{"source": source, "target": target}]
    try:
        policy = load_text(tomli_w.dumps(doc), "site.toml", "/nonexistent")
    except InvalidInput as err:
        paths = {p.path for p in err.problems}
        assert paths and paths <= {"bind[1].source", "bind[1].target"}, paths
        assert all("\n" not in str(p) for p in err.problems)
        return
    (bind,) = policy.binds
    assert (bind.source, bind.target) == (source, target)
    for value in (source, target):
        assert value.startswith("/") and value.isprintable() and "," not in value
        assert ":" not in value and " " not in value
