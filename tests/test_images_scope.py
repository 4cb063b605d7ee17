"""The scope evaluator: containers-policy.json precedence, SPEC §2 groups, node-wide union."""

from __future__ import annotations

from itertools import combinations
from typing import Dict, FrozenSet, List, Optional, Set, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpcpolicy.directory.model import Group, Snapshot, User
from hpcpolicy.images.scope import (
    NodeRule,
    decide,
    decide_node,
    eligible_users,
    node_default,
    node_wide_rules,
    parents,
    user_classes,
)
from hpcpolicy.policy.model import Directory, ImageRule, Images, Policy, Site

D64 = "sha256:" + "a" * 64


def rule(
    index: int,
    scope: str,
    action: str = "allow",
    groups: Tuple[str, ...] = (),
    key: Optional[str] = None,
) -> ImageRule:
    return ImageRule(
        scope=scope,
        action=action,
        groups=groups,
        signed_by=key,
        signed_by_path=f"/site/{key}" if key else None,
        index=index,
    )


LADDER = [
    rule(1, "*.org", "allow"),
    rule(2, "*.example.org", "deny"),
    rule(3, "registry.example.org", "allow"),
    rule(4, "registry.example.org/hpc", "deny"),
    rule(5, "registry.example.org/hpc/bio", "allow"),
    rule(6, "registry.example.org/hpc/bio/blast", "deny"),
    rule(7, "registry.example.org/hpc/bio/blast:2.14", "allow"),
    rule(8, "registry.example.org/hpc/bio/blast@" + D64, "allow"),
]


@pytest.mark.parametrize(
    "ref,scope,allowed",
    [
        (
            "registry.example.org/hpc/bio/blast:2.14",
            "registry.example.org/hpc/bio/blast:2.14",
            True,
        ),
        (
            "registry.example.org/hpc/bio/blast@" + D64,
            "registry.example.org/hpc/bio/blast@" + D64,
            True,
        ),
        ("registry.example.org/hpc/bio/blast:2.15", "registry.example.org/hpc/bio/blast", False),
        ("registry.example.org/hpc/bio/blast", "registry.example.org/hpc/bio/blast", False),
        ("registry.example.org/hpc/bio/other:1", "registry.example.org/hpc/bio", True),
        ("registry.example.org/hpc/bio/deep/er:1", "registry.example.org/hpc/bio", True),
        ("registry.example.org/hpc/chem:1", "registry.example.org/hpc", False),
        ("registry.example.org/hpcx/chem:1", "registry.example.org", True),  # component boundary
        ("registry.example.org/base", "registry.example.org", True),
        ("mirror.example.org/base", "*.example.org", False),
        ("a.b.example.org:5000/base", "*.example.org", False),  # port stripped for wildcards
        ("example.org/base", "*.org", True),  # *.example.org does not match example.org itself
        ("quay.io/x/y", "default", False),
        ("ubuntu", "default", False),
        ("registry.example.org:5000/hpc/chem", "*.example.org", False),
    ],
)
def test_precedence_ladder(ref: str, scope: str, allowed: bool) -> None:
    d = decide(LADDER, "deny", ref, set())
    assert (d.scope, d.allowed) == (scope, allowed), d.reason
    if scope == "default":
        assert d.rule is None
    else:
        assert d.rule is not None and d.rule.scope == scope


def test_port_is_part_of_the_host() -> None:
    rules = [rule(1, "registry.example.org:5000", "allow")]
    assert decide(rules, "deny", "registry.example.org:5000/x", set()).allowed
    assert not decide(rules, "deny", "registry.example.org/x", set()).allowed
    assert not decide(rules, "deny", "registry.example.org:5001/x", set()).allowed


def test_short_names_normalised_before_matching() -> None:
    rules = [rule(1, "docker.io/library", "allow"), rule(2, "docker.io", "deny")]
    assert decide(rules, "deny", "ubuntu", set()).allowed
    assert decide(rules, "deny", "docker.io/ubuntu:22.04", set()).image == (
        "docker.io/library/ubuntu:22.04"
    )
    assert not decide(rules, "deny", "someone/tool", set()).allowed


