"""Going back (`rollback`) and going wide (`promote`): moving `current` to known files.

A rollback never re-points `current` at an old generation: it publishes a NEW one holding the
chosen generation's files, except `etc/subuid` and `etc/subgid`, which are taken from the
current generation of the same class. Sub-ID state never goes back: a range revoked since must
not return to the nodes, and the ledger is not touched at all.

A promote points `current` at the generation a channel (e.g. `canary`) names, after verifying
it. A channel generation older than `current` is refused: promoting it would silently undo
whatever was applied to stable since (sub-ID changes included).
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from datetime import datetime
from typing import Any, Dict, List, Mapping, Optional

from hpcpolicy.access import document
from hpcpolicy.deploy import gc
from hpcpolicy.deploy.changelog import append_change, current_operator, log_access
from hpcpolicy.deploy.lock import DeployLock
from hpcpolicy.deploy.published import (
    access_changes,
    access_sha256,
    compare,
    gen_dir,
    read_access,
    read_trees,
)
from hpcpolicy.deploy.result import ApplyResult
from hpcpolicy.deploy.store import Target, check_deploy_root
from hpcpolicy.deploy.writer import publish_trees, switch_channel, utc_now
from hpcpolicy.errors import HpcPolicyError, RuntimeFailure, UsageError, VerificationError
from hpcpolicy.generation.manifest import class_files, load_manifest
from hpcpolicy.generation.naming import (
    DEFAULT_CLASS,
    STABLE,
    channel_generation,
    list_generations,
    number_of,
    resolve,
)
from hpcpolicy.generation.verify import SIG_NAME, verify_generation
from hpcpolicy.policy.model import Policy

log = logging.getLogger(__name__)

SUBID_PATHS = ("etc/subuid", "etc/subgid")
Trees = Dict[str, Dict[str, bytes]]


def keep_subids(chosen: Trees, current: Mapping[str, Mapping[str, bytes]]) -> Trees:
    """`chosen`'s trees with etc/subuid and etc/subgid as they are in `current` now."""
    out: Trees = {}
    for node_class, tree in chosen.items():
        now_tree = current.get(node_class, current.get(DEFAULT_CLASS, {}))
        merged = {p: d for p, d in tree.items() if p not in SUBID_PATHS}
        merged.update({p: now_tree[p] for p in SUBID_PATHS if p in now_tree})
        out[node_class] = dict(sorted(merged.items()))
    return out


def _files(target: Target, name: str) -> Dict[str, str]:
    """{class/path: sha256} of a generation's node files, sub-ID files left out (a rollback
    keeps today's), from its manifest alone."""
    manifest = load_manifest(gen_dir(target.root, name))
    return {f"{c}/{e.path}": e.sha256 for c in manifest["classes"]
            for e in class_files(manifest, c) if e.path not in SUBID_PATHS}


def previous_generation(target: Target, current: str) -> str:
    """The newest generation before `current` whose node files differ from current's (an
    access-only generation holds the same files: going back to it would change nothing):
    the one current replaced (history) first, then the older ones, newest first."""
    doc = gc.load_history(target.root)
    replaced = gc.replaced_by_link(target.root, STABLE, doc)
    names = list_generations(target.root)
    older = [n for n in reversed(names) if number_of(n) < number_of(current)]
    if replaced in names and replaced != current:
        older = [replaced] + [n for n in older if n != replaced]
    if not older:
        raise RuntimeFailure(f"{target.root}: no generation before {current} to roll back to")
    now = _files(target, current)
    for name in older:
        try:
            if _files(target, name) != now:
                return name
        except VerificationError:
            continue  # an unreadable generation is no candidate; verified again if chosen
    raise RuntimeFailure(f"{target.root}: every generation before {current} holds the same "
                         "node files: nothing to roll back to")


def _need_current(target: Target) -> str:
    current = channel_generation(target.root, STABLE)
    if current is None:
        raise RuntimeFailure(f"{target.root}: nothing published yet (no `current`)")
    return current


def _refuse_unsigned(target: Target, current: str) -> None:
    """A signed history must stay signed: nodes with allowed-signers would refuse the rest."""
    signed_now = os.path.exists(os.path.join(gen_dir(target.root, current), SIG_NAME))
    if not target.signing_key and (target.signed or signed_now):
        raise RuntimeFailure(
            f"{current} is signed (or the site signs) but no signing key is known: run with "
            "--site SITE so "
            "that site.signing_key signs the new generation")


