"""Reading what is published: a generation's verified manifest and trees, and what a new set
of trees changes against it."""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

from hpcpolicy.deploy import diff as diffs
from hpcpolicy.errors import VerificationError
from hpcpolicy.fsutil import read_bytes_nofollow
from hpcpolicy.generation.manifest import ACCESS, access_entry, class_files
from hpcpolicy.generation.naming import generations_dir, tree_dir
from hpcpolicy.generation.verify import verify_generation

log = logging.getLogger(__name__)

Trees = Mapping[str, Mapping[str, bytes]]  # node class -> {node path: bytes}
MutableTrees = Dict[str, Dict[str, bytes]]


def gen_dir(deploy_root: str, name: str) -> str:
    return os.path.join(generations_dir(deploy_root), name)


def read_trees(deploy_root: str, name: str, manifest: Mapping[str, Any]) -> MutableTrees:
    """Every class tree of a (verified) generation, read back from disk."""
    out: MutableTrees = {}
    for node_class in manifest["classes"]:
        top = os.path.join(gen_dir(deploy_root, name), tree_dir(node_class))
        out[node_class] = {
            entry.path: read_bytes_nofollow(os.path.join(top, entry.path))
            for entry in class_files(manifest, node_class)
        }
    return out


def load_verified(deploy_root: str, name: Optional[str]) -> Optional[Dict[str, Any]]:
    """The manifest of `name` once its files are verified; None for no generation.

    A generation that fails verification (someone edited shared storage) is reported and
    treated as absent, so the apply publishes a fresh, correct one instead of trusting it.
    """
    if name is None:
        return None
    try:
        return verify_generation(gen_dir(deploy_root, name))
    except VerificationError as err:
        log.warning("generation %s fails verification (%s): publishing a fresh one", name, err)
        return None


def _hashes(manifest: Optional[Mapping[str, Any]]) -> Dict[str, str]:
    """{flat path: sha256} of a generation, from its (verified) manifest."""
    if manifest is None:
        return {}
    return diffs.flatten({c: {e.path: e.sha256 for e in class_files(manifest, c)}
                          for c in manifest["classes"]})


def compare(
    deploy_root: str, base: Optional[str], manifest: Optional[Mapping[str, Any]],
    trees: Trees, want_diff: bool,
) -> Tuple[List[Dict[str, str]], Optional[List[Dict[str, Any]]]]:
    """(changes, diff) from generation `base` (its verified manifest, or None) to `trees`.

    Changes come from the manifest's hashes; old file bytes are read only for a diff.
    """
    after = diffs.flatten(trees)
    after_hashes = {p: hashlib.sha256(d).hexdigest() for p, d in after.items()}
    changes = diffs.changes(_hashes(manifest), after_hashes)
    if not want_diff:
        return changes, None
    before: Dict[str, bytes] = {}
    if manifest is not None and base is not None and changes:
        before = diffs.flatten(read_trees(deploy_root, base, manifest))
    wanted = {c["path"] for c in changes}
    return changes, [diffs.diff_entry(p, before.get(p), after.get(p)) for p in sorted(wanted)]


def read_access(deploy_root: str, name: Optional[str],
                manifest: Optional[Mapping[str, Any]]) -> Optional[Dict[str, Any]]:
    """A (verified) generation's access document; None when it has none (published before
    access records existed) or there is no generation."""
    from hpcpolicy.access.document import parse

    if name is None or manifest is None or access_entry(manifest) is None:
        return None
    path = os.path.join(gen_dir(deploy_root, name), ACCESS)
    try:
        return parse(read_bytes_nofollow(path), path)
    except (OSError, ValueError) as err:
        raise VerificationError(f"{path}: {err}") from None


def access_sha256(manifest: Optional[Mapping[str, Any]]) -> Optional[str]:
    entry = access_entry(manifest) if manifest is not None else None
    return entry.sha256 if entry is not None else None


def access_changes(before: Optional[Mapping[str, Any]],
                   after: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """Access changes of every class (a class whose verdicts equal the default class's is
    reported once, as `default`), each entry carrying its `class`."""
    from hpcpolicy.access.document import changes

    out: List[Dict[str, Any]] = []
    default = after["classes"].get("default")
    for node_class in sorted(after["classes"], key=lambda c: (c != "default", c)):
        if node_class != "default" and after["classes"][node_class] == default and (
                before is None or before["classes"].get(node_class)
                == before["classes"].get("default")):
            continue
        out += [dict(e, **{"class": node_class}) for e in changes(before, after, node_class)]
    return out
