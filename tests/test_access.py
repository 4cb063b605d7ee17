"""Access profiles, access.json and access changes (pure), and the audit's honesty about
signature requirements and bypass routes (against the decision code; the same claims are tried
against real skopeo in tests/test_audit_consumers.py)."""

from __future__ import annotations

from typing import Dict

from hpcpolicy.access import document
from hpcpolicy.access.profiles import build_profiles, directory_users, named_groups, profile_id
from hpcpolicy.audit.decide import POLICY_JSON, Observation, make_context, parse_target
from hpcpolicy.audit.matrix import build_report
from hpcpolicy.directory.model import Group, Snapshot, User
from tests.audit_fixtures import make_policy, rule, snapshot

HOST = "registry.example.org"


def test_profiles_partition_users_by_named_groups() -> None:
    p = make_policy([rule(f"{HOST}/bio", groups=["bio"]), rule(f"{HOST}/chem", groups=["chem"])])
    snap = snapshot()
    profiles = build_profiles(p, snap, directory_users(p, snap), named_groups(p))
    got = {(pr.groups, pr.eligible): pr.members for pr in profiles}
    assert got == {((), True): ("carol",), (("bio",), True): ("alice",),
                   (("chem",), True): ("bob",), (("bio",), False): ("dave",)}
    assert profiles[0].id == profile_id((), True)  # stable: a hash of what defines it
    assert sum(len(pr.members) for pr in profiles) == 4  # sys (uid 500) and nobody are not users


def _doc(snap: Snapshot, *rules_: object) -> Dict:
    p = make_policy(list(rules_))  # type: ignore[arg-type]
    return document.build(p, snap)


def test_access_document_round_trips_and_is_stable() -> None:
    snap = snapshot()
    doc = _doc(snap, rule(f"{HOST}/bio", groups=["bio"]))
    data = document.dump(doc)
    assert document.parse(data, "x") == doc
    assert document.dump(_doc(snapshot(), rule(f"{HOST}/bio", groups=["bio"]))) == data
    assert document.changes(doc, doc) == []


def test_changes_after_rule_group_and_membership_changes() -> None:
    snap = snapshot()
    before = _doc(snap, rule(f"{HOST}/bio", groups=["bio"]))
    # a rule change: chem may now run the bio image too
    after = _doc(snap, rule(f"{HOST}/bio", groups=["bio", "chem"]))
    (c,) = document.changes(before, after)
    assert (c["image"], c["before"], c["after"], c["users"], c["groups"], c["sample"]) == (
        f"{HOST}/bio:latest", "denied", "allowed", 1, ["chem"], ["bob"])
    # a membership change: carol joins bio; erin joins the directory
    users = list(snap.users.values()) + [User("erin", 5005, 5005, "files")]
    groups = [g if g.name != "bio" else Group("bio", g.gid, g.members | {"carol"}, "files")
              for g in snap.groups.values()]
    joined = _doc(Snapshot.of(users, groups), rule(f"{HOST}/bio", groups=["bio"]))
    got = {(c["before"], c["after"], tuple(c["sample"])) for c in document.changes(before, joined)}
    assert ("denied", "allowed", ("carol",)) in got
    assert ("absent", "denied", ("erin",)) in got
    back = document.changes(joined, before)  # and the way back (a rollback)
    assert {(c["before"], c["after"]) for c in back} == {("allowed", "denied"),
                                                         ("denied", "absent")}
    # an image only one side has
    more = _doc(snap, rule(f"{HOST}/bio", groups=["bio"]), rule(f"{HOST}/new"))
    added = [c for c in document.changes(before, more) if c["image"] == f"{HOST}/new:latest"]
    assert sum(c["users"] for c in added) == 4 and {c["before"] for c in added} == {"absent"}


def _report(p, snap=None):  # type: ignore[no-untyped-def]
    snap = snap or snapshot()
    ctx = make_context(p, snap)
    targets = [parse_target(f"{HOST}/hpc/special/x:1"), parse_target(f"{HOST}/hpc/y:1")]
    users = directory_users(p, snap)
    return build_report(ctx, targets, Observation(), users)


