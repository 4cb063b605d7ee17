"""Render audit decisions: a table or an explanation for people, CSV for spreadsheets, JSON for
programs, and one self-contained HTML page to hand to a reviewer. Pure (returns strings).

Every value in HTML goes through `html.escape` (user and group names come from a directory the
audit does not control). CSV cells that a spreadsheet would run as a formula (leading `=`, `+`,
`-`, `@`, tab or carriage return) get a leading `'`, the usual defence against CSV injection.
"""

from __future__ import annotations

import csv
import html
import io
import json
from typing import Any, Dict, List, Sequence, Tuple

from hpcpolicy.audit.decide import NO_CONTROL, AuditDecision
from hpcpolicy.audit.matrix import Report

FORMATS = ("table", "csv", "json", "html")
CSV_COLUMNS = (
    "user", "image", "class", "kind", "allowed", "rule", "reason", "node_allowed",
    "mechanism", "enforces", "user_can_override", "note", "notes", "drift",
)  # fmt: skip
SHOW_USERS = 10
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def summary(decisions: Sequence[AuditDecision]) -> Dict[str, int]:
    """The counts a reviewer reads first."""
    return {
        "decisions": len(decisions),
        "users": len({d.user for d in decisions}),
        "images": len({d.image for d in decisions}),
        "allowed": sum(d.allowed for d in decisions),
        "denied": sum(not d.allowed for d in decisions),
        "unenforced_denials": sum(d.unenforced_denial for d in decisions),
        "drift": sum(bool(d.drift) for d in decisions),
    }


def summary_line(site: str, node_class: str, counts: Dict[str, int]) -> str:
    return (
        f"audit of site {site} (class {node_class}): {counts['decisions']} decisions for "
        f"{counts['users']} users and {counts['images']} images: {counts['allowed']} allowed, "
        f"{counts['denied']} denied ({counts['unenforced_denials']} not enforced by the node's "
        f"policy files or permissions), {counts['drift']} with permission drift"
    )


def to_json(decisions: Sequence[AuditDecision]) -> List[Dict[str, Any]]:
    return [d.as_dict() for d in decisions]


# --- table and explanation -----------------------------------------------------------------


def _verdict(d: AuditDecision) -> str:
    return "allow" if d.allowed else "deny"


def _mechanisms(d: AuditDecision, enforcing: bool) -> str:
    return ", ".join(e.mechanism for e in d.enforced_by if e.enforces == enforcing) or "-"


