"""LDAP reader against a real slapd (tests/ldap_fixtures.py): every path, both backends."""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Iterator, List, Set, Tuple

import ldap_fixtures
import pytest
from ldap_fixtures import (
    BROKEN,
    FUTURE_DAYS,
    GROUPS,
    PAST_DAYS,
    PEOPLE,
    READER2_DN,
    READER_DN,
    UGROUPS,
    LdapServer,
    make_ca,
)

from hpcpolicy.directory.ldap import read_ldap
from hpcpolicy.directory.model import Group, User
from hpcpolicy.directory.read import read_directory
from hpcpolicy.errors import DirectoryError, InvalidInput
from hpcpolicy.policy.model import (
    Directory,
    FilesSource,
    LdapAttributes,
    LdapSource,
    Policy,
    Site,
)
from tests.net_fixtures import free_port

# fixtures, used by name (the servers are session-scoped)
slapd_rfc2307 = ldap_fixtures.slapd_rfc2307
slapd_rfc2307bis = ldap_fixtures.slapd_rfc2307bis
backend = ldap_fixtures.backend
secret = ldap_fixtures.secret


def reader(server: LdapServer, secret: str, **kw: Any) -> LdapSource:
    base: Dict[str, Any] = dict(
        uri=(server.slapd.uri,),
        bind_dn=READER_DN,
        bind_password_file=secret,
        user_base=PEOPLE,
        group_base=GROUPS,
        ca_file=server.slapd.ca_file,
        timeout=5,
    )
    base.update(kw)
    return LdapSource(**base)


def as_dicts(
    result: Tuple[List[User], List[Group]],
) -> Tuple[Dict[str, Tuple[int, int, bool]], Dict[str, Tuple[int, Set[str]]]]:
    users, groups = result
    assert all(u.source == "ldap" for u in users) and all(g.source == "ldap" for g in groups)
    return (
        {u.name: (u.uid, u.gid, u.disabled) for u in users},
        {g.name: (g.gid, set(g.members)) for g in groups},
    )


# ------------------------------------------------------------------------------ rfc2307


def test_rfc2307_full_read_matches_what_was_loaded(
    slapd_rfc2307: LdapServer, secret: str, backend: str
) -> None:
    users, groups = as_dicts(read_ldap(reader(slapd_rfc2307, secret), backend=backend))
    exp = slapd_rfc2307.expected
    assert len(users) == 1000  # more than the server's size limit of 500
    assert users == exp.users
    assert groups == exp.groups
    kinds = {name for name, (_u, _g, disabled) in users.items() if disabled}
    assert "u000003" in kinds  # shadowExpire in the past
    assert "u000005" in kinds  # nsAccountLock: TRUE
    assert "u000007" in kinds  # /sbin/nologin
    assert ("u000008" in kinds) == slapd_rfc2307.slapd.ppolicy  # pwdAccountLockedTime
    for fine in ("u000004", "u000006", "u000009", "u000010"):  # future, false, -1, nothing
        assert fine not in kinds


def test_small_pages_still_read_everything(
    slapd_rfc2307: LdapServer, secret: str, backend: str
) -> None:
    users, _ = as_dicts(read_ldap(reader(slapd_rfc2307, secret, page_size=97), backend=backend))
    assert users == slapd_rfc2307.expected.users


def test_shadow_expire_judged_against_now(
    slapd_rfc2307: LdapServer, secret: str, backend: str
) -> None:
    src = reader(slapd_rfc2307, secret)
    before, _ = as_dicts(read_ldap(src, now=(PAST_DAYS - 1) * 86400.0, backend=backend))
    on_day, _ = as_dicts(read_ldap(src, now=PAST_DAYS * 86400.0, backend=backend))
    after, _ = as_dicts(read_ldap(src, now=(FUTURE_DAYS + 1) * 86400.0, backend=backend))
    assert not before["u000003"][2] and on_day["u000003"][2]
    assert not on_day["u000004"][2] and after["u000004"][2]
    assert not after["u000009"][2]  # shadowExpire -1 never expires


