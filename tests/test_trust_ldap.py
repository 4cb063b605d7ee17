"""LDAP attacks against a real slapd (tests/ldap_fixtures.py): a server that drips its answer,
referrals that would hide a subtree, a multi-valued ID and a second entry answering for a name.
Every test runs on both backends where python-ldap is installed."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator, List

import ldap_fixtures
import pytest
import tomli_w
from ldap_fixtures import GROUPS, PEOPLE, READER_DN, SUFFIX, Slapd

from hpcpolicy.directory.ldap import read_ldap, read_ldap_state
from hpcpolicy.directory.read import read_directory
from hpcpolicy.errors import DirectoryError, InvalidInput
from hpcpolicy.policy.load import load
from hpcpolicy.policy.model import LdapAttributes, LdapSource
from tests.net_fixtures import TcpProxy

REMOTE = f"ou=remote,{PEOPLE}"
REF = f"ldap://ldap.elsewhere.example.org/{REMOTE}"
ALIASES = f"ou=aliases,{SUFFIX}"
MULTI = f"ou=multi,{SUFFIX}"
HOMES = f"ou=homes,{SUFFIX}"
N_USERS = 60


# fixtures, used by name
backend = ldap_fixtures.backend
secret = ldap_fixtures.secret


def _ldif() -> str:
    out = "".join(ldap_fixtures._header("rfc2307"))
    for ou in ("aliases", "multi", "homes"):
        out += f"dn: ou={ou},{SUFFIX}\nobjectClass: organizationalUnit\nou: {ou}\n\n"

    def user(dn: str, names: List[str], uid: int, extra: str = "") -> str:
        lines = [f"dn: {dn}", "objectClass: inetOrgPerson", "objectClass: posixAccount",
                 f"cn: {dn.split(',')[0].split('=')[1]}", "sn: x"]
        lines += [f"uid: {n}" for n in names]
        lines += [f"uidNumber: {uid}", "gidNumber: 100", "homeDirectory: /home/x"]
        return "\n".join(lines) + ("\n" + extra if extra else "") + "\n\n"

    for i in range(N_USERS):
        out += user(f"uid=u{i:03d},{PEOPLE}", [f"u{i:03d}"], 20000 + i,
                    "description: padding so that the answer takes a while to drip")
    out += (f"dn: {REMOTE}\nobjectClass: referral\nobjectClass: extensibleObject\n"
            f"ou: remote\nref: {REF}\n\n")
    out += f"dn: cn=users,{GROUPS}\nobjectClass: posixGroup\ncn: users\ngidNumber: 100\n\n"
    # a second entry that also answers for bob: getpwnam("bob") would have two candidates
    out += user(f"uid=bob,{ALIASES}", ["bob"], 5001)
    out += user(f"cn=s4,{ALIASES}", ["zed", "bob"], 5002)
    out += user(f"cn=jdoe,{ALIASES}", ["jdoe", "john.doe"], 5003)  # harmless second name
    # uid mapped to a multi-valued attribute (description): which value would NSS take?
    out += user(f"uid=multi,{MULTI}", ["multi"], 5004, "description: 20015\ndescription: 0")
    # a home outside /home, where an image store could be put by mistake
    out += user(f"uid=dora,{HOMES}", ["dora"], 7001).replace("/home/x", "/srv/people/dora")
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    reason = ldap_fixtures.tools_missing()
    if reason:
        pytest.skip(reason)
    slapd = Slapd(tmp_path_factory.mktemp("slapd-trust")).prepare()
    slapd.slapadd(_ldif())
    slapd.start()
    try:
        yield slapd
    finally:
        slapd.stop()


def source(uri: str, secret: str, **kw: Any) -> LdapSource:
    values: dict = dict(uri=(uri,), bind_dn=READER_DN, bind_password_file=secret,
                        user_base=PEOPLE, group_base=GROUPS, timeout=2)
    values.update(kw)
    return LdapSource(**values)


def test_slow_drip_server_stops_at_the_deadline(server: Slapd, secret: str,
                                                backend: str) -> None:
    """Answers drip in 64-byte pieces, 0.05 s apart (about 10 s for the users): each receive
    is far inside `timeout = 2`, so only the overall deadline (1 s) can end the read."""
    proxy = TcpProxy(server.port, chunk=64, pause=0.05)
    try:
        fast = source(server.uri, secret)
        users, _groups = read_ldap(fast, backend=backend)  # the same read, not dripped
        assert len(users) == N_USERS
        src = source(f"ldap://127.0.0.1:{proxy.port}", secret, deadline=1)
        start = time.monotonic()
        with pytest.raises(DirectoryError, match="directory.ldap.deadline"):
            read_ldap(src, backend=backend)
        took = time.monotonic() - start
    finally:
        proxy.close()
    # the whole drip takes ~10 s; ending within deadline + one timeout shows it was cut
    assert took < 1 + 2 + 1.5, took


def test_slow_drip_is_exit_1_for_validate(server: Slapd, secret: str, tmp_path: Path,
                                          cli: Any) -> None:
    proxy = TcpProxy(server.port, chunk=64, pause=0.05)
    site = tmp_path / "site.toml"
    site.write_text(tomli_w.dumps({
        "schema": 1, "site": {"name": "t", "deploy_root": str(tmp_path / "d")},
        "directory": {"sources": ["ldap"], "ldap": {
            "uri": [f"ldap://127.0.0.1:{proxy.port}"], "bind_dn": READER_DN,
            "bind_password_file": secret, "user_base": PEOPLE, "group_base": GROUPS,
            "timeout": 2, "deadline": 1}},
        "subid": {"enabled": False}, "runtime": {"fakeroot": False}}))
    try:
        res = cli("validate", site, "--format", "json")
        audited = cli("audit", site, "--format", "json")  # the same one way into the directory
    finally:
        proxy.close()
    assert res.rc == 1, res.out
    assert "directory.ldap.deadline" in json.loads(res.out)["msg"]
    assert audited.rc == 1, audited.out
    assert "directory.ldap.deadline" in json.loads(audited.out)["msg"]


def test_referrals_are_reported_not_dropped(server: Slapd, secret: str, tmp_path: Path,
                                            backend: str, cli: Any,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """A subtree behind `objectClass: referral` used to vanish without a word."""
    users, _groups, state = read_ldap_state(source(server.uri, secret), backend=backend)
    assert len(users) == N_USERS
    assert state.referrals == [(PEOPLE, REF + "??sub")]  # slapd adds the search scope
    site = tmp_path / "site.toml"
    site.write_text(tomli_w.dumps({
        "schema": 1, "site": {"name": "t", "deploy_root": str(tmp_path / "d")},
        "directory": {"sources": ["ldap"], "ldap": {
            "uri": [server.uri], "bind_dn": READER_DN, "bind_password_file": secret,
            "user_base": PEOPLE, "group_base": GROUPS}},
        "subid": {"enabled": False}, "runtime": {"fakeroot": False}}))
    res = cli("validate", site, "--format", "json")
    assert res.rc == 0, res.out + res.err
    warnings = json.loads(res.out)["warnings"]
    assert len(warnings) == 1 and REF in warnings[0] and PEOPLE in warnings[0], warnings
    assert "referrals are not followed" in caplog.text  # also logged as read (apply, render)
    snapshot = read_directory(load(str(site)))
    assert [w.path for w in snapshot.warnings] == [PEOPLE]
    # the audit reads the directory the same way and says in its provenance who it may miss
    caplog.clear()
    audited = cli("audit", site, "--format", "json")
    assert audited.rc == 0, audited.out + audited.err
    assert json.loads(audited.out)["provenance"]["directory warnings"] == warnings
    assert "referrals are not followed" in caplog.text


def test_multi_valued_id_refused(server: Slapd, secret: str, backend: str) -> None:
    src = source(server.uri, secret, user_base=MULTI,
                 attributes=LdapAttributes(uid="description"))
    with pytest.raises(InvalidInput) as info:
        read_ldap(src, backend=backend)
    (problem,) = info.value.problems
    assert problem.path == f"uid=multi,{MULTI}"
    assert "attribute description has 2 values" in problem.message


def test_second_entry_answering_for_a_name_refused(server: Slapd, secret: str,
                                                   backend: str) -> None:
    with pytest.raises(InvalidInput) as info:
        read_ldap(source(server.uri, secret, user_base=ALIASES), backend=backend)
    (problem,) = info.value.problems
    assert problem.path == f"cn=s4,{ALIASES}"
    assert "also holds 'bob', the name of the user at uid=bob," in problem.message


def _referral_site(tmp_path: Path, uri: str, secret: str, subid: Any = None) -> Path:
    site = tmp_path / "site.toml"
    site.write_text(tomli_w.dumps({
        "schema": 1, "site": {"name": "t", "deploy_root": str(tmp_path / "d")},
        "directory": {"sources": ["ldap"], "ldap": {
            "uri": [uri], "bind_dn": READER_DN, "bind_password_file": secret,
            "user_base": PEOPLE, "group_base": GROUPS}},
        "subid": subid or {"enabled": False}, "runtime": {"fakeroot": False}}))
    return site


def test_apply_returns_the_directory_warnings(server: Slapd, secret: str, tmp_path: Path,
                                              cli: Any, caplog: pytest.LogCaptureFixture
                                              ) -> None:
    """apply states a referral in its JSON `warnings` (worded as validate words it, `--check`
    too) and once in its text output, not only as a log line."""
    site = _referral_site(tmp_path, server.uri, secret)
    validated = json.loads(cli("validate", site, "--format", "json").out)["warnings"]
    assert len(validated) == 1 and REF in validated[0]
    checked = cli("apply", site, "--check", "--init", "--format", "json")
    assert checked.rc == 0, checked.out + checked.err
    assert json.loads(checked.out)["warnings"] == validated
    applied = cli("apply", site, "--init", "--format", "json")
    assert applied.rc == 0, applied.out + applied.err
    assert json.loads(applied.out)["warnings"] == validated
    caplog.clear()
    again = cli("apply", site)  # text: nothing to publish, the warning still said
    assert again.rc == 0, again.out + again.err
    assert again.out.count(validated[0]) == 1, again.out
    assert again.out.count("referrals are not followed") == 1, again.out
    assert "referrals are not followed" not in again.err + caplog.text  # not said twice


def test_apply_text_failure_still_logs_the_directory_warnings(
        server: Slapd, secret: str, tmp_path: Path, cli: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    """Held back for the text output, the warnings are logged after all when apply fails."""
    # a group the directory lacks: refused after the read
    site = _referral_site(tmp_path, server.uri, secret, {"eligible_groups": ["no-such-group"]})
    res = cli("apply", site, "--init")
    assert res.rc == 2, res.out + res.err
    assert "no-such-group" in res.err
    assert "referrals are not followed" in caplog.text


def _store_site(tmp_path: Path, uri: str, secret: str, **attributes: str) -> Path:
    ldap: dict = {"uri": [uri], "bind_dn": READER_DN, "bind_password_file": secret,
                  "user_base": HOMES, "group_base": GROUPS}
    if attributes:
        ldap["attributes"] = attributes
    site = tmp_path / "site.toml"
    site.write_text(tomli_w.dumps({
        "schema": 1,
        "site": {"name": "t", "deploy_root": str(tmp_path / "d"), "runtimes": ["podman"]},
        "directory": {"sources": ["ldap"], "ldap": ldap},
        "subid": {"enabled": False},
        "runtime": {"fakeroot": False, "storage": {
            "additional_image_stores": ["/srv/images", "/srv/people/dora/store"]}}}))
    return site


def test_store_below_an_ldap_home_is_refused(server: Slapd, secret: str, tmp_path: Path,
                                             backend: str, cli: Any) -> None:
    users, _groups = read_ldap(source(server.uri, secret, user_base=HOMES), backend=backend)
    assert [(u.name, u.home) for u in users] == [("dora", "/srv/people/dora")]
    site = _store_site(tmp_path, server.uri, secret)
    assert cli("validate", site, "--offline").rc == 0  # the directory is not read offline
    res = cli("validate", site)
    assert res.rc == 2, res.out + res.err
    assert (f"{site}: runtime.storage.additional_image_stores[2]: is below the home of dora "
            "(/srv/people/dora)") in res.err
    assert "additional_image_stores[1]" not in res.err


def test_home_attribute_is_configurable_and_may_be_absent(server: Slapd, secret: str,
                                                          tmp_path: Path, backend: str,
                                                          cli: Any) -> None:
    """`attributes.home` names the attribute; an entry without it has no home, no error."""
    src = source(server.uri, secret, user_base=HOMES,
                 attributes=LdapAttributes(home="roomNumber"))
    users, _groups = read_ldap(src, backend=backend)
    assert [(u.name, u.home) for u in users] == [("dora", None)]
    site = _store_site(tmp_path, server.uri, secret, home="roomNumber")
    res = cli("validate", site)
    assert res.rc == 0, res.out + res.err
