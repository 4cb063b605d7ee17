"""`hpcpolicy validate SITE [--offline]`: is this site file sound? Exit 0 valid, 2 invalid.

Offline it checks the file alone (schema, types, ranges, cross-field rules). Otherwise it also
reads the directory the file names and checks the groups it mentions, that the sub-ID space
stays clear of every real UID/GID, and that the space holds every eligible user. An unreachable
directory is a runtime failure (exit 1), not a verdict on the file.
"""

from __future__ import annotations

import argparse
from typing import Any, Dict, Optional

from hpcpolicy.cli.options import add_format, add_site, site_of
from hpcpolicy.cli.outcome import Outcome


def add_parser(subparsers: Any, common_parent: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "validate", parents=[common_parent], help="check a site file (exit 0 valid, 2 invalid)",
        description=__doc__)
    add_site(parser)
    parser.add_argument("--offline", action="store_true",
                        help="check the file alone; do not read users and groups")
    add_format(parser)
    parser.set_defaults(run=run, json_on_error={"valid": False})


def summary_line(info: Dict[str, Any], directory: Optional[Dict[str, int]]) -> str:
    sub = info["subid"]
    subid = (f"sub-IDs {sub['strategy']} [{sub['start']}, {sub['end']}] x {sub['count']}"
             if sub["enabled"] else "sub-IDs off")
    classes = ", ".join(["default"] + info["node_classes"])
    seen = ("directory not read (--offline)" if directory is None else
            f"{directory['users']} users, {directory['groups']} groups from "
            f"{', '.join(info['sources'])}")
    return (f"site {info['site']}: runtimes {', '.join(info['runtimes'])}; "
            f"{_n(info['binds'], 'bind')}; {_n(info['image_rules'], 'image rule')}, "
            f"{_n(info['collections'], 'collection')}; classes {classes}; {subid}; {seen}")


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def run(args: argparse.Namespace) -> Outcome:
    from hpcpolicy.audit.local_view import validate_here

    site = site_of(args, "validate")
    done = validate_here(site, args.offline)  # the file, its directory, and this host
    counts = None if done.snapshot is None else {"users": len(done.snapshot.users),
                                                 "groups": len(done.snapshot.groups)}
    line = summary_line(done.summary, counts)
    warnings = done.warnings
    text = "".join(f"{w}\n" for w in warnings)  # the directory's own are logged as read
    data: Dict[str, Any] = {"valid": True, "offline": bool(args.offline),
                            "summary": done.summary,
                            "warnings": warnings + done.directory_warnings}
    if counts is not None:
        data["directory"] = counts
    return Outcome(f"{site}: valid", data, f"{site}: valid\n{line}\n{text}")
