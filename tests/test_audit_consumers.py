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


# --- the profile report's claims, with groups and signed scopes ------------------------------

KEYRING = "/keys/hpc.gpg"


def _signed_site(host: str, local: str = "deny") -> Policy:
    """A signed scope with a group-limited unsigned allow below it (the node-wide union drops
    the signature there), a group-limited allow, a deny and the default."""
    from dataclasses import replace

    policy = make_policy([
        rule(f"{host}/a", signed_by="hpc.gpg"),
        rule(f"{host}/a/b", groups=["bio"]),
        rule(f"{host}/allowed", groups=["bio"]),
        rule(f"{host}/other", "deny"),
    ], runtimes=("podman",), local=local)
    return replace(policy, keyrings={KEYRING: b"not a keyring: nothing verifies"})


def test_profile_report_claims_hold_for_real(registry: Registry,  # noqa: F811
                                             tmp_path: Path) -> None:
    """Every `enforces: true` of policy.json / registries.conf holds when the pull is tried
    (the registry's images are unsigned, so a claimed signature requirement must make the pull
    fail), and every unenforced-* finding is a pull that really succeeds."""
    from hpcpolicy.audit.decide import Observation
    from hpcpolicy.audit.matrix import build_report

    host = registry.host
    policy = _signed_site(host)
    refs = [registry.ref(r) for r in ("a/x", "a/b/x", "allowed/tool", "other/tool", "b/x")]
    seen = skopeo_verdicts(registry, policy, refs, tmp_path)
    ctx = make_context(policy, SNAP)
    report = build_report(ctx, [parse_target(r) for r in refs], Observation(),
                          select_users(ctx))
    checked = 0
    for cell in report.cells:
        d = cell.decision
        ok = seen[d.image] == "ok"
        for e in d.enforced_by:
            if e.mechanism not in (POLICY_JSON, REGISTRIES_CONF) or not e.enforces:
                continue
            checked += 1
            if not d.allowed or d.node_allowed and "signed by" in e.note:
                assert not ok, (d.image, e.note, seen[d.image])  # denied / signature required
            else:
                assert ok, (d.image, e.note, seen[d.image])
    assert checked >= 5
    kinds = {(f["kind"], f["image"]) for f in report.findings}
    assert kinds == {("unenforced-requirement", registry.ref("a/b/x")),
                     ("unenforced-denial", registry.ref("allowed/tool"))}
    for f in report.findings:
        assert seen[f["image"]] == "ok", f  # the gap is real: the unsigned pull succeeds
        assert f["users"] == 1  # carol, who is not in bio
    assert seen[registry.ref("a/x")] != "ok" and seen[registry.ref("other/tool")] != "ok"


_FETCH = r"""
set -e
repo=$1 tag=$2 out=$3
mkdir -p "$out"
accept='application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.v2+json'
curl -sf -H "Accept: $accept" "http://$HOST/v2/$repo/manifests/$tag" -o "$out/manifest.json"
for d in $(grep -o 'sha256:[0-9a-f]*' "$out/manifest.json" | sort -u); do
    curl -sf "http://$HOST/v2/$repo/blobs/$d" -o "$out/${d#sha256:}"
done
printf 'Directory Transport Version: 1.1\n' > "$out/version"
"""


def test_local_transports_allow_is_a_real_bypass(registry: Registry,  # noqa: F811
                                                 tmp_path: Path) -> None:
    """With local_transports = allow, a denied image needs no override: its blobs fetched with
    curl into a dir: layout load with the rendered policy (skopeo copy dir: -> oci:). The
    audit reports a bypass there, and with deny it reports none and the load is refused."""
    import shutil
    import subprocess

    from hpcpolicy.audit.decide import Observation
    from hpcpolicy.audit.matrix import build_report

    if shutil.which("curl") is None:
        import pytest

        pytest.skip("curl missing")
    denied = registry.ref("other/tool")
    layout = tmp_path / "fetched"
    subprocess.run(["sh", "-c", _FETCH, "sh", "other/tool", "1.0", str(layout)], check=True,
                   env={"HOST": registry.host, "PATH": "/usr/bin:/bin"}, timeout=60)
    for local, works in (("allow", True), ("deny", False)):
        policy = _signed_site(registry.host, local)
        ctx = make_context(policy, SNAP)
        report = build_report(ctx, [parse_target(denied)], Observation(), select_users(ctx))
        bypass = [f for f in report.findings if f["kind"] == "bypass"]
        assert bool(bypass) == works and all(not c.decision.allowed for c in report.cells)
        etc = write_tree(containers.render(policy, SNAP, ()), tmp_path / f"root-{local}")
        res = in_ns(etc, ["skopeo", "copy", f"dir:{layout}", f"oci:{tmp_path}/out-{local}:x"],
                    registry.base / "home")
        assert (res.returncode == 0) == works, res.stderr
        pulled = skopeo_verdicts(registry, policy, [denied], tmp_path / f"pull-{local}")
        assert pulled[denied] != "ok"  # the registry pull itself is refused either way


