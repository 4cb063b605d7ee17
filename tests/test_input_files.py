"""Input files as attacks: FIFOs, devices, directories, foreign owners, writable modes.

Each hostile input is what a site-file contributor or a user with a writable directory could
plant; every one must end in exit 2 naming the file and the key path, quickly (no hang, no
memory exhaustion), and nothing may be published. Commands run as real subprocesses with a
timeout, so a hang fails the test instead of stalling the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
import tomli_w
from apply_fixtures import write_directory, write_site

from hpcpolicy.directory.files import read_files
from hpcpolicy.directory.ldap import read_password
from hpcpolicy.directory.read import check_ldap_files
from hpcpolicy.errors import DirectoryError, InvalidInput
from hpcpolicy.policy.inputs import Trust, read_input, trust_for
from hpcpolicy.policy.load import load
from hpcpolicy.policy.model import FilesSource, LdapSource, Policy, Site

NOBODY = 65534


def hpcpolicy(*args: object, stdin: int = subprocess.DEVNULL) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpcpolicy", *map(str, args)],
                          capture_output=True, text=True, timeout=60, stdin=stdin)


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def site_with_files(tmp_path: Path, passwd: str, group: str) -> Path:
    return write_site(tmp_path / "site", tmp_path / "root", (passwd, group))


@pytest.mark.parametrize("kind", ["fifo", "zero", "dir"])
def test_passwd_that_is_not_a_regular_file_is_exit_2_quickly(tmp_path: Path, kind: str) -> None:
    passwd, group = write_directory(tmp_path / "d", 2)
    hostile = {"fifo": lambda: str(fifo(tmp_path / "p")), "zero": lambda: "/dev/zero",
               "dir": lambda: str(tmp_path)}[kind]()
    site = site_with_files(tmp_path, hostile, group)
    res = hpcpolicy("apply", site)
    assert res.returncode == 2, res.stderr
    assert "directory.files.passwd" in res.stderr and hostile in res.stderr
    assert "not a regular file" in res.stderr
    assert not (tmp_path / "root" / "current").exists()


def test_fifo_as_site_file_and_subid_inputs_are_exit_2(tmp_path: Path) -> None:
    pipe = fifo(tmp_path / "pipe")
    for args in (("validate", pipe), ("subid", "check", pipe), ("subid", "check", "/dev/zero")):
        res = hpcpolicy(*args)
        assert res.returncode == 2, (args, res.stderr)
        assert "not a regular file" in res.stderr
    passwd, group = write_directory(tmp_path / "d", 2)
    site = site_with_files(tmp_path, passwd, group)
    assert hpcpolicy("apply", site).returncode == 0
    res = hpcpolicy("subid", "import", pipe, "/dev/zero", "--site", site)
    assert res.returncode == 2 and "a FIFO" in res.stderr and "a character device" in res.stderr


def test_process_substitution_is_refused_not_hung(tmp_path: Path) -> None:
    """`hpcpolicy validate <(cat site.toml)`: a pipe, whose writer may never come."""
    passwd, group = write_directory(tmp_path / "d", 2)
    site = site_with_files(tmp_path, passwd, group)
    cmd = f"{sys.executable} -m hpcpolicy validate <(cat {site})"
    res = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "not a regular file" in res.stderr


def test_passwd_writable_by_group_or_owned_by_a_user_is_refused(tmp_path: Path) -> None:
    passwd, group = write_directory(tmp_path / "d", 2)
    os.chmod(passwd, 0o664)
    os.chown(group, NOBODY, -1)
    site = site_with_files(tmp_path, passwd, group)
    res = hpcpolicy("apply", site)
    assert res.returncode == 2
    assert "directory.files.passwd" in res.stderr and "writable by group or others" in res.stderr
    assert "directory.files.group" in res.stderr and "uid 65534" in res.stderr  # both at once
    assert not (tmp_path / "root" / "current").exists()


def test_site_file_owned_by_a_user_is_refused_unless_they_are_the_deploy_owner(
        tmp_path: Path) -> None:
    passwd, group = write_directory(tmp_path / "d", 2)
    site = site_with_files(tmp_path, passwd, group)
    os.chown(site, NOBODY, -1)
    with pytest.raises(InvalidInput, match=r"site.toml is owned by .*uid 65534"):
        load(str(site))
    doc = site.read_text().replace(f'deploy_owner = "{os.geteuid()}"',
                                   f'deploy_owner = "{NOBODY}"')
    site.write_text(doc)
    assert load(str(site)).site.deploy_owner == str(NOBODY)


def test_trust_names_who_may_own() -> None:
    trust = trust_for(str(NOBODY))
    assert {0, NOBODY, os.geteuid()} <= trust.owners
    assert "root" in trust.who and f"deploy owner {NOBODY}" in trust.who


def test_read_input_size_cap(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * 1001)
    with pytest.raises(InvalidInput, match="larger than 1000 bytes"):
        read_input(str(big), file="site.toml", key="k", max_size=1000)
    assert read_input(str(big), file="", key="", max_size=1001) == b"x" * 1001


def test_read_input_owner_rule(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"data")
    os.chown(f, NOBODY, -1)
    only_root = Trust(frozenset({0}), "root")
    with pytest.raises(InvalidInput) as err:
        read_input(str(f), file="site.toml", key="a.b", max_size=10, trust=only_root)
    assert str(err.value).startswith("site.toml: a.b: ") and "only root may own" in str(err.value)


def _ldap_policy(tmp_path: Path, **kw: object) -> Policy:
    src = LdapSource(uri=("ldaps://ldap.example.org",), **kw)  # type: ignore[arg-type]
    from hpcpolicy.policy.model import Directory

    return Policy(path=str(tmp_path / "site.toml"), sha256="0",
                  site=Site(name="t", deploy_root="/x"),
                  directory=Directory(sources=("ldap",), ldap=src))


def test_bind_password_file_fifo_is_refused_not_hung(tmp_path: Path) -> None:
    pipe = fifo(tmp_path / "secret")
    os.chmod(pipe, 0o600)
    src = LdapSource(uri=("ldap://x",), bind_dn="cn=x", bind_password_file=str(pipe))
    with pytest.raises(InvalidInput, match="bind_password_file: .*a FIFO"):
        read_password(src)


def test_bind_password_file_owned_by_a_user_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("pw\n")
    os.chmod(secret, 0o600)
    os.chown(secret, NOBODY, -1)
    policy = _ldap_policy(tmp_path, bind_dn="cn=x", bind_password_file=str(secret), ca_file=None)
    with pytest.raises(InvalidInput, match=r"directory.ldap.bind_password_file: .*uid 65534"):
        assert policy.directory.ldap is not None
        check_ldap_files(policy, policy.directory.ldap)
    os.chmod(secret, 0o640)  # its own rule still holds when read
    with pytest.raises(DirectoryError, match="readable by group or other"):
        read_password(LdapSource(uri=("ldap://x",), bind_dn="cn=x",
                                 bind_password_file=str(secret)))


def test_world_writable_ca_file_is_refused(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    os.chmod(ca, 0o666)
    policy = _ldap_policy(tmp_path, ca_file=str(ca))
    assert policy.directory.ldap is not None
    with pytest.raises(InvalidInput, match=r"directory.ldap.ca_file: .*writable by anybody"):
        check_ldap_files(policy, policy.directory.ldap)
    os.chmod(ca, 0o644)
    check_ldap_files(policy, policy.directory.ldap)


def test_all_problems_of_both_directory_files_at_once(tmp_path: Path) -> None:
    pipe = fifo(tmp_path / "p")
    with pytest.raises(InvalidInput) as err:
        read_files(FilesSource(str(pipe), "/dev/null"), None, "site.toml")
    keys: List[str] = [p.path for p in err.value.problems]
    assert keys == ["directory.files.passwd", "directory.files.group"]


def test_site_file_size_bound(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_bytes(tomli_w.dumps({"schema": 1}).encode() + b"#" * (16 * 1024 * 1024))
    res = hpcpolicy("validate", site)
    assert res.returncode == 2 and "larger than" in res.stderr
