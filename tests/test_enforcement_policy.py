"""[runtime.storage], [runtime.apptainer_limits] and per-class runtime tables: validation and
what they render.

Bad input goes through the real CLI (`validate --offline`): exit 2 naming the key path. The
rendered apptainer.conf / singularity.conf lines are read back with the parser-rule checker for
every supported release; the shipped ECL is read with a restatement of the upstream schema
(`EclConfig` / `ValidateConfig` in Apptainer's internal/pkg/syecl/syecl.go), written here
independently of hpcpolicy's own checker.
"""

from __future__ import annotations

import binascii
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
import tomli_w
from apptainer_checker import check_file, parse

from hpcpolicy.directory.model import Snapshot
from hpcpolicy.policy import directives as d
from hpcpolicy.policy.load import load
from hpcpolicy.render.tree import render_all

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

KEYS = Path(__file__).parent / "data" / "keys"
FPR = "406952CC9A5CC86027C628C3C89A52B86179D0A5"  # of tests/data/keys/public.gpg (gpg says)
RUNTIMES = ["apptainer", "singularity", "podman", "enroot"]


def _site(extra: Dict[str, Any]) -> Dict[str, Any]:
    site: Dict[str, Any] = {
        "schema": 1,
        "site": {"name": "enforce", "deploy_root": "/srv/hpcpolicy", "runtimes": RUNTIMES,
                 "apptainer_version": "1.0", "singularity_version": "3.9"},
        "directory": {"sources": ["files"]},
        "runtime": {},
    }
    for key, value in extra.items():
        node = site
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return site


def _write(tmp_path: Path, site: Dict[str, Any]) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(tomli_w.dumps(site))
    return path


def _ecl(tmp_path: Path, text: str, mode: int = 0o644) -> None:
    (tmp_path / "keys").mkdir(exist_ok=True)
    path = tmp_path / "keys" / "ecl.toml"
    path.write_text(text)
    path.chmod(mode)


def _keyring(tmp_path: Path, name: str = "public.asc", mode: int = 0o644) -> None:
    (tmp_path / "keys").mkdir(exist_ok=True)
    shutil.copy(KEYS / name, tmp_path / "keys" / "global-pgp-public")
    (tmp_path / "keys" / "global-pgp-public").chmod(mode)


GOOD_ECL = f"""activated = true
[[execgroup]]
tagname = "site"
mode = "whitelist"
dirpath = "/shared/containers/signed"
keyfp = ["{FPR}"]
"""