def test_default_allow() -> None:
    d = decide([], "allow", "quay.io/x/y", set())
    assert d.allowed and d.scope == "default" and "images.default = allow" in d.reason


def test_invalid_reference_raises() -> None:
    with pytest.raises(ValueError):
        decide([], "deny", "Not/Valid", set())
    with pytest.raises(ValueError):
        decide([], "maybe", "ubuntu", set())


GROUPED = [
    rule(1, "registry.example.org", "deny"),
    rule(2, "registry.example.org/hpc", "allow", ("bio",)),
    rule(3, "registry.example.org/hpc", "deny"),
    rule(4, "registry.example.org/hpc/lic", "allow", ("vasp",)),
    rule(5, "registry.example.org/hpc/lic", "deny", ("students",)),
    rule(6, "registry.example.org/open", "allow", ("bio",)),
]


def test_group_rule_beats_everybody_rule_of_same_scope() -> None:
    bio = decide(GROUPED, "deny", "registry.example.org/hpc/tool", {"bio"})
    assert bio.allowed and bio.rule == GROUPED[1]
    assert "group rule beats" in bio.reason
    other = decide(GROUPED, "deny", "registry.example.org/hpc/tool", {"chem"})
    assert not other.allowed and other.rule == GROUPED[2]


def test_deny_wins_between_group_rules() -> None:
    both = decide(GROUPED, "deny", "registry.example.org/hpc/lic/vasp:6", {"vasp", "students"})
    assert not both.allowed and both.rule == GROUPED[4]
    assert "deny wins" in both.reason
    assert decide(GROUPED, "deny", "registry.example.org/hpc/lic/vasp:6", {"vasp"}).allowed


def test_inapplicable_rules_fall_through_to_parents() -> None:
    # no rule of hpc/lic applies to chem: hpc's everybody rule denies
    d = decide(GROUPED, "deny", "registry.example.org/hpc/lic/vasp:6", {"chem"})
    assert d.scope == "registry.example.org/hpc" and not d.allowed
    # open: bio only; others fall through to the registry-wide deny
    assert decide(GROUPED, "deny", "registry.example.org/open/x", {"bio"}).allowed
    d = decide(GROUPED, "deny", "registry.example.org/open/x", set())
    assert d.scope == "registry.example.org" and not d.allowed


def test_anyone_is_the_union_over_group_combinations() -> None:
    d = decide(GROUPED, "deny", "registry.example.org/hpc/lic/vasp:6", None)
    assert d.allowed and d.rule == GROUPED[3]
    assert not decide(GROUPED, "deny", "registry.example.org/base", None).allowed
    assert decide(GROUPED, "deny", "registry.example.org/open/x", None).allowed


def test_anyone_blocked_by_deny_group_covering_allow_group() -> None:
    rules = [
        rule(1, "r.example.org/a", "allow", ("g",)),
        rule(2, "r.example.org/a", "deny", ("g",)),
    ]
    assert not decide(rules, "deny", "r.example.org/a/x", None).allowed
    # a user not in g falls through to the default
    assert decide(rules, "allow", "r.example.org/a/x", None).scope == "default"
    rules2 = [rule(1, "r.example.org/a", "deny", ("g",))]
    assert decide(rules2, "allow", "r.example.org/a/x", None).allowed


def test_signed_allow_carries_keyring() -> None:
    rules = [rule(1, "r.example.org/signed", "allow", key="keys/a.gpg")]
    d = decide(rules, "deny", "r.example.org/signed/x", set())
    assert d.allowed and d.keyrings == ("/site/keys/a.gpg",) and "signed by keys/a.gpg" in d.reason