def rollback(
    target: Target,
    generation: Optional[str] = None,
    *,
    operator: Optional[str] = None,
    lock_timeout: float = 60.0,
    now: Optional[datetime] = None,
    diff: bool = False,
    policy: Optional[Policy] = None,
) -> ApplyResult:
    """Publish a new generation with `generation`'s files (default: the newest before current
    whose files differ). Its access.json applies the chosen generation's image rules to the
    directory as it is now, read with `policy`'s directory settings (`--site`)."""
    check_deploy_root(target.root, target.owner, write=True)
    operator = operator or current_operator()
    when = now or utc_now()
    with DeployLock(target.root, lock_timeout, purpose=f"rollback by {operator}"):
        gc.clean_stale(target.root)
        current = _need_current(target)
        chosen = (resolve(target.root, generation) if generation
                  else previous_generation(target, current))
        return _rollback(target, current, chosen, operator, when, diff, policy)


def _access(target: Target, chosen: str, chosen_manifest: Mapping[str, Any],
            policy: Optional[Policy]) -> Optional[Dict[str, Any]]:
    """The new generation's access document: the chosen rules over today's directory (None
    when the chosen generation predates access records)."""
    recorded = read_access(target.root, chosen, chosen_manifest)
    if recorded is None:
        return None
    if policy is None:
        raise UsageError(
            "rollback needs --site SITE: the new generation records who may run what, "
            "which needs the directory as it is now (a bare --deploy-root cannot read it)")
    from hpcpolicy.directory.read import read_directory

    return document.build(document.with_rules(policy, recorded), read_directory(policy))


def _ledger_now(target: Target, site: str, current: Mapping[str, Any]) -> Dict[str, Any]:
    """The ledger as it is now, never the chosen generation's: sub-ID state never goes back,
    and a later apply compares the ledger with the newest revision any generation records.
    A ledger older than what current records (restored from a backup), missing or unreadable
    does not erase that record: current's is carried forward, so the next apply still refuses
    it. The rollback itself never needs the ledger (it allocates nothing)."""
    from hpcpolicy.deploy.ledger_guard import behind, ledger_fields
    from hpcpolicy.subid.ledger import Ledger, load_ledger

    ledger: Optional[Ledger]
    try:
        ledger = load_ledger(target.root, site)
    except HpcPolicyError as err:
        log.warning("cannot read the sub-ID ledger (%s): the new generation carries the current "
                    "one's ledger record forward, if it has one", err)
        ledger = None
    if behind(ledger, [(STABLE, current["generation"], dict(current))]) is not None:
        return {"ledger": dict(current["ledger"])}
    return {"ledger": ledger_fields(ledger)} if ledger is not None else {}


def _rollback(target: Target, current: str, chosen: str, operator: str,
              now: datetime, want_diff: bool, policy: Optional[Policy]) -> ApplyResult:
    _refuse_unsigned(target, current)
    chosen_manifest = verify_generation(gen_dir(target.root, chosen))
    current_manifest = verify_generation(gen_dir(target.root, current))
    trees = keep_subids(read_trees(target.root, chosen, chosen_manifest),
                        read_trees(target.root, current, current_manifest))
    changes, diff = compare(target.root, current, current_manifest, trees, want_diff)
    doc = _access(target, chosen, chosen_manifest, policy)
    access = document.dump(doc) if doc is not None else None
    access_changed = access is not None and (
        access_sha256(current_manifest) != hashlib.sha256(access).hexdigest())
    result = ApplyResult(bool(changes) or access_changed, current, current, "", changes, diff)
    if doc is not None and access_changed:
        result.access_changes = access_changes(
            read_access(target.root, current, current_manifest), doc)
    if not result.changed:
        result.msg = f"no change: {current} already holds the files of {chosen}"
        return result
    requirements = dict(chosen_manifest["requirements"])
    requirements["subid_enabled"] = current_manifest["requirements"].get("subid_enabled")
    fields: Dict[str, Any] = {
        "created": gc.stamp(now), "operator": operator, "host": socket.gethostname(),
        "site": chosen_manifest["site"], "policy_sha256": chosen_manifest["policy_sha256"],
        "requirements": requirements,
        "extra": {"action": "rollback", "rollback_to": chosen, "previous": current,
                  "channel": STABLE, "node_classes": chosen_manifest.get("node_classes", {}),
                  **_ledger_now(target, chosen_manifest["site"], current_manifest)},
    }
    name = publish_trees(target, trees, fields, STABLE, now, access)
    result.generation = name
    append_change(target.root, {
        "action": "rollback", "channel": STABLE, "generation": name, "previous": current,
        "rollback_to": chosen, "changes": changes, "operator": operator,
        "access_changes": log_access(result.access_changes),
        "site": chosen_manifest["site"], "time": gc.stamp(now)})
    result.removed = gc.collect(target.root, target.keep, target.gc_grace, now)
    counts = f"{len(changes)} files changed"
    if result.access_changes:
        counts += "; " + document.summary(result.access_changes)
    elif doc is None:
        counts += f"; {chosen} has no access record, so neither has {name}"
    result.msg = (f"published generation {name} with the files of {chosen} "
                  f"(sub-ID files kept from {current}; {counts})")
    return result