CASES = [
    ("relative-store", {"runtime.storage": {"additional_image_stores": ["shared/store"]}},
     "runtime.storage.additional_image_stores[1]", "absolute"),
    ("store-in-tmp", {"runtime.storage": {"additional_image_stores": ["/tmp/store"]}},
     "runtime.storage.additional_image_stores[1]", "/tmp"),
    ("store-in-var-tmp", {"runtime.storage": {"additional_image_stores": ["/var/tmp/s"]}},
     "runtime.storage.additional_image_stores[1]", "/var/tmp"),
    ("store-in-home", {"runtime.storage": {"additional_image_stores": ["/home/alice/s"]}},
     "runtime.storage.additional_image_stores[1]", "/home"),
    ("store-unnormalised", {"runtime.storage": {"additional_image_stores": ["/shared/./s"]}},
     "runtime.storage.additional_image_stores[1]", "normalised"),
    ("store-is-graphroot", {"runtime.storage": {"additional_image_stores": ["/var/lib"]}},
     "runtime.storage.additional_image_stores[1]", "graphroot"),
    ("rootless-shared", {"runtime.storage": {"rootless_storage_path": "/local/containers"}},
     "runtime.storage.rootless_storage_path", "per-user"),
    ("rootless-other-var", {"runtime.storage": {"rootless_storage_path": "/local/$LOGNAME"}},
     "runtime.storage.rootless_storage_path", "per-user"),
    ("rootless-relative", {"runtime.storage": {"rootless_storage_path": "local/$UID"}},
     "runtime.storage.rootless_storage_path", "absolute"),
    ("storage-typo", {"runtime.storage": {"additionalimagestores": ["/s"]}},
     "runtime.storage.additionalimagestores", "unknown key"),
    ("storage-driver", {"runtime.storage": {"driver": "overlay2"}},
     "runtime.storage.driver", "overlay"),
    ("mount-program-vfs", {"runtime.storage": {"driver": "vfs",
                                               "mount_program": "/usr/bin/fuse-overlayfs"}},
     "runtime.storage.mount_program", "overlay"),
    ("limits-typo", {"runtime.apptainer_limits": {"container_path": ["/c"]}},
     "runtime.apptainer_limits.container_path", "unknown key"),
    ("allow-unknown-kind", {"runtime.apptainer_limits": {"allow_container": ["sif", "docker"]}},
     "runtime.apptainer_limits.allow_container[2]", "must be one of"),
    ("allow-sif-old-singularity", {"site.singularity_version": "3.8",
                                   "runtime.apptainer_limits": {"allow_container": ["sif"]}},
     "runtime.apptainer_limits.allow_container[1]", "SingularityCE >= 3.9"),
    ("deny-sif-old-singularity", {"site.singularity_version": "3.8",
                                  "runtime.apptainer_limits": {"allow_container": ["dir"]}},
     "runtime.apptainer_limits.allow_container", "cannot turn \"sif\" images off"),
    ("limit-path-relative", {"runtime.apptainer_limits": {"container_paths": ["c"]}},
     "runtime.apptainer_limits.container_paths[1]", "absolute"),
    ("limit-owner-numeric", {"runtime.apptainer_limits": {"container_owners": ["1000"]}},
     "runtime.apptainer_limits.container_owners[1]", "digits"),
    ("limits-and-passthrough", {"runtime.apptainer_limits": {"container_paths": ["/c"]},
                                "runtime.apptainer": {"limit container paths": "/d"}},
     'runtime.apptainer."limit container paths"', "apptainer_limits"),
    ("class-runtime-typo", {"node_class": [{"name": "login", "nodes": "login1",
                                            "runtime": {"fakeroot": False}}]},
     "node_class[1].runtime.fakeroot", "only setuid, user_namespaces"),
    ("class-store-in-tmp", {"node_class": [{"name": "login", "nodes": "login1", "runtime": {
        "storage": {"additional_image_stores": ["/tmp/s"]}}}]},
     "node_class[1].runtime.storage.additional_image_stores[1]", "/tmp"),
    ("class-old-release", {"site.singularity_version": "3.8", "node_class": [{
        "name": "login", "nodes": "login1",
        "runtime": {"apptainer_limits": {"allow_container": ["sif"]}}}]},
     "node_class[1].runtime.apptainer_limits.allow_container[1]", "3.9"),
    ("class-userns-count-0", {"runtime.user_namespaces": False, "runtime.fakeroot": False,
                              "runtime.max_user_namespaces": 0, "node_class": [{
                                  "name": "c", "nodes": "c1",
                                  "runtime": {"user_namespaces": True}}]},
     "node_class[1].runtime.user_namespaces", "max_user_namespaces"),
    ("storage-without-podman", {"site.runtimes": ["apptainer"],
                                "runtime.storage": {"driver": "vfs"}},
     "runtime.storage", "podman is not in site.runtimes"),
    ("limits-without-apptainer", {"site.runtimes": ["podman"],
                                  "runtime.apptainer_limits": {"container_paths": ["/c"]}},
     "runtime.apptainer_limits", "neither apptainer nor singularity"),
    ("keyring-without-ecl", {"runtime.apptainer_limits": {"ecl_keyring": "keys/k"}},
     "runtime.apptainer_limits.ecl_keyring", "needs ecl"),
    ("ecl-missing", {"runtime.apptainer_limits": {"ecl": "keys/none.toml"}},
     "runtime.apptainer_limits.ecl", "does not exist"),
]


@pytest.mark.parametrize("name,extra,path,words", CASES, ids=[c[0] for c in CASES])
def test_bad_enforcement_input_exits_2_at_key_path(tmp_path: Path, cli: Any, name: str,
                                                    extra: Dict[str, Any], path: str,
                                                    words: str) -> None:
    site = _write(tmp_path, _site(extra))
    res = cli("validate", site, "--offline")
    assert res.rc == 2, res.err
    assert f"{site}: {path}: " in res.err, res.err
    assert words in res.err
    assert "Traceback" not in res.err


