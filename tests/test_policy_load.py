"""site.toml loading: SPEC §2 defaults, every section, all problems at once, syntax locations."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Dict

import pytest

from hpcpolicy.errors import InvalidInput
from hpcpolicy.policy.load import load, load_text

REPO = Path(__file__).resolve().parent.parent
SITES = Path(__file__).resolve().parent / "data" / "sites"
PUBLIC_KEYRING = (Path(__file__).resolve().parent / "data" / "keys" / "public.gpg").read_bytes()
EXAMPLE = REPO / "etc" / "site.example.toml"

MINIMAL = """
schema = 1
[site]
name = "c1"
deploy_root = "/srv/hpcpolicy"
"""


def problems(text: str, base_dir: str = "/nonexistent") -> Dict[str, str]:
    """key path -> message of every problem in `text` (asserts it is invalid)."""
    with pytest.raises(InvalidInput) as info:
        load_text(text, "site.toml", base_dir)
    return {p.path: p.message for p in info.value.problems}


def test_defaults_are_those_of_spec() -> None:
    """Values written out from SPEC §2 by hand, not taken from the model's defaults."""
    p = load_text(MINIMAL, "site.toml", "/x")
    assert (p.site.keep, p.site.gc_grace) == (10, 3600)
    assert p.site.runtimes == ("apptainer", "podman", "enroot")
    assert (p.site.apptainer_version, p.site.singularity_version) == ("1.3", "4.1")
    assert (p.site.deploy_owner, p.site.signing_key, p.site.approval) == ("root", None, None)
    d = p.directory
    assert (d.sources, d.min_uid, d.max_uid, d.exclude_disabled) == (("files",), 1000, None, True)
    assert (d.files.passwd, d.files.group, d.ldap) == ("/etc/passwd", "/etc/group", None)
    s = p.subid
    assert (s.enabled, s.strategy, s.start, s.end, s.count, s.key) == (
        True, "ledger", 524288, 1879048191, 65536, "uid")
    assert (s.eligible_groups, s.exclude_users, s.reserved, s.max_revoke) == ((), (), (), 0.05)
    assert p.binds == () and p.node_classes == ()
    assert (p.images.default, p.images.local_transports) == ("deny", "allow")
    r = p.runtime
    assert (r.setuid, r.user_namespaces, r.max_user_namespaces, r.max_net_namespaces) == (
        False, True, 15000, None)
    assert (r.fakeroot, r.mount_home, r.mount_tmp, r.mount_hostfs, r.default_binds) == (
        True, True, True, False, True)
    assert (r.apptainer, r.singularity, r.enroot) == ((), (), ())


def test_ldap_and_approval_defaults() -> None:
    p = load_text(MINIMAL + """
[site.approval]
[directory]
sources = ["ldap"]
[directory.ldap]
uri = ["ldap://127.0.0.1:3389"]
user_base = "ou=people,dc=x"
group_base = "ou=groups,dc=x"
""", "site.toml", "/x")
    assert p.site.approval is not None
    assert (p.site.approval.pam_service, p.site.approval.admin_group) == ("hpcpolicy", "hpcadmin")
    ldap = p.directory.ldap
    assert ldap is not None
    assert (ldap.start_tls, ldap.bind_dn, ldap.bind_password_file) == (False, None, None)
    assert (ldap.user_filter, ldap.group_filter) == (
        "(objectClass=posixAccount)", "(objectClass=posixGroup)")
    assert (ldap.member_attribute, ldap.page_size, ldap.timeout) == ("memberUid", 1000, 30)
    a = ldap.attributes
    assert (a.name, a.uid, a.gid, a.group_name) == ("uid", "uidNumber", "gidNumber", "cn")


def test_example_site_validates_and_holds_every_section() -> None:
    p = load(str(EXAMPLE))
    assert p.path == str(EXAMPLE)
    assert p.sha256 == hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()
    assert p.site.approval is not None and p.directory.ldap is not None
    assert p.subid.reserved == ((1000000, 1065535),)
    assert [b.target for b in p.binds] == ["/scratch", "/etc/localtime", "/opt/nvidia"]
    assert p.binds[2].classes == ("gpu",) and p.binds[2].runtimes == p.site.runtimes
    assert [r.index for r in p.images.rules] == [1, 2]
    assert p.runtime.apptainer == (("enable overlay", "try"),)
    assert p.runtime.enroot == (("ENROOT_ROOTFS_WRITABLE", "yes"),)
    assert p.class_names() == ("default", "gpu")


def test_bind_defaults_target_and_runtimes() -> None:
    p = load_text(MINIMAL + """
runtimes = ["podman", "enroot"]
[[bind]]
source = "/scratch"
[[bind]]
source = "/apps"
target = "/opt/apps"
runtimes = ["enroot"]
required = false
readonly = true
""", "site.toml", "/x")
    first, second = p.binds
    assert (first.target, first.runtimes, first.readonly, first.required) == (
        "/scratch", ("podman", "enroot"), False, True)
    assert (second.target, second.runtimes, second.required, second.readonly) == (
        "/opt/apps", ("enroot",), False, True)


