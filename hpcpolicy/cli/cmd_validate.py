"""`hpcpolicy validate SITE [--offline]`: is this site file sound? Exit 0 valid, 2 invalid.

Offline it checks the file alone (schema, types, ranges, cross-field rules). Otherwise it also
reads the directory the file names and checks the groups it mentions, that the sub-ID space
stays clear of every real UID/GID, and that the space holds every eligible user. An unreachable
directory is a runtime failure (exit 1), not a verdict on the file.
"""

from __future__ import annotations

import argparse
from typing import Any, Dict, List, Optional

from hpcpolicy.cli import local_view
from hpcpolicy.cli.outcome import Outcome
from hpcpolicy.directory.model import Snapshot
from hpcpolicy.errors import InvalidInput, Problem
from hpcpolicy.policy.model import Policy


def add_parser(subparsers: Any, common_parent: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "validate", parents=[common_parent], help="check a site file (exit 0 valid, 2 invalid)",
        description=__doc__)
    parser.add_argument("site", metavar="SITE", help="the site file (site.toml)")
    parser.add_argument("--offline", action="store_true",
                        help="check the file alone; do not read users and groups")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.set_defaults(run=run, json_on_error={"valid": False})


def summary(policy: Policy) -> Dict[str, Any]:
    """The counts a reviewer checks at a glance."""
    s = policy.subid
    return {
        "site": policy.site.name,
        "runtimes": list(policy.site.runtimes),
        "binds": len(policy.binds),
        "image_rules": sum(1 for r in policy.images.rules if not r.alias_of),
        "collections": len(policy.images.collections),
        "node_classes": [c.name for c in policy.node_classes],
        "sources": list(policy.directory.sources),
        "subid": {"enabled": s.enabled, "strategy": s.strategy, "start": s.start,
                  "end": s.end, "count": s.count},
        "sha256": policy.sha256,
    }


def summary_line(info: Dict[str, Any], snapshot: Optional[Snapshot]) -> str:
    sub = info["subid"]
    subid = (f"sub-IDs {sub['strategy']} [{sub['start']}, {sub['end']}] x {sub['count']}"
             if sub["enabled"] else "sub-IDs off")
    classes = ", ".join(["default"] + info["node_classes"])
    seen = ("directory not read (--offline)" if snapshot is None else
            f"{len(snapshot.users)} users, {len(snapshot.groups)} groups from "
            f"{', '.join(info['sources'])}")
    return (f"site {info['site']}: runtimes {', '.join(info['runtimes'])}; "
            f"{_n(info['binds'], 'bind')}; {_n(info['image_rules'], 'image rule')}, "
            f"{_n(info['collections'], 'collection')}; classes {classes}; {subid}; {seen}")


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def check_directory(policy: Policy) -> Snapshot:
    """Read the directory and raise every problem it reveals in the policy."""
    from hpcpolicy.directory.against import check_against_directory
    from hpcpolicy.directory.read import read_directory
    from hpcpolicy.subid.allocate import check_fit

    snapshot = read_directory(policy)
    problems: List[Problem] = list(check_against_directory(policy, snapshot))
    if not problems:  # fit is meaningless while the space itself meets real IDs
        problems += check_fit(policy, snapshot)
    if problems:
        raise InvalidInput(problems)
    return snapshot


def run(args: argparse.Namespace) -> Outcome:
    from hpcpolicy.policy.cautions import cautions
    from hpcpolicy.policy.load import load

    policy = load(args.site)
    local = local_view.store_problems(policy)  # what this host shows of the site's stores
    if local:
        raise InvalidInput(local)
    snapshot = None if args.offline else check_directory(policy)
    info = summary(policy)
    line = summary_line(info, snapshot)
    warnings = [str(w) for w in cautions(policy)] + local_view.bind_warnings(policy)
    text = "".join(f"{w}\n" for w in warnings)  # the directory's own are logged as read
    if snapshot is not None:
        warnings += [f"{w.file}: {w.path}: warning: {w.message}" for w in snapshot.warnings]
    data: Dict[str, Any] = {"valid": True, "offline": bool(args.offline), "summary": info,
                            "warnings": warnings}
    if snapshot is not None:
        data["directory"] = {"users": len(snapshot.users), "groups": len(snapshot.groups)}
    return Outcome(f"{args.site}: valid", data, f"{args.site}: valid\n{line}\n{text}")