ECL_CASES = [
    ("mode", GOOD_ECL.replace('"whitelist"', '"allowlist"'), "execgroup[1].mode"),
    ("fingerprint", GOOD_ECL.replace(FPR, FPR[:-1]), "execgroup[1].keyfp[1]"),
    ("relative-dir", GOOD_ECL.replace("/shared/containers/signed", "containers"),
     "execgroup[1].dirpath"),
    ("unknown-key", GOOD_ECL.replace("tagname", "tag_name"), "execgroup[1].tag_name"),
    ("duplicate-dir", GOOD_ECL + GOOD_ECL.split("\n", 1)[1], "execgroup[2].dirpath"),
    ("syntax", "activated = yes\n", "TOML syntax error"),
    ("activated-type", 'activated = "true"\n', "activated: expected true or false"),
    ("signer-not-in-keyring", GOOD_ECL.replace(FPR, "A" * 40),
     "execgroup[1].keyfp[1]: " + "A" * 40 + " is not a key of ecl_keyring"),
]


@pytest.mark.parametrize("name,text,words", ECL_CASES, ids=[c[0] for c in ECL_CASES])
def test_bad_ecl_is_refused_at_ecl(tmp_path: Path, cli: Any, name: str, text: str,
                                   words: str) -> None:
    _ecl(tmp_path, text)
    _keyring(tmp_path)
    site = _write(tmp_path, _site({"runtime.apptainer_limits": {
        "ecl": "keys/ecl.toml", "ecl_keyring": "keys/global-pgp-public"}}))
    res = cli("validate", site, "--offline")
    assert res.rc == 2, res.err
    assert f"{site}: runtime.apptainer_limits.ecl: " in res.err
    assert words in res.err


def test_ecl_and_keyring_follow_the_input_file_rule(tmp_path: Path, cli: Any) -> None:
    _ecl(tmp_path, GOOD_ECL, mode=0o664)
    _keyring(tmp_path, mode=0o600)
    site = _write(tmp_path, _site({"runtime.apptainer_limits": {
        "ecl": "keys/ecl.toml", "ecl_keyring": "keys/global-pgp-public"}}))
    res = cli("validate", site, "--offline")
    assert res.rc == 2
    assert "runtime.apptainer_limits.ecl: " in res.err and "writable by group" in res.err
    assert "runtime.apptainer_limits.ecl_keyring: " in res.err
    assert "world-readable" in res.err


def test_secret_key_is_never_an_ecl_keyring(tmp_path: Path, cli: Any) -> None:
    _ecl(tmp_path, GOOD_ECL)
    (tmp_path / "keys" / "global-pgp-public").write_bytes(bytes([0x94, 0x01, 0x04]))  # tag 5
    site = _write(tmp_path, _site({"runtime.apptainer_limits": {
        "ecl": "keys/ecl.toml", "ecl_keyring": "keys/global-pgp-public"}}))
    res = cli("validate", site, "--offline")
    assert res.rc == 2
    assert "runtime.apptainer_limits.ecl_keyring: " in res.err and "secret key" in res.err


def test_activated_ecl_needs_its_keyring(tmp_path: Path, cli: Any) -> None:
    _ecl(tmp_path, GOOD_ECL)
    site = _write(tmp_path, _site({"runtime.apptainer_limits": {"ecl": "keys/ecl.toml"}}))
    res = cli("validate", site, "--offline")
    assert res.rc == 2
    assert "runtime.apptainer_limits.ecl_keyring: is required with an activated ECL" in res.err


# ------------------------------------------------------------------ a whole valid site

def _full_site(tmp_path: Path) -> Path:
    _ecl(tmp_path, GOOD_ECL)
    _keyring(tmp_path)
    return _write(tmp_path, _site({
        "runtime.storage": {
            "rootless_storage_path": "/local/containers/$UID",
            "additional_image_stores": ["/shared/containers/store"],
            "mount_program": "/usr/bin/fuse-overlayfs",
        },
        "bind": [{"source": "/data", "readonly": True, "runtimes": ["podman", "enroot"]}],
        "node_class": [{
            "name": "login", "nodes": "login[1-2]",
            "runtime": {
                "setuid": True, "user_namespaces": False,
                "apptainer_limits": {
                    "container_paths": ["/shared/containers"],
                    "container_groups": ["hpc"],
                    "allow_container": ["sif", "squashfs"],
                    "ecl": "keys/ecl.toml", "ecl_keyring": "keys/global-pgp-public",
                },
                "storage": {"driver": "vfs",
                            "additional_image_stores": ["/shared/containers/vfs-store"]},
            },
        }],
    }))


