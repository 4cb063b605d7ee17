"""Publish a new immutable generation and switch a channel to it (SPEC §4).

Order of an apply, and why:

1. check the deploy root (nobody else could alter it), then take the lock;
2. remove `generations/.tmp-*` left by killed runs (only the lock holder may);
3. plan (directory, allocation, render), revoke guard;
4. compare with the channel's generation: same files -> publish nothing (but save a changed
   ledger: a new tombstone is state even when no file changes);
5. save the ledger durably FIRST: a generation must never hand out a range the ledger
   does not hold, whatever instant a crash hits;
6. build the generation in `generations/.tmp-*` (every file and directory fsynced), write and
   sign the manifest, rename it to its final name, fsync `generations/`;
7. record the switch in the history, then switch the link by renaming a new symlink over it;
8. append the change log, then GC.

A kill at any instant leaves `current` on a complete generation; what a killed run leaves
behind is a `.tmp-*` directory (removed at step 2) or a complete orphan generation no link
names (collected by GC after its grace period).

`--check` takes no lock and writes nothing at all (not even the lock file): it only reads
immutable generations and the atomically replaced ledger.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Tuple

from hpcpolicy.deploy import diff as diffs
from hpcpolicy.deploy import gc
from hpcpolicy.deploy.changelog import append_change, current_operator
from hpcpolicy.deploy.lock import DeployLock
from hpcpolicy.deploy.store import CHANNELS, Target, check_deploy_root, ensure_layout
from hpcpolicy.errors import VerificationError
from hpcpolicy.fsutil import atomic_symlink, atomic_write, fsync_dir, read_bytes_nofollow
from hpcpolicy.generation.manifest import (
    MANIFEST,
    SYSCTL_FILE,
    build_manifest,
    class_files,
    dump_manifest,
    optional_sysctls,
    parse_sysctl,
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
from hpcpolicy.generation.verify import verify_generation
from hpcpolicy.policy.model import Policy
from hpcpolicy.subid.allocate import check_revoke
from hpcpolicy.subid.ledger import Ledger, ledger_path, save_ledger

if TYPE_CHECKING:  # the plan pulls in every reader and renderer; only apply() needs it
    from hpcpolicy.deploy.plan import Plan

log = logging.getLogger(__name__)

Trees = Mapping[str, Mapping[str, bytes]]  # node class -> {node path: bytes}
MutableTrees = Dict[str, Dict[str, bytes]]


@dataclass
class ApplyResult:
    """What apply / rollback / promote did (or, with check, would do)."""

    changed: bool
    generation: Optional[str]
    previous: Optional[str]
    msg: str
    changes: List[Dict[str, str]] = field(default_factory=list)
    diff: Optional[List[Dict[str, Any]]] = None
    channel: str = STABLE
    check: bool = False
    ledger_saved: bool = False
    removed: List[str] = field(default_factory=list)  # generations GC deleted
    subid: Dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "changed": self.changed, "generation": self.generation, "previous": self.previous,
            "msg": self.msg, "changes": self.changes, "channel": self.channel,
            "check": self.check, "ledger_saved": self.ledger_saved, "gc_removed": self.removed,
        }
        if self.subid:
            out["subid"] = self.subid
        if self.diff is not None:
            out["diff"] = self.diff
        return out


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


# ------------------------------------------------------------------ reading generations


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


# ------------------------------------------------------------------ writing generations


def _write_file(path: str, data: bytes) -> None:
    """A new file in a private temp dir: exclusive create, final mode, write, fsync."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o644)
    try:
        os.fchmod(fd, 0o644)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(top: str, rel: str, made: List[str]) -> None:
    path = top
    for part in rel.split("/"):
        path = os.path.join(path, part)
        if not os.path.isdir(path):
            os.mkdir(path, 0o755)
            os.chmod(path, 0o755)
            made.append(path)


def _write_tree(tmp: str, node_class: str, tree: Mapping[str, bytes], made: List[str]) -> None:
    rel = tree_dir(node_class)
    _make_dirs(tmp, rel, made)
    top = os.path.join(tmp, rel)
    for path in sorted(tree):
        parent = os.path.dirname(path)
        if parent:
            _make_dirs(top, parent, made)
        _write_file(os.path.join(top, path), tree[path])


def next_name(deploy_root: str, trees: Trees) -> str:
    names = list_generations(deploy_root)
    number = number_of(names[-1]) + 1 if names else 1
    return format_name(number, trees_sha256(trees))


def write_generation(
    target: Target,
    trees: Trees,
    manifest_fields: Mapping[str, Any],
) -> str:
    """Build a complete generation under `.tmp-*` and rename it into place; return its name.

    `manifest_fields`: created, operator, host, site, policy_sha256, requirements, extra.
    """
    gens = generations_dir(target.root)
    name = next_name(target.root, trees)
    tmp = os.path.join(gens, f"{TMP_PREFIX}{os.getpid()}-{os.urandom(4).hex()}")
    os.mkdir(tmp, 0o755)
    os.chmod(tmp, 0o755)
    made: List[str] = []
    for node_class in sorted(trees):
        _write_tree(tmp, node_class, trees[node_class], made)
    manifest = build_manifest(name=name, trees=trees, **manifest_fields)
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
) -> str:
    """Write `trees` as a new generation and point `channel` at it (caller holds the lock).

    Independent of planning: rollback and tests publish trees they did not render.
    """
    name = write_generation(target, trees, manifest_fields)
    switch_channel(target.root, channel, name, now or utc_now())
    return name


