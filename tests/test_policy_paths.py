"""Path and name rules (pure) and the directory cross-checks of `directory.against`."""

from __future__ import annotations

from typing import Optional

import pytest

from hpcpolicy.directory.against import check_against_directory
from hpcpolicy.directory.model import Group, Snapshot, User
from hpcpolicy.policy.load import load_text
from hpcpolicy.policy.paths import check_account_name, check_bind_target, check_path

SITE = """
schema = 1
[site]
name = "c"
deploy_root = "/srv/x"
[subid]
start = 100000
end = 999999
eligible_groups = ["containers", "bio"]
[[images.rule]]
scope = "registry.example.org/a"
action = "allow"
groups = ["chem"]
"""


@pytest.mark.parametrize(
    "path, problem",
    [
        ("/scratch", None),
        ("/", None),
        ("/a/b-c_d.e/f@g+h", None),
        ("/données", None),
        ("", "must not be empty"),
        ("scratch", "must be an absolute path"),
        ("/a/", "must not end with '/'"),
        ("//a", "must not contain '//'"),
        ("/a/../b", "must not contain '..'"),
        ("/a/./b", "must be normalised (write '/a/b')"),
        ("/a,b", "must not contain ','"),
        ("/a:b", "must not contain ':'"),
        ("/a#b", "must not contain '#'"),
        ("/a\\b", "must not contain '\\\\'"),
        ("/a b", "must not contain whitespace or control characters (found U+0020)"),
        ("/a\u2028b", "must not contain whitespace or control characters (found U+2028)"),
        ("/a\u200bb", "must not contain whitespace or control characters (found U+200B)"),
        ("/a\x00", "must not contain whitespace or control characters (found U+0000)"),
        ("/" + "a" * 5000, "is longer than 4096 characters"),
    ],
)
def test_check_path(path: str, problem: Optional[str]) -> None:
    assert check_path(path) == problem


@pytest.mark.parametrize("target", ["/procfs", "/sysadmin", "/devel", "/etc/hpc", "/usr/local",
                                    "/var/tmp", "/opt/app", "/libexec"])
def test_targets_compared_by_component(target: str) -> None:
    assert check_bind_target(target) is None


@pytest.mark.parametrize("target", ["/proc", "/proc/1/root", "/sys/fs", "/dev", "/dev/null", "/",
                                    "/etc", "/usr", "/var", "/opt", "/bin", "/sbin", "/lib",
                                    "/lib64", "/etc/passwd", "/etc/group", "/etc/shadow",
                                    "/etc/nsswitch.conf"])
def test_forbidden_targets(target: str) -> None:
    assert check_bind_target(target) is not None


@pytest.mark.parametrize("name, ok", [("alice", True), ("svc-backup", True), ("j.doe", True),
                                      ("host$", True), ("1000", False), ("a:b", False),
                                      ("-x", False), ("", False), ("a\nb", False)])
def test_account_names(name: str, ok: bool) -> None:
    assert (check_account_name(name) is None) == ok


def _snapshot(*uids: int, big_gid: int = 150000) -> Snapshot:
    users = [User(f"u{u}", u, 100, "files") for u in uids]
    groups = [Group("containers", 100, frozenset(), "files"),
              Group("big", big_gid, frozenset(), "files")]
    return Snapshot.of(users, groups)


def test_against_names_missing_groups_at_their_keys() -> None:
    policy = load_text(SITE, "site.toml", "/")
    found = [str(p) for p in check_against_directory(policy, _snapshot(1001))]
    assert "site.toml: subid.eligible_groups[2]: group 'bio' not found in the directory " \
        "(files)" in found
    assert "site.toml: images.rule[1].groups[1]: group 'chem' not found in the directory " \
        "(files)" in found


def test_against_counts_and_names_real_ids_in_space() -> None:
    policy = load_text(SITE.replace(', "bio"', "").replace('["chem"]', '["big"]'), "s", "/")
    assert check_against_directory(policy, _snapshot(1001, 99999, 1000000, big_gid=5000)) == []
    (problem,) = check_against_directory(policy, _snapshot(*range(200000, 200007)))
    assert problem.path == "subid.start"
    assert "7 real UIDs: 200000 (u200000)" in problem.message and "and 2 more" in problem.message
    assert "1 real GID: 150000 (big)" in problem.message