@pytest.mark.parametrize("who", ["anonymous", "reader2"])
def test_size_limit_truncation_fails_loudly(
    slapd_rfc2307: LdapServer, secret: str, backend: str, who: str
) -> None:
    src = reader(slapd_rfc2307, secret)
    if who == "anonymous":
        src = replace(src, bind_dn=None, bind_password_file=None)
    else:
        src = replace(src, bind_dn=READER2_DN)
    with pytest.raises(DirectoryError) as info:
        read_ldap(src, backend=backend)
    text = str(info.value)
    # ldap3 streams the 500 entries the server sent; libldap drops the failed page whole
    assert ("stopped after 500 entries" if backend == "ldap3" else "stopped after ") in text
    assert "sizeLimitExceeded (4)" in text and "truncated" in text
    assert "size.prtotal=unlimited" in text
    if who == "reader2":
        assert READER2_DN in text


def test_ldaps_and_starttls_verify_with_ca_file(
    slapd_rfc2307: LdapServer, secret: str, backend: str
) -> None:
    s = slapd_rfc2307.slapd
    for src in (
        reader(slapd_rfc2307, secret, uri=(s.ldaps_uri,)),
        # by name: on Python >= 3.12 ldap3's hostname check accepts DNS names only
        reader(slapd_rfc2307, secret, uri=(s.uri.replace("127.0.0.1", "localhost"),),
               start_tls=True),
    ):
        users, _ = as_dicts(read_ldap(src, backend=backend))
        assert users == slapd_rfc2307.expected.users


