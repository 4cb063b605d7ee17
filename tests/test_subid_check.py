"""`subid check`: hostile and sloppy subuid files, each problem named with its line."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpcpolicy.subid.check import check_bytes, check_text


def _problems(text: str, real=None):  # type: ignore[no-untyped-def]
    return [(p.path, p.message) for p in check_text(text, "subuid", real)]


def test_clean_file_has_no_problems() -> None:
    assert _problems("1001:524288:65536\nalice:589824:65536\n") == []


@pytest.mark.parametrize("text, line, needle", [
    ("a:1:2:3\n", "line 1", "malformed: 4 field(s)"),
    ("a:100000\n", "line 1", "malformed: 2 field(s)"),
    ("a:x:10\n", "line 1", "start 'x' is not a decimal number"),
    ("a:10:-1\n", "line 1", "count '-1' is not a decimal number"),
    ("a:10:0\n", "line 1", "zero count"),
    ("a:4294967000:1001\n", "line 1", "crosses 4294967295"),
    ("a:100000:10\r\n", "line 1", "CRLF"),
    (" a:100000:10\n", "line 1", "whitespace"),
    (":100000:10\n", "line 1", "empty owner"),
    ("!a:100000:10\n", "line 1", "starts with '!'"),
    ("a:100000:10\n# comment\n", "line 2", "comment line"),
    ("a:100000:10\n\nb:200000:10\n", "line 2", "blank line"),
    ("a:100000:10", "line 1", "no newline at end of file"),
    ("a:1\x1b[2J:10\n", "line 1", "control character"),
    ("a:١٢:10\n", "line 1", "not a decimal number"),  # Arabic-Indic digits: isdigit() but not ASCII
])
def test_each_problem(text: str, line: str, needle: str) -> None:
    found = _problems(text)
    assert any(p == line and needle in m for p, m in found), found


def test_overlaps_duplicates_and_same_owner() -> None:
    text = ("alice:100000:65536\n"
            "bob:150000:65536\n"      # overlaps alice (another user)
            "alice:100000:65536\n"    # duplicate of line 1
            "carol:300000:10\n"
            "carol:300005:10\n")      # same owner overlapping: podman EINVAL
    found = _problems(text)
    assert ("line 2", "bob:150000:65536 overlaps alice:100000:65536 on line 1 (a different "
            "owner: no consumer detects this; each can reach the other's files)") in found
    assert any(p == "line 3" and "duplicates line 1" in m for p, m in found)
    assert any(p == "line 5" and "same owner" in m for p, m in found)
    assert len(found) == 3


def test_nested_overlap_found_after_a_long_range() -> None:
    # a long range then two short ones inside it: the sweep must keep the furthest reach
    found = _problems("a:100:1000\nb:200:10\nc:500:10\n")
    assert [p for p, _ in found] == ["line 2", "line 3"]


def test_real_ids() -> None:
    found = _problems("a:100000:65536\nb:200000:10\n", real={1000, 100500, 100600})
    assert found == [("line 1", "range 100000-165535 contains 2 real id(s), e.g. 100500")]


def test_nul_and_non_utf8_bytes() -> None:
    found = [str(p) for p in check_bytes(b"a:1\x00:10\n\xff:2:3\n", "f")]
    assert "f: NUL byte in file" in found and any("not UTF-8" in f for f in found)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab:0123456789\n\r #!\t-\x00é"), max_size=200))
def test_arbitrary_text_never_crashes(text: str) -> None:
    for problem in check_text(text, "f"):
        assert problem.file == "f" and problem.message
