"""render.containers as plain values: structure of every file, node-wide scopes, refusals."""

from __future__ import annotations

import json
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import pytest

from hpcpolicy.directory.model import Group, Snapshot, User
from hpcpolicy.errors import InvalidInput
from hpcpolicy.policy.model import Bind, ImageRule, Images, Policy, Site
from hpcpolicy.render import containers

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SNAP = Snapshot.of(
    [User("ann", 1000, 100, "files"), User("bob", 1001, 100, "files")],
    [Group("bio", 2000, frozenset({"ann"}), "files"), Group("empty", 2001, frozenset(), "files")],
)


def rule(
    index: int,
    scope: str,
    action: str = "allow",
    groups: Tuple[str, ...] = (),
    key: Optional[str] = None,
    lookaside: Optional[str] = None,
) -> ImageRule:
    return ImageRule(scope, action, groups, key, f"/site/{key}" if key else None, index, lookaside)


def make_policy(
    rules: Sequence[ImageRule],
    default: str = "deny",
    local: str = "allow",
    binds: Sequence[Bind] = (),
    keyrings: Optional[Dict[str, bytes]] = None,
) -> Policy:
    return Policy(
        path="site.toml",
        sha256="0" * 64,
        site=Site(name="test", deploy_root="/d"),
        binds=tuple(binds),
        images=Images(default=default, local_transports=local, rules=tuple(rules)),
        keyrings=keyrings or {},
    )


def render(policy: Policy, snap: Snapshot = SNAP) -> Dict[str, bytes]:
    return containers.render(policy, snap, policy.binds)


def policy_json(tree: Dict[str, bytes]) -> Dict[str, object]:
    doc = json.loads(tree[containers.POLICY_JSON])
    assert isinstance(doc, dict)
    return doc


def strip_header(data: bytes) -> str:
    text = data.decode()
    assert text.startswith("# Rendered by hpcpolicy for site test.")
    return "\n".join(ln for ln in text.splitlines() if not ln.startswith("#"))


def test_files_and_determinism() -> None:
    policy = make_policy([rule(1, "r.example.org/hpc")])
    tree = render(policy)
    assert set(tree) == {
        containers.POLICY_JSON,
        containers.REGISTRIES_CONF,
        containers.CONTAINERS_CONF,
    }  # no signed scope with a lookaside: no registries.d file
    assert render(policy) == tree
    text = tree[containers.POLICY_JSON].decode()
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"


def test_policy_json_scopes_default_and_local_transports() -> None:
    doc = policy_json(
        render(make_policy([rule(1, "r.example.org/hpc"), rule(2, "*.bad.org", "deny")]))
    )
    assert doc["default"] == [{"type": "reject"}]
    transports = doc["transports"]
    assert isinstance(transports, dict)
    assert transports["docker"] == {
        "*.bad.org": [{"type": "reject"}],
        "r.example.org/hpc": [{"type": "insecureAcceptAnything"}],
    }
    for name in ("oci", "dir", "docker-archive", "oci-archive", "containers-storage"):
        assert transports[name] == {"": [{"type": "insecureAcceptAnything"}]}
    doc2 = policy_json(render(make_policy([], default="allow", local="deny")))
    assert doc2["default"] == [{"type": "insecureAcceptAnything"}]
    t2 = doc2["transports"]
    assert isinstance(t2, dict)
    assert t2["docker"] == {}  # never a "" scope in docker: unmatched refs fall to default
    assert t2["oci"] == {"": [{"type": "reject"}]}


def test_group_rules_rendered_node_wide() -> None:
    rules = [
        rule(1, "r.example.org", "deny"),
        rule(2, "r.example.org/bio", "allow", ("bio",)),
        rule(3, "r.example.org/nobody", "allow", ("empty",)),
    ]
    docker = policy_json(render(make_policy(rules)))["transports"]["docker"]  # type: ignore[index]
    assert docker["r.example.org/bio"] == [{"type": "insecureAcceptAnything"}]  # ann may
    assert docker["r.example.org/nobody"] == [{"type": "reject"}]  # no member


