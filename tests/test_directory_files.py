"""passwd/group file reader and the merge of sources (no LDAP needed here)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Set, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpcpolicy.directory import files
from hpcpolicy.directory.files import read_files
from hpcpolicy.directory.model import Group, Snapshot, User
from hpcpolicy.directory.read import SourceData, merge, read_directory
from hpcpolicy.errors import DirectoryError, InvalidInput, Problem
from hpcpolicy.policy.model import Directory, FilesSource, Policy, Site

PASSWD = """\
root:x:0:0:root:/root:/bin/bash
# a comment

nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
alice:x:1001:1001:Alice:/home/alice:/bin/bash
bob:x:1002:100::/home/bob:/bin/false
svc:x:1003:100::/srv:/sbin/nologin
carol:x:1004:100::/home/carol:/usr/bin/zsh
+@netgroup::::::
-mallory::::::
+
"""

GROUP = """\
root:x:0:
users:x:100:alice,carol,
alice:x:1001:
hpc:x:2000:alice,,bob
+
"""


def write(tmp_path: Path, passwd: str, group: str) -> FilesSource:
    p = tmp_path / "passwd"
    g = tmp_path / "group"
    p.write_text(passwd)
    g.write_text(group)
    return FilesSource(passwd=str(p), group=str(g))


def by_name(result: Tuple[list, list]) -> Tuple[dict, dict]:
    users, groups = result
    return {u.name: u for u in users}, {g.name: g for g in groups}


def policy_for(src: FilesSource) -> Policy:
    site = Site(name="t", deploy_root="/nonexistent")
    return Policy(path="site.toml", sha256="0", site=site, directory=Directory(files=src))


def test_reads_users_groups_and_flags_nologin(tmp_path: Path) -> None:
    users, groups = by_name(read_files(write(tmp_path, PASSWD, GROUP)))
    assert set(users) == {"root", "nobody", "alice", "bob", "svc", "carol"}
    assert users["alice"] == User("alice", 1001, 1001, "files", disabled=False,
                                  home="/home/alice")
    assert users["nobody"].uid == 65534 and users["nobody"].disabled
    assert users["bob"].disabled and users["svc"].disabled
    assert not users["carol"].disabled
    assert groups["users"] == Group("users", 100, frozenset({"alice", "carol"}), "files")
    assert groups["hpc"].members == frozenset({"alice", "bob"})


def test_all_malformed_lines_reported_with_line_numbers(tmp_path: Path) -> None:
    passwd = (
        "ok:x:1000:1000::/h:/bin/sh\n"
        "short:x:1001\n"  # 2
        "badid:x:12a:1000::/h:/bin/sh\n"  # 3
        "neg:x:-1:1000::/h:/bin/sh\n"  # 4
        "big:x:4294967295:1::/h:/bin/sh\n"  # 5
        ":x:1005:1000::/h:/bin/sh\n"  # 6
        "ok:x:1006:1000::/h:/bin/sh\n"  # 7 duplicate name
        "twin:x:1000:1000::/h:/bin/sh\n"  # 8 duplicate uid
        "sp ace:x:1008:1000::/h:/bin/sh\n"  # 9
    )
    group = "g:x:1:\ng2:x:x:\ng3:x:3:a b\n"
    with pytest.raises(InvalidInput) as info:
        read_files(write(tmp_path, passwd, group))
    text = [str(p) for p in info.value.problems]
    pw = str(tmp_path / "passwd")
    gr = str(tmp_path / "group")
    for number in (2, 3, 4, 5, 6, 7, 8, 9):
        assert any(t.startswith(f"{pw}:{number}: ") for t in text), (number, text)
    assert f"{pw}:1: " not in "\n".join(text)
    assert any(t.startswith(f"{gr}:2: gid 'x'") for t in text)
    assert any(t.startswith(f"{gr}:3: member") for t in text)
    assert f"{pw}:2: expected 7 ':'-separated fields, found 3" in text
    assert any("already defined on line 1" in t for t in text)
    assert any("already used by 'ok' on line 1" in t for t in text)


def test_invalid_utf8_is_a_line_problem(tmp_path: Path) -> None:
    src = write(tmp_path, "", "")
    Path(src.passwd).write_bytes(b"ok:x:1000:1000::/h:/bin/sh\n\xffbad:x:1:1::/h:/bin/sh\n")
    with pytest.raises(InvalidInput, match=r"passwd:2: not valid UTF-8"):
        read_files(src)


def test_missing_file_is_runtime_failure(tmp_path: Path) -> None:
    src = FilesSource(passwd=str(tmp_path / "nope"), group=str(tmp_path / "group"))
    with pytest.raises(DirectoryError, match="nope: configured directory file does not exist"):
        read_files(src)
    assert DirectoryError.exit_code == 1


def test_directory_as_file_is_invalid_input(tmp_path: Path) -> None:
    src = write(tmp_path, PASSWD, GROUP)
    os.unlink(src.group)
    os.mkdir(src.group)  # not a regular file: exit 2 naming the key, like a FIFO or a device
    with pytest.raises(InvalidInput, match=r"directory.files.group: .*group is a directory"):
        read_files(src)


def test_read_directory_files_only(tmp_path: Path) -> None:
    snap = read_directory(policy_for(write(tmp_path, PASSWD, GROUP)))
    assert snap.users["alice"].source == "files"
    assert snap.groups_of("alice") == {"users", "alice", "hpc"}


def test_read_directory_reads_the_host_files() -> None:
    snap = read_directory(policy_for(FilesSource()))
    assert snap.users["root"].uid == 0


def test_read_directory_needs_ldap_table(tmp_path: Path) -> None:
    pol = policy_for(write(tmp_path, PASSWD, GROUP))
    pol = Policy(
        path="site.toml",
        sha256="0",
        site=pol.site,
        directory=Directory(sources=("files", "ldap"), files=pol.directory.files),
    )
    with pytest.raises(InvalidInput, match=r"site.toml: directory.sources: .*\[directory.ldap\]"):
        read_directory(pol)


def _src(name: str, users: list, groups: list) -> SourceData:
    return SourceData(name, f"{name}-users", f"{name}-groups", users, groups)


def test_merge_agreeing_entries() -> None:
    files = _src(
        "files",
        [User("alice", 1001, 100, "files"), User("bob", 1002, 100, "files", disabled=False)],
        [Group("hpc", 2000, frozenset({"alice"}), "files")],
    )
    ldap = _src(
        "ldap",
        [User("alice", 1001, 100, "ldap"), User("bob", 1002, 100, "ldap", disabled=True)],
        [Group("hpc", 2000, frozenset({"bob"}), "ldap"), Group("gpu", 2001, frozenset(), "ldap")],
    )
    for order in ([files, ldap], [ldap, files]):
        snap = merge(order)
        assert snap.users["alice"].source == "files+ldap"
        assert snap.users["bob"].disabled  # any source disabling wins
        assert snap.groups["hpc"].members == frozenset({"alice", "bob"})
        assert snap.groups["hpc"].source == "files+ldap"
        assert snap.groups["gpu"].source == "ldap"


def test_merge_conflicts_name_both_sources_and_are_all_reported() -> None:
    files = _src(
        "files",
        [User("alice", 1001, 100, "files"), User("bob", 1002, 100, "files")],
        [Group("hpc", 2000, frozenset(), "files"), Group("gpu", 2001, frozenset(), "files")],
    )
    ldap = _src(
        "ldap",
        [User("alice", 5001, 100, "ldap"), User("robert", 1002, 100, "ldap")],
        [Group("hpc", 3000, frozenset(), "ldap"), Group("cuda", 2001, frozenset(), "ldap")],
    )
    with pytest.raises(InvalidInput) as info:
        merge([files, ldap])
    text = [str(p) for p in info.value.problems]
    assert len(text) == 4, text
    assert (
        "files-users: user 'alice' has uid 1001 gid 100 in files (files-users) but uid 5001 gid 100"
        " in ldap (ldap-users)" in text
    )
    assert "files-users: uid 1002 is user 'bob' in files (files-users) but user 'robert' in ldap" \
        " (ldap-users)" in text
    assert any("group 'hpc' has gid 2000 in files (files-groups) but gid 3000 in ldap" in t
               for t in text)
    assert any("gid 2001 is group 'gpu' in files" in t and "group 'cuda' in ldap" in t
               for t in text)
    # the other direction names ldap first
    with pytest.raises(InvalidInput, match=r"uid 5001 gid 100 in ldap \(ldap-users\) but uid 1001"):
        merge([ldap, files])


def test_merge_primary_gid_must_agree() -> None:
    with pytest.raises(InvalidInput, match="gid 100 in files .* gid 200 in ldap"):
        merge([
            _src("files", [User("a", 1, 100, "files")], []),
            _src("ldap", [User("a", 1, 200, "ldap")], []),
        ])


# --- fast paths agree with the line-by-line reader ------------------------------------------

_ODD = ["", "#", "+", "-", " ", "\t", "\r", ",", ":", "\x00", "\x7f", "\xa0", "\u2028", "²", "é",
        "0", "9", "\udcff"]
_name = st.one_of(st.sampled_from(["root", "alice", "bob", "b-c", "d+e", "f#g"]),
                  st.lists(st.sampled_from(_ODD), max_size=2).map("".join))
_id = st.one_of(st.integers(0, 3000).map(str),
                st.sampled_from(["4294967294", "4294967295", "9999999999", "00000000001", "01"]),
                st.lists(st.sampled_from(_ODD), max_size=2).map("".join))
_field = st.one_of(st.just(""), st.lists(st.sampled_from(_ODD + ["x"]), max_size=2).map("".join))
_shell = st.one_of(st.sampled_from(["/bin/bash", "/bin/false", " /sbin/nologin ", "/bin/sh\r"]),
                   _field)
_passwd_line = st.one_of(st.tuples(_name, _field, _id, _id, _field, _field, _shell).map(":".join),
                         st.sampled_from(["", "# c", "+", "-x::::::", "short:x:1"]))
_group_line = st.one_of(
    st.tuples(_name, _field, _id, st.lists(_name, max_size=3).map(",".join)).map(":".join),
    st.sampled_from(["", "#", "g:x:1"]))


def _text(lines: List[str], newline: bool) -> str:
    return "\n".join(lines) + ("\n" if newline else "")


@settings(max_examples=400, deadline=None)
@given(st.lists(_passwd_line, max_size=6), st.lists(_group_line, max_size=5), st.booleans())
def test_fast_paths_agree_with_the_line_by_line_reader(
        passwd: List[str], group: List[str], newline: bool) -> None:
    """Whenever the whole-file fast path takes a file, the detailed reader finds no problem in
    it and returns the very same entries."""
    text = _text(passwd, newline)
    suspect = files._UNDECODABLE.search(text) is not None  # read_files skips the fast path
    fast_users = None if suspect else files._plain_users(text)
    if fast_users is not None:
        problems: List[Problem] = []
        lines = files._lines("p", text, suspect, 7, problems)
        assert files._users("p", lines, problems) == fast_users
        assert problems == []
    text = _text(group, newline)
    suspect = files._UNDECODABLE.search(text) is not None
    fast_groups = None if suspect else files._plain_groups(text)
    if fast_groups is not None:
        problems = []
        lines = files._lines("g", text, suspect, 4, problems)
        assert files._groups("g", lines, problems) == fast_groups
        assert problems == []


def test_fast_path_takes_plain_files_and_leaves_odd_ones() -> None:
    plain = "root:x:0:0:root:/root:/bin/bash\nalice:x:1001:1001::/h:/usr/sbin/nologin\n"
    users = files._plain_users(plain)
    assert users == [User("root", 0, 0, "files", home="/root"),
                     User("alice", 1001, 1001, "files", True, "/h")]
    assert files._plain_users("bob:x:1002:1::/h:/bin/sh\ncarl:x:1003:1:::/bin/sh\n") == [
        User("bob", 1002, 1, "files", home="/h"), User("carl", 1003, 1, "files")]  # no home
    for odd in ("#c\n", "\n", "+\n", "bob:x:1002:1:::/bin/sh\r\n", "alice:x:7:1:::\n",
                "carol:x:1001:1:::\n", "dave:x:4294967295:1:::\n", " eve:x:9:1:::\n"):
        assert files._plain_users(plain + odd) is None, odd
    assert files._plain_groups("g:x:1:a,,b\nh:x:2:\n") == [
        Group("g", 1, frozenset({"a", "b"}), "files"), Group("h", 2, frozenset(), "files")]
    for odd in ("g:x:3:\n", "k:x:1:\n", "k:x:3:a b\n", "k:x:3:a:b\n"):
        assert files._plain_groups("g:x:1:a\n" + odd) is None, odd


def test_huge_id_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    """int() refuses more than 4300 digits with ValueError; such an ID is simply invalid."""
    src = write(tmp_path, f"a:x:{'1' * 5000}:1::/h:/bin/sh\nb:x:{'0' * 20}7:1::/h:/bin/sh\n", "")
    with pytest.raises(InvalidInput) as info:
        read_files(src)
    assert len(info.value.problems) == 1
    assert "passwd:1: uid '1111" in str(info.value.problems[0])


# --- Snapshot membership index ----------------------------------------------------------------


def _groups_of(snap: Snapshot, user: str) -> Set[str]:
    """The definition, by brute force."""
    u = snap.users.get(user)
    return {g.name for g in snap.groups.values()
            if user in g.members or (u is not None and g.gid == u.gid)}


def _members_of(snap: Snapshot, group: str) -> Set[str]:
    g = snap.groups.get(group)
    if g is None:
        return set()
    return set(g.members) | {u.name for u in snap.users.values() if u.gid == g.gid}


_users_st = st.lists(st.tuples(st.sampled_from("abcdef"), st.integers(1, 4)), max_size=6)
_groups_st = st.lists(st.tuples(st.sampled_from("ghijk"), st.integers(1, 4),
                                st.sets(st.sampled_from("abcdefz"), max_size=3)), max_size=5)


@settings(max_examples=200, deadline=None)
@given(_users_st, _groups_st, _users_st)
def test_membership_index_matches_the_definition(
        us: List[Tuple[str, int]], gs: List[Tuple[str, int, Set[str]]],
        more: List[Tuple[str, int]]) -> None:
    snap = Snapshot.of([User(n, 100 + i, gid, "files") for i, (n, gid) in enumerate(us)],
                       [Group(n, gid, frozenset(m), "files") for n, gid, m in gs])
    for _ in range(2):  # the second round answers from the index built by the first
        for name in "abcdefz":
            assert snap.groups_of(name) == _groups_of(snap, name)
        for name in "ghijkl":
            assert snap.members_of(name) == _members_of(snap, name)
    snap.users.update({n: User(n, 200, gid, "files") for n, gid in more})  # grows: rebuilt
    snap.groups = dict(snap.groups)  # replaced: rebuilt
    snap.groups["l"] = Group("l", 3, frozenset({"a"}), "files")
    for name in "abcdefz":
        assert snap.groups_of(name) == _groups_of(snap, name)
    assert snap.members_of("l") == _members_of(snap, "l")
    snap.groups_of("a").add("mutated")  # callers get their own sets
    assert "mutated" not in snap.groups_of("a")