def _trees(tmp_path: Path) -> Dict[str, Dict[str, bytes]]:
    policy = load(str(_full_site(tmp_path)))
    return render_all(policy, Snapshot(), [])


def test_storage_conf_is_whole_and_per_class(tmp_path: Path) -> None:
    trees = _trees(tmp_path)
    default = tomllib.loads(trees["default"]["etc/containers/storage.conf"].decode())
    assert default == {"storage": {
        "driver": "overlay", "graphroot": "/var/lib/containers/storage",
        "runroot": "/run/containers/storage",
        "rootless_storage_path": "/local/containers/$UID",
        "options": {"additionalimagestores": ["/shared/containers/store"],
                    "overlay": {"mount_program": "/usr/bin/fuse-overlayfs"}}}}
    login = tomllib.loads(trees["login"]["etc/containers/storage.conf"].decode())
    assert login["storage"]["driver"] == "vfs"
    assert login["storage"]["options"] == {
        "additionalimagestores": ["/shared/containers/vfs-store"]}
    for tree in trees.values():
        conf = tomllib.loads(tree["etc/containers/containers.conf"].decode())
        assert conf["engine"]["env"] == ["CONTAINERS_STORAGE_CONF=/etc/containers/storage.conf"]
        assert conf["containers"]["volumes"] == ["/data:/data:ro"]


def test_no_storage_table_renders_no_storage_conf(tmp_path: Path) -> None:
    policy = load(str(_write(tmp_path, _site({}))))
    tree = render_all(policy, Snapshot(), [])["default"]
    assert "etc/containers/storage.conf" not in tree
    assert "engine" not in tomllib.loads(tree["etc/containers/containers.conf"].decode())


def _releases(dialect: str, oldest: str) -> List[str]:
    ver = d.parse_version(dialect, oldest)
    return [".".join(map(str, r)) for r in d.RELEASES[dialect] if r >= ver]


@pytest.mark.parametrize("dialect,oldest,conf", [
    ("apptainer", "1.0", "etc/apptainer/apptainer.conf"),
    ("singularity", "3.9", "etc/singularity/singularity.conf"),
])
def test_limits_parse_in_every_supported_release(tmp_path: Path, dialect: str, oldest: str,
                                                 conf: str) -> None:
    trees = _trees(tmp_path)
    text = trees["login"][conf].decode()
    assert check_file(text, dialect, oldest) == []
    for release in _releases(dialect, oldest):
        values = parse(text, dialect, release)
        assert values["limit container paths"] == ["/shared/containers"]
        assert values["limit container groups"] == ["hpc"]
        assert values["limit container owners"] == []
        assert [values[f"allow container {k}"] for k in
                ("sif", "encrypted", "squashfs", "extfs", "dir")] == [
            True, False, True, False, False]
        assert values["allow setuid"] is True
    # the default class has no limits: nothing rendered, the package defaults stay
    default = parse(trees["default"][conf].decode(), dialect, oldest)
    assert default["limit container paths"] == []
    assert default["allow container dir"] is True
    assert default["allow setuid"] is False


def test_class_without_user_namespaces_has_no_fakeroot(tmp_path: Path) -> None:
    policy = load(str(_full_site(tmp_path)))
    assert policy.runtime.fakeroot and not policy.runtime_for("login").fakeroot
    trees = render_all(policy, Snapshot(), [])
    sysctl = trees["login"]["etc/sysctl.d/90-hpcpolicy.conf"].decode()
    assert "\nuser.max_user_namespaces = 0\n" in sysctl
    assert "-kernel.unprivileged_userns_clone = 0" in sysctl
    assert "\nuser.max_user_namespaces = 15000\n" in \
        trees["default"]["etc/sysctl.d/90-hpcpolicy.conf"].decode()
    # where the oldest release knows `allow user ns` (Apptainer >= 1.4), it says no as well
    site = tomllib.loads((tmp_path / "site.toml").read_text())
    site["site"]["apptainer_version"] = "1.4"
    newer = load(str(_write(tmp_path, site)))
    text = render_all(newer, Snapshot(), [])["login"]["etc/apptainer/apptainer.conf"].decode()
    for release in _releases("apptainer", "1.4"):
        assert parse(text, "apptainer", release)["allow user ns"] is False


