"""Audit decisions: who may run which image, which rule decided, and what enforces it. Pure.

The verdict itself is `images.scope.decide` (the same evaluator the renderer uses), so the audit
can never disagree with the rules. What the audit adds is the *enforcement* picture, because a
verdict is only worth what the node does with it:

* Podman/Buildah/Skopeo read the node-wide policy.json, rendered to accept a reference when
  some eligible user may (`scope.node_wide_rules`). Where a user's verdict differs from the
  node's (group-limited rules), the node accepts what the user is denied: that denial is not
  enforced by those tools. A user may also replace the file (`~/.config/containers/policy.json`,
  `--signature-policy`, skopeo `--policy` / `--insecure-policy`).
* registries.conf `blocked` prefixes stop a pull before policy.json is read.
* Apptainer, SingularityCE and Enroot have no registry allow-list: they fetch any reference.
* A collection is enforced by the permissions of its files, which the audit checks as they
  really are (`PathState`, observed by `audit.observe`) and reports drift from what the policy
  expects: group-owned by the licence group, readable by it, not by others.

`enforces` is true when the mechanism, as rendered and as found, applies this decision to this
user: it stops a denied image, or lets an allowed one through, *because the policy says so*.
A runtime with no control reports false for allowed decisions too.

The parts: `context` (the data and the run's context), `decide_reference` (a registry
reference), `decide_local` (a collection, an image file, a local transport); this module
decides one (user, target) with them and keeps a cache per group profile.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, List, Optional, Sequence, Tuple

from hpcpolicy.access.targets import (  # noqa: F401 - re-exported for callers of the audit
    UNLISTED,
    Target,
    classified,
    collection_of,
    default_targets,
    parse_target,
    paths_to_observe,
)
from hpcpolicy.audit.context import (  # noqa: F401 - re-exported for callers of the audit
    FILE_PERMISSIONS,
    POLICY_JSON,
    REGISTRIES_CONF,
    AuditDecision,
    Context,
    Observation,
    PathState,
    chain_of,
    make_context,
    select_users,
)
from hpcpolicy.audit.decide_local import decide_collection, local_body
from hpcpolicy.audit.decide_reference import (  # noqa: F401 - re-exported
    apptainer_registries,
    reference_body,
)
from hpcpolicy.directory.model import User

# --- the audit -----------------------------------------------------------------------------


def user_notes(ctx: Context, user: User) -> Tuple[str, ...]:
    if user.name in ctx.eligible:
        return ()
    d = ctx.policy.directory
    if user.disabled and d.exclude_disabled:
        why = "the account is disabled (expired, locked or nologin)"
    elif user.uid < d.min_uid:
        why = f"uid {user.uid} is below directory.min_uid = {d.min_uid}"
    else:
        why = "the uid is outside [min_uid, max_uid] or is nobody's"
    return (f"{user.name} is not counted among the users node-wide files are rendered for: "
            f"{why}",)


def for_user(body: AuditDecision, user: str, notes: Tuple[str, ...]) -> AuditDecision:
    """`body` for one user (direct construction: `dataclasses.replace` was 2/3 of the cost of
    auditing 30,000 users)."""
    return AuditDecision(user, body.image, body.allowed, body.rule, body.reason,
                         body.enforced_by, body.kind, body.node_class, body.node_allowed,
                         body.notes + notes if notes else body.notes, body.drift)


def decide_body(ctx: Context, user: User, target: Target, obs: Observation) -> AuditDecision:
    """The decision for `user` without their own notes (a reference or local decision is
    shared by every user of the same groups: cached, and its `user` field is empty)."""
    if target.kind in ("collection", "path"):
        c = collection_of(ctx.policy, target.value)
        if c is not None:
            return decide_collection(ctx, user, c, target, obs)
    if target.kind == "reference":
        groups = ctx.groups_of(user.name) & chain_of(ctx, target.value)[2]
        key: Any = ("ref", target.value, target.notes, groups)
        body = ctx.cache.get(key)
        if body is None:
            body = ctx.cache[key] = reference_body(ctx, target, groups)
        return body
    key = ("local", target.value, target.notes)
    body = ctx.cache.get(key)
    if body is None:
        body = ctx.cache[key] = local_body(ctx, target, obs)
    return body


def decide_one(ctx: Context, user: User, target: Target, obs: Observation) -> AuditDecision:
    """The decision for one user and one target (cached per group profile for references)."""
    body = decide_body(ctx, user, target, obs)
    if body.kind == "collection":
        return replace(body, notes=body.notes + user_notes(ctx, user))
    return for_user(body, user.name, user_notes(ctx, user))


def audit(ctx: Context, users: Sequence[User], targets: Sequence[Target],
          obs: Optional[Observation] = None) -> List[AuditDecision]:
    """Every (target, user) decision, targets in order, users by name within a target."""
    obs = obs or Observation()
    ordered = sorted(users, key=lambda u: u.name)
    chosen = [classified(ctx.policy, t) for t in targets]
    return [decide_one(ctx, u, t, obs) for t in chosen for u in ordered]