# ------------------------------------------------------------------ requirements


def requirements_of(policy: Policy, trees: Trees) -> Dict[str, Any]:
    """What `node doctor` checks on a node, per SPEC §5."""
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
    }


# ------------------------------------------------------------------ apply


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


@dataclass
class _Run:
    policy: Policy
    target: Target
    check: bool
    want_diff: bool
    allow_revoke: bool
    channel: str
    operator: str
    now: datetime


def apply(
    policy: Policy,
    *,
    deploy_root: Optional[str] = None,
    check: bool = False,
    diff: bool = False,
    allow_revoke: bool = False,
    lock_timeout: float = 60.0,
    channel: str = STABLE,
    operator: Optional[str] = None,
    now: Optional[datetime] = None,
) -> ApplyResult:
    """Validate, plan and publish `policy` to its deploy root (see the module docstring)."""
    target = Target.from_policy(policy, deploy_root)
    channel_link(target.root, channel)  # a bad channel name is a usage error, before anything
    run = _Run(policy, target, check, diff, allow_revoke, channel,
               operator or current_operator(), now or utc_now())
    check_deploy_root(target.root, target.owner, write=True)
    if check:
        return _apply(run)
    ensure_layout(target.root)
    purpose = f"apply {policy.site.name} by {run.operator}"
    with DeployLock(target.root, lock_timeout, purpose=purpose):
        gc.clean_stale(target.root)
        return _apply(run)


def _subid_summary(plan: Plan) -> Dict[str, Any]:
    res = plan.result
    if res is None:
        return {}
    return {"live": len(res.allocations), "added": len(res.added),
            "withdrawn": len(res.withdrawn), "restored": len(res.restored)}


def _save_ledger(run: _Run, plan: Plan) -> bool:
    """Save the ledger when it changed or does not exist yet; True when written.

    Even a site without sub-IDs gets an (empty) ledger: it binds the deploy root to the site,
    so a wrong `--deploy-root` is caught instead of starting over (subid.ledger.load_ledger).
    """
    dirty = plan.result is not None and plan.result.ledger_changed
    if not dirty and os.path.exists(ledger_path(run.target.root)):
        return False
    ledger = plan.ledger or Ledger(run.policy.site.name, updated=gc.stamp(run.now))
    save_ledger(run.target.root, ledger)
    return True


def _base(root: str, channel: str) -> Optional[str]:
    """What a channel's new tree is compared with: its own generation, else stable's."""
    name = channel_generation(root, channel)
    if name is None and channel != STABLE:
        name = channel_generation(root, STABLE)
    return name


def _apply(run: _Run) -> ApplyResult:
    from hpcpolicy.deploy.plan import build

    root = run.target.root
    plan = build(run.policy, root, now=gc.stamp(run.now))
    if plan.result is not None:
        check_revoke(run.policy, plan.result, run.allow_revoke)
    base = _base(root, run.channel)
    manifest = load_verified(root, base)
    changes, diff = compare(root, base, manifest, plan.trees, run.want_diff)
    publish = bool(changes) or (base is not None and manifest is None)
    old = channel_generation(root, run.channel)
    repoint = not publish and old != base
    result = ApplyResult(publish or repoint, base, old, "", changes, diff, run.channel,
                         run.check, subid=_subid_summary(plan))
    if run.check:
        result.msg = (f"would publish a new generation ({len(changes)} files changed)"
                      if publish else f"no change: {base or 'nothing'} is current")
        return result
    result.ledger_saved = _save_ledger(run, plan)
    if not publish and not repoint:
        result.msg = f"no change: {base} is current"
        if result.ledger_saved:
            result.msg += " (sub-ID ledger updated)"
            _log(run, result, "ledger")
        return result
    if repoint and base is not None:
        name = base
    else:
        name = write_generation(run.target, plan.trees, _fields(run, plan))
    switch_channel(root, run.channel, name, run.now)
    result.generation = name
    _log(run, result, "apply")
    result.removed = gc.collect(root, run.target.keep, run.target.gc_grace, run.now)
    where = "" if run.channel == STABLE else f" on channel {run.channel}"
    result.msg = (f"published generation {name}{where} ({len(changes)} files changed)"
                  if publish else f"channel {run.channel} now names {name}")
    return result


def _fields(run: _Run, plan: Plan) -> Dict[str, Any]:
    return {
        "created": gc.stamp(run.now),
        "operator": run.operator,
        "host": socket.gethostname(),
        "site": run.policy.site.name,
        "policy_sha256": run.policy.sha256,
        "requirements": requirements_of(run.policy, plan.trees),
        "extra": {"action": "apply", "channel": run.channel,
                  "previous": channel_generation(run.target.root, run.channel),
                  # node sync matches its hostname against these (SPEC §6)
                  "node_classes": {c.name: c.nodes for c in run.policy.node_classes}},
    }


def _log(run: _Run, result: ApplyResult, action: str) -> None:
    append_change(run.target.root, {
        "action": action,
        "site": run.policy.site.name,
        "policy_sha256": run.policy.sha256,
        "channel": run.channel,
        "generation": result.generation,
        "previous": result.previous,
        "changes": result.changes,
        "subid": result.subid,
        "ledger_saved": result.ledger_saved,
        "operator": run.operator,
        "time": gc.stamp(run.now),
    })
