"""What an audit decides with and what it answers: the mechanisms' names, one decision
(`AuditDecision` with its `Enforcement` list), the observed file states (`PathState`,
`Observation`), and the run's `Context` (the node's verdict per rule scope, blocked prefixes,
each user's groups, computed on first use and once). Pure.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, List, Optional, Set, Tuple

from hpcpolicy.access.document import Decider
from hpcpolicy.directory.model import Snapshot, User
from hpcpolicy.errors import UsageError
from hpcpolicy.images.scope import (
    Decision,
    NodeRule,
    eligible_users,
    node_default,
    node_rule_for,
)
from hpcpolicy.policy.model import ImageRule, Policy
from hpcpolicy.policy.reference import Reference, namespaces_of
from hpcpolicy.render.containers import blockable, prefix_covers

LOCAL_RULE = "images.local_transports"
MAX_DRIFT = 20  # drift lines shown per decision; the rest are counted

POLICY_JSON = "containers-policy.json"
REGISTRIES_CONF = "containers-registries.conf"
FILE_PERMISSIONS = "file-permissions"
NO_CONTROL = ("apptainer", "singularity", "enroot")  # runtimes with no registry allow-list
OVERRIDE = (
    "a user's own ~/.config/containers/policy.json replaces /etc/containers/policy.json, and "
    "podman/buildah --signature-policy, skopeo --policy or --insecure-policy bypass it"
)


# --- data ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Enforcement:
    """What one mechanism does about one decision."""

    mechanism: str
    enforces: bool
    user_can_override: bool
    note: str
    # what the audit reports when it does not hold: "unenforced-denial", "unenforced-requirement",
    # "contradiction", "bypass" or "" (nothing to report; also for runtimes with no control)
    gap: str = ""

    def as_dict(self) -> Dict[str, Any]:
        return {
            "mechanism": self.mechanism,
            "enforces": self.enforces,
            "user_can_override": self.user_can_override,
            "note": self.note,
        }


@dataclass(frozen=True)
class AuditDecision:
    """One (user, image) answer: the `--explain` fields plus where it holds and what drifted."""

    user: str
    image: str  # normalised reference, absolute path, or local-transport reference
    allowed: bool
    rule: str  # the scope or collection that decided, "default" or "images.local_transports"
    reason: str
    enforced_by: Tuple[Enforcement, ...]
    kind: str = "reference"  # "reference" | "collection" | "local"
    node_class: str = "default"
    node_allowed: Optional[bool] = None  # what node-wide policy.json does (references only)
    notes: Tuple[str, ...] = ()
    drift: Tuple[str, ...] = ()

    @property
    def unenforced_denial(self) -> bool:
        """Denied, yet a mechanism meant to carry the policy (policy.json, registries.conf,
        file permissions) lets this user through. Runtimes with no control at all
        (`NO_CONTROL`) are left out: they would make every denial count."""
        return not self.allowed and any(
            not e.enforces and e.mechanism not in NO_CONTROL for e in self.enforced_by
        )

    def as_dict(self) -> Dict[str, Any]:
        return {
            "user": self.user,
            "image": self.image,
            "allowed": self.allowed,
            "rule": self.rule,
            "reason": self.reason,
            "enforced_by": [e.as_dict() for e in self.enforced_by],
            "kind": self.kind,
            "class": self.node_class,
            "node_allowed": self.node_allowed,
            "notes": list(self.notes),
            "drift": list(self.drift),
        }


@dataclass(frozen=True)
class PathState:
    """A path as `lstat` found it (never followed): what collection decisions are judged on."""

    path: str
    kind: str  # "dir" | "file" | "symlink" | "other" | "missing"
    mode: int = 0  # permission bits (S_IMODE)
    uid: int = -1
    gid: int = -1
    acl: bool = False  # carries a POSIX access ACL


@dataclass
class Observation:
    """Path states for every path the targets need; `truncated`: collections walked in part."""

    states: Dict[str, PathState] = field(default_factory=dict)
    truncated: Set[str] = field(default_factory=set)


class Context:
    """What one audit run computes, each part on first use and once: the node's verdict per
    rule scope, blocked prefixes per registry, each user's groups. `--explain` of one user and
    image touches a few scopes and one user; the profile report touches them all."""

    FULL_MEMBERSHIP_AFTER = 256  # users looked up one by one before indexing everybody

    def __init__(self, policy: Policy, snapshot: Snapshot, node_class: str = "default") -> None:
        self.policy = policy
        self.snapshot = snapshot
        self.node_class = node_class
        self.decider = Decider(policy)  # the rules' verdicts, shared with access.json
        self.by_scope: Dict[str, List[ImageRule]] = self.decider.by_scope
        self.rule_groups = frozenset(g for r in policy.images.rules for g in r.groups)
        self.node_allows_default = node_default(policy, snapshot)
        self.gid_names = {g.gid: g.name for g in snapshot.groups.values()}
        self.cache: Dict[Any, Any] = {}
        self._node: Dict[str, NodeRule] = {}
        self._groups: Dict[str, FrozenSet[str]] = {}
        self._all_groups = False
        self._eligible: Optional[FrozenSet[str]] = None

    @property
    def eligible(self) -> FrozenSet[str]:
        """Names of the users node-wide files are rendered for."""
        if self._eligible is None:
            self._eligible = frozenset(u.name for u in eligible_users(self.policy, self.snapshot))
        return self._eligible

    def groups_of(self, name: str) -> FrozenSet[str]:
        """The user's group names, primary group included."""
        found = self._groups.get(name)
        if found is not None:
            return found
        if self._all_groups:
            return frozenset()
        if len(self._groups) >= self.FULL_MEMBERSHIP_AFTER:
            self._groups = _memberships(self.snapshot)
            self._all_groups = True
            return self._groups.get(name, frozenset())
        user = self.snapshot.users.get(name)
        gid = user.gid if user is not None else None
        found = self._groups[name] = frozenset(
            g.name for g in self.snapshot.groups.values() if name in g.members or g.gid == gid)
        return found

    def node_rule(self, scope: str) -> NodeRule:
        found = self._node.get(scope)
        if found is None:
            found = self._node[scope] = node_rule_for(self.policy, self.snapshot,
                                                      self.by_scope, scope)
        return found

    def node_decision(self, image: str) -> Decision:
        """What the node's policy.json says about `image` (`images.scope.decide_node`)."""
        for scope in chain_of(self, image)[1]:
            if scope in self.by_scope:
                rule = self.node_rule(scope)
                reason = f"node-wide scope {scope}: {rule.reason}"
                return Decision(rule.allowed, None, scope, reason, image, rule.keyrings)
        word = "allow" if self.node_allows_default else "deny"
        return Decision(self.node_allows_default, None, "default",
                        f"no rule matches; images.default = {word}", image)

    def blocked_prefix(self, image: str) -> Optional[str]:
        """The rendered registries.conf `blocked` prefix covering `image`, if any: the
        renderer's `blockable` over the scopes that decide it (the candidate prefixes in the
        image's chain, the scopes below each, the host's wildcards)."""
        if "podman" not in self.policy.site.runtimes:
            return None
        key = ("blocked", image)
        if key in self.cache:
            return self.cache[key]
        host = image.split("/", 1)[0]
        bare = host.rsplit(":", 1)[0] if ":" in host and not host.startswith("[") else host
        candidates = [sc for sc in chain_of(self, image)[1] if sc in self.by_scope]
        if bare != host and bare in self.by_scope:
            candidates.append(bare)
        hits = []
        for scope in candidates:
            if scope.startswith("*.") or self.node_rule(scope).allowed:
                continue
            subset = {s: self.node_rule(s) for s in self.by_scope
                      if s == scope or prefix_covers(scope, s)}
            for wildcard in namespaces_of(bare)[1:]:
                if wildcard in self.by_scope:
                    subset[wildcard] = self.node_rule(wildcard)
            if scope in blockable(subset, self.node_allows_default) and \
                    prefix_covers(scope, image):
                hits.append(scope)
        found = self.cache[key] = max(hits, key=len) if hits else None
        return found