def promote(
    target: Target,
    channel: str,
    *,
    operator: Optional[str] = None,
    lock_timeout: float = 60.0,
    now: Optional[datetime] = None,
) -> ApplyResult:
    """Point `current` at the generation `channel` names."""
    if channel == STABLE:
        raise RuntimeFailure("promote needs a channel other than stable (e.g. canary)")
    check_deploy_root(target.root, target.owner, write=True)
    operator = operator or current_operator()
    when = now or utc_now()
    with DeployLock(target.root, lock_timeout, purpose=f"promote {channel} by {operator}"):
        chosen = channel_generation(target.root, channel)
        if chosen is None:
            raise RuntimeFailure(f"{target.root}: channel {channel!r} does not exist")
        return _promote(target, channel, chosen, operator, when)


def _promote(target: Target, channel: str, chosen: str, operator: str,
             now: datetime) -> ApplyResult:
    current = channel_generation(target.root, STABLE)
    if current == chosen:
        return ApplyResult(False, current, current, f"no change: {current} is already current",
                           channel=STABLE)
    if current is not None and number_of(chosen) < number_of(current):
        raise RuntimeFailure(
            f"channel {channel} names {chosen}, older than current {current}: promoting it "
            f"would undo later applies; run `apply --channel {channel}` first")
    manifest = verify_generation(gen_dir(target.root, chosen))
    before = verify_generation(gen_dir(target.root, current)) if current else None
    changes, _ = compare(target.root, current, before,
                         read_trees(target.root, chosen, manifest), False)
    switch_channel(target.root, STABLE, chosen, now)
    append_change(target.root, {
        "action": "promote", "channel": STABLE, "from_channel": channel, "generation": chosen,
        "previous": current, "changes": changes, "operator": operator,
        "time": gc.stamp(now)})
    removed: List[str] = gc.collect(target.root, target.keep, target.gc_grace, now)
    return ApplyResult(True, chosen, current, f"current now names {chosen} (from {channel})",
                       changes, None, STABLE, removed=removed)


def rollback_site(generation: Optional[str] = None, *, site: Optional[str] = None,
                  deploy_root: Optional[str] = None, batch: bool = False,
                  lock_timeout: float = 60.0, diff: bool = False) -> ApplyResult:
    """`hpcpolicy rollback`: the deploy root a site file or DIR names, approved, rolled back."""
    from hpcpolicy.deploy.targets import operator, writer

    target, policy = writer(site, deploy_root, "rollback")
    return rollback(target, generation, operator=operator(target, batch, signs=True),
                    lock_timeout=lock_timeout, diff=diff, policy=policy)


def promote_site(channel: str, *, site: Optional[str] = None, deploy_root: Optional[str] = None,
                 batch: bool = False, lock_timeout: float = 60.0) -> ApplyResult:
    """`hpcpolicy promote`: point `current` at what CHANNEL names. Promote makes no new
    manifest: nothing is signed, so a batch run is refused under approval."""
    from hpcpolicy.deploy.targets import operator, writer

    target, _ = writer(site, deploy_root, "promote")
    return promote(target, channel, operator=operator(target, batch, signs=False),
                   lock_timeout=lock_timeout)