def test_signature_dropped_by_the_union_is_not_enforced() -> None:
    """A group-limited unsigned allow below a signed scope: the node accepts unsigned images
    there for everybody, so those who need the signature are not protected by it."""
    p = make_policy([rule(f"{HOST}/hpc", signed_by="hpc.gpg"),
                     rule(f"{HOST}/hpc/special", groups=["bio"])], runtimes=("podman",))
    r = _report(p)
    cells = {(r.targets[c.image].value, r.profiles[c.profile].label): c for c in r.cells}
    carol = cells[(f"{HOST}/hpc/special/x:1", "no named group")].decision
    pj = [e for e in carol.enforced_by if e.mechanism == POLICY_JSON][0]
    assert carol.allowed and not pj.enforces and pj.gap == "unenforced-requirement"
    alice = cells[(f"{HOST}/hpc/special/x:1", "bio")].decision
    assert [e.enforces for e in alice.enforced_by if e.mechanism == POLICY_JSON] == [True]
    # outside the group-limited scope the node requires the same key: enforced for everybody
    other = cells[(f"{HOST}/hpc/y:1", "no named group")].decision
    assert [e.enforces for e in other.enforced_by if e.mechanism == POLICY_JSON] == [True]
    (f,) = [f for f in r.findings if f["kind"] == "unenforced-requirement"]
    assert f["image"] == f"{HOST}/hpc/special/x:1" and f["users"] == 2  # carol and bob
    assert "rule(s) 2" in f["remedy"]


def test_local_transports_allow_is_a_bypass() -> None:
    p = make_policy([rule(f"{HOST}/hpc", "deny")], runtimes=("podman",), local="allow")
    r = _report(p)
    assert {f["kind"] for f in r.findings} == {"bypass"}
    pj = [e for c in r.cells for e in c.decision.enforced_by if e.mechanism == POLICY_JSON]
    assert pj and all(not e.enforces and e.gap == "bypass" for e in pj)
    closed = _report(make_policy([rule(f"{HOST}/hpc", "deny")], runtimes=("podman",)))
    assert closed.findings == []
    assert all(e.enforces for c in closed.cells for e in c.decision.enforced_by)


def test_apptainer_registries_conf_follows_the_release() -> None:
    from hpcpolicy.audit.decide import apptainer_registries

    assert "first mirror" in apptainer_registries("1.3") and "ignores `blocked`" in \
        apptainer_registries("1.3")
    assert "ignore registries.conf altogether" in apptainer_registries("1.4")
    assert "ignore registries.conf altogether" in apptainer_registries("1.4.1")
    assert "user's own" in apptainer_registries("1.4.2")
    assert "user's own" in apptainer_registries("1.5")


def test_lazy_node_view_equals_the_renderer() -> None:
    """The audit computes node verdicts and blocked prefixes per scope on demand; they must be
    exactly what the renderer writes (node_wide_rules, blockable over every scope)."""
    from hpcpolicy.access.targets import default_targets
    from hpcpolicy.images.scope import node_default, node_wide_rules
    from hpcpolicy.render.containers import blockable, prefix_covers

    sets = [
        [rule("127.0.0.1", "deny"), rule("127.0.0.1:5000/allowed")],
        [rule(HOST, "deny"), rule(f"{HOST}/hpc"), rule(f"{HOST}/hpc/x", "deny"),
         rule(f"{HOST}/bio", groups=["bio"]), rule(f"{HOST}/bio", "deny")],
        [rule("*.example.org", "deny"), rule(f"{HOST}/a", groups=["chem"]),
         rule(f"{HOST}/a/b", "deny", groups=["bio"]), rule("quay.io/x", signed_by="k.gpg")],
    ]
    for rules_ in sets:
        for default in ("allow", "deny"):
            p = make_policy(rules_, default=default, runtimes=("podman",))
            snap = snapshot()
            ctx = make_context(p, snap)
            nodes = node_wide_rules(p, snap)
            assert {s: ctx.node_rule(s) for s in nodes} == nodes
            blocked = blockable(nodes, node_default(p, snap))
            refs = [t.value for t in default_targets(p)] + [
                "127.0.0.1:5000/other:1", "127.0.0.1:6000/x:1", f"{HOST}/hpc/x/y:1"]
            for ref in refs:
                hits = [b for b in blocked if prefix_covers(b, ref)]
                assert ctx.blocked_prefix(ref) == (max(hits, key=len) if hits else None), ref