# --- context and selection -----------------------------------------------------------------


def _memberships(snapshot: Snapshot) -> Dict[str, FrozenSet[str]]:
    """User -> group names, primary group included (`Snapshot.groups_of`, in one pass)."""
    out: Dict[str, Set[str]] = {}
    by_gid: Dict[int, List[str]] = {}
    for group in snapshot.groups.values():
        by_gid.setdefault(group.gid, []).append(group.name)
        for member in group.members:
            out.setdefault(member, set()).add(group.name)
    for user in snapshot.users.values():
        out.setdefault(user.name, set()).update(by_gid.get(user.gid, ()))
    return {name: frozenset(groups) for name, groups in out.items()}


def make_context(policy: Policy, snapshot: Snapshot, node_class: str = "default") -> Context:
    """A context for auditing `node_class` (exit 2 for a class the site does not declare)."""
    if node_class not in policy.class_names():
        raise UsageError(
            f"--class {node_class}: not a node class of {policy.path} "
            f"({', '.join(policy.class_names())})"
        )
    return Context(policy, snapshot, node_class)


def select_users(
    ctx: Context, user: Optional[str] = None, group: Optional[str] = None
) -> List[User]:
    """`--user` alone, or every user the node-wide files count (eligible), within `--group`."""
    snapshot = ctx.snapshot
    where = ", ".join(ctx.policy.directory.sources)
    if group is not None and group not in snapshot.groups:
        raise UsageError(f"--group {group}: no such group in the directory ({where})")
    if user is not None:
        found = snapshot.users.get(user)
        if found is None:
            raise UsageError(f"--user {user}: no such user in the directory ({where})")
        users = [found]
    else:
        users = [snapshot.users[name] for name in sorted(ctx.eligible)]
    if group is not None:
        members = snapshot.members_of(group)
        users = [u for u in users if u.name in members]
    return users


def chain_of(ctx: Context, image: str) -> Tuple[Reference, List[str], FrozenSet[str]]:
    """(parsed reference, its scope chain, the groups the chain's rules name), once per image:
    a decision depends on the user's groups among those only."""
    return ctx.decider.chain(image)


def mode_kind(st_mode: int) -> str:
    """`PathState.kind` of an lstat mode (here so `observe` and tests agree)."""
    if stat.S_ISLNK(st_mode):
        return "symlink"
    if stat.S_ISDIR(st_mode):
        return "dir"
    if stat.S_ISREG(st_mode):
        return "file"
    return "other"
