"""Audit report formats: CSV parses with the csv module, HTML is well-formed and escaped."""

from __future__ import annotations

import csv
import io
from html.parser import HTMLParser
from typing import Dict, List, Tuple

from hpcpolicy.audit import report
from hpcpolicy.audit.decide import AuditDecision, audit, make_context, parse_target, select_users
from hpcpolicy.directory.model import Group, Snapshot, User
from tests.audit_fixtures import make_policy, rule

HOSTILE_USER = '<script>alert("u")</script>&amp;'
HOSTILE_GROUP = '"><img src=x onerror=alert(1)>'
FORMULA_USER = "=HYPERLINK(\"http://x\")"
VOID = {"meta", "br", "img", "hr", "input", "link"}


def hostile_decisions() -> List[AuditDecision]:
    users = [User(HOSTILE_USER, 5001, 5001, "files"), User(FORMULA_USER, 5002, 5002, "files")]
    groups = [Group(HOSTILE_GROUP, 6001, frozenset({HOSTILE_USER}), "files")]
    p = make_policy([rule("r.io/bio", groups=[HOSTILE_GROUP]), rule("r.io/x", "deny")])
    ctx = make_context(p, Snapshot.of(users, groups))
    refs = [parse_target("r.io/bio/x:1"), parse_target("r.io/x/y:1"), parse_target("ubuntu")]
    return audit(ctx, select_users(ctx), refs)


class Collect(HTMLParser):
    """Checks nesting and collects text and attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: List[str] = []
        self.tags: List[str] = []
        self.text: List[str] = []
        self.errors: List[str] = []
        self.attrs: List[Tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += [(k, v or "") for k, v in attrs]
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(f"unbalanced </{tag}>")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_is_well_formed_self_contained_and_escaped() -> None:
    ds = hostile_decisions()
    page = report.to_html(ds, "hpcpolicy audit: <site>", "headline & more")
    parser = Collect()
    parser.feed(page)
    parser.close()
    assert not parser.errors and not parser.stack
    assert page.startswith("<!DOCTYPE html>")
    assert "script" not in parser.tags and "img" not in parser.tags
    assert not any(k.startswith("on") or k == "src" for k, _ in parser.attrs)
    text = "".join(parser.text)
    assert HOSTILE_USER in text  # shown literally, once decoded
    assert HOSTILE_GROUP in text and "<site>" in text
    assert "http" not in page.replace("http://x", "")  # no external resource is loaded
    assert page.count("<tr ") == len(ds)


def test_csv_parses_and_is_lossless_per_mechanism() -> None:
    ds = hostile_decisions()
    text = report.to_csv(ds)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == report.CSV_COLUMNS
    assert len(rows) == sum(len(d.enforced_by) for d in ds)
    first = ds[0]
    mine = [r for r in rows if r["user"] == first.user and r["image"] == first.image]
    assert [r["mechanism"] for r in mine] == [e.mechanism for e in first.enforced_by]
    assert {r["allowed"] for r in mine} == {str(first.allowed).lower()}
    assert mine[0]["note"] == first.enforced_by[0].note
    assert {r["user"] for r in rows} == {HOSTILE_USER, "'" + FORMULA_USER}  # formula defused
    short = [r for r in rows if r["image"] == "docker.io/library/ubuntu:latest"]
    assert short and all("short name" in r["notes"] for r in short)


def test_table_and_findings() -> None:
    ds = hostile_decisions()
    counts = report.summary(ds)
    assert counts == {"decisions": 6, "users": 2, "images": 3, "allowed": 1, "denied": 5,
                      "unenforced_denials": 1, "drift": 0}
    text = report.table(ds, report.summary_line("s", "default", counts))
    lines = text.splitlines()
    assert lines[0].startswith("audit of site s (class default): 6 decisions")
    assert lines[2].split() == ["USER", "IMAGE", "VERDICT", "RULE", "ENFORCED", "BY", "NOT",
                                "ENFORCED", "BY"]
    findings = text.split("Findings:\n", 1)[1]
    assert f"r.io/bio/x:1: denied for {FORMULA_USER}, but not enforced by " \
           "containers-policy.json" in findings
    assert "apptainer, enroot: no registry control" in findings


def test_explain_text_lists_every_mechanism() -> None:
    d = hostile_decisions()[1]
    text = report.explain(d)
    assert text.startswith(f"user:    {d.user}\n")
    for e in d.enforced_by:
        assert f"  {e.mechanism} (" in text
    assert "verdict: DENIED" in text


def test_summary_counts_unenforced_only_for_policy_mechanisms() -> None:
    counts: Dict[str, int] = report.summary(hostile_decisions()[2:4])
    assert counts["unenforced_denials"] == 0  # r.io/x: denied for everybody, policy.json rejects
