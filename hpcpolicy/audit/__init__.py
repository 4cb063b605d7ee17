"""`hpcpolicy audit`: who may run which image, why, and what on a node enforces it.

`decide` is pure (policy + directory snapshot + observed file states in, decisions out; its
parts are `context`, `decide_reference` and `decide_local`), `matrix` groups users into access
profiles and decides once per profile and image (summary, findings, matrix), `observe` is the
only part that touches the file system (stat of collection paths), `report` and
`profile_report` render as a table, CSV, JSON or a self-contained HTML page, and `api.run` is
the one call the command line (or a site's own script) makes.
"""

from __future__ import annotations

from typing import Any


def run(site: str, **options: Any) -> Any:
    """`hpcpolicy.audit.api.run` (imported on first use: the audit pulls in every reader)."""
    from hpcpolicy.audit.api import run as _run

    return _run(site, **options)
