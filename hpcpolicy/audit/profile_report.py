"""Render the audit's report by access profile: the one-line answer, a table, CSV, and one
self-contained HTML page (provenance, summary tiles, findings first, a colour matrix of images x
profiles with hover explanations, the legend once). Pure (returns strings); every value goes
through `report.escape` / `report.csv_cell`.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Dict, List, Tuple

from hpcpolicy.audit.matrix import Report
from hpcpolicy.audit.report import csv_cell, escape

MAX_FINDING_GROUPS = 8
_MARK_TEXT = {"enforced": "", "gap": "!", "none": "~"}


def _verdict_word(allowed: bool) -> str:
    return "allow" if allowed else "deny"


def report_line(r: Report) -> str:
    s = r.summary()
    return (f"audit of site {r.site} (class {r.node_class}): {s['users']} users in "
            f"{s['profiles']} access profiles, {s['images']} images; {s['findings']} findings, "
            f"{s['unenforced_denials']} user x image denials not enforced")


def who_line(r: Report) -> str:
    """`--image` without `--user`: who may run it, in users and profiles."""
    if len(r.targets) != 1:
        return report_line(r)
    may = [p for j, p in enumerate(r.profiles) if r.cell(0, j).decision.allowed]
    users = sum(len(p.members) for p in may)
    total = sum(len(p.members) for p in r.profiles)
    return (f"{r.targets[0].value}: {users} of {total} users may run it ({len(may)} of "
            f"{len(r.profiles)} access profiles)")


def _finding_lines(f: Dict[str, Any]) -> List[str]:
    groups = f["groups"][:MAX_FINDING_GROUPS]
    more = len(f["groups"]) - len(groups)
    who = "; ".join(groups) + (f"; and {more} more profiles" if more > 0 else "")
    head = f"[{f['kind']}] {f['image']} ({f['mechanism']})"
    if f["users"]:
        head += f": {f['users']} users in {len(f['profiles'])} profiles: {who}"
    lines = [head, f"    {f['msg']}"]
    if f["remedy"]:
        lines.append(f"    remedy: {f['remedy']}")
    return lines


def profile_table(r: Report, headline: str, members: bool = False) -> str:
    """Summary, findings, profiles, then the matrix (rows images, columns profiles)."""
    s = r.summary()
    lines = [headline, "", "summary: " + ", ".join(f"{k} {v}" for k, v in s.items()), ""]
    lines.append(f"Findings ({len(r.findings)}):" if r.findings else "Findings: none")
    for f in r.findings:
        lines += ["  " + x for x in _finding_lines(f)]
    if len(r.targets) == 1:  # --image alone: who may run it, by profile
        lines.append("")
        cells = [(p, r.cell(0, j)) for j, p in enumerate(r.profiles)]
        for word, want in (("May run it", True), ("May not run it", False)):
            chosen = [(p, c) for p, c in cells if c.decision.allowed is want]
            lines.append(f"{word}: {sum(len(p.members) for p, _ in chosen)} users")
            lines += [f"  {p.label}: {len(p.members)} users (e.g. {', '.join(p.members[:5])})"
                      + ("" if c.mark == "enforced" else f" [{c.mark}]") for p, c in chosen]
    lines += ["", "Access profiles:"]
    for j, p in enumerate(r.profiles, 1):
        lines.append(f"  P{j}  {p.id}  {p.label}: {len(p.members)} users "
                     f"(e.g. {', '.join(p.members[:5])})")
        if members:
            lines.append(f"      members: {', '.join(p.members)}")
    lines += ["", "Matrix: allow/deny per image and profile; ! a mechanism meant to carry it "
              "does not (see findings), ~ none is known to carry it (see the legend)"]
    header = ["IMAGE"] + [f"P{j}" for j in range(1, len(r.profiles) + 1)]
    rows = [header]
    for i, t in enumerate(r.targets):
        rows.append([t.value] + [_verdict_word(c.decision.allowed) + _MARK_TEXT[c.mark]
                                 for c in (r.cell(i, j) for j in range(len(r.profiles)))])
    widths = [max(len(row[k]) for row in rows) for k in range(len(header))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines += ["", "Legend:"] + [f"  {k}: {v}" for k, v in r.legend.items()]
    return "\n".join(lines) + "\n"


def profile_csv(r: Report) -> str:
    """One row per (image, profile, mechanism), notes spelled out."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("image", "kind", "profile", "groups", "users", "allowed", "rule", "mark",
                     "mechanism", "enforces", "user_can_override", "note"))
    for c in r.cells:
        d, p = c.decision, r.profiles[c.profile]
        base = [d.image, d.kind, p.id, " ".join(p.groups), len(p.members), d.allowed, d.rule,
                c.mark]
        for e in d.enforced_by or ():
            writer.writerow([csv_cell(v) for v in base + [e.mechanism, e.enforces,
                                                       e.user_can_override, e.note]])
        if not d.enforced_by:
            writer.writerow([csv_cell(v) for v in base + ["", "", "", ""]])
    return buf.getvalue()