def table(decisions: Sequence[AuditDecision], headline: str) -> str:
    """Aligned columns, then the findings (unenforced denials, drift, notes) once each."""
    header = ("USER", "IMAGE", "VERDICT", "RULE", "ENFORCED BY", "NOT ENFORCED BY")
    rows = [header] + [
        (d.user, d.image, _verdict(d), d.rule, _mechanisms(d, True), _mechanisms(d, False))
        for d in decisions
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [headline, ""]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    findings = _findings(decisions)
    if findings:
        lines += ["", "Findings:"] + [f"  - {f}" for f in findings]
    return "\n".join(lines) + "\n"


def _users(names: List[str]) -> str:
    shown = ", ".join(names[:SHOW_USERS])
    return shown + (f" and {len(names) - SHOW_USERS} more" if len(names) > SHOW_USERS else "")


def _findings(decisions: Sequence[AuditDecision]) -> List[str]:
    """Unenforced denials grouped by (image, mechanism, note), then drift and notes, once each."""
    gaps: Dict[Tuple[str, str, str], List[str]] = {}
    lines: Dict[str, None] = {}
    for d in decisions:
        for e in d.enforced_by:
            if not d.allowed and not e.enforces and e.mechanism not in NO_CONTROL:
                gaps.setdefault((d.image, e.mechanism, e.note), []).append(d.user)
        lines.update({f"drift: {line}": None for line in d.drift})
        lines.update({line: None for line in d.notes})
    out = [f"{image}: denied for {_users(users)}, but not enforced by {mechanism}: {note}"
           for (image, mechanism, note), users in gaps.items()]
    no_control = sorted({e.mechanism for d in decisions for e in d.enforced_by
                         if e.mechanism in NO_CONTROL and d.kind == "reference"})
    if no_control:
        out.append(f"{', '.join(no_control)}: no registry control; no reference decision "
                   "is enforced by them (see --explain)")
    return out + list(lines)


def explain(d: AuditDecision) -> str:
    """Everything about one decision, for `audit --explain` in text form."""
    lines = [
        f"user:    {d.user}",
        f"image:   {d.image}",
        f"class:   {d.node_class}",
        f"verdict: {'ALLOWED' if d.allowed else 'DENIED'}",
        f"rule:    {d.rule}",
        f"reason:  {d.reason}",
    ]
    if d.node_allowed is not None:
        lines.append(f"node-wide policy.json: {'accepts' if d.node_allowed else 'rejects'} it")
    lines.append("enforced by:")
    for e in d.enforced_by:
        flags = "enforces" if e.enforces else "does NOT enforce"
        if e.user_can_override:
            flags += ", user can override"
        lines.append(f"  {e.mechanism} ({flags}): {e.note}")
    if not d.enforced_by:
        lines.append("  nothing (no runtime of the site reads this decision)")
    for title, items in (("notes", d.notes), ("drift", d.drift)):
        if items:
            lines.append(f"{title}:")
            lines += [f"  - {item}" for item in items]
    return "\n".join(lines) + "\n"


# --- CSV -----------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    text = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def to_csv(decisions: Sequence[AuditDecision]) -> str:
    """One row per (decision, mechanism): lossless and flat, so a spreadsheet can filter it."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for d in decisions:
        base = [d.user, d.image, d.node_class, d.kind, d.allowed, d.rule, d.reason,
                d.node_allowed]
        tail = [" | ".join(d.notes), " | ".join(d.drift)]
        mechanisms = d.enforced_by or ()
        if not mechanisms:
            writer.writerow([_cell(v) for v in base + ["", "", "", ""] + tail])
        for e in mechanisms:
            row = base + [e.mechanism, e.enforces, e.user_can_override, e.note] + tail
            writer.writerow([_cell(v) for v in row])
    return buf.getvalue()


# --- HTML ----------------------------------------------------------------------------------

_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #ccc; padding: 4px 6px; vertical-align: top; text-align: left; }
th { background: #eee; }
tr.deny td.verdict { color: #a00; font-weight: bold; }
tr.allow td.verdict { color: #070; font-weight: bold; }
tr.unenforced { background: #fff3e0; }
td ul { margin: 0; padding-left: 1.2em; }
.no { color: #a00; }
.yes { color: #070; }
.small { font-size: 0.85em; color: #555; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _list(items: Sequence[str]) -> str:
    if not items:
        return ""
    return "<ul>" + "".join(f"<li>{_e(i)}</li>" for i in items) + "</ul>"


def _enforcement_html(d: AuditDecision) -> str:
    items = []
    for e in d.enforced_by:
        css = "yes" if e.enforces else "no"
        word = "enforces" if e.enforces else "does not enforce"
        over = "; user can override" if e.user_can_override else ""
        items.append(f'<li><b>{_e(e.mechanism)}</b>: <span class="{css}">{word}</span>{over}'
                     f'<div class="small">{_e(e.note)}</div></li>')
    return "<ul>" + "".join(items) + "</ul>" if items else ""


def _row(d: AuditDecision) -> str:
    css = _verdict(d) + (" unenforced" if d.unenforced_denial else "")
    cells = [
        _e(d.user), _e(d.image), _verdict(d), _e(d.rule), _e(d.reason), _enforcement_html(d),
        _list(d.notes), _list(d.drift),
    ]
    classes = ["user", "image", "verdict", "rule", "reason", "enforced", "notes", "drift"]
    tds = "".join(f'<td class="{c}">{v}</td>' for c, v in zip(classes, cells))
    return f'<tr class="{css}">{tds}</tr>'


def to_html(decisions: Sequence[AuditDecision], title: str, headline: str) -> str:
    """A complete page with inline CSS and no external resources."""
    heads = ("User", "Image", "Verdict", "Rule", "Reason", "Enforced by", "Notes", "Drift")
    head = "".join(f"<th>{h}</th>" for h in heads)
    body = "\n".join(_row(d) for d in decisions)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_e(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{_e(title)}</h1>\n<p>{_e(headline)}</p>\n"
        f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>\n"
        "</body>\n</html>\n"
    )


# --- the profile report (summary, findings first, image x profile matrix) --------------------

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
            writer.writerow([_cell(v) for v in base + [e.mechanism, e.enforces,
                                                       e.user_can_override, e.note]])
        if not d.enforced_by:
            writer.writerow([_cell(v) for v in base + ["", "", "", ""]])
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


def profile_html(r: Report, title: str, headline: str, members: bool = False) -> str:
    """One self-contained page: provenance, summary, findings, colour matrix, legend."""
    prov = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>"
                   for k, v in r.provenance.items())
    summ = "".join(f"<div>{_e(k.replace('_', ' '))}<b>{v:,}</b></div>"
                   for k, v in r.summary().items())
    found = []
    for f in r.findings:
        who = "; ".join(f["groups"][:MAX_FINDING_GROUPS])
        more = len(f["groups"]) - MAX_FINDING_GROUPS
        who += f"; and {more} more profiles" if more > 0 else ""
        users = f" &mdash; {f['users']:,} users: {_e(who)}" if f["users"] else ""
        remedy = f'<div class="r">remedy: {_e(f["remedy"])}</div>' if f["remedy"] else ""
        q = _e(f"{f['kind']} {f['image']} {f['mechanism']} {who}".lower())
        found.append(f'<div class="f {_e(f["kind"])}" data-q="{q}"><span class="k">'
                     f'{_e(f["kind"])}</span> {_e(f["image"])} ({_e(f["mechanism"])}){users}'
                     f'<div class="m">{_e(f["msg"])}</div>{remedy}</div>')
    findings_html = "\n".join(found) or "<p>No findings.</p>"
    texts, index = _cell_kinds(r)
    heads = "".join(f'<th class="p" title="{_e(p.id)}">{_e(p.label)} ({len(p.members):,})</th>'
                    for p in r.profiles)
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
        body.append(f'<tr data-q="{_e(t.value.lower())}"><td class="i">{_e(t.value)}</td>'
                    + "".join(tds) + "</tr>")
    legend = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in r.legend.items())
    marks = ('<p><span class="sw" style="background:#c8e6c9">allow</span> allowed by the rules '
             '<span class="sw" style="background:#ffcdd2">deny</span> denied '
             '<span class="sw" style="background:#ffcdd2;font-weight:700">deny!</span> a '
             'mechanism meant to carry the verdict does not (hatched; see the findings) '
             '<span class="sw">deny~</span> no mechanism is known to carry it. Hover a '
             'cell for its mechanisms; the keys are explained in the legend.</p>')
    roster = ""
    if members:
        roster = "<h2>Members</h2>" + "".join(
            f"<p><b>{_e(p.label)}</b>: {_e(', '.join(p.members))}</p>" for p in r.profiles)
    cells_json = json.dumps(texts).replace("</", "<\\/")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{_e(title)}</title>\n<style>{_PAGE_STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{_e(title)}</h1>\n<p>{_e(headline)}</p>\n"
        f'<table class="prov">{prov}</table>\n'
        f'<div class="sum">{summ}</div>\n'
        '<div class="filter"><input id="q" type="search" '
        'placeholder="filter images and findings (e.g. a registry, a group, a kind)"></div>\n'
        f'<h2 id="findings">Findings ({len(r.findings)})</h2>\n{findings_html}\n'
        f'<h2 id="matrix">Who may run what: {len(r.targets)} images &times; '
        f"{len(r.profiles)} access profiles</h2>\n{marks}\n"
        f'<table class="mx"><thead><tr><th>image</th>{heads}</tr></thead>\n<tbody>\n'
        + "\n".join(body) + "\n</tbody></table>\n"
        f'<h2 id="legend">Legend</h2>\n<dl class="legend">{legend}</dl>\n{roster}\n'
        f'<script type="application/json" id="cells">{cells_json}</script>\n'
        f"<script>{_PAGE_SCRIPT}</script>\n</body>\n</html>\n"
    )
