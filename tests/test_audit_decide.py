"""Audit decisions on crafted policies: precedence, groups, enforcement, targets, users."""

from __future__ import annotations

import json
from typing import Any, Dict, List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpcpolicy.audit.decide import (
    FILE_PERMISSIONS,
    POLICY_JSON,
    REGISTRIES_CONF,
    UNLISTED,
    AuditDecision,
    Target,
    audit,
    default_targets,
    make_context,
    parse_target,
    select_users,
)
from hpcpolicy.directory.model import Snapshot, User
from hpcpolicy.errors import UsageError
from hpcpolicy.policy.model import Collection
from hpcpolicy.policy.reference import parse
from hpcpolicy.render import containers
from tests.audit_fixtures import make_policy, rule, snapshot

HOST = "registry.example.org"


def one(policy: Any, user: str, image: str, snap: Snapshot | None = None) -> AuditDecision:
    ctx = make_context(policy, snap or snapshot())
    users = select_users(ctx, user)
    (d,) = audit(ctx, users, [parse_target(image)])
    return d


def mech(d: AuditDecision, name: str) -> Dict[str, Any]:
    (e,) = [e.as_dict() for e in d.enforced_by if e.mechanism == name]
    return e


# --- verdicts ------------------------------------------------------------------------------


def test_most_specific_scope_wins() -> None:
    p = make_policy([rule(f"{HOST}/hpc"), rule(f"{HOST}/hpc/experimental", "deny"),
                     rule(f"{HOST}/hpc/experimental/ok:1.0")])
    assert one(p, "carol", f"{HOST}/hpc/tool:2").allowed
    d = one(p, "carol", f"{HOST}/hpc/experimental/x")
    assert (d.allowed, d.rule) == (False, f"{HOST}/hpc/experimental")
    d = one(p, "carol", f"{HOST}/hpc/experimental/ok:1.0")
    assert (d.allowed, d.rule) == (True, f"{HOST}/hpc/experimental/ok:1.0")
    d = one(p, "carol", "quay.io/x/y")
    assert (d.allowed, d.rule) == (False, "default")
    assert d.reason == "no rule matches; images.default = deny"


def test_group_rule_applies_to_members_only_and_says_why() -> None:
    p = make_policy([rule(f"{HOST}/bio", groups=["bio"])])
    assert one(p, "alice", f"{HOST}/bio/blast").allowed
    d = one(p, "carol", f"{HOST}/bio/blast")
    assert not d.allowed and d.rule == "default"
    assert "rule 1 (allow registry.example.org/bio for groups bio) matches it" in d.reason
    assert "no rule that applies to the user matches" in d.reason
    # the node accepts it (alice may), so podman does not enforce carol's denial
    e = mech(d, POLICY_JSON)
    assert d.node_allowed is True and e["enforces"] is False and e["user_can_override"] is True
    assert "NOT enforced by podman" in e["note"]
    assert d.unenforced_denial


def test_group_rule_beats_rule_for_everybody_and_deny_wins() -> None:
    p = make_policy([rule(f"{HOST}/x"), rule(f"{HOST}/x", "deny", ["chem"]),
                     rule(f"{HOST}/y", groups=["chem"]), rule(f"{HOST}/y", "deny", ["licence"])])
    d = one(p, "bob", f"{HOST}/x/a")
    assert not d.allowed and "group rule beats" in d.reason
    assert one(p, "carol", f"{HOST}/x/a").allowed
    d = one(p, "bob", f"{HOST}/y/a")  # bob is in chem (allow) and licence (deny)
    assert not d.allowed and "deny wins" in d.reason


def test_primary_group_counts() -> None:
    p = make_policy([rule(f"{HOST}/own", groups=["carol"])])
    assert one(p, "carol", f"{HOST}/own/x").allowed


