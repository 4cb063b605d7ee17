"""`hpcpolicy diff [FROM [TO]]`: who gained or lost which image between two generations.

Reads the two generations' `access.json` (verified against their manifests) and compares them
user by user, grouped by (image, before, after, groups) so the answer grows with access
profiles, not users. TO defaults to `current`; FROM to the generation TO replaced on its
channel (its manifest's `previous`), else the highest-numbered one below TO. It reads the
deploy root and writes nothing. `access_diff_of` is the call behind the command: the deploy root
named by a site file or a bare `--deploy-root`.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from hpcpolicy.access.document import changes, summary
from hpcpolicy.deploy.published import access_changes, gen_dir, read_access
from hpcpolicy.deploy.store import Target, check_deploy_root
from hpcpolicy.deploy.targets import reader
from hpcpolicy.errors import RuntimeFailure, UsageError
from hpcpolicy.generation.naming import STABLE, channel_generation, list_generations, number_of
from hpcpolicy.generation.naming import resolve as resolve_name
from hpcpolicy.generation.verify import verify_generation


def _before(root: str, to: str, manifest: Dict[str, Any]) -> str:
    names = list_generations(root)
    previous = manifest.get("previous")
    if isinstance(previous, str) and previous in names and previous != to:
        return previous
    older = [n for n in names if number_of(n) < number_of(to)]
    if not older:
        raise RuntimeFailure(f"{root}: no generation before {to} to compare with")
    return older[-1]


def _doc(root: str, name: str, manifest: Dict[str, Any]) -> Dict[str, Any]:
    doc = read_access(root, name, manifest)
    if doc is None:
        raise RuntimeFailure(f"{name} has no access.json (published before hpcpolicy recorded "
                             "who may run what): it cannot be compared")
    return doc


def access_diff(target: Target, from_: Optional[str] = None, to: Optional[str] = None,
                node_class: Optional[str] = None) -> Dict[str, Any]:
    """`{changed: false, failed: false, msg, from, to, changes}` (see the module docstring)."""
    root = target.root
    check_deploy_root(root, target.owner, write=False)
    to_name = resolve_name(root, to) if to else channel_generation(root, STABLE)
    if to_name is None:
        raise RuntimeFailure(f"{root}: nothing published yet (no `current`)")
    to_manifest = verify_generation(gen_dir(root, to_name))
    from_name = resolve_name(root, from_) if from_ else _before(root, to_name, to_manifest)
    from_manifest = verify_generation(gen_dir(root, from_name))
    before, after = _doc(root, from_name, from_manifest), _doc(root, to_name, to_manifest)
    if node_class is not None:
        known = sorted(set(before["classes"]) | set(after["classes"]))
        if node_class not in known:
            raise UsageError(f"--class {node_class}: not a node class of {from_name} or "
                             f"{to_name} ({', '.join(known)})")
        found: List[Dict[str, Any]] = [dict(e, **{"class": node_class})
                                       for e in changes(before, after, node_class)]
    else:
        found = access_changes(before, after)
    return {"changed": False, "failed": False, "from": from_name, "to": to_name,
            "changes": found, "msg": f"{from_name} -> {to_name}: {summary(found)}"}


def access_diff_of(site: Optional[str], deploy_root: Optional[str], from_: Optional[str] = None,
                   to: Optional[str] = None, node_class: Optional[str] = None) -> Dict[str, Any]:
    """`access_diff` of the deploy root `--site SITE` or `--deploy-root DIR` names (one of them
    is required: no default site)."""
    target, _ = reader(site, deploy_root, "diff")
    return access_diff(target, from_, to, node_class)
