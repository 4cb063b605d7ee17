"""Image-source attacks: other spellings of a denied registry, and registries.conf blocking what
the policy allows. Each test is the attack; the real skopeo reads the rendered files at
/etc/containers (see registry_fixtures), inside a private mount namespace whose /etc/hosts
names the loopback registry `reg.example.org`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, List

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpcpolicy.directory.model import Snapshot, User
from hpcpolicy.images.scope import decide, decide_node, node_default, node_wide_rules
from hpcpolicy.policy.load import load_text
from hpcpolicy.policy.model import ImageRule, Images, Policy, Site
from hpcpolicy.policy.reference import check_scope
from hpcpolicy.policy.spellings import bypassable_denies, port_aliases
from hpcpolicy.render import containers
from tests.net_fixtures import TcpProxy
from tests.registry_fixtures import (  # noqa: F401 - the fixture is used by name
    Registry,
    in_ns,
    registry,
    write_tree,
)

SNAP = Snapshot.of([User("alice", 1000, 100, "files")], [])
HOST = "reg.example.org"


def site_text(rules: List[dict], default: str) -> str:
    doc = {"schema": 1, "site": {"name": "t", "deploy_root": "/srv/d", "runtimes": ["podman"]},
           "images": {"default": default, "rule": rules}}
    return tomli_w.dumps(doc)


def load_site(rules: List[dict], default: str) -> Policy:
    return load_text(site_text(rules, default), "site.toml", "/")


@pytest.fixture(scope="module")
def named(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:  # noqa: F811
    """A hosts file naming the registry reg.example.org on 127.88.0.1:80."""
    address = "127.88.0.1"
    try:
        fwd = TcpProxy(registry.port, host=address, port=80)
    except OSError as err:
        pytest.skip(f"cannot listen on {address}:80: {err}")
    hosts = tmp_path_factory.mktemp("hosts") / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n{address} {HOST}\n")
    try:
        yield hosts
    finally:
        fwd.close()


def pull(reg: Registry, etc: Path, hosts: Path, ref: str, dest: Path) -> str:
    """skopeo copy with the rendered /etc/containers and our /etc/hosts: 'pulled' or why not."""
    script = 'mount --bind "$0" /etc/hosts && exec "$@"'
    res = in_ns(etc, ["sh", "-c", script, str(hosts), "skopeo", "copy", "--src-tls-verify=false",
                      f"docker://{ref}", f"dir:{dest}"], reg.base / "home")
    if res.returncode == 0:
        return "pulled"
    if "blocked" in res.stderr:
        return "blocked"
    if "rejected by policy" in res.stderr:
        return "rejected"
    return res.stderr


def render_etc(policy: Policy, root: Path) -> Path:
    return write_tree(containers.render(policy, SNAP, policy.binds), root)


def test_port_spelling_does_not_walk_around_a_deny(
        registry: Registry, named: Path, tmp_path: Path) -> None:  # noqa: F811
    """`reg.example.org:80/...` is the same registry as `reg.example.org/...` (skopeo pulls both
    from the same server); a deny on the one stops the other, in policy.json and in the audit."""
    policy = load_site([{"scope": f"{HOST}/blocked", "action": "deny"}], "allow")
    etc = render_etc(policy, tmp_path / "root")
    assert pull(registry, etc, named, f"{HOST}/other/tool:1.0", tmp_path / "o") == "pulled"
    assert pull(registry, etc, named, f"{HOST}/blocked/tool:1.0", tmp_path / "b") == "blocked"
    got = pull(registry, etc, named, f"{HOST}:80/blocked/tool:1.0", tmp_path / "p")
    assert got in ("blocked", "rejected"), got  # was "pulled"
    for port in ("80", "443"):  # and the audit's evaluator agrees with the node
        ref = f"{HOST}:{port}/blocked/tool:1.0"
        verdict = decide(policy.images.rules, "allow", ref, set())
        assert not verdict.allowed and "written reg.example.org/blocked" in verdict.reason
        node = decide_node(node_wide_rules(policy, SNAP), node_default(policy, SNAP), ref)
        assert not node.allowed


def test_other_names_are_reported_as_bypassing_a_default_allow_deny(
        registry: Registry, named: Path, tmp_path: Path, cli) -> None:  # noqa: F811
    """What no rendering can close (an upper-case host, the IP address, localhost, another DNS
    name) really pulls the denied image; validate says so for every deny rule under
    images.default = "allow", and not under "deny"."""
    policy = load_site([{"scope": f"{HOST}/blocked", "action": "deny"}], "allow")
    etc = render_etc(policy, tmp_path / "root")
    upper = f"{HOST.upper()}/blocked/tool:1.0"
    assert pull(registry, etc, named, upper, tmp_path / "u") == "pulled"  # the bypass is real
    site = tmp_path / "site.toml"
    site.write_text(site_text([{"scope": f"{HOST}/blocked", "action": "deny"}], "allow"))
    res = cli("validate", site, "--offline", "--format", "json")
    assert res.rc == 0, res.err
    warnings = json.loads(res.out)["warnings"]
    assert len(warnings) == 1 and "images.rule[1]" in warnings[0], warnings
    assert "REG.EXAMPLE.ORG/blocked" in warnings[0] and "images.default" in warnings[0]
    text = cli("validate", site, "--offline")
    assert "warning: deny rule for reg.example.org/blocked" in text.out
    site.write_text(site_text([{"scope": f"{HOST}/blocked", "action": "deny"},
                               {"scope": f"{HOST}", "action": "allow"}], "deny"))
    assert json.loads(cli("validate", site, "--offline", "--format", "json").out)["warnings"] == []


def test_bypassable_denies_is_pure_and_names_the_way_around() -> None:
    rules = (ImageRule("r.example.org/x", "deny", index=1),
             ImageRule("*.example.org", "allow", index=2),
             ImageRule("q.other.org/x", "deny", index=3))
    under_deny = bypassable_denies(rules, "deny")
    assert [(b.rule.index, b.via) for b in under_deny] == [(1, "*.example.org")]
    under_allow = bypassable_denies(rules, "allow")
    assert [(b.rule.index, b.via) for b in under_allow] == [(1, "default"), (3, "default")]
    assert bypassable_denies(port_aliases(rules) + list(rules), "deny") == under_deny


def test_port_aliases_keep_what_the_site_wrote() -> None:
    rules = [ImageRule("r.example.org/x", "deny", index=1),
             ImageRule("r.example.org/x/ok", "allow", index=2),
             ImageRule("r.example.org:443/x", "allow", index=3),  # the site's own word wins
             ImageRule("s.example.org/y", "allow", index=4)]  # no deny on s: nothing to close
    aliases = {(r.scope, r.index) for r in port_aliases(rules)}
    assert aliases == {("r.example.org:80/x", 1), ("r.example.org:80/x/ok", 2),
                       ("r.example.org:443/x/ok", 2)}


def test_docker_io_single_component_scopes() -> None:
    assert "docker.io/library/ubuntu" in (check_scope("docker.io/ubuntu:22.04") or "")
    assert check_scope("docker.io/ubuntu") is None  # the Docker Hub account's namespace
    policy = load_site([{"scope": "docker.io/ubuntu", "action": "deny"}], "deny")
    from hpcpolicy.policy.cautions import cautions

    assert any("not the official image docker.io/library/ubuntu" in str(w)
               for w in cautions(policy))


# --- registries.conf against policy.json ---------------------------------------------------


def test_registries_conf_does_not_block_a_port_the_policy_allows(
        registry: Registry, tmp_path: Path) -> None:  # noqa: F811
    """A deny on the bare host 127.0.0.1 under default allow: policy.json (and the audit) allow
    127.0.0.1:PORT/..., so registries.conf must not block it by string prefix."""
    policy = load_site([{"scope": "127.0.0.1", "action": "deny"}], "allow")
    ref = registry.ref("other/tool")
    nodes = node_wide_rules(policy, SNAP)
    assert decide_node(nodes, node_default(policy, SNAP), ref).allowed
    etc = render_etc(policy, tmp_path / "root")
    res = registry.skopeo(etc, "copy", "--src-tls-verify=false", f"docker://{ref}",
                          f"dir:{tmp_path / 'o'}")
    assert res.returncode == 0, res.stderr


HOSTS = ["r.example.org", "q.example.org", "r.example.org:5000", "r.example.org:443", "10.0.0.1"]
SCOPES = (HOSTS + [f"{h}/{p}" for h in HOSTS for p in ("a", "a/b", "a/b:1")]
          + ["*.example.org", "*.org", "*.0.0.1"])
REFS = [f"{h}/{p}:1" for h in HOSTS + ["r.example.org:80", "r.example.org:6000", "10.0.0.1:5000"]
        for p in ("a/b", "a/c", "x/y")]


@st.composite
def rule_sets(draw: st.DrawFn) -> Policy:
    scopes = draw(st.lists(st.sampled_from(SCOPES), min_size=1, max_size=6, unique=True))
    rules = tuple(ImageRule(s, draw(st.sampled_from(["allow", "deny"])), index=i)
                  for i, s in enumerate(scopes, 1))
    rules = rules + tuple(port_aliases(rules))
    return Policy(path="site.toml", sha256="0" * 64,
                  site=Site(name="t", deploy_root="/d", runtimes=("podman",)),
                  images=Images(default=draw(st.sampled_from(["allow", "deny"])), rules=rules))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule_sets())
def test_registries_conf_never_blocks_what_policy_json_accepts(policy: Policy) -> None:
    """Property, against the scope evaluator: every reference a rendered registries.conf
    prefix blocks is one the rendered policy.json rejects."""
    nodes = node_wide_rules(policy, SNAP)
    allow_default = node_default(policy, SNAP)
    blocked = containers.blockable(nodes, allow_default)
    for ref in REFS:
        if any(containers.prefix_covers(p, ref) for p in blocked):
            assert not decide_node(nodes, allow_default, ref).allowed, (ref, blocked)


def test_port_aliases_do_not_repeat_problems(tmp_path: Path) -> None:
    """The `h:443` and `h:80` copies of a rule never report its problems a second time."""
    from hpcpolicy.directory.against import check_against_directory
    from hpcpolicy.errors import InvalidInput

    keyring = tmp_path / "missing.gpg"
    rules = [{"scope": f"{HOST}/blocked", "action": "deny"},
             {"scope": f"{HOST}/ok", "action": "allow", "signed_by": str(keyring)}]
    with pytest.raises(InvalidInput) as info:
        load_text(site_text(rules, "deny"), "site.toml", str(tmp_path))
    assert len(info.value.problems) == 1, info.value.problems
    policy = load_site([{"scope": f"{HOST}/blocked", "action": "deny", "groups": ["nogroup"]}],
                       "allow")
    assert len(policy.images.rules) == 3
    problems = check_against_directory(policy, SNAP)
    assert [p.path for p in problems] == ["images.rule[1].groups[1]"], problems


def test_audit_reports_the_port_spelling_as_the_written_rule() -> None:
    """`reg.example.org:443/...` is denied by the copy of the rule for `reg.example.org/...`;
    the audit says what it says of the written spelling: rejected node-wide, and a deny other
    names of the registry walk around (images.default = "allow")."""
    from hpcpolicy.audit.decide import (
        POLICY_JSON,
        audit,
        make_context,
        parse_target,
        select_users,
    )
    from tests.audit_fixtures import snapshot

    doc = {"schema": 1, "site": {"name": "t", "deploy_root": "/srv/d", "runtimes": ["podman"]},
           "images": {"default": "allow", "local_transports": "deny",
                      "rule": [{"scope": f"{HOST}/blocked", "action": "deny"}]}}
    policy = load_text(tomli_w.dumps(doc), "site.toml", "/")
    ctx = make_context(policy, snapshot())
    refs = [f"{HOST}/blocked/tool:1.0", f"{HOST}:443/blocked/tool:1.0"]
    written, port = audit(ctx, select_users(ctx, "alice"), [parse_target(r) for r in refs])
    assert not written.allowed and not port.allowed and not port.node_allowed
    for d in (written, port):
        (podman,) = [e for e in d.enforced_by if e.mechanism == POLICY_JSON]
        assert not podman.enforces and "other names of the same registry" in podman.note, d
