"""The audit's claims checked against real skopeo reading the rendered /etc/containers.

Each policy is rendered, mounted over /etc/containers in a private mount namespace
(`registry_fixtures.in_ns`), and skopeo copies every reference from the loopback registry. The
audit must say `allowed` exactly where skopeo succeeds when no rule has groups, and where a
group-limited rule denies a user what the node accepts, skopeo must indeed accept it: the
audit's "NOT enforced by podman, buildah or skopeo" is a true statement.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence

from hpcpolicy.audit.decide import (
    POLICY_JSON,
    REGISTRIES_CONF,
    AuditDecision,
    audit,
    make_context,
    parse_target,
    select_users,
)
from hpcpolicy.directory.model import Group, Snapshot, User
from hpcpolicy.policy.model import Policy
from hpcpolicy.render import containers
from tests.audit_fixtures import make_policy, rule
from tests.registry_fixtures import (  # noqa: F401 - the fixture is used by name
    Registry,
    in_ns,
    registry,
    write_tree,
)

SNAP = Snapshot.of(
    [User("alice", 5001, 5001, "files"), User("carol", 5003, 5003, "files")],
    [Group("bio", 6001, frozenset({"alice"}), "files")],
)
BLOCKED = "is blocked in"
REJECTED = "is rejected by policy"


def skopeo_verdicts(
    reg: Registry, policy: Policy, refs: Sequence[str], work: Path
) -> Dict[str, str]:
    """Render, then one namespace with one `skopeo copy` per reference: `ok` or the error."""
    etc = write_tree(containers.render(policy, SNAP, ()), work / "root")
    script = (
        'n=0; for r in "$@"; do n=$((n+1)); d="$W/c$n"; '
        'if skopeo copy --src-tls-verify=false "docker://$r" "dir:$d" >/dev/null 2>"$d.err"; '
        'then echo "$r ok"; else echo "$r $(tr "\\n" " " < "$d.err")"; fi; done'
    )
    res = in_ns(etc, ["sh", "-c", script, "sh", *refs], reg.base / "home",
                extra_env={"W": str(work)})
    assert res.returncode == 0, res.stderr
    return dict(line.split(" ", 1) for line in res.stdout.splitlines())


def decisions(policy: Policy, refs: Sequence[str]) -> List[AuditDecision]:
    ctx = make_context(policy, SNAP)
    return audit(ctx, select_users(ctx), [parse_target(r) for r in refs])


def mech(d: AuditDecision, name: str) -> bool:
    return [e.enforces for e in d.enforced_by if e.mechanism == name][0]


def test_audit_matches_skopeo(registry: Registry, tmp_path: Path) -> None:  # noqa: F811
    host = registry.host
    refs = [registry.ref(r, t) for r in ("allowed/tool", "blocked/tool", "other/tool", "a/x",
                                         "a/b/x") for t in ("1.0", "2.0")]
    # no groups: the audit's verdict is exactly skopeo's
    plain = make_policy([rule(f"{host}/allowed"), rule(f"{host}/blocked", "deny"),
                         rule(f"{host}/a"), rule(f"{host}/a/b", "deny"),
                         rule(f"{host}/a/x:2.0", "deny")], runtimes=("podman",))
    seen = skopeo_verdicts(registry, plain, refs, tmp_path / "plain")
    for d in decisions(plain, refs):
        text = seen[d.image]
        assert (text == "ok") == d.allowed, (d.image, text)
        assert mech(d, POLICY_JSON)
        if d.image.startswith(f"{host}/blocked/"):
            assert BLOCKED in text and mech(d, REGISTRIES_CONF)
        elif not d.allowed:
            assert REJECTED in text or BLOCKED in text

    # a group rule: carol is denied what the node accepts for alice, and skopeo accepts it
    grouped = make_policy([rule(f"{host}/allowed", groups=["bio"])], runtimes=("podman",))
    seen = skopeo_verdicts(registry, grouped, refs[:1] + refs[4:5], tmp_path / "grouped")
    by_user = {d.user: d for d in decisions(grouped, refs[:1])}
    assert by_user["alice"].allowed and mech(by_user["alice"], POLICY_JSON)
    carol = by_user["carol"]
    assert not carol.allowed and not mech(carol, POLICY_JSON) and carol.unenforced_denial
    assert seen[refs[0]] == "ok"  # the denial really is not enforced by skopeo
    assert REJECTED in seen[refs[4]]


def test_denied_host_is_not_blocked_over_an_allowed_port(registry: Registry,  # noqa: F811
                                                          tmp_path: Path) -> None:
    """registries.conf matches `127.0.0.1` against `127.0.0.1:PORT/...` too, so a denied bare
    host with an allowed scope on one of its ports must not be rendered `blocked`: skopeo pulls
    the allowed reference, and policy.json alone rejects the rest of the host."""
    host = registry.host
    policy = make_policy([rule("127.0.0.1", "deny"), rule(f"{host}/allowed")],
                         runtimes=("podman",))
    ok, other = registry.ref("allowed/tool"), registry.ref("other/tool")
    (d, _) = decisions(policy, [ok])
    assert d.allowed and REGISTRIES_CONF not in [e.mechanism for e in d.enforced_by]
    seen = skopeo_verdicts(registry, policy, [ok, other], tmp_path)
    assert seen[ok] == "ok"
    assert REJECTED in seen[other]
