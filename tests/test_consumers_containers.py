"""Rendered containers-common files read by the real skopeo and podman at /etc/containers.

Each consumer runs in a private mount namespace where the rendered tree is bind-mounted over
/etc/containers (registry_fixtures.in_ns), with no --policy / --registries-conf flags: the
tools find the files at their real paths, as on a node.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List, Sequence, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpcpolicy.directory.model import Snapshot, User
from hpcpolicy.images.scope import decide
from hpcpolicy.policy.model import Bind, ImageRule, Images, Policy, Site
from hpcpolicy.render import containers
from tests.registry_fixtures import (  # noqa: F401 - the fixture is used by name
    REPOS,
    TAGS,
    Registry,
    in_ns,
    registry,
    write_tree,
)

SNAP = Snapshot.of([User("alice", 1000, 100, "files")], [])
BLOCKED = "is blocked in"
REJECTED = "is rejected by policy"
NO_SIGNATURE = "A signature was required, but no signature exists"


def make_policy(
    rules: Sequence[ImageRule],
    default: str = "deny",
    binds: Sequence[Bind] = (),
    keyrings: Dict[str, bytes] | None = None,
) -> Policy:
    return Policy(
        path="site.toml",
        sha256="0" * 64,
        site=Site(name="test", deploy_root="/d", runtimes=("podman",)),
        binds=tuple(binds),
        images=Images(default=default, rules=tuple(rules)),
        keyrings=dict(keyrings or {}),
    )


def render_etc(policy: Policy, root: Path) -> Path:
    tree = containers.render(policy, SNAP, policy.binds)
    return write_tree(tree, root)


def skopeo_copy(reg: Registry, etc: Path, ref: str, dest: Path) -> subprocess.CompletedProcess[str]:
    return reg.skopeo(etc, "copy", "--src-tls-verify=false", f"docker://{ref}", f"dir:{dest}")


def basic_rules(reg: Registry) -> List[ImageRule]:
    return [
        ImageRule(f"{reg.host}/allowed", "allow", index=1),
        ImageRule(f"{reg.host}/blocked", "deny", index=2),
    ]


def test_skopeo_allows_blocks_rejects(registry: Registry, tmp_path: Path) -> None:  # noqa: F811
    etc = render_etc(make_policy(basic_rules(registry)), tmp_path / "root")
    ok = skopeo_copy(registry, etc, registry.ref("allowed/tool"), tmp_path / "a")
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "a" / "manifest.json").exists()
    blocked = skopeo_copy(registry, etc, registry.ref("blocked/tool"), tmp_path / "b")
    assert blocked.returncode == 1 and BLOCKED in blocked.stderr, blocked.stderr
    other = skopeo_copy(registry, etc, registry.ref("other/tool"), tmp_path / "c")
    assert other.returncode == 1 and REJECTED in other.stderr, other.stderr


def test_local_transports_deny(registry: Registry, tmp_path: Path) -> None:  # noqa: F811
    policy = make_policy(basic_rules(registry), default="allow")
    for setting, expect_ok in (("allow", True), ("deny", False)):
        p = Policy(**{**policy.__dict__, "images": Images("allow", setting, policy.images.rules)})
        etc = render_etc(p, tmp_path / setting)
        res = registry.skopeo(etc, "copy", f"oci:{registry.oci}:1.0", f"dir:{tmp_path / 'o'}")
        assert (res.returncode == 0) == expect_ok, res.stderr
        if not expect_ok:
            assert REJECTED in res.stderr


def test_short_names_are_not_searched(
    registry: Registry,  # noqa: F811
    tmp_path: Path,
    pm_dir: Path,
) -> None:
    etc = render_etc(make_policy(basic_rules(registry), default="allow"), tmp_path / "root")
    home = tmp_path / "home"
    res = in_ns(etc, ["podman", *_podman_flags(pm_dir), "pull", "tool"], home)
    assert res.returncode != 0
    # enforcing mode with no search registries: nothing to try, no network lookup
    assert "short-name" in res.stderr or "no unqualified-search-registries" in res.stderr, (
        res.stderr
    )


def _podman_flags(tmp: Path) -> List[str]:
    return [
        "--root", str(tmp / "pm-root"),
        "--runroot", str(tmp / "pm-run"),
        "--tmpdir", str(tmp / "pm-tmp"),
        "--storage-driver", "vfs",
        "--cgroup-manager", "cgroupfs",
        "--events-backend", "file",
    ]  # fmt: skip


@pytest.fixture
def pm_dir() -> Iterator[Path]:
    """Short podman state dir: podman refuses a runroot longer than 50 characters."""
    if shutil.which("podman") is None:
        pytest.skip("podman missing")
    path = Path(tempfile.mkdtemp(prefix="hpm", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_podman_pull_and_containers_conf_volumes(
    registry: Registry,  # noqa: F811
    tmp_path: Path,
    pm_dir: Path,
) -> None:
    src = tmp_path / "volsrc"
    src.mkdir()
    ro = tmp_path / "rosrc"
    ro.mkdir()
    binds = [Bind(str(src), "/data"), Bind(str(ro), "/ref", readonly=True)]
    etc = render_etc(make_policy(basic_rules(registry), binds=binds), tmp_path / "root")
    home = tmp_path / "home"
    flags = _podman_flags(pm_dir)

    def podman(*args: str) -> subprocess.CompletedProcess[str]:
        return in_ns(etc, ["podman", *flags, *args], home, timeout=120)

    pulled = podman("pull", "--tls-verify=false", registry.ref("allowed/tool"))
    assert pulled.returncode == 0, pulled.stderr
    blocked = podman("pull", "--tls-verify=false", registry.ref("blocked/tool"))
    assert blocked.returncode == 125 and BLOCKED in blocked.stderr, blocked.stderr
    other = podman("pull", "--tls-verify=false", registry.ref("other/tool"))
    assert other.returncode == 125 and REJECTED in other.stderr, other.stderr

    created = podman(
        "create", "--name", "vcheck", "--network", "none", registry.ref("allowed/tool"), "true"
    )
    assert created.returncode == 0, created.stderr
    inspected = podman("inspect", "vcheck", "--format", "{{json .Mounts}}")
    assert inspected.returncode == 0, inspected.stderr
    mounts = {m["Destination"]: m for m in json.loads(inspected.stdout)}
    assert mounts["/data"]["Source"] == str(src) and mounts["/data"]["RW"] is True
    assert mounts["/ref"]["Source"] == str(ro) and mounts["/ref"]["RW"] is False
    podman("rm", "-f", "vcheck")


# --- signedBy, fully offline ---------------------------------------------------------------


@pytest.fixture
def gpg_home() -> Iterator[Tuple[Path, str]]:
    if shutil.which("gpg") is None:
        pytest.skip("gpg missing")
    home = Path(tempfile.mkdtemp(prefix="hpg", dir="/tmp"))  # short: agent socket path limit
    os.chmod(home, 0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    try:
        subprocess.run(
            ["gpg", "--batch", "--passphrase", "", "--quick-gen-key",
             "hpcpolicy test <test@example.invalid>", "ed25519", "sign", "never"],
            env=env, check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        listing = subprocess.run(
            ["gpg", "--list-keys", "--with-colons"],
            env=env, check=True, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        fpr = next(ln.split(":")[9] for ln in listing.stdout.splitlines() if ln.startswith("fpr"))
        yield home, fpr
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def test_signed_by_accepts_signed_rejects_unsigned(
    registry: Registry,  # noqa: F811
    tmp_path: Path,
    gpg_home: Tuple[Path, str],
) -> None:
    home, fpr = gpg_home
    pub = subprocess.run(
        ["gpg", "--export", fpr],
        env={**os.environ, "GNUPGHOME": str(home)},
        check=True,
        capture_output=True,
    ).stdout
    sigstore = tmp_path / "sigstore"
    key_path = "/site/keys/hpc.gpg"
    signed = ImageRule(
        f"{registry.host}/signed",
        "allow",
        signed_by="keys/hpc.gpg",
        signed_by_path=key_path,
        lookaside=f"file://{sigstore}",
        index=3,
    )
    policy = make_policy([*basic_rules(registry), signed], keyrings={key_path: pub})
    etc = render_etc(policy, tmp_path / "root")
    env = {"GNUPGHOME": str(home)}
    # sign with the rendered files themselves: registries.d says where signatures go
    push = in_ns(
        etc,
        ["skopeo", "copy", "--dest-tls-verify=false", "--sign-by", fpr,
         f"oci:{registry.oci}:1.0", f"docker://{registry.ref('signed/tool', '1.0')}"],
        registry.base / "home", extra_env=env,
    )  # fmt: skip
    assert push.returncode == 0, push.stderr
    # unsigned, and a different manifest digest (the lookaside is keyed by digest)
    registry.push("signed/tool", "2.0", "--format", "v2s2")
    ok = skopeo_copy(registry, etc, registry.ref("signed/tool", "1.0"), tmp_path / "s1")
    assert ok.returncode == 0, ok.stderr
    bad = skopeo_copy(registry, etc, registry.ref("signed/tool", "2.0"), tmp_path / "s2")
    assert bad.returncode == 1 and NO_SIGNATURE in bad.stderr, bad.stderr
    # the keyring really is what decides: another key's keyring rejects the signed image
    other = make_policy([*basic_rules(registry), signed], keyrings={key_path: b"not a key"})
    etc2 = render_etc(other, tmp_path / "root2")
    wrong = skopeo_copy(registry, etc2, registry.ref("signed/tool", "1.0"), tmp_path / "s3")
    assert wrong.returncode == 1 and "rejected" in wrong.stderr, wrong.stderr


# --- property: decide() == skopeo on the rendered policy.json ------------------------------

PROPERTY_REFS = [
    (repo, tag) for repo in ("a/x", "a/y", "a/b/x", "b/x", "other/tool") for tag in TAGS
][:8]


def _scopes(host: str) -> List[str]:
    return [
        host,
        f"{host}/a",
        f"{host}/a/x",
        f"{host}/a/x:1.0",
        f"{host}/a/b",
        f"{host}/b",
        f"{host}/b/x:2.0",
        "*.0.0.1",
        "*.1",
        "*.example.org",
    ]


def _verdicts(reg: Registry, etc: Path, refs: Sequence[str], work: Path) -> Dict[str, str]:
    """One namespace, one skopeo copy per reference: `ok` or the error text."""
    script = (
        'n=0; for r in "$@"; do n=$((n+1)); d="$W/c$n"; '
        'if skopeo copy --src-tls-verify=false "docker://$r" "dir:$d" >/dev/null 2>"$d.err"; '
        'then echo "$r ok"; else echo "$r $(tr "\\n" " " < "$d.err")"; fi; done'
    )
    res = in_ns(
        etc, ["sh", "-c", script, "sh", *refs], reg.base / "home", extra_env={"W": str(work)}
    )
    assert res.returncode == 0, res.stderr
    return dict(line.split(" ", 1) for line in res.stdout.splitlines())


@st.composite
def _rule_sets(draw: st.DrawFn, host: str) -> List[ImageRule]:
    scopes = draw(st.lists(st.sampled_from(_scopes(host)), unique=True, max_size=6))
    return [
        ImageRule(s, draw(st.sampled_from(["allow", "deny"])), index=i + 1)
        for i, s in enumerate(scopes)
    ]


def test_decide_equals_skopeo(registry: Registry) -> None:  # noqa: F811
    host = registry.host
    refs = [f"{host}/{repo}:{tag}" for repo, tag in PROPERTY_REFS]
    assert set(r for r, _ in PROPERTY_REFS) <= set(REPOS)
    seen: Dict[bool, int] = {True: 0, False: 0}

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(_rule_sets(host), st.sampled_from(["allow", "deny"]))
    def check(rules: List[ImageRule], default: str) -> None:
        with tempfile.TemporaryDirectory(dir=registry.base) as tmp:
            work = Path(tmp)
            etc = render_etc(make_policy(rules, default), work / "root")
            verdicts = _verdicts(registry, etc, refs, work)
            for ref in refs:
                expected = decide(rules, default, ref, set()).allowed
                seen[expected] += 1
                text = verdicts[ref]
                if expected:
                    assert text == "ok", (ref, rules, text)
                else:
                    assert REJECTED in text or BLOCKED in text, (ref, rules, text)

    check()
    assert seen[True] and seen[False]  # both verdicts were exercised