# --- the upstream ECL schema, restated (internal/pkg/syecl/syecl.go) ---------------------

def upstream_ecl(text: str, root: Path) -> Dict[str, Any]:
    """`toml.Unmarshal` into EclConfig, then `ValidateConfig`, as Apptainer does; dirpaths
    are resolved under `root` (the node's /). Raises ValueError with upstream's wording."""
    doc = tomllib.loads(text)
    activated = doc.get("activated", False)
    legacy = doc.get("legacyinsecure", False)
    if not isinstance(activated, bool) or not isinstance(legacy, bool):
        raise ValueError("toml: cannot decode into bool")
    groups = doc.get("execgroup", [])
    seen = set()
    for g in groups:
        tag, mode = g.get("tagname", ""), g.get("mode", "")
        dirpath, fps = g.get("dirpath", ""), g.get("keyfp", [])
        if not all(isinstance(v, str) for v in (tag, mode, dirpath)):
            raise ValueError("toml: cannot decode into string")
        if dirpath in seen:
            raise ValueError(f"a specific dirpath can only appear in one execgroup: {dirpath}")
        seen.add(dirpath)
        if dirpath:
            real = os.path.realpath(root / dirpath.lstrip("/"))
            if not os.path.exists(real):
                raise ValueError(f"lstat {dirpath}: no such file or directory")
            if os.path.join("/", os.path.relpath(real, root)) != dirpath:
                raise ValueError("all execgroup dirpath`s should be fully cleaned with "
                                 "symlinks resolved")
        if mode not in ("whitelist", "whitestrict", "blacklist"):
            raise ValueError("the mode field can only be either: whitelist, whitestrict, "
                             "blacklist")
        for fp in fps:
            try:
                raw = binascii.unhexlify(fp)
            except (binascii.Error, TypeError):
                raw = b""
            if len(raw) != 20:
                raise ValueError("expecting a 40 chars hex fingerprint string")
    return doc


def test_shipped_ecl_parses_with_the_upstream_schema(tmp_path: Path) -> None:
    trees = _trees(tmp_path)
    node = tmp_path / "node"
    (node / "shared/containers/signed").mkdir(parents=True)
    for etc in ("etc/apptainer", "etc/singularity"):
        text = trees["login"][f"{etc}/ecl.toml"].decode()
        doc = upstream_ecl(text, node)
        assert doc["activated"] is True and doc["execgroup"][0]["keyfp"] == [FPR]
        # binary packets: the runtimes read global-pgp-public with ReadKeyRing (no armour)
        assert trees["login"][f"{etc}/global-pgp-public"] == (KEYS / "public.gpg").read_bytes()
        assert f"{etc}/ecl.toml" not in trees["default"]
    with pytest.raises(ValueError, match="no such file"):
        upstream_ecl(trees["login"]["etc/apptainer/ecl.toml"].decode(), tmp_path / "empty")


def test_restated_schema_refuses_what_upstream_refuses(tmp_path: Path) -> None:
    """The restatement can fail: each of ValidateConfig's refusals."""
    (tmp_path / "d").mkdir()
    (tmp_path / "l").symlink_to("d")
    bad = {
        "dup": '[[execgroup]]\nmode = "blacklist"\n[[execgroup]]\nmode = "blacklist"\n',
        "mode": '[[execgroup]]\nmode = "allow"\n',
        "fp": '[[execgroup]]\nmode = "blacklist"\nkeyfp = ["abc"]\n',
        "symlink": '[[execgroup]]\nmode = "blacklist"\ndirpath = "/l"\n',
    }
    for text in bad.values():
        with pytest.raises(ValueError):
            upstream_ecl(text, tmp_path)
    upstream_ecl('[[execgroup]]\nmode = "blacklist"\ndirpath = "/d"\n', tmp_path)


