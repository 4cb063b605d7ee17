"""What is published: `status` and `generations` read the deploy root, never write it."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

from hpcpolicy.deploy.changelog import read_changes
from hpcpolicy.errors import HpcPolicyError
from hpcpolicy.generation.manifest import load_manifest
from hpcpolicy.generation.naming import (
    STABLE,
    channels,
    generations_dir,
    list_generations,
    number_of,
    tree_dir,
)

SUBUID = "etc/subuid"


def _manifest(deploy_root: str, name: str) -> Optional[Dict[str, Any]]:
    try:
        return load_manifest(os.path.join(generations_dir(deploy_root), name))
    except HpcPolicyError:
        return None


def _subid_users(deploy_root: str, name: str) -> Optional[int]:
    """Lines in the default tree's etc/subuid (one per user holding a range)."""
    path = os.path.join(generations_dir(deploy_root), name, tree_dir("default"), SUBUID)
    try:
        with open(path, "rb") as handle:
            return sum(1 for line in handle if line.strip())
    except OSError:
        return None


def describe(deploy_root: str, name: str) -> Dict[str, Any]:
    """One generation as status shows it (manifest facts; `broken` if it has none)."""
    manifest = _manifest(deploy_root, name)
    out: Dict[str, Any] = {"generation": name, "number": number_of(name)}
    if manifest is None:
        out["broken"] = True
        return out
    for key in ("created", "operator", "host", "site", "policy_sha256", "action"):
        out[key] = manifest.get(key)
    out["classes"] = {c: len(b["files"]) for c, b in sorted(manifest["classes"].items())}
    out["subid_users"] = _subid_users(deploy_root, name)
    if manifest.get("rollback_to"):
        out["rollback_to"] = manifest["rollback_to"]
    return out


def status(deploy_root: str) -> Dict[str, Any]:
    """Current generation, what it holds, when and by whom; every channel; the last change."""
    links = channels(deploy_root)
    current = links.get(STABLE)
    changes = read_changes(deploy_root)
    return {
        "deploy_root": deploy_root,
        "generation": current,
        "current": describe(deploy_root, current) if current else None,
        "channels": {c: (describe(deploy_root, g) if g else None) for c, g in links.items()},
        "generations": len(list_generations(deploy_root)),
        "last_change": changes[-1] if changes else None,
    }


def generations(deploy_root: str) -> List[Dict[str, Any]]:
    """Every generation, newest first, with the channels that name it."""
    links = channels(deploy_root)
    out: List[Dict[str, Any]] = []
    for name in reversed(list_generations(deploy_root)):
        entry = describe(deploy_root, name)
        named = sorted(c for c, g in links.items() if g == name)
        entry["current"] = STABLE in named
        entry["channels"] = named
        out.append(entry)
    return out


def status_of(site: Optional[str] = None, deploy_root: Optional[str] = None) -> Dict[str, Any]:
    """`hpcpolicy status`: what nodes get now, of the deploy root a site file or DIR names."""
    from hpcpolicy.generation.reading import read_root

    return status(read_root(site, deploy_root, "status"))


def generations_of(site: Optional[str] = None,
                   deploy_root: Optional[str] = None) -> List[Dict[str, Any]]:
    """`hpcpolicy generations`: every generation, newest first."""
    from hpcpolicy.generation.reading import read_root

    return generations(read_root(site, deploy_root, "generations"))
