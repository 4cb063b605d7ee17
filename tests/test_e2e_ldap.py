"""End-to-end with a real slapd: `hpcpolicy apply` on a site whose users come from files AND LDAP,
and the failures an administrator meets (unreachable server, wrong password): exit 1, nothing
published, the previous generation stays current."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest
from ldap_fixtures import GROUPS, PEOPLE, READER_DN, READER_PW, LdapServer
from ldap_fixtures import slapd_rfc2307 as slapd_rfc2307  # noqa: F401 - session fixture

from tests.net_fixtures import free_port
from tests.test_e2e_admin import as_json, make_site, subuid_lines

GROUP = "grp007"


@pytest.fixture
def secret(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "ldap.secret"
    path.write_text(READER_PW + "\n")
    os.chmod(path, 0o600)
    yield path


def ldap_site(tmp_path: Path, server: LdapServer, secret: Path, uri: str = "",
              password_file: str = "") -> Path:
    ldap: Dict[str, Any] = {
        "uri": [uri or server.slapd.uri],
        "bind_dn": READER_DN,
        "bind_password_file": password_file or str(secret),
        "user_base": PEOPLE,
        "group_base": GROUPS,
        "timeout": 5,
    }
    return make_site(tmp_path, directory={"sources": ["files", "ldap"], "ldap": ldap},
                     subid={"eligible_groups": ["containers", GROUP], "exclude_users": []})


def expected_ldap_uids(server: LdapServer) -> set:
    gid = server.expected.groups[GROUP][0]
    members = server.expected.groups[GROUP][1]
    return {uid for name, (uid, ugid, disabled) in server.expected.users.items()
            if (name in members or ugid == gid) and not disabled}


def test_apply_reads_files_and_ldap(cli: Any, tmp_path: Path, secret: Path,
                                    slapd_rfc2307: LdapServer) -> None:  # noqa: F811
    site = ldap_site(tmp_path, slapd_rfc2307, secret)
    res = cli("apply", site, "--format", "json")
    assert res.rc == 0, res.err
    keys = {int(line.split(":")[0]) for line in subuid_lines(tmp_path / "shared")}
    want = expected_ldap_uids(slapd_rfc2307)
    assert len(want) > 3
    # files: alice bob erin svc-backup (containers, not disabled); LDAP: grp007's enabled users
    assert keys == want | {1001, 1002, 1005, 1500}


def test_unreachable_ldap_fails_and_keeps_current(cli: Any, tmp_path: Path, secret: Path,
                                                  slapd_rfc2307: LdapServer) -> None:  # noqa: F811
    site = ldap_site(tmp_path, slapd_rfc2307, secret)
    assert cli("apply", site).rc == 0
    before = os.readlink(tmp_path / "shared" / "current")
    site = ldap_site(tmp_path, slapd_rfc2307, secret, uri=f"ldap://127.0.0.1:{free_port()}")
    res = cli("apply", site, "--format", "json")
    assert res.rc == 1
    obj = as_json(res.out)
    assert obj["failed"] is True and "127.0.0.1" in obj["msg"]
    assert "Traceback" not in res.err
    assert os.readlink(tmp_path / "shared" / "current") == before


def test_wrong_password_is_exit_1(cli: Any, tmp_path: Path, secret: Path,
                                  slapd_rfc2307: LdapServer) -> None:  # noqa: F811
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("not-the-password\n")
    os.chmod(wrong, 0o600)
    site = ldap_site(tmp_path, slapd_rfc2307, secret, password_file=str(wrong))
    res = cli("validate", site, "--format", "json")
    assert res.rc == 1
    assert "credentials" in as_json(res.out)["msg"].lower()
    res = cli("apply", site, "--format", "json")
    assert res.rc == 1
    assert not (tmp_path / "shared" / "current").exists()
