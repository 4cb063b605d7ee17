"""Assemble the node tree of every node class from each launcher's renderer.

Keys are node paths relative to `/` (e.g. `etc/subuid`); values are the exact bytes a node
installs. Deterministic: the same inputs give the same bytes.
"""

from __future__ import annotations

from typing import Dict, Sequence

import hpcpolicy.render.apptainer as apptainer
import hpcpolicy.render.containers as containers
import hpcpolicy.render.enroot as enroot
import hpcpolicy.render.singularity as singularity
import hpcpolicy.render.storage as storage
import hpcpolicy.render.subid as subid
import hpcpolicy.render.sysctl as sysctl
from hpcpolicy.directory.model import Snapshot
from hpcpolicy.policy.model import Bind, Policy
from hpcpolicy.subid.model import Allocation

Tree = Dict[str, bytes]


def binds_for(policy: Policy, runtime: str, node_class: str) -> Sequence[Bind]:
    """The binds one runtime gets on one node class, in file order."""
    return [
        b
        for b in policy.binds
        if runtime in b.runtimes and (not b.classes or node_class in b.classes)
    ]


def render_all(
    policy: Policy, snapshot: Snapshot, allocations: Sequence[Allocation]
) -> Dict[str, Tree]:
    """One tree per node class, `default` first; class-independent files rendered once."""
    common = common_files(policy, snapshot, allocations)
    return {name: _assemble(common, class_files(policy, name)) for name in policy.class_names()}


def common_files(policy: Policy, snapshot: Snapshot, allocations: Sequence[Allocation]) -> Tree:
    """Files every node class shares: image sources, sub-IDs."""
    tree: Tree = {}
    if "podman" in policy.site.runtimes:
        tree.update(containers.render_images(policy, snapshot))
    if policy.subid.enabled:
        tree.update(subid.render(policy, allocations))
    return tree


def class_files(policy: Policy, node_class: str) -> Tree:
    """Files that depend on a node class: its binds and its [runtime] (a class may replace
    setuid, user_namespaces, storage and apptainer_limits)."""
    policy = policy.for_class(node_class)
    runtimes = set(policy.site.runtimes)
    tree: Tree = sysctl.render(policy)
    if "apptainer" in runtimes:
        tree.update(apptainer.render(policy, binds_for(policy, "apptainer", node_class)))
    if "singularity" in runtimes:
        tree.update(singularity.render(policy, binds_for(policy, "singularity", node_class)))
    if "podman" in runtimes:
        tree.update(containers.render_volumes(policy, binds_for(policy, "podman", node_class)))
        tree.update(storage.render(policy))
    if "enroot" in runtimes:
        tree.update(enroot.render(policy, binds_for(policy, "enroot", node_class)))
    return tree


def _assemble(common: Tree, per_class: Tree) -> Tree:
    return dict(sorted({**common, **per_class}.items()))