# ------------------------------------------------------------------ what validate can see

@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root and unshare for a private mount namespace")
@pytest.mark.parametrize("mode,rc", [("0777", 2), ("0755", 0)])
def test_validate_judges_a_visible_store_and_names_submounts(tmp_path: Path, mode: str,
                                                             rc: int) -> None:
    import subprocess

    site = _write(tmp_path, _site({
        "site.runtimes": ["podman", "enroot"],
        "runtime.storage": {"additional_image_stores": ["/srv/store"]},
        "bind": [{"source": "/srv/data", "readonly": True}],
    }))
    script = ("set -e; mount -t tmpfs -o mode=0755 tmpfs /srv; mkdir -p /srv/store "
              f"/srv/data/sub; chmod {mode} /srv/store; mount -t tmpfs tmpfs /srv/data/sub; "
              "exec \"$@\"")
    argv = [sys.executable, "-m", "hpcpolicy", "validate", str(site), "--offline"]
    res = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                          "sh", *argv], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == rc, res.stdout + res.stderr
    if rc == 2:
        assert (f"{site}: runtime.storage.additional_image_stores[1]: users can write there "
                "(/srv/store has mode 0777 on this host)") in res.stderr
    else:
        assert (f"{site}: bind[1].readonly: warning: /srv/data has mounts below it on this host "
                "(/srv/data/sub): they stay writable in enroot, podman containers") in res.stdout


def test_store_below_a_directory_home_is_refused_when_the_directory_is_read(
        tmp_path: Path, cli: Any) -> None:
    (tmp_path / "passwd").write_text("root:x:0:0::/root:/bin/sh\n"
                                     "alice:x:5001:5001::/shared/home/alice:/bin/sh\n")
    (tmp_path / "group").write_text("alice:x:5001:\n")
    site = _write(tmp_path, _site({
        "site.runtimes": ["podman"],
        "directory.files": {"passwd": str(tmp_path / "passwd"),
                            "group": str(tmp_path / "group")},
        "runtime.storage": {"additional_image_stores": ["/shared/other",
                                                        "/shared/home/alice/store"]},
    }))
    assert cli("validate", site, "--offline").rc == 0  # the directory is not read offline
    res = cli("validate", site)
    assert res.rc == 2, res.err
    assert (f"{site}: runtime.storage.additional_image_stores[2]: is below the home of alice "
            "(/shared/home/alice)") in res.err
    assert "additional_image_stores[1]" not in res.err


def test_limit_names_must_resolve_in_the_directory(tmp_path: Path, cli: Any) -> None:
    """Apptainer refuses every container when a limit name does not resolve."""
    (tmp_path / "passwd").write_text("alice:x:5001:5001::/home/alice:/bin/sh\n")
    (tmp_path / "group").write_text("alice:x:5001:\nhpc:x:6000:alice\n")
    site = _write(tmp_path, _site({
        "directory.files": {"passwd": str(tmp_path / "passwd"),
                            "group": str(tmp_path / "group")},
        "runtime.apptainer_limits": {"container_owners": ["root", "alice", "bob"],
                                     "container_groups": ["hpc", "physics"]},
    }))
    res = cli("validate", site)
    assert res.rc == 2, res.err
    assert (f"{site}: runtime.apptainer_limits.container_owners[3]: user 'bob' not found in "
            "the directory (files)") in res.err
    assert "container_groups[2]: group 'physics' not found" in res.err
    assert "container_owners[1]" not in res.err and "container_owners[2]" not in res.err


def test_stores_without_a_rootless_path_are_a_warning(tmp_path: Path, cli: Any) -> None:
    site = _write(tmp_path, _site({
        "runtime.storage": {"additional_image_stores": ["/shared/containers/store"]}}))
    res = cli("validate", site, "--offline")
    assert res.rc == 0
    assert (f"{site}: runtime.storage.rootless_storage_path: warning: not set: rootless Podman "
            "keeps each user's storage in $HOME") in res.out
    site = _write(tmp_path, _site({"runtime.storage": {
        "additional_image_stores": ["/shared/containers/store"],
        "rootless_storage_path": "/local/$UID"}}))
    assert "rootless_storage_path" not in cli("validate", site, "--offline").out
