"""`hpcpolicy render SITE --out DIR`: write the node trees a generation would hold, nothing else.

Layout: the `default` class at `DIR/<node path>` (e.g. `DIR/etc/subuid`), each declared class at
`DIR/class/NAME/<node path>`; with `--class NAME` only that class, at `DIR/<node path>`, as a node
of that class would install it. It reads the directory and the ledger (read-only) exactly as
`apply` does, renders everything in memory first, so an invalid site writes nothing, and refuses
to write through a symlink anywhere below DIR. Files already equal are left untouched.
"""

from __future__ import annotations

import argparse
from typing import Any

from hpcpolicy.cli.options import add_format, add_site, site_of
from hpcpolicy.cli.outcome import Outcome


def add_parser(subparsers: Any, common_parent: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "render", parents=[common_parent], help="render the node trees into a directory",
        description=__doc__)
    add_site(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="where to write the trees")
    parser.add_argument("--deploy-root", metavar="DIR",
                        help="read the ledger here instead of site.deploy_root")
    parser.add_argument("--class", dest="node_class", metavar="NAME",
                        help="render only this node class, at DIR/<node path>")
    add_format(parser)
    parser.set_defaults(run=run, json_on_error={"changes": []})


def run(args: argparse.Namespace) -> Outcome:
    from hpcpolicy.deploy.review import render_site

    done = render_site(site_of(args, "render"), args.out, args.node_class, args.deploy_root)
    msg = (f"rendered {len(done.files)} files for {', '.join(done.classes)} into {done.out}: "
           f"{len(done.changes)} changed")
    text = "\n".join([msg] + [f"  {c['action']:<8} {c['path']}" for c in done.changes]) + "\n"
    data = {"out": done.out, "classes": done.classes, "files": done.files,
            "changes": done.changes}
    return Outcome(msg, data, text, changed=bool(done.changes))
