"""Render audit decisions: a table or an explanation for people, CSV for spreadsheets, JSON for
programs, and one self-contained HTML page to hand to a reviewer. Pure (returns strings). The
report by access profile is rendered by `profile_report`, with the escapes defined here.

Every value in HTML goes through `html.escape` (user and group names come from a directory the
audit does not control). CSV cells that a spreadsheet would run as a formula (leading `=`, `+`,
`-`, `@`, tab or carriage return) get a leading `'`, the usual defence against CSV injection.
"""

from __future__ import annotations

import csv
import html
import io
from typing import Any, Dict, List, Sequence, Tuple

from hpcpolicy.audit.context import NO_CONTROL, AuditDecision

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


def csv_cell(value: Any) -> str:
    """A CSV cell a spreadsheet shows as text, never runs as a formula."""
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
            writer.writerow([csv_cell(v) for v in base + ["", "", "", ""] + tail])
        for e in mechanisms:
            row = base + [e.mechanism, e.enforces, e.user_can_override, e.note] + tail
            writer.writerow([csv_cell(v) for v in row])
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


def escape(value: Any) -> str:
    """Any value as HTML text or attribute (directory names are not the audit's to trust)."""
    return html.escape(str(value), quote=True)


def _list(items: Sequence[str]) -> str:
    if not items:
        return ""
    return "<ul>" + "".join(f"<li>{escape(i)}</li>" for i in items) + "</ul>"


def _enforcement_html(d: AuditDecision) -> str:
    items = []
    for e in d.enforced_by:
        css = "yes" if e.enforces else "no"
        word = "enforces" if e.enforces else "does not enforce"
        over = "; user can override" if e.user_can_override else ""
        items.append(f'<li><b>{escape(e.mechanism)}</b>: <span class="{css}">{word}</span>{over}'
                     f'<div class="small">{escape(e.note)}</div></li>')
    return "<ul>" + "".join(items) + "</ul>" if items else ""


def _row(d: AuditDecision) -> str:
    css = _verdict(d) + (" unenforced" if d.unenforced_denial else "")
    cells = [
        escape(d.user), escape(d.image), _verdict(d), escape(d.rule), escape(d.reason),
        _enforcement_html(d),
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
        f"<title>{escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{escape(title)}</h1>\n<p>{escape(headline)}</p>\n"
        f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>\n"
        "</body>\n</html>\n"
    )