def test_no_eligible_user_rejects_everything() -> None:
    snap = Snapshot.of([User("svc", 10, 100, "files")], [])
    doc = policy_json(render(make_policy([rule(1, "r.example.org")], default="allow"), snap))
    assert doc["default"] == [{"type": "reject"}]


def test_signed_by_ships_keyring_at_key_path() -> None:
    policy = make_policy(
        [rule(1, "r.example.org/signed", key="keys/hpc.gpg")],
        keyrings={"/site/keys/hpc.gpg": b"KEYRING"},
    )
    tree = render(policy)
    req = policy_json(tree)["transports"]["docker"]["r.example.org/signed"]  # type: ignore[index]
    assert req[0]["type"] == "signedBy" and req[0]["keyType"] == "GPGKeys"
    key_path = req[0]["keyPath"]
    assert key_path.startswith("/" + containers.KEY_DIR + "/") and key_path.endswith("-hpc.gpg")
    assert tree[key_path.lstrip("/")] == b"KEYRING"
    # a changed key is a new file name
    other = make_policy(policy.images.rules, keyrings={"/site/keys/hpc.gpg": b"OTHER"})
    assert containers.KEY_DIR + "/" not in set(render(other)) & {key_path.lstrip("/")}


def test_signed_parent_and_group_child() -> None:
    keys = {"/site/k1.gpg": b"K1"}
    rules = [
        rule(1, "r.example.org/x", key="k1.gpg"),
        rule(2, "r.example.org/x/y", "allow", ("bio",)),  # ann: unsigned
        rule(3, "r.example.org/x/y/z", "deny", ("bio",)),  # ann denied, bob: k1 via x
    ]
    docker = policy_json(render(make_policy(rules, keyrings=keys)))["transports"]["docker"]  # type: ignore[index]
    assert docker["r.example.org/x/y"] == [{"type": "insecureAcceptAnything"}]  # the union
    assert docker["r.example.org/x/y/z"][0]["keyPath"].endswith("-k1.gpg")
    assert "keyPaths" not in docker["r.example.org/x/y/z"][0]


def test_two_keyrings_become_key_paths() -> None:
    """Two user classes admitted under one scope by different keyrings: either key will do.

    (Only reachable when a group-limited rule is signed, which policy validation may refuse;
    the renderer stays correct for it anyway.)
    """
    keys = {"/site/k1.gpg": b"K1", "/site/k2.gpg": b"K2"}
    rules = [
        rule(1, "r.example.org", key="k1.gpg"),
        rule(2, "r.example.org/x", "allow", ("bio",), key="k2.gpg"),
    ]
    tree = render(make_policy(rules, keyrings=keys))
    req = policy_json(tree)["transports"]["docker"]["r.example.org/x"][0]  # type: ignore[index]
    assert "keyPath" not in req
    assert sorted(p.rsplit("-", 1)[1] for p in req["keyPaths"]) == ["k1.gpg", "k2.gpg"]
    assert req["keyPaths"] == sorted(req["keyPaths"])
    for path in req["keyPaths"]:
        assert tree[path.lstrip("/")] in (b"K1", b"K2")


def test_missing_keyring_is_an_error() -> None:
    with pytest.raises(InvalidInput, match="not loaded"):
        render(make_policy([rule(1, "r.example.org/s", key="k.gpg")]))


def test_unsafe_scope_refused() -> None:
    with pytest.raises(InvalidInput, match="refusing to render scope"):
        render(make_policy([rule(1, "http://r.example.org/x")]))