def test_passthrough_tables_keep_file_order() -> None:
    p = load_text(MINIMAL + """
[runtime.apptainer]
"max loop devices" = 128
"enable overlay" = "try"
"allow container sif" = true
[runtime.enroot]
ENROOT_REMAP_ROOT = true
ENROOT_MAX_PROCESSORS = 4
""", "site.toml", "/x")
    assert [n for n, _ in p.runtime.apptainer] == [
        "max loop devices", "enable overlay", "allow container sif"]
    assert dict(p.runtime.apptainer)["allow container sif"] is True
    assert p.runtime.enroot == (("ENROOT_REMAP_ROOT", "yes"), ("ENROOT_MAX_PROCESSORS", "4"))


def test_signed_by_relative_to_site_file_and_keyring_read(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "hpc.gpg").write_bytes(PUBLIC_KEYRING)
    site = tmp_path / "site.toml"
    site.write_text(MINIMAL + """
[[images.rule]]
scope = "registry.example.org/hpc"
action = "allow"
signed_by = "keys/hpc.gpg"
lookaside = "https://sigs.example.org/hpc"
""")
    p = load(str(site))
    rule = p.images.rules[0]
    assert rule.signed_by == "keys/hpc.gpg"
    assert rule.signed_by_path == str(tmp_path / "keys" / "hpc.gpg")
    assert rule.lookaside == "https://sigs.example.org/hpc"
    assert p.keyrings == {str(tmp_path / "keys" / "hpc.gpg"): PUBLIC_KEYRING}


def test_missing_keyring_is_a_problem_at_signed_by(tmp_path: Path) -> None:
    found = problems(MINIMAL + """
[[images.rule]]
scope = "registry.example.org/hpc"
action = "allow"
signed_by = "keys/absent.gpg"
""", str(tmp_path))
    assert "cannot read keyring" in found["images.rule[1].signed_by"]


def test_directory_files_relative_to_site_file() -> None:
    p = load(str(SITES / "online" / "site.toml"))
    assert p.directory.files.passwd == str(SITES / "online" / "passwd")
    assert p.node_classes[0].nodes == "gpu[001-004]"


def test_five_mistakes_give_five_problems() -> None:
    found = problems("""
schema = 1
[site]
name = "Cluster_A"
deploy_root = "/srv/hpcpolicy"
keep = true
[subid]
count = 1000
[[bind]]
source = "/scratch"
tagret = "/x"
[[bind]]
source = "/data"
target = "/proc/x"
""")
    assert set(found) == {"site.name", "site.keep", "subid.count", "bind[1].tagret",
                          "bind[2].target"}
    assert found["site.keep"] == "expected integer, got boolean"
    assert found["bind[1].tagret"] == 'unknown key (did you mean "target"?)'
    assert found["bind[2].target"].startswith("must not be /proc or below it")
    assert "65536" in found["subid.count"]


def test_problem_string_names_file_and_key_path() -> None:
    with pytest.raises(InvalidInput) as info:
        load_text(MINIMAL + '[[bind]]\nsource = "/a"\n[[bind]]\nsource = "/b"\ntarget = "x"\n',
                  "site.toml", "/")
    assert [str(p) for p in info.value.problems] == [
        "site.toml: bind[2].target: must be an absolute path"]


@pytest.mark.parametrize(
    "text, where",
    [
        ("schema = 1\n[site]\nname = \"a\"\nnope\n", "site.toml:4:5"),
        ("schema = 1\n[site]\nname = \"a\n", "site.toml:3:10"),
        ("schema = 1\n[site]\n[site]\n", "site.toml:3:6"),
        ("schema = 1\nx = [1,\n", "site.toml:3:1"),  # at end of document
    ],
)
def test_syntax_error_has_line_and_column(text: str, where: str) -> None:
    with pytest.raises(InvalidInput) as info:
        load_text(text, "site.toml", "/")
    (problem,) = info.value.problems
    assert problem.file == where
    assert str(problem).startswith(where + ": ")
    assert "(at " not in problem.message


