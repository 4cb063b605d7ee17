"""Reading a generation from the deploy root, as a node: trust checks, channel, class, bytes.

* The deploy root, every parent and every place a symlink on the way leads, and below it the
  channel link, `generations/`, `channels/` and everything in the generation must be owned by
  root or by the deploy owner the NODE was told about (node.toml or --deploy-owner; root when
  neither says), and not writable by group or other (a root-owned sticky parent, like /tmp, is
  fine). Never "whoever owns the directory": a user who creates the deploy root first (under a
  sticky /scratch, or where the share is not mounted) would otherwise own every node.
* The channel link is read ONCE; from then on only that generation directory is used, so a
  publish or rollback during a sync cannot mix two generations.
* Every file of the node's class is read once into memory and checked against the verified
  manifest (size and sha256): those exact bytes are what gets installed, so a file swapped
  after verification cannot be installed. Any read error (a generation removed mid-sync)
  fails the whole sync before anything is installed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from typing import Any, Collection, Dict, List, Mapping, Optional, Set, Tuple

from hpcpolicy.errors import RuntimeFailure, UnsafePath, UsageError, VerificationError
from hpcpolicy.fsutil import read_bytes_nofollow
from hpcpolicy.generation.manifest import MANAGED_FILES, class_files
from hpcpolicy.generation.naming import (
    CHANNELS,
    DEFAULT_CLASS,
    GENERATIONS,
    STABLE,
    tree_dir,
)
from hpcpolicy.generation.trust import check_dirs
from hpcpolicy.node.link import (  # the light part: a sync with nothing to do uses only it
    REFUSE,
    check_deploy_root,
    check_link,
    resolve,
)

__all__ = ["check_deploy_root", "check_link", "resolve"]  # re-exported

log = logging.getLogger(__name__)
_READ_LIMIT = max(MANAGED_FILES.values()) + 1


# ----------------------------------------------------------------------------- trust


def check_inner(deploy_root: str, channel: str, gen_dir: str, owners: Set[int]) -> None:
    """The channel link, `generations/`, the channel directory and the generation: same rule."""
    check_link(deploy_root, channel, owners)
    inner = [os.path.join(deploy_root, GENERATIONS), gen_dir]
    if channel != STABLE:
        inner.insert(1, os.path.join(deploy_root, CHANNELS))
    for entry in inner:
        if os.path.islink(entry):
            raise UnsafePath(f"{entry}: is a symlink; refusing to read it")
    check_dirs(f"deploy root {deploy_root}", inner, owners, set(inner), REFUSE)


# ----------------------------------------------------------------------------- generation


def _read(path: str) -> bytes:
    """One file of the generation (a seam for tests that make a generation vanish).

    Never more than the largest bound plus one byte: a file that grew after verification is
    refused by its size, not held in memory.
    """
    return read_bytes_nofollow(path, _READ_LIMIT)


def read_class(gen_dir: str, manifest: Mapping[str, Any], node_class: str,
               skip: Collection[str] = (), only: Optional[Collection[str]] = None
               ) -> Dict[str, bytes]:
    """{node path: bytes} of one class, each read once and checked against the manifest.

    `skip`: paths not read (the node holds their bytes, intact); `only`: read just these.
    """
    tree = os.path.join(gen_dir, tree_dir(node_class))
    out: Dict[str, bytes] = {}
    for entry in class_files(manifest, node_class):
        if entry.path in skip or (only is not None and entry.path not in only):
            continue
        path = os.path.join(tree, entry.path)
        try:
            data = _read(path)
        except OSError as err:
            raise VerificationError(
                f"{path}: cannot read ({err.strerror}): generation changed or removed during "
                "the sync; nothing installed") from None
        if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
            raise VerificationError(
                f"{path}: differs from the manifest when read for installing; nothing installed")
        out[entry.path] = data
    return out


# ----------------------------------------------------------------------------- class


def node_sets(manifest: Mapping[str, Any]) -> Dict[str, str]:
    """{class: ClusterShell node set} as the manifest records them.

    Looked up as `classes.NAME.nodes`, else a top-level `node_classes: {NAME: nodes}`.
    """
    out: Dict[str, str] = {}
    top = manifest.get("node_classes")
    for name, body in manifest["classes"].items():
        nodes = body.get("nodes") if isinstance(body, dict) else None
        if nodes is None and isinstance(top, dict):
            nodes = top.get(name)
        if isinstance(nodes, str) and nodes and name != DEFAULT_CLASS:
            out[name] = nodes
    return out


def _matches(nodes: str, names: List[str]) -> bool:
    from ClusterShell.NodeSet import NodeSet, NodeSetException

    try:
        nodeset = NodeSet(nodes)
    except NodeSetException as err:
        raise VerificationError(f"manifest: invalid node set {nodes!r}: {err}") from None
    return any(name in nodeset for name in names)


def select_class(
    manifest: Mapping[str, Any], requested: Optional[str], hostname: Optional[str] = None,
) -> Tuple[str, str]:
    """(class, how it was chosen): --class, else the hostname against each class's node set."""
    classes = sorted(manifest["classes"])
    if requested is not None:
        if requested not in classes:
            raise UsageError(
                f"--class {requested}: the generation has no such class "
                f"(it has: {', '.join(classes)})")
        return requested, "--class"
    host = hostname if hostname is not None else socket.gethostname()
    names = list(dict.fromkeys([host, host.split(".", 1)[0]]))
    sets = node_sets(manifest)
    found = [c for c, nodes in sorted(sets.items()) if _matches(nodes, names)]
    if len(found) > 1:
        raise RuntimeFailure(
            f"host {host} matches the node sets of several classes ({', '.join(found)}); "
            "pick one with --class")
    if found:
        return found[0], f"hostname {host} in {sets[found[0]]}"
    missing = [c for c in classes if c != DEFAULT_CLASS and c not in sets]
    if missing:
        log.warning("manifest records no node set for class(es) %s: only --class selects them",
                    ", ".join(missing))
    return DEFAULT_CLASS, f"hostname {host} matches no class"
