"""changes/diff: actions, class prefixes, the 256 KiB rule, unified text."""

from __future__ import annotations

import hashlib

from hpcpolicy.deploy.diff import changes, diff, flatten
from hpcpolicy.generation.diff import MAX_DIFF_BYTES, changed_lines, diff_entry, unified


def test_flatten_prefixes_classes() -> None:
    flat = flatten({"default": {"etc/a": b"1"}, "gpu": {"etc/a": b"2"}})
    assert flat == {"etc/a": b"1", "class/gpu/etc/a": b"2"}


def test_changes_actions_sorted() -> None:
    before = {"a": b"1", "b": b"2", "c": b"3"}
    after = {"a": b"1", "b": b"x", "d": b"4"}
    assert changes(before, after) == [
        {"path": "b", "action": "modified"},
        {"path": "c", "action": "removed"},
        {"path": "d", "action": "added"},
    ]


def test_small_text_diff() -> None:
    entries = diff({"etc/x": b"one\ntwo\n"}, {"etc/x": b"one\nthree\n", "etc/y": b"new\n"})
    assert entries == [
        {"path": "etc/x", "before": "one\ntwo\n", "after": "one\nthree\n"},
        {"path": "etc/y", "before": "", "after": "new\n"},
    ]
    text = unified(entries)
    assert "--- a/etc/x\n+++ b/etc/x\n" in text and "-two\n+three\n" in text
    assert "+new\n" in text


def test_missing_newline_marker() -> None:
    text = unified(diff({"f": b"a"}, {"f": b"b"}))
    assert "\\ No newline at end of file" in text


def test_big_file_summarised() -> None:
    lines = [f"{1000 + i}:{524288 + i * 65536}:65536\n".encode() for i in range(20000)]
    before = b"".join(lines)
    after = b"".join(lines[:-1]) + b"99999:1:65536\n" + b"100000:2:65536\n"
    assert len(before) > MAX_DIFF_BYTES
    entry = diff_entry("etc/subuid", before, after)
    assert entry["summarised"] and entry["changed_lines"] == 3
    assert hashlib.sha256(before).hexdigest() in entry["before"]
    assert "20000 lines" in entry["before"] and "20001 lines" in entry["after"]
    text = unified([entry])
    assert "@@ 3 changed lines" in text and len(text) < 1000


def test_binary_summarised_and_removal() -> None:
    entry = diff_entry("bin", b"\xff\xfe", None)
    assert entry["summarised"] and entry["after"] == "" and entry["changed_lines"] == 1


def test_changed_lines_multiset() -> None:
    assert changed_lines(b"a\nb\nb\n", b"b\na\n") == 1
    assert changed_lines(b"", b"") == 0