def test_default_allow_and_node_equivalence_without_groups() -> None:
    p = make_policy([rule(f"{HOST}/bad", "deny")], default="allow")
    d = one(p, "carol", "quay.io/a/b")
    assert d.allowed and d.rule == "default" and mech(d, POLICY_JSON)["enforces"]
    d = one(p, "carol", f"{HOST}/bad/x")
    # under default allow a deny rule is a blocklist: REGISTRY.EXAMPLE.ORG/bad/x, the server's
    # IP address or another of its names reach the same images and get the default
    assert not d.allowed and not mech(d, POLICY_JSON)["enforces"]
    assert "bypass" in mech(d, POLICY_JSON)["note"] and d.unenforced_denial
    assert not mech(d, REGISTRIES_CONF)["enforces"]
    p = make_policy([rule(f"{HOST}/bad", "deny"), rule(HOST)])
    d = one(p, "carol", f"{HOST}/bad/x")  # default deny: the deny holds
    assert not d.allowed and mech(d, POLICY_JSON)["enforces"]
    assert mech(d, REGISTRIES_CONF)["enforces"]  # a denied repository nobody may use: blocked
    assert not d.unenforced_denial


def test_runtimes_without_registry_control() -> None:
    p = make_policy([rule(f"{HOST}/ok")], runtimes=("apptainer", "singularity", "enroot"))
    d = one(p, "carol", f"{HOST}/no/x")
    assert [e.mechanism for e in d.enforced_by] == ["apptainer", "singularity", "enroot"]
    assert not any(e.enforces for e in d.enforced_by)
    assert "NOT enforced" in d.enforced_by[0].note and "no registry allow-list" in \
        d.enforced_by[0].note
    assert d.node_allowed is None  # no podman: no node-wide policy.json
    assert not d.unenforced_denial  # nothing meant to enforce it was rendered


def test_signed_allow_is_reported() -> None:
    p = make_policy([rule(f"{HOST}/signed", signed_by="hpc.gpg")])
    d = one(p, "carol", f"{HOST}/signed/x")
    assert d.allowed and "if signed by hpc.gpg" in d.reason
    assert "only if signed by /keys/hpc.gpg" in mech(d, POLICY_JSON)["note"]


def test_registries_conf_host_prefix_never_blocks_an_allowed_port() -> None:
    """containers/image matches a registries.conf prefix when the next character is `:`, so the
    renderer does not block a denied host that has an allowed scope on a port; the denial of the
    rest of the host is policy.json's, and registries.conf plays no part in the decision."""
    p = make_policy([rule("127.0.0.1", "deny"), rule("127.0.0.1:5000/ok")], default="deny")
    d = one(p, "carol", "127.0.0.1:5000/ok/x:1")
    assert d.allowed
    assert REGISTRIES_CONF not in [e["mechanism"] for e in d.as_dict()["enforced_by"]]
    denied = one(p, "carol", "127.0.0.1/other/x:1")
    assert not denied.allowed


def test_user_outside_the_eligible_set_is_explained() -> None:
    p = make_policy([rule(f"{HOST}/bio", groups=["bio"])])
    d = one(p, "dave", f"{HOST}/bio/x")  # disabled member of bio
    assert d.allowed
    assert any("disabled" in n for n in d.notes)
    d = one(p, "sys", f"{HOST}/bio/x")
    assert any("below directory.min_uid" in n for n in d.notes)


def test_user_allowed_but_node_rejects_when_only_ineligible_members() -> None:
    snap = snapshot()
    p = make_policy([rule(f"{HOST}/only-dave", groups=["dave"])])
    d = one(p, "dave", f"{HOST}/only-dave/x", snap)
    assert d.allowed and d.node_allowed is False
    note = mech(d, POLICY_JSON)["note"]
    assert "node-wide files are rendered for the eligible users only" in note


def test_short_name_normalised_with_a_note() -> None:
    p = make_policy([rule("docker.io/library")])
    d = one(p, "carol", "ubuntu")
    assert d.image == "docker.io/library/ubuntu:latest" and d.allowed
    assert any("short name 'ubuntu'" in n and "alias" in n for n in d.notes)
    assert not one(p, "carol", "docker.io/library/ubuntu").notes


# --- targets, users ------------------------------------------------------------------------


@pytest.mark.parametrize("arg,kind,value", [
    ("ubuntu", "reference", "docker.io/library/ubuntu:latest"),
    ("docker://quay.io/a/b:1", "reference", "quay.io/a/b:1"),
    ("oras://ghcr.io/a/b:1", "reference", "ghcr.io/a/b:1"),
    ("foo.sif", "reference", "docker.io/library/foo.sif:latest"),
    ("/shared/c/../c/x.sif", "path", "/shared/c/x.sif"),
    ("./x.sif", "path", "/work/x.sif"),
    ("sif:/shared/c/x.sif", "path", "/shared/c/x.sif"),
    ("oci:/shared/c/layout:1.0", "path", "/shared/c/layout"),
    ("containers-storage:localhost/mine:1", "transport", "containers-storage:localhost/mine:1"),
])  # fmt: skip
def test_parse_target(arg: str, kind: str, value: str) -> None:
    t = parse_target(arg, cwd="/work")
    assert (t.kind, t.value) == (kind, value)