def test_parents() -> None:
    assert parents("h.example.org:5000/ns/repo:tag") == [
        "h.example.org:5000/ns/repo",
        "h.example.org:5000/ns",
        "h.example.org:5000",
        "*.example.org",
        "*.org",
    ]
    assert parents("h.example.org/ns/repo@" + D64)[0] == "h.example.org/ns/repo"
    assert parents("h.example.org/ns") == ["h.example.org", "*.example.org", "*.org"]
    assert parents("localhost:5000") == []
    assert parents("*.a.example.org") == ["*.example.org", "*.org"]


# --- node-wide ---------------------------------------------------------------------------


def policy_of(rules: List[ImageRule], default: str = "deny", min_uid: int = 1000) -> Policy:
    return Policy(
        path="site.toml",
        sha256="0" * 64,
        site=Site(name="t", deploy_root="/d"),
        directory=Directory(min_uid=min_uid),
        images=Images(default=default, rules=tuple(rules)),
    )


def snapshot_of(members: Dict[str, Set[str]], system: Tuple[str, ...] = ()) -> Snapshot:
    users = [User(name, 1000 + i, 100, "files") for i, name in enumerate(sorted(members))]
    users += [User(name, 10 + i, 100, "files") for i, name in enumerate(system)]
    groups: Dict[str, Set[str]] = {}
    for name, gs in members.items():
        for g in gs:
            groups.setdefault(g, set()).add(name)
    for s in system:
        groups.setdefault("vasp", set()).add(s)
    gl = [Group(g, 2000 + i, frozenset(groups[g]), "files") for i, g in enumerate(sorted(groups))]
    gl.append(Group("users", 100, frozenset(), "files"))
    return Snapshot.of(users, gl)


def test_node_wide_follows_actual_memberships() -> None:
    policy = policy_of(GROUPED)
    # everybody in vasp is also a student: deny wins for all of them
    snap = snapshot_of({"ann": {"vasp", "students"}, "bob": {"chem"}}, system=("svc",))
    nodes = node_wide_rules(policy, snap)
    assert nodes["registry.example.org/hpc/lic"].allowed is False
    assert nodes["registry.example.org/hpc"].allowed is False  # nobody in bio
    snap2 = snapshot_of({"ann": {"vasp"}, "cid": {"bio"}})
    nodes2 = node_wide_rules(policy, snap2)
    assert nodes2["registry.example.org/hpc/lic"].allowed
    assert nodes2["registry.example.org/hpc"].allowed
    assert "some eligible user" in nodes2["registry.example.org/hpc"].reason


def test_node_wide_ignores_system_and_disabled_users() -> None:
    policy = policy_of([rule(1, "r.example.org/lic", "allow", ("vasp",))])
    snap = snapshot_of({"ann": set()}, system=("svc",))  # only a system account is in vasp
    assert not node_wide_rules(policy, snap)["r.example.org/lic"].allowed
    disabled = Snapshot.of(
        [User("dis", 5000, 100, "files", disabled=True)],
        [Group("vasp", 3000, frozenset({"dis"}), "files")],
    )
    assert eligible_users(policy, disabled) == []
    assert not node_wide_rules(policy, disabled)["r.example.org/lic"].allowed
    assert node_default(policy_of([], "allow"), disabled) is False


def test_node_wide_keyrings_union() -> None:
    rules = [
        rule(1, "r.example.org/a", "allow", key="k1.gpg"),
        rule(2, "r.example.org/a/b", "allow", ("bio",)),
        rule(3, "r.example.org/c", "allow", key="k2.gpg"),
        rule(4, "r.example.org/c/d", "deny", ("bio",)),
    ]
    policy = policy_of(rules)
    nodes = node_wide_rules(policy, snapshot_of({"ann": {"bio"}, "bob": set()}))
    assert nodes["r.example.org/a"].keyrings == ("/site/k1.gpg",)
    assert nodes["r.example.org/a/b"] == NodeRule(
        "r.example.org/a/b", True, (), "allowed for every eligible user"
    )
    assert nodes["r.example.org/c/d"].keyrings == ("/site/k2.gpg",)  # bob, signed
    only_bio = node_wide_rules(policy, snapshot_of({"ann": {"bio"}}))
    assert not only_bio["r.example.org/c/d"].allowed


