"""apply: publish a new immutable generation and switch a channel to it.

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

Reading what is published is `published`, writing a generation and switching a channel
`writer`, the result `result`. `--check` takes no lock and writes nothing at all (not even the
lock file): it only reads immutable generations and the atomically replaced ledger.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Dict, Optional

from hpcpolicy.access import document
from hpcpolicy.deploy import gc
from hpcpolicy.deploy.changelog import append_change, current_operator, log_access
from hpcpolicy.deploy.lock import DeployLock
from hpcpolicy.deploy.published import (
    access_changes,
    access_sha256,
    compare,
    load_verified,
    read_access,
)
from hpcpolicy.deploy.result import ApplyResult
from hpcpolicy.deploy.site_record import save_record
from hpcpolicy.deploy.store import (
    Target,
    check_deploy_root,
    ensure_layout,
    init_root,
    require_root,
)
from hpcpolicy.deploy.writer import requirements_of, switch_channel, utc_now, write_generation
from hpcpolicy.generation.naming import STABLE, channel_generation, channel_link
from hpcpolicy.policy.model import Policy
from hpcpolicy.subid.allocate import check_revoke
from hpcpolicy.subid.ledger import Ledger, ledger_path, load_ledger, save_ledger

if TYPE_CHECKING:  # the plan pulls in every reader and renderer; only apply() needs it
    from hpcpolicy.deploy.plan import Plan

log = logging.getLogger(__name__)


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
    init: bool = False,
) -> ApplyResult:
    """Validate, plan and publish `policy` to its deploy root (see the module docstring).

    A missing deploy root is refused (an unmounted share must not get a fresh ledger) unless
    `init`, which creates it (not its parents); on an existing root `init` changes nothing.
    """
    target = Target.from_policy(policy, deploy_root)
    channel_link(target.root, channel)  # a bad channel name is a usage error, before anything
    run = _Run(policy, target, check, diff, allow_revoke, channel,
               operator or current_operator(), now or utc_now())
    check_deploy_root(target.root, target.owner, write=True)
    require_root(target.root, init)
    if check:
        return _apply(run)
    if init:
        init_root(target.root, target.owner)
    ensure_layout(target.root)
    purpose = f"apply {policy.site.name} by {run.operator}"
    with DeployLock(target.root, lock_timeout, purpose=purpose):
        gc.clean_stale(target.root)
        result = _apply(run)
        # what writers given a bare --deploy-root must enforce (owner, approval, gc, signing)
        save_record(target.root, policy)
        return result


def apply_site(
    site: str,
    *,
    deploy_root: Optional[str] = None,
    check: bool = False,
    diff: bool = False,
    allow_revoke: bool = False,
    lock_timeout: float = 60.0,
    channel: str = STABLE,
    batch: bool = False,
    init: bool = False,
) -> ApplyResult:
    """`hpcpolicy apply SITE`: load the site file, warn of what it risks, get the operator's
    approval (`batch`: a declared non-interactive run, accountable through its signature), and
    apply. The call the CLI, the Ansible module and a site's own script make."""
    from hpcpolicy.deploy.approval import approve
    from hpcpolicy.policy.cautions import cautions
    from hpcpolicy.policy.load import load

    policy = load(site)
    warnings = [str(w) for w in cautions(policy)]
    for warning in warnings:
        log.warning("%s", warning.replace(": warning: ", ": ", 1))
    operator = None
    if not check:
        operator = approve(policy.site.approval, policy.site.signing_key, batch=batch)
    result = apply(policy, deploy_root=os.path.abspath(deploy_root) if deploy_root else None,
                   check=check, diff=diff, allow_revoke=allow_revoke,
                   lock_timeout=lock_timeout, channel=channel, operator=operator, init=init)
    result.warnings = warnings + result.warnings
    return result


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


def _base_manifest(root: str, base: Optional[str], plan: Plan) -> Optional[Dict[str, Any]]:
    """The base's verified manifest: the one the ledger guard verified already, else verified
    now (no sub-IDs, or the guard found it altered: load_verified reports that)."""
    for _, name, manifest in plan.published or ():
        if name == base:
            return manifest
    return load_verified(root, base)


def _apply(run: _Run) -> ApplyResult:
    from hpcpolicy.deploy.plan import build, directory_warnings

    root = run.target.root
    plan = build(run.policy, root, now=gc.stamp(run.now), against_published=True)
    if plan.result is not None:
        check_revoke(run.policy, plan.result, run.allow_revoke)
    base = _base(root, run.channel)
    manifest = _base_manifest(root, base, plan)
    changes, diff = compare(root, base, manifest, plan.trees, run.want_diff)
    # access.json from the same directory read: an access change alone is a change
    access_doc = document.build(run.policy, plan.snapshot)
    access = document.dump(access_doc)
    access_changed = access_sha256(manifest) != hashlib.sha256(access).hexdigest()
    publish = bool(changes) or access_changed or (base is not None and manifest is None)
    old = channel_generation(root, run.channel)
    repoint = not publish and old != base
    result = ApplyResult(publish or repoint, base, old, "", changes, diff, run.channel,
                         run.check, subid=_subid_summary(plan),
                         warnings=directory_warnings(plan.snapshot))
    if access_changed:
        result.access_changes = access_changes(read_access(root, base, manifest), access_doc)
    if run.check:
        result.msg = (f"would publish a new generation ({_counts(result)})"
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
        name = write_generation(run.target, plan.trees, _fields(run, plan), access)
    switch_channel(root, run.channel, name, run.now)
    result.generation = name
    _log(run, result, "apply")
    result.removed = gc.collect(root, run.target.keep, run.target.gc_grace, run.now)
    where = "" if run.channel == STABLE else f" on channel {run.channel}"
    result.msg = (f"published generation {name}{where} ({_counts(result)})"
                  if publish else f"channel {run.channel} now names {name}")
    return result


def _counts(result: ApplyResult) -> str:
    text = f"{len(result.changes)} files changed"
    if result.access_changes:
        text += "; " + document.summary(result.access_changes)
    return text


def _fields(run: _Run, plan: Plan) -> Dict[str, Any]:
    return {
        "created": gc.stamp(run.now),
        "operator": run.operator,
        "host": socket.gethostname(),
        "site": run.policy.site.name,
        "policy_sha256": run.policy.sha256,
        "requirements": requirements_of(run.policy, plan.trees),
        "extra": {"action": "apply", "channel": run.channel,
                  # the ledger as saved: a later apply refuses an older one (ledger_guard)
                  **_ledger_field(run, plan),
                  "previous": channel_generation(run.target.root, run.channel),
                  # node sync matches its hostname against these
                  "node_classes": {c.name: c.nodes for c in run.policy.node_classes}},
    }


def _ledger_field(run: _Run, plan: Plan) -> Dict[str, Any]:
    from hpcpolicy.deploy.ledger_guard import ledger_fields

    ledger = plan.ledger or load_ledger(run.target.root, run.policy.site.name)
    return {"ledger": ledger_fields(ledger)} if ledger is not None else {}


def _log(run: _Run, result: ApplyResult, action: str) -> None:
    append_change(run.target.root, {
        "action": action,
        "site": run.policy.site.name,
        "policy_sha256": run.policy.sha256,
        "channel": run.channel,
        "generation": result.generation,
        "previous": result.previous,
        "changes": result.changes,
        "access_changes": log_access(result.access_changes),
        "subid": result.subid,
        "ledger_saved": result.ledger_saved,
        "operator": run.operator,
        "time": gc.stamp(run.now),
    })