@pytest.fixture(scope="module")
def wrong_ca(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(make_ca(tmp_path_factory.mktemp("wrongca"), "other-ca")[0])


@pytest.mark.parametrize("mode", ["ldaps", "starttls"])
def test_wrong_ca_is_refused(
    slapd_rfc2307: LdapServer, secret: str, backend: str, wrong_ca: str, mode: str
) -> None:
    s = slapd_rfc2307.slapd
    src = reader(slapd_rfc2307, secret, ca_file=wrong_ca)
    src = replace(src, uri=(s.ldaps_uri,)) if mode == "ldaps" else replace(src, start_tls=True)
    with pytest.raises(DirectoryError, match=r"(?i)certificate verif"):
        read_ldap(src, backend=backend)


def test_missing_ca_file(slapd_rfc2307: LdapServer, secret: str, backend: str,
                         tmp_path: Path) -> None:
    src = reader(slapd_rfc2307, secret, ca_file=str(tmp_path / "none.pem"), start_tls=True)
    with pytest.raises(DirectoryError, match="none.pem: no such file"):
        read_ldap(src, backend=backend)


def test_wrong_password(slapd_rfc2307: LdapServer, tmp_path: Path, backend: str) -> None:
    bad = tmp_path / "bad.secret"
    bad.write_text("nope")
    bad.chmod(0o600)
    with pytest.raises(
        DirectoryError, match=r"bind as cn=reader,.* failed: .*nvalid.?[cC]redentials \(49\)"
    ) as info:
        read_ldap(reader(slapd_rfc2307, str(bad)), backend=backend)
    assert info.value.exit_code == 1


def test_readable_password_file_refused(slapd_rfc2307: LdapServer, secret: str) -> None:
    os.chmod(secret, 0o644)
    with pytest.raises(DirectoryError, match=r"ldap.secret: bind password file has mode 0644"):
        read_ldap(reader(slapd_rfc2307, secret))
    os.chmod(secret, 0o640)
    with pytest.raises(DirectoryError, match="mode 0640, readable by group or other"):
        read_ldap(reader(slapd_rfc2307, secret))


def test_password_file_edge_cases(slapd_rfc2307: LdapServer, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    empty.chmod(0o600)
    with pytest.raises(DirectoryError, match="empty bind password"):
        read_ldap(reader(slapd_rfc2307, str(empty)))
    with pytest.raises(DirectoryError, match="cannot read bind password"):
        read_ldap(reader(slapd_rfc2307, str(tmp_path / "absent")))
    src = replace(reader(slapd_rfc2307, str(empty)), bind_password_file=None)
    with pytest.raises(DirectoryError, match="bind_dn is set but bind_password_file is not"):
        read_ldap(src)


def test_failover_from_closed_port(slapd_rfc2307: LdapServer, secret: str, backend: str) -> None:
    closed = f"ldap://127.0.0.1:{free_port()}"
    src = reader(slapd_rfc2307, secret, uri=(closed, slapd_rfc2307.slapd.uri))
    users, _ = as_dicts(read_ldap(src, backend=backend))
    assert users == slapd_rfc2307.expected.users


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP port that accepts connections and never answers (a hung server)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    held: List[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"ldap://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    sock.close()


def test_failover_from_hung_server_after_timeout(
    slapd_rfc2307: LdapServer, secret: str, backend: str, silent_server: str
) -> None:
    src = reader(slapd_rfc2307, secret, uri=(silent_server, slapd_rfc2307.slapd.uri), timeout=1)
    users, _ = as_dicts(read_ldap(src, backend=backend))
    assert len(users) == 1000


def test_all_servers_down_names_each(slapd_rfc2307: LdapServer, secret: str, backend: str,
                                     silent_server: str) -> None:
    closed = f"ldap://127.0.0.1:{free_port()}"
    src = reader(slapd_rfc2307, secret, uri=(closed, silent_server), timeout=1)
    with pytest.raises(DirectoryError) as info:
        read_ldap(src, backend=backend)
    text = str(info.value)
    assert text.startswith("no LDAP server could be read: ")
    assert f"{closed}: " in text and f"{silent_server}: " in text


def test_ldapi_sasl_external(slapd_rfc2307: LdapServer, backend: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("the fixture maps only root's peer credentials to the rootdn")
    s = slapd_rfc2307.slapd
    src = LdapSource(uri=(s.ldapi_uri,), user_base=PEOPLE, group_base=GROUPS, timeout=5)
    users, groups = as_dicts(read_ldap(src, backend=backend))
    assert users == slapd_rfc2307.expected.users  # the rootdn has no size limit
    assert groups == slapd_rfc2307.expected.groups


def test_missing_base_and_bad_filter(slapd_rfc2307: LdapServer, secret: str,
                                     backend: str) -> None:
    src = reader(slapd_rfc2307, secret, user_base="ou=nowhere,dc=example,dc=org")
    with pytest.raises(DirectoryError, match=r"ou=nowhere.*base does not exist"):
        read_ldap(src, backend=backend)
    src = reader(slapd_rfc2307, secret, user_filter="(uid=x")
    with pytest.raises(DirectoryError, match=r"(?i)filter"):
        read_ldap(src, backend=backend)


def test_broken_entries_all_reported(slapd_rfc2307: LdapServer, secret: str,
                                     backend: str) -> None:
    attrs = LdapAttributes(uid="employeeNumber")
    src = reader(slapd_rfc2307, secret, user_base=BROKEN, attributes=attrs)
    with pytest.raises(InvalidInput) as info:
        read_ldap(src, backend=backend)
    found = {(p.path, p.message) for p in info.value.problems}
    not_int = "is not an integer in 0..4294967294"
    assert {p.file for p in info.value.problems} == {slapd_rfc2307.slapd.uri}
    assert found == {
        (f"cn=noid,{BROKEN}", "missing attribute employeeNumber"),
        (f"cn=textid,{BROKEN}", f"attribute employeeNumber: '12x' {not_int}"),
        (f"cn=negid,{BROKEN}", f"attribute employeeNumber: '-5' {not_int}"),
        (f"cn=twin,{BROKEN}",
         f"uid 30001 of user 'twin' already used by 'okay' (cn=okay,{BROKEN})"),
        (f"cn=bad name,{BROKEN}",
         "attribute uid: name 'bad name' contains ' ' (whitespace, ':', ',' or control character)"),
    }, found


# ------------------------------------------------------------------------------ rfc2307bis


def test_rfc2307bis_member_dns_nested_and_cyclic(
    slapd_rfc2307bis: LdapServer, secret: str, backend: str
) -> None:
    src = reader(slapd_rfc2307bis, secret, member_attribute="member")
    users, groups = as_dicts(read_ldap(src, backend=backend))
    exp = slapd_rfc2307bis.expected
    assert users == exp.users
    assert groups == exp.groups
    members = {name: m for name, (_gid, m) in groups.items()}
    for name in ("nest-a", "nest-b", "nest-c"):  # a -> b -> c -> a
        assert members[name] == {"u000001", "u000002", "u000003"}
    # nested leaf, a user DN spelled in another case/spacing, a dangling DN ignored
    assert members["top"] == {"u000000", "u000002"}


def test_rfc2307bis_unique_member(slapd_rfc2307bis: LdapServer, secret: str,
                                  backend: str) -> None:
    src = reader(slapd_rfc2307bis, secret, member_attribute="uniqueMember", group_base=UGROUPS)
    _, groups = as_dicts(read_ldap(src, backend=backend))
    assert groups == slapd_rfc2307bis.expected.ugroups


def test_active_directory_style_names(slapd_rfc2307bis: LdapServer, secret: str,
                                      backend: str) -> None:
    attrs = LdapAttributes(name="sAMAccountName")
    src = reader(slapd_rfc2307bis, secret, member_attribute="member", attributes=attrs)
    users, groups = as_dicts(read_ldap(src, backend=backend))
    exp = slapd_rfc2307bis.expected
    assert users == {exp.sam[n]: v for n, v in exp.users.items()}
    assert groups["nest-a"][1] == {"AD000001", "AD000002", "AD000003"}
    assert groups == {
        g: (gid, {exp.sam[m] for m in members}) for g, (gid, members) in exp.groups.items()
    }


def test_member_uid_on_rfc2307bis_groups_is_empty(slapd_rfc2307bis: LdapServer,
                                                   secret: str) -> None:
    """memberUid against DN-valued groups yields no members (a config mistake, not a crash)."""
    _, groups = as_dicts(read_ldap(reader(slapd_rfc2307bis, secret)))
    assert all(not m for _gid, m in groups.values())


# ------------------------------------------------------------------------------ merge with files


def _policy(tmp_path: Path, src: LdapSource, passwd: str, group: str,
            order: Tuple[str, ...]) -> Policy:
    (tmp_path / "passwd").write_text(passwd)
    (tmp_path / "group").write_text(group)
    files = FilesSource(passwd=str(tmp_path / "passwd"), group=str(tmp_path / "group"))
    return Policy(
        path="site.toml",
        sha256="0",
        site=Site(name="t", deploy_root="/nonexistent"),
        directory=Directory(sources=order, files=files, ldap=src),
    )


def test_files_and_ldap_merge(slapd_rfc2307: LdapServer, secret: str, tmp_path: Path) -> None:
    passwd = "root:x:0:0::/root:/bin/bash\nu000010:x:20010:5010::/h:/sbin/nologin\n"
    group = "root:x:0:\ngrp010:x:5010:localuser\n"
    for order in (("files", "ldap"), ("ldap", "files")):
        snap = read_directory(_policy(tmp_path, reader(slapd_rfc2307, secret), passwd, group,
                                      order))
        assert snap.users["u000010"].source == "files+ldap"
        assert snap.users["u000010"].disabled  # the local nologin shell counts
        assert snap.users["root"].source == "files"
        assert snap.users["u000011"].source == "ldap"
        assert "localuser" in snap.groups["grp010"].members
        assert snap.groups["grp010"].members >= slapd_rfc2307.expected.groups["grp010"][1]
        assert len(snap.users) == 1001


@pytest.mark.parametrize("order", [("files", "ldap"), ("ldap", "files")])
def test_files_and_ldap_conflicts(slapd_rfc2307: LdapServer, secret: str, tmp_path: Path,
                                  order: Tuple[str, ...]) -> None:
    passwd = (
        "u000010:x:1234:5010::/h:/bin/bash\n"  # same name, other uid
        "intruder:x:20011:5011::/h:/bin/bash\n"  # same uid as u000011
    )
    group = "grp010:x:9999:\n"  # same name, other gid
    pol = _policy(tmp_path, reader(slapd_rfc2307, secret), passwd, group, order)
    with pytest.raises(InvalidInput) as info:
        read_directory(pol)
    text = "\n".join(str(p) for p in info.value.problems)
    assert len(info.value.problems) == 3, text
    uri = slapd_rfc2307.slapd.uri
    assert "user 'u000010' has uid" in text and "uid 1234" in text and "uid 20010" in text
    assert "uid 20011 is user" in text and "'intruder'" in text and "'u000011'" in text
    assert "group 'grp010' has gid" in text
    assert f"ldap ({uri} {PEOPLE})" in text and f"files ({tmp_path / 'passwd'})" in text
    first = "files" if order[0] == "files" else "ldap"
    assert text.splitlines()[0].split(": ", 1)[1].split(" in ")[1].startswith(first)


# ------------------------------------------------------------------------------ fast paths


NAMES = [b"alice", b"bad name", b"", b"\xff\xfe", "jos\u00e9".encode(), b"a:b", b"x\x00"]
IDS = [b"0", b"1001", b"4294967294", b"4294967295", b"-1", b"+5", b" 5", b"007", b"1_0",
       "\u0661\u0662".encode(), b"12x"]
SHELLS = [b"/bin/bash", b"/sbin/nologin", b" /sbin/nologin ", b"\x1c/bin/false", b"/bin/false"]
EXPIRES = [b"-1", b"0", b"19000", b"19001", b"99999", b" 5", b"+3", b"x", b"-0"]
LOCKS = [b"TRUE", b"true ", b"false", b""]
HOMES = [b"/home/alice", b"", b"/srv/h\xff", b"relative"]


def _values(pool: List[bytes]) -> Any:
    from hypothesis import strategies as st

    return st.lists(st.sampled_from(pool), max_size=2)


def _entry_attrs() -> Any:
    """Any mix of the attributes, or (half the time) an entry with one plausible name and IDs."""
    from hypothesis import strategies as st

    locks = {
        "loginshell": _values(SHELLS), "shadowexpire": _values(EXPIRES),
        "nsaccountlock": _values(LOCKS), "pwdaccountlockedtime": _values([b"20240101Z"]),
        "homedirectory": _values(HOMES),
    }
    one = st.sampled_from
    plain = st.fixed_dictionaries(
        {"uid": st.lists(one(NAMES[:2] + NAMES[4:6]), min_size=1, max_size=1),
         "uidnumber": st.lists(one(IDS[:4] + IDS[7:8]), min_size=1, max_size=1),
         "gidnumber": st.lists(one(IDS[:4]), min_size=1, max_size=1)},
        optional=locks,
    )
    anything = st.fixed_dictionaries(
        {}, optional={"uid": _values(NAMES), "uidnumber": _values(IDS),
                      "gidnumber": _values(IDS), **locks},
    )
    return st.one_of(plain, anything)


def test_plain_user_path_agrees_with_the_checked_path() -> None:
    """Whenever the fast path accepts an entry, the full checks accept it and agree."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from hpcpolicy.directory.ldap_interpret import _checked_user, _plain_user

    src = LdapSource(uri=("ldap://x",))
    taken: List[bool] = []

    @settings(max_examples=600, deadline=None)
    @given(_entry_attrs(), st.sampled_from([0, 18999, 19000, 19001, 100000]))
    def check(attrs: Dict[str, List[bytes]], today: int) -> None:
        problems: List[Any] = []
        checked = _checked_user(src, "w", "uid=x,dc=y", attrs, today, problems)
        plain = _plain_user(attrs, ("uid", "uidnumber", "gidnumber", "homedirectory"), {},
                            today)
        taken.append(plain is not None)
        if plain is not None:
            assert problems == [] and plain == checked

    check()
    assert any(taken) and not all(taken)  # both paths were exercised


def test_member_uid_fast_path_agrees_with_per_value_checks() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from hpcpolicy.directory.checks import name_problem
    from hpcpolicy.directory.ldap_interpret import _uid_group

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.sampled_from(NAMES + [b"bob", b"\xc3", b"x\x00y"]), max_size=6),
           st.sets(st.sampled_from(["alice", "bob", "bad name"])))
    def check(values: List[bytes], known: Set[str]) -> None:
        problems: List[Any] = []
        group = _uid_group("w", ("cn=g", "g", 7, values), known, problems)
        texts = [v.decode("utf-8", errors="replace") for v in values]
        good = {t for t in texts if t in known or name_problem(t) is None}
        assert group.members == good
        assert len(problems) == sum(1 for t in texts if t not in good)

    check()


# ------------------------------------------------------------------------------ wire failures


class ScriptedServer:
    """A TCP LDAP server that binds anyone, then answers the first search with `reply(msgid)`
    and closes: the failure paths of the ldap3 backend's own decoding, end to end."""

    def __init__(self, reply: Any) -> None:
        self.reply = reply
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                self._session(conn)

    def _session(self, conn: socket.socket) -> None:
        from test_directory_ldap_wire import integer, message, octets, tlv

        from hpcpolicy.directory.ldap_wire import message_end

        buf = b""
        while True:
            data = conn.recv(65536)
            if not data:
                return
            buf += data
            while 0 < message_end(buf, 0) <= len(buf):
                end = message_end(buf, 0)
                msg, buf = buf[:end], buf[end:]
                head = 2 if msg[1] < 0x80 else 2 + (msg[1] & 0x7F)
                assert msg[head] == 0x02  # ldap3 numbers messages process-wide: any width
                width = msg[head + 1]
                msgid = int.from_bytes(msg[head + 2:head + 2 + width], "big")
                op = msg[head + 2 + width]
                if op == 0x60:  # bind: success
                    ok = tlv(0x61, integer(0, 0x0A) + octets(b"") + octets(b""))
                    conn.sendall(message(msgid, ok))
                elif op == 0x63:  # search: the scripted answer, then hang up
                    conn.sendall(self.reply(msgid))
                    return
                else:
                    return

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


def _notice(msgid: int) -> bytes:
    from test_directory_ldap_wire import entry, integer, message, octets, tlv

    notice = tlv(0x78, integer(52, 0x0A) + octets(b"") + octets(b"going down"))
    return entry(msgid, "uid=z,dc=x", [("uid", [b"z"])]) + message(0, notice)


def _cut_short(msgid: int) -> bytes:
    from test_directory_ldap_wire import entry

    return entry(msgid, "uid=z,dc=x", [("uid", [b"z"])]) + b"\x30\x40\x02"


def _garbage(msgid: int) -> bytes:
    from test_directory_ldap_wire import entry, integer, tlv

    return entry(msgid, "uid=z,dc=x", [("uid", [b"z"])]) + tlv(0x30, integer(msgid) + b"\0\0")


@pytest.mark.parametrize("reply", [_notice, _cut_short], ids=["notice", "cut-short"])
def test_connection_lost_mid_search_fails_over(slapd_rfc2307: LdapServer, secret: str,
                                               reply: Any) -> None:
    fake = ScriptedServer(reply)
    try:
        src = reader(slapd_rfc2307, secret, uri=(fake.uri, slapd_rfc2307.slapd.uri))
        src = replace(src, bind_dn=None, bind_password_file=None, timeout=3)
        with pytest.raises(DirectoryError) as info:  # anonymous on slapd: size limit
            read_ldap(src, backend="ldap3")
        assert "sizeLimitExceeded" in str(info.value)  # so slapd was tried after the fake
        with pytest.raises(DirectoryError, match=r"no LDAP server could be read: .*"
                           r"connection lost while reading: .*(going down|closed)"):
            read_ldap(replace(src, uri=(fake.uri,)), backend="ldap3")
    finally:
        fake.close()


def test_malformed_response_is_refused_without_failover(slapd_rfc2307: LdapServer,
                                                        secret: str) -> None:
    fake = ScriptedServer(_garbage)
    try:
        src = reader(slapd_rfc2307, secret, uri=(fake.uri, slapd_rfc2307.slapd.uri))
        src = replace(src, bind_dn=None, bind_password_file=None, timeout=3)
        with pytest.raises(DirectoryError, match=r"malformed LDAP response: .*"
                           r"unexpected protocolOp 0x00") as info:
            read_ldap(src, backend="ldap3")
        assert str(info.value).startswith(f"{fake.uri}: ")
    finally:
        fake.close()


def test_garbage_collector_state_is_restored(slapd_rfc2307: LdapServer, secret: str) -> None:
    import gc

    assert gc.isenabled()
    read_ldap(reader(slapd_rfc2307, secret))
    assert gc.isenabled()
    with pytest.raises(DirectoryError):
        read_ldap(reader(slapd_rfc2307, secret, user_base="ou=nowhere,dc=example,dc=org"))
    assert gc.isenabled()
    gc.disable()
    try:
        read_ldap(reader(slapd_rfc2307, secret))
        assert not gc.isenabled()  # a caller's choice is kept
    finally:
        gc.enable()