_PAGE_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #1d1d1d; }
h1 { font-size: 1.4em; margin: 0 0 .3em 0; } h2 { font-size: 1.15em; margin: 1.2em 0 .4em 0; }
table { border-collapse: collapse; }
th, td { border: 1px solid #c8c8c8; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
.prov td:first-child { font-weight: 600; }
.sum { display: flex; gap: .6em; flex-wrap: wrap; }
.sum div { border: 1px solid #ccc; border-radius: 4px; padding: .3em .8em; }
.sum b { display: block; font-size: 1.3em; }
.f { margin: .4em 0; padding: .4em .7em; border-left: 6px solid #999; background: #fafafa; }
.f.unenforced-denial, .f.bypass { border-color: #c62828; }
.f.unenforced-requirement, .f.contradiction { border-color: #ef6c00; }
.f.drift { border-color: #6a1b9a; }
.f .k { font-weight: 700; } .f .m { color: #444; font-size: .92em; }
.f .r { font-family: monospace; font-size: .9em; }
.mx th.p { writing-mode: vertical-rl; transform: rotate(180deg); white-space: nowrap;
           max-height: 16em; font-weight: 500; font-size: .85em; }
.mx td { text-align: center; font-size: .8em; padding: 2px 3px; }
.mx td.i { position: sticky; left: 0; background: #fff; }
.mx td.i { text-align: left; font-family: monospace; white-space: nowrap; }
td.a { background: #c8e6c9; } td.d { background: #ffcdd2; }
td.a.g, td.d.g { background-image: repeating-linear-gradient(45deg, transparent 0 4px,
                 rgba(230,81,0,.45) 4px 6px); font-weight: 700; }
td.n { color: #666; }
.filter { position: sticky; top: 0; background: #fff; padding: .4em 0; z-index: 2; }
.filter input { width: 28em; padding: .3em; }
.legend dt { font-weight: 600; } .legend dd { margin: 0 0 .5em 1.5em; font-size: .92em; }
.sw { display: inline-block; min-width: 2.6em; text-align: center; border: 1px solid #aaa;
      margin: 0 .3em 0 .9em; }
.hide { display: none; }
@media print {
  .filter { display: none; }
  body { margin: 0; font-size: 9pt; }
  .mx td, .mx th { padding: 1px 2px; }
  thead { display: table-header-group; }
  tr, .f { page-break-inside: avoid; }
  td.a.g, td.d.g { background-image: none; text-decoration: underline; }
  td.a, td.d { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""

_PAGE_SCRIPT = """
(function () {
  var box = document.getElementById('q');
  var rows = document.querySelectorAll('.mx tbody tr, .f');
  box.addEventListener('input', function () {
    var q = box.value.toLowerCase();
    for (var i = 0; i < rows.length; i++) {
      var t = rows[i].getAttribute('data-q');
      rows[i].classList.toggle('hide', q !== '' && t.indexOf(q) < 0);
    }
  });
  var notes = JSON.parse(document.getElementById('cells').textContent);
  document.querySelector('.mx').addEventListener('mouseover', function (ev) {
    var td = ev.target;
    if (td.tagName === 'TD' && td.dataset.c && !td.title) { td.title = notes[td.dataset.c]; }
  });
})();
"""


def _cell_kinds(r: Report) -> Tuple[List[str], Dict[Tuple[Any, ...], int]]:
    """Distinct cell explanations (verdict, rule, mechanisms, notes), each written once."""
    texts: List[str] = []
    index: Dict[Tuple[Any, ...], int] = {}
    for c in r.cells:
        d = c.decision
        key = (d.allowed, d.rule, tuple((e.mechanism, e.enforces) for e in d.enforced_by),
               c.notes)
        if key not in index:
            index[key] = len(texts)
            parts = [f"{_verdict_word(d.allowed)} by {d.rule}"]
            parts += [f"{e.mechanism}: {'enforces' if e.enforces else 'does NOT enforce'}"
                      f" [{k}]" for e, k in zip(d.enforced_by, c.notes)]
            texts.append("\n".join(parts))
    return texts, index


def _findings_html(r: Report) -> str:
    found = []
    for f in r.findings:
        who = "; ".join(f["groups"][:MAX_FINDING_GROUPS])
        more = len(f["groups"]) - MAX_FINDING_GROUPS
        who += f"; and {more} more profiles" if more > 0 else ""
        users = f" &mdash; {f['users']:,} users: {escape(who)}" if f["users"] else ""
        remedy = f'<div class="r">remedy: {escape(f["remedy"])}</div>' if f["remedy"] else ""
        q = escape(f"{f['kind']} {f['image']} {f['mechanism']} {who}".lower())
        found.append(f'<div class="f {escape(f["kind"])}" data-q="{q}"><span class="k">'
                     f'{escape(f["kind"])}</span> {escape(f["image"])} '
                     f'({escape(f["mechanism"])}){users}'
                     f'<div class="m">{escape(f["msg"])}</div>{remedy}</div>')
    return "\n".join(found) or "<p>No findings.</p>"


def _matrix_rows(r: Report, index: Dict[Tuple[Any, ...], int]) -> List[str]:
    """One row per image: a coloured cell per profile, keyed to its explanation."""
    body = []
    for i, t in enumerate(r.targets):
        tds = []
        for j in range(len(r.profiles)):
            c = r.cell(i, j)
            d = c.decision
            css = ("a" if d.allowed else "d") + {"gap": " g", "none": " n"}.get(c.mark, "")
            word = ("allow" if d.allowed else "deny") + _MARK_TEXT[c.mark]
            key = (d.allowed, d.rule, tuple((e.mechanism, e.enforces) for e in d.enforced_by),
                   c.notes)
            tds.append(f'<td class="{css}" data-c="{index[key]}">{word}</td>')
        body.append(f'<tr data-q="{escape(t.value.lower())}"><td class="i">{escape(t.value)}</td>'
                    + "".join(tds) + "</tr>")
    return body


_MARKS_HTML = (
    '<p><span class="sw" style="background:#c8e6c9">allow</span> allowed by the rules '
    '<span class="sw" style="background:#ffcdd2">deny</span> denied '
    '<span class="sw" style="background:#ffcdd2;font-weight:700">deny!</span> a '
    'mechanism meant to carry the verdict does not (hatched; see the findings) '
    '<span class="sw">deny~</span> no mechanism is known to carry it. Hover a '
    'cell for its mechanisms; the keys are explained in the legend.</p>')


def profile_html(r: Report, title: str, headline: str, members: bool = False) -> str:
    """One self-contained page: provenance, summary, findings, colour matrix, legend."""
    prov = "".join(f"<tr><td>{escape(k)}</td><td>"
                   + ("<br>".join(escape(x) for x in v) if isinstance(v, list) else escape(v))
                   + "</td></tr>" for k, v in r.provenance.items())
    summ = "".join(f"<div>{escape(k.replace('_', ' '))}<b>{v:,}</b></div>"
                   for k, v in r.summary().items())
    texts, index = _cell_kinds(r)
    heads = "".join(f'<th class="p" title="{escape(p.id)}">{escape(p.label)} '
                    f'({len(p.members):,})</th>' for p in r.profiles)
    legend = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in r.legend.items())
    roster = ""
    if members:
        roster = "<h2>Members</h2>" + "".join(
            f"<p><b>{escape(p.label)}</b>: {escape(', '.join(p.members))}</p>"
            for p in r.profiles)
    cells_json = json.dumps(texts).replace("</", "<\\/")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{escape(title)}</title>\n<style>{_PAGE_STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{escape(title)}</h1>\n<p>{escape(headline)}</p>\n"
        f'<table class="prov">{prov}</table>\n'
        f'<div class="sum">{summ}</div>\n'
        '<div class="filter"><input id="q" type="search" '
        'placeholder="filter images and findings (e.g. a registry, a group, a kind)"></div>\n'
        f'<h2 id="findings">Findings ({len(r.findings)})</h2>\n{_findings_html(r)}\n'
        f'<h2 id="matrix">Who may run what: {len(r.targets)} images &times; '
        f"{len(r.profiles)} access profiles</h2>\n{_MARKS_HTML}\n"
        f'<table class="mx"><thead><tr><th>image</th>{heads}</tr></thead>\n<tbody>\n'
        + "\n".join(_matrix_rows(r, index)) + "\n</tbody></table>\n"
        f'<h2 id="legend">Legend</h2>\n<dl class="legend">{legend}</dl>\n{roster}\n'
        f'<script type="application/json" id="cells">{cells_json}</script>\n'
        f"<script>{_PAGE_SCRIPT}</script>\n</body>\n</html>\n"
    )