def test_registries_conf() -> None:
    rules = [
        rule(1, "r.example.org", "deny"),
        rule(2, "r.example.org/hpc", "allow"),  # below the deny: r.example.org not blockable
        rule(3, "bad.example.org", "deny"),
        rule(4, "bad.example.org/sub:1.0", "deny"),  # a tag: never a registries.conf prefix
        rule(5, "*.evil.org", "deny"),  # wildcard: left to policy.json
        rule(6, "q.example.org/team", "deny", ("bio",)),  # bob may (default allow)
        rule(7, "z.example.org:5000/x", "deny"),
    ]
    tree = render(make_policy(rules, default="allow"))
    conf = tomllib.loads(strip_header(tree[containers.REGISTRIES_CONF]))
    assert conf["short-name-mode"] == "enforcing"
    assert conf["unqualified-search-registries"] == []
    # bad.example.org is not blocked: its prefix would also stop bad.example.org:5000/...,
    # which policy.json leaves to the default (allow)
    assert conf["registry"] == [
        {"prefix": "z.example.org:5000/x", "location": "z.example.org:5000/x", "blocked": True},
    ]
    denying = tomllib.loads(strip_header(render(make_policy(rules))[containers.REGISTRIES_CONF]))
    assert [r["prefix"] for r in denying["registry"]] == [
        "bad.example.org", "q.example.org/team", "z.example.org:5000/x"]
    empty = tomllib.loads(strip_header(render(make_policy([]))[containers.REGISTRIES_CONF]))
    assert "registry" not in empty


def test_registries_d_lookaside() -> None:
    rules = [
        rule(1, "r.example.org/s", key="k.gpg", lookaside="https://sigs.example.org/hpc"),
        rule(2, "r.example.org/t", key="k.gpg"),  # no lookaside: no entry (keeps site ones)
        rule(3, "*.example.org", key="k.gpg", lookaside="file:///srv/sigs"),  # no such key
    ]
    tree = render(make_policy(rules, keyrings={"/site/k.gpg": b"K"}))
    doc = json.loads(strip_header(tree[containers.REGISTRIES_D]))
    assert doc == {"docker": {"r.example.org/s": {"lookaside": "https://sigs.example.org/hpc"}}}
    assert containers.REGISTRIES_D not in render(make_policy([]))


@pytest.mark.parametrize("url", ["ftp://x/y", "https://x/y z", "https://x/\ny", "/srv/sigs"])
def test_bad_lookaside_refused(url: str) -> None:
    rules = [rule(1, "r.example.org/s", key="k.gpg", lookaside=url)]
    with pytest.raises(InvalidInput, match="lookaside"):
        render(make_policy(rules, keyrings={"/site/k.gpg": b"K"}))


def test_containers_conf_volumes() -> None:
    binds = [Bind("/scratch", "/scratch"), Bind("/etc/localtime", "/etc/localtime", readonly=True)]
    tree = render(make_policy([], binds=binds))
    conf = tomllib.loads(strip_header(tree[containers.CONTAINERS_CONF]))
    assert conf == {
        "containers": {"volumes": ["/scratch:/scratch", "/etc/localtime:/etc/localtime:ro"]}
    }
    none = tomllib.loads(strip_header(render(make_policy([]))[containers.CONTAINERS_CONF]))
    assert none == {"containers": {"volumes": []}}


BAD_BINDS: List[Bind] = [
    Bind("/a:b", "/a"),
    Bind("/a", "/b,c"),
    Bind("relative", "/x"),
    Bind("/a\nb", "/x"),
    Bind("/a b", "/x"),
    Bind("/a/../etc", "/x"),
    Bind("/a", "/x", required=False),
]


@pytest.mark.parametrize("bind", BAD_BINDS)
def test_containers_conf_refuses_unsafe_binds(bind: Bind) -> None:
    with pytest.raises(InvalidInput):
        render(make_policy([], binds=[bind]))


def test_bare_host_not_blocked_when_a_port_of_it_is_allowed() -> None:
    """containers/image matches a registries.conf prefix `h` against `h:5000/...` too."""
    tree = render(make_policy([rule(1, "127.0.0.1", action="deny"),
                               rule(2, "127.0.0.1:5000/ok"),
                               rule(3, "bad.example.org", action="deny")]))
    conf = tomllib.loads(strip_header(tree[containers.REGISTRIES_CONF]))
    assert [r["prefix"] for r in conf["registry"]] == ["bad.example.org"]