# Property: node-wide acceptance == "some eligible user may", by brute force over users.

SCOPES = [
    "r.example.org",
    "r.example.org/a",
    "r.example.org/a/b",
    "r.example.org/a/b:1",
    "*.example.org",
    "*.org",
    "s.example.org:5000/a",
]
REFS = [
    "r.example.org/a/b:1",
    "r.example.org/a/b:2",
    "r.example.org/a/c",
    "r.example.org/z",
    "s.example.org:5000/a/b",
    "s.example.org/a/b",
    "t.example.org/a",
    "q.org/x",
    "q.com/x",
]
GROUPS = ["g1", "g2", "g3"]


@st.composite
def rule_sets(draw: st.DrawFn) -> List[ImageRule]:
    out: List[ImageRule] = []
    for scope in draw(st.lists(st.sampled_from(SCOPES), unique=True, max_size=6)):
        seen: Set[FrozenSet[str]] = set()
        for _ in range(draw(st.integers(1, 3))):
            groups = frozenset(draw(st.lists(st.sampled_from(GROUPS), max_size=2)))
            if groups in seen:
                continue
            seen.add(groups)
            action = draw(st.sampled_from(["allow", "deny"]))
            out.append(rule(len(out) + 1, scope, action, tuple(sorted(groups))))
    return out


@settings(max_examples=150, deadline=None)
@given(
    rule_sets(),
    st.sampled_from(["allow", "deny"]),
    st.lists(st.frozensets(st.sampled_from(GROUPS + ["other"])), min_size=0, max_size=4),
)
def test_node_wide_equals_some_user_may(
    rules: List[ImageRule], default: str, memberships: List[FrozenSet[str]]
) -> None:
    policy = policy_of(rules, default)
    snap = snapshot_of({f"u{i}": set(gs) for i, gs in enumerate(memberships)})
    nodes = node_wide_rules(policy, snap)
    allow_default = node_default(policy, snap)
    users = [set(snap.groups_of(f"u{i}")) for i in range(len(memberships))]
    for ref in REFS:
        expected = any(decide(rules, default, ref, g).allowed for g in users)
        assert decide_node(nodes, allow_default, ref).allowed == expected, ref
        # decide(None) is the same question over every combination of groups
        combos = [set(c) for n in range(4) for c in combinations(GROUPS, n)]
        anyone = any(decide(rules, default, ref, g).allowed for g in combos)
        assert decide(rules, default, ref, None).allowed == anyone, ref


@settings(max_examples=150, deadline=None)
@given(
    rule_sets(),
    st.lists(st.tuples(st.frozensets(st.sampled_from(GROUPS + ["other", "users"])),
                       st.sampled_from([100, 2000, 2001]), st.booleans(),
                       st.sampled_from([10, 1000, 65534])),
             max_size=5),
)
def test_user_classes_match_the_definition(
    rules: List[ImageRule], people: List[Tuple[FrozenSet[str], int, bool, int]]
) -> None:
    """The rule groups of each eligible user, primary group included, by brute force."""
    groups: Dict[str, Set[str]] = {}
    users = []
    for i, (gs, gid, disabled, base) in enumerate(people):
        users.append(User(f"u{i}", base + i if base != 65534 else base, gid, "files", disabled))
        for g in gs:
            groups.setdefault(g, set()).add(f"u{i}")
    gl = [Group(g, 2000 + i, frozenset(groups[g]), "files") for i, g in enumerate(sorted(groups))]
    snap = Snapshot.of(users, gl + [Group("users", 100, frozenset(), "files")])
    policy = policy_of(rules)
    named = {g for r in rules for g in r.groups}
    expected = {frozenset(snap.groups_of(u.name) & named) for u in eligible_users(policy, snap)}
    classes = user_classes(policy, snap)
    assert len(classes) == len(set(classes)) and set(classes) == expected