def test_deny_rule_under_default_allow_is_a_real_bypass(registry: Registry,  # noqa: F811
                                                        tmp_path: Path) -> None:
    """Under images.default = "allow" a deny rule is a blocklist: the same registry under
    another name (localhost for 127.0.0.1) meets no rule and gets the default. The audit
    reports a bypass there instead of an enforced denial, and skopeo pulls it."""
    from hpcpolicy.audit.decide import Observation
    from hpcpolicy.audit.matrix import build_report

    policy = make_policy([rule(f"{registry.host}/other", "deny")], default="allow",
                         runtimes=("podman",))
    denied = registry.ref("other/tool")
    ctx = make_context(policy, SNAP)
    report = build_report(ctx, [parse_target(denied)], Observation(), select_users(ctx))
    assert [f["kind"] for f in report.findings] == ["bypass"]
    assert 'images.default = "deny"' in report.findings[0]["remedy"]
    other_name = f"localhost:{registry.port}/other/tool:1.0"
    seen = skopeo_verdicts(registry, policy, [denied, other_name], tmp_path)
    assert seen[denied] != "ok" and seen[other_name] == "ok", seen


def _generated_sites(host: str, count: int) -> List[Policy]:
    """Seeded rule sets over the registry's repositories, with groups and signed scopes (a
    scope is either signed for everybody or group-limited and unsigned: the site file allows
    no mix)."""
    import random
    from dataclasses import replace

    rnd = random.Random(8)
    scopes = [f"{host}/{s}" for s in ("a", "a/b", "a/x", "b", "allowed", "other")] + [host]
    out = []
    for _ in range(count):
        rules = []
        for scope in rnd.sample(scopes, 4):
            kind = rnd.choice(("signed", "group", "deny", "plain"))
            if kind == "signed":
                rules.append(rule(scope, signed_by="hpc.gpg"))
            elif kind == "group":
                rules.append(rule(scope, rnd.choice(("allow", "deny")),
                                  groups=[rnd.choice(("bio", "nobody-group"))]))
            else:
                rules.append(rule(scope, "deny" if kind == "deny" else "allow"))
        policy = make_policy(rules, default=rnd.choice(("allow", "deny")),
                             runtimes=("podman",))
        out.append(replace(policy, keyrings={KEYRING: b"not a keyring: nothing verifies"}))
    return out


def test_generated_claims_hold_for_real(registry: Registry, tmp_path: Path) -> None:  # noqa: F811
    """For generated sites with groups and signed scopes: every `enforces: true` of
    policy.json / registries.conf is what skopeo does with the rendered files, and every
    unenforced-* finding is a pull that succeeds (the images are unsigned)."""
    from hpcpolicy.audit.decide import Observation
    from hpcpolicy.audit.matrix import build_report

    snap = Snapshot.of(SNAP.users.values(), [*SNAP.groups.values(),
                                             Group("nobody-group", 6002, frozenset(), "files")])
    refs = [registry.ref(r) for r in ("a/x", "a/b/x", "a/y", "b/x", "allowed/tool",
                                      "other/tool")]
    claims: List[tuple] = []
    gaps: List[str] = []
    for n, policy in enumerate(_generated_sites(registry.host, 4)):
        etc = write_tree(containers.render(policy, snap, ()), tmp_path / f"root{n}")
        script = ('for r in "$@"; do d=$(mktemp -d); if skopeo copy --src-tls-verify=false '
                  '"docker://$r" "dir:$d/i" >/dev/null 2>&1; then echo "$r ok"; '
                  'else echo "$r no"; fi; done')
        res = in_ns(etc, ["sh", "-c", script, "sh", *refs], registry.base / "home")
        seen = dict(line.split(" ", 1) for line in res.stdout.splitlines())
        ctx = make_context(policy, snap)
        report = build_report(ctx, [parse_target(r) for r in refs], Observation(),
                              select_users(ctx))
        for cell in report.cells:
            d = cell.decision
            for e in d.enforced_by:
                if e.mechanism in (POLICY_JSON, REGISTRIES_CONF) and e.enforces:
                    needs_signature = d.allowed and "signed by" in e.note
                    expect = "ok" if d.allowed and not needs_signature else "no"
                    assert seen[d.image] == expect, (n, policy.images.rules, d, e)
                    claims.append((d.allowed, needs_signature))
        for f in report.findings:
            if f["kind"] in ("unenforced-denial", "unenforced-requirement"):
                assert seen[f["image"]] == "ok", (n, f)
                gaps.append(f["kind"])
    # the seeded sets exercise every kind of claim (the test cannot pass vacuously)
    assert {(True, False), (True, True), (False, False)} <= set(claims), claims
    assert {"unenforced-denial", "unenforced-requirement"} <= set(gaps), gaps
