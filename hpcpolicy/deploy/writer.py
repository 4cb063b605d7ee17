"""Writing a generation and switching a channel to it (the caller holds the deploy lock).

A generation is built complete under `generations/.tmp-*` (every file written new and fsynced,
every directory fsynced), its manifest written and signed, then renamed to its final name and
`generations/` fsynced; only then does a channel switch to it: the history records the switch
first, then a new symlink is renamed over the old one. A kill at any instant leaves every
channel on a complete generation.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any, Dict, List, Mapping, Optional

from hpcpolicy.deploy import gc
from hpcpolicy.deploy.published import Trees
from hpcpolicy.deploy.store import CHANNELS, Target
from hpcpolicy.errors import RuntimeFailure
from hpcpolicy.fsutil import atomic_symlink, atomic_write, fsync_dir, make_dirs, write_new
from hpcpolicy.generation.manifest import (
    ACCESS,
    ACCESS_MODE,
    MANIFEST,
    SYSCTL_FILE,
    build_manifest,
    dump_manifest,
    optional_sysctls,
    parse_sysctl,
    size_bound,
)
from hpcpolicy.generation.naming import (
    STABLE,
    TMP_PREFIX,
    channel_generation,
    channel_link,
    format_name,
    generations_dir,
    link_target,
    list_generations,
    number_of,
    tree_dir,
    trees_sha256,
)
from hpcpolicy.policy.model import Policy
from hpcpolicy.render.needs import all_class_needs

DIR_MODE = 0o755
FILE_MODE = 0o644


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _write_tree(tmp: str, node_class: str, tree: Mapping[str, bytes], made: List[str]) -> None:
    rel = tree_dir(node_class)
    made += make_dirs(tmp, rel, DIR_MODE)
    top = os.path.join(tmp, rel)
    for path in sorted(tree):
        parent = os.path.dirname(path)
        if parent:
            made += make_dirs(top, parent, DIR_MODE)
        write_new(os.path.join(top, path), tree[path], FILE_MODE)


def next_name(deploy_root: str, trees: Trees) -> str:
    names = list_generations(deploy_root)
    number = number_of(names[-1]) + 1 if names else 1
    return format_name(number, trees_sha256(trees))


def write_generation(
    target: Target,
    trees: Trees,
    manifest_fields: Mapping[str, Any],
    access: Optional[bytes] = None,
) -> str:
    """Build a complete generation under `.tmp-*` and rename it into place; return its name.

    `manifest_fields`: created, operator, host, site, policy_sha256, requirements, extra.
    `access`: the bytes of access.json (mode 0640, owned by whoever runs apply: the deploy
    owner), beside the manifest and listed in it.
    """
    for node_class, tree in trees.items():  # nodes would refuse the generation: say so here
        for path, data in tree.items():
            bound = size_bound(path)
            if bound is None or len(data) > bound:
                why = "not a path nodes install" if bound is None else f"over {bound} bytes"
                raise RuntimeFailure(f"class {node_class}: {path}: {why}; nothing published")
    gens = generations_dir(target.root)
    name = next_name(target.root, trees)
    tmp = os.path.join(gens, f"{TMP_PREFIX}{os.getpid()}-{os.urandom(4).hex()}")
    os.mkdir(tmp, DIR_MODE)
    os.chmod(tmp, DIR_MODE)
    made: List[str] = []
    for node_class in sorted(trees):
        _write_tree(tmp, node_class, trees[node_class], made)
    if access is not None:
        write_new(os.path.join(tmp, ACCESS), access, ACCESS_MODE)
    manifest = build_manifest(name=name, trees=trees, deploy_owner=target.owner,
                              signed=bool(target.signing_key), access=access,
                              **manifest_fields)
    manifest_path = os.path.join(tmp, MANIFEST)
    atomic_write(manifest_path, dump_manifest(manifest), mode=0o644)
    if target.signing_key:
        from hpcpolicy.generation.signing import sign

        sign(manifest_path, target.signing_key)
    for directory in reversed(made):
        fsync_dir(directory)
    fsync_dir(tmp)
    os.rename(tmp, os.path.join(gens, name))
    fsync_dir(gens)
    return name


def switch_channel(deploy_root: str, channel: str, name: str, now: datetime) -> None:
    """Point a channel at `name`: history first, then a new symlink renamed over the old."""
    old = channel_generation(deploy_root, channel)
    gc.record_switch(deploy_root, channel, old, name, now)
    link = channel_link(deploy_root, channel)
    if channel != STABLE:
        os.makedirs(os.path.join(deploy_root, CHANNELS), mode=0o755, exist_ok=True)
    atomic_symlink(link_target(channel, name), link)


def publish_trees(
    target: Target,
    trees: Trees,
    manifest_fields: Mapping[str, Any],
    channel: str = STABLE,
    now: Optional[datetime] = None,
    access: Optional[bytes] = None,
) -> str:
    """Write `trees` as a new generation and point `channel` at it (caller holds the lock).

    Independent of planning: rollback and tests publish trees they did not render.
    """
    name = write_generation(target, trees, manifest_fields, access)
    switch_channel(target.root, channel, name, now or utc_now())
    return name


def requirements_of(policy: Policy, trees: Trees) -> Dict[str, Any]:
    """What `node doctor` checks on a node: bind sources, sysctls, setuid, runtimes, sub-IDs."""
    binds = {
        c: sorted({b.source for b in policy.binds
                   if b.required and (not b.classes or c in b.classes)})
        for c in sorted(trees)
    }
    default = trees.get("default", {})
    sysctl = default.get(SYSCTL_FILE, b"")
    return {
        "bind_sources": binds,
        "sysctls": parse_sysctl(sysctl),
        "sysctls_optional": optional_sysctls(sysctl),
        "setuid_allowed": policy.runtime.setuid,
        "runtimes": list(policy.site.runtimes),
        "subid_enabled": policy.subid.enabled,
        "classes": all_class_needs(policy, trees),  # per class; the keys above: default's
    }