@pytest.mark.parametrize("arg", ["", "UPPER/case", "library://sylabs/x", "a\nb", "http://x/y"])
def test_parse_target_refuses(arg: str) -> None:
    with pytest.raises(ValueError):
        parse_target(arg)


def test_representatives_are_decided_by_their_own_scope() -> None:
    scopes = [f"{HOST}", f"{HOST}/hpc", f"{HOST}/hpc/exp", f"{HOST}/hpc/tool:1.0", "*.example.org",
              "docker.io/library", "*.org"]
    p = make_policy([rule(s, "allow" if i % 2 else "deny") for i, s in enumerate(scopes)])
    targets = default_targets(p)
    refs = [t.value for t in targets if t.kind == "reference"]
    assert refs[-1] == UNLISTED or any(s in scopes for s in parse(UNLISTED).scopes())
    ctx = make_context(p, snapshot())
    (carol,) = select_users(ctx, "carol")
    decided = [d.rule for d in audit(ctx, [carol], targets[: len(scopes)])]
    assert decided == scopes
    assert f"{HOST}/hpc:latest" in refs and "docker.io/library/example:latest" in refs


def test_default_targets_list_collections() -> None:
    p = make_policy(collections=[Collection("/shared/vasp", "licence")])
    targets = default_targets(p)
    assert Target("collection", "/shared/vasp", "/shared/vasp") in targets
    assert targets[0].value == UNLISTED


def test_select_users() -> None:
    ctx = make_context(make_policy(), snapshot())
    assert [u.name for u in select_users(ctx)] == ["alice", "bob", "carol"]  # not dave/sys/nobody
    assert [u.name for u in select_users(ctx, group="bio")] == ["alice"]
    assert [u.name for u in select_users(ctx, "dave")] == ["dave"]
    with pytest.raises(UsageError, match="--user zed: no such user"):
        select_users(ctx, "zed")
    with pytest.raises(UsageError, match="--group nope: no such group"):
        select_users(ctx, group="nope")
    ctx = make_context(make_policy(exclude_disabled=False), snapshot())
    assert "dave" in [u.name for u in select_users(ctx)]


def test_unknown_class_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--class gpu"):
        make_context(make_policy(), snapshot(), "gpu")


def test_collection_without_files_here_is_not_claimed_enforced() -> None:
    p = make_policy(collections=[Collection("/nonexistent/hpcpolicy-audit", "licence")])
    ctx = make_context(p, snapshot())
    ds = audit(ctx, select_users(ctx), default_targets(p)[-1:])
    assert [(d.user, d.allowed) for d in ds] == [("alice", False), ("bob", True), ("carol", False)]
    for d in ds:
        (e,) = d.enforced_by
        assert e.mechanism == FILE_PERMISSIONS and not e.enforces
        assert "not present on this host" in e.note


def test_local_file_outside_collections() -> None:
    p = make_policy(collections=[Collection("/shared/vasp", "licence")], local="deny")
    d = one(p, "carol", "/home/carol/mine.sif")
    assert (d.kind, d.allowed, d.rule) == ("local", False, "images.local_transports")
    assert "in no [[images.collection]]" in d.reason
    assert mech(d, POLICY_JSON)["enforces"] and not mech(d, "apptainer")["enforces"]
    # a sibling whose name merely starts with the collection's is not in it
    assert one(p, "bob", "/shared/vasp2/x.sif").kind == "local"
    assert one(p, "bob", "/shared/vasp/x.sif").kind == "collection"


def test_decision_json_shape() -> None:
    d = one(make_policy([rule(f"{HOST}/a")]), "carol", f"{HOST}/a/b")
    doc = json.loads(json.dumps(d.as_dict()))
    assert set(doc) == {"user", "image", "allowed", "rule", "reason", "enforced_by", "kind",
                        "class", "node_allowed", "notes", "drift"}
    for e in doc["enforced_by"]:
        assert set(e) == {"mechanism", "enforces", "user_can_override", "note"}
        assert isinstance(e["enforces"], bool) and isinstance(e["user_can_override"], bool)