def test_non_utf8_is_located(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_bytes(b'schema = 1\n[site]\nname = "\xff"\n')
    with pytest.raises(InvalidInput) as info:
        load(str(site))
    assert str(info.value) == f"{site}:3:9: not valid UTF-8"


def test_missing_file_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as info:
        load(str(tmp_path / "absent.toml"))
    assert "cannot read" in str(info.value)


def test_unknown_key_hints() -> None:
    found = problems(MINIMAL + """
[directory]
sources = ["ldap"]
[directory.ldap]
uri = ["ldaps://ldap.example.org"]
user_base = "ou=people,dc=x"
group_base = "ou=groups,dc=x"
bind_dn = "cn=svc,dc=x"
bind_password = "secret"
""")
    assert "use bind_password_file" in found["directory.ldap.bind_password"]
    assert list(found) == ["directory.ldap.bind_password"]  # the table is unsound: no more rules


def test_misplaced_key_points_at_its_table() -> None:
    found = problems(MINIMAL + "min_uid = 500\n[runtime]\nnodes = \"n1\"\n")
    assert found == {"site.min_uid": "unknown key here (it belongs in [directory])",
                     "runtime.nodes": "unknown key here (it belongs in [[node_class]])"}


def test_reserved_inside_space_is_fine_and_straddling_is_not() -> None:
    p = load_text(MINIMAL + "[subid]\nreserved = [[600000, 700000], [1, 2]]\n", "s", "/")
    assert p.subid.reserved == ((600000, 700000), (1, 2))
    found = problems(MINIMAL + "[subid]\nreserved = [[500000, 600000]]\n")
    assert "straddles" in found["subid.reserved[1]"]


def test_uid_strategy_overflow_uses_max_uid() -> None:
    ok = MINIMAL + "[directory]\nmax_uid = 20000\n[subid]\nstrategy = \"uid\"\n"
    assert load_text(ok, "s", "/").subid.strategy == "uid"
    found = problems(MINIMAL + "[directory]\nmax_uid = 60000\n[subid]\nstrategy = \"uid\"\n")
    assert "only 28664 UIDs" in found["subid.strategy"]


def test_singularity_fakeroot_needs_full_count_but_podman_alone_does_not() -> None:
    text = MINIMAL + 'runtimes = ["podman"]\n[subid]\ncount = 1000\n'
    assert load_text(text, "s", "/").subid.count == 1000
    found = problems(MINIMAL + 'runtimes = ["singularity"]\n[subid]\ncount = 1000\n')
    assert "singularity" in found["subid.count"]


def test_nodes_overlapping_between_classes() -> None:
    found = problems(MINIMAL + """
[[node_class]]
name = "gpu"
nodes = "n[01-10]"
[[node_class]]
name = "login"
nodes = "n[10-12]"
""")
    assert "overlaps node_class[1]" in found["node_class[2].nodes"]


def test_same_target_in_different_classes_is_fine() -> None:
    p = load_text(MINIMAL + """
[[node_class]]
name = "gpu"
nodes = "g[1-2]"
[[bind]]
source = "/opt/a"
target = "/opt/x"
classes = ["gpu"]
[[bind]]
source = "/opt/b"
target = "/opt/x"
classes = ["default"]
""", "s", "/")
    assert len(p.binds) == 2
    found = problems(MINIMAL + """
[[bind]]
source = "/opt/a"
target = "/opt/x"
runtimes = ["enroot"]
[[bind]]
source = "/opt/b"
target = "/opt/x"
runtimes = ["podman", "enroot"]
""")
    assert "bind[1]" in found["bind[2].target"]


def test_validate_json_on_error(cli: Any, tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text(MINIMAL + "keep = 1\n[[bind]]\nsource = \"rel\"\n")
    res = cli("validate", site, "--offline", "--format", "json")
    assert res.rc == 2
    doc = json.loads(res.out)
    assert doc["failed"] is True and doc["changed"] is False
    assert doc["errors"] == [f"{site}: site.keep: must be between 2 and 100000, got 1",
                             f"{site}: bind[1].source: must be an absolute path"]
    assert res.err.splitlines() == [f"hpcpolicy: {e}" for e in doc["errors"]]


def test_validate_ok_text_and_json(cli: Any) -> None:
    site = SITES / "minimal.toml"
    res = cli("validate", site, "--offline")
    assert res.rc == 0
    assert res.out.splitlines()[0] == f"{site}: valid"
    assert "site minimal" in res.out.splitlines()[1]
    doc = json.loads(cli("validate", site, "--offline", "--format", "json").out)
    assert (doc["failed"], doc["valid"], doc["summary"]["site"]) == (False, True, "minimal")


def test_spec_example_site_validates_offline(tmp_path: Path, cli: Any) -> None:
    """SPEC §2's site file as printed there is valid (a rule both signed and group-limited)."""
    spec = Path(__file__).resolve().parents[2] / "shared" / "SPEC.md"
    if not spec.is_file():
        pytest.skip("shared/SPEC.md not beside the repository")
    text = spec.read_text()
    example = text.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "hpc.gpg").write_bytes(PUBLIC_KEYRING)
    (tmp_path / "site.toml").write_text(example)
    res = cli("validate", tmp_path / "site.toml", "--offline")
    assert res.rc == 0, res.err