# --- equivalence with the rendered policy.json (no groups) ---------------------------------


def policy_json_verdict(doc: Dict[str, Any], ref: str) -> bool:
    """What containers/image does with the rendered file: first listed scope, else default."""
    docker = doc["transports"]["docker"]
    for scope in parse(ref).scopes():
        if scope in docker:
            return bool(docker[scope][0]["type"] != "reject")
    return bool(doc["default"][0]["type"] != "reject")


SCOPES = ["r.io", "r.io/a", "r.io/a/x", "r.io/a/x:1", "r.io/b", "*.io", "q.r.io/a",
          "*.r.io", "r.io:5000/a"]
REFS = ["r.io/a/x:1", "r.io/a/x:2", "r.io/a/y:1", "r.io/b/x:1", "r.io/c:1", "q.r.io/a/z:1",
        "q.r.io/b:1", "s.io/x:1", "other.org/x:1", "r.io:5000/a/x:1", "r.io:5000/b:1"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(SCOPES), st.sampled_from(["allow", "deny"])),
                unique_by=lambda t: t[0], max_size=7),
       st.sampled_from(["allow", "deny"]))
def test_audit_equals_rendered_policy_json_without_groups(
    rules: List[Any], default: str
) -> None:
    p = make_policy([rule(s, a) for s, a in rules], default=default)
    snap = snapshot()
    doc = containers.policy_document(p, snap, containers.node_wide_rules(p, snap), {})
    ctx = make_context(p, snap)
    users = select_users(ctx)
    from hpcpolicy.policy.spellings import bypassable_denies

    spelled = {b.rule.scope for b in bypassable_denies(p.images.rules, default)}
    for d in audit(ctx, users, [parse_target(r) for r in REFS]):
        assert d.allowed == policy_json_verdict(doc, d.image) == d.node_allowed, d
        # the reference as written is decided as the node does; a deny rule that other
        # spellings of the registry walk around is a bypass, not an enforced denial
        walked_around = not d.allowed and d.rule in spelled
        assert mech(d, POLICY_JSON)["enforces"] is not walked_around
        if not d.allowed:
            assert d.unenforced_denial is walked_around


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(SCOPES), st.sampled_from(["allow", "deny"]),
                          st.sampled_from([(), ("bio",), ("chem",), ("bio", "chem")])),
                unique_by=lambda t: (t[0], t[2]), max_size=7),
       st.sampled_from(["allow", "deny"]))
def test_with_groups_podman_enforces_exactly_when_user_and_node_agree(
    rules: List[Any], default: str
) -> None:
    p = make_policy([rule(s, a, g) for s, a, g in rules], default=default)
    snap = snapshot()
    doc = containers.policy_document(p, snap, containers.node_wide_rules(p, snap), {})
    ctx = make_context(p, snap)
    decisions = audit(ctx, select_users(ctx), [parse_target(r) for r in REFS])
    from hpcpolicy.policy.spellings import bypassable_denies

    spelled = {b.rule.scope for b in bypassable_denies(p.images.rules, default)}
    for d in decisions:
        node = policy_json_verdict(doc, d.image)
        assert d.node_allowed == node
        walked_around = not d.allowed and not node and d.rule in spelled
        assert mech(d, POLICY_JSON)["enforces"] == (d.allowed == node and not walked_around)
        if d.allowed:
            assert node  # the node accepts whatever an eligible user may run
    by_image: Dict[str, List[bool]] = {}
    for d in decisions:
        by_image.setdefault(d.image, []).append(d.allowed)
    for image, verdicts in by_image.items():
        assert policy_json_verdict(doc, image) == any(verdicts)


def test_users_alike_share_the_work() -> None:
    """Decisions are cached per group profile: 2,000 users cost about one per profile."""
    users = [User(f"u{i}", 10000 + i, 10000 + i, "files") for i in range(2000)]
    snap = Snapshot.of(users, [])
    p = make_policy([rule(f"{HOST}/a"), rule(f"{HOST}/b", "deny")])
    ctx = make_context(p, snap)
    ds = audit(ctx, select_users(ctx), [parse_target(f"{HOST}/a/x"), parse_target(f"{HOST}/b/x")])
    assert len(ds) == 4000 and sum(d.allowed for d in ds) == 2000
    assert len([k for k in ctx.cache if k[0] == "ref"]) == 2
