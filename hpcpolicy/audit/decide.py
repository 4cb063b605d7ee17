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
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field, replace
from typing import Any, Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from hpcpolicy.access.targets import (  # noqa: F401 - re-exported for callers of the audit
    EXAMPLE,
    PATH_TRANSPORTS,
    UNLISTED,
    Target,
    chain,
    classified,
    collection_of,
    default_targets,
    parse_target,
    paths_to_observe,
)
from hpcpolicy.audit import enforce
from hpcpolicy.directory.model import Snapshot, User
from hpcpolicy.errors import UsageError
from hpcpolicy.images.scope import (
    Decision,
    NodeRule,
    decide_indexed,
    eligible_users,
    node_default,
    node_rule_for,
    rules_by_scope,
)
from hpcpolicy.policy.model import Collection, ImageRule, Policy
from hpcpolicy.policy.reference import Reference, namespaces_of, parse
from hpcpolicy.policy.spellings import Bypass, bypassable_denies
from hpcpolicy.render.containers import blockable, prefix_covers

LOCAL_RULE = "images.local_transports"
MAX_DRIFT = 20  # drift lines shown per decision; the rest are counted

POLICY_JSON = "containers-policy.json"
REGISTRIES_CONF = "containers-registries.conf"
FILE_PERMISSIONS = "file-permissions"
NO_CONTROL = ("apptainer", "singularity", "enroot")  # runtimes with no registry allow-list
_OVERRIDE = (
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
        self.by_scope: Dict[str, List[ImageRule]] = rules_by_scope(policy.images.rules)
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
        for scope in _chain_of(self, image)[1]:
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
        candidates = [sc for sc in _chain_of(self, image)[1] if sc in self.by_scope]
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


# --- references ----------------------------------------------------------------------------


def _requirement_gap(d: Decision, node: Decision) -> str:
    """How the node's signature requirement departs from this user's ("" when it matches).

    The node-wide file unites the ways in of every eligible user: a group-limited unsigned
    allow below a signed scope makes the node accept unsigned images from everybody, and
    several signed ways make it accept any of their keys. Compare the keyrings, not only
    whether a signature is needed.
    """
    need, node_keys = set(d.keyrings), set(node.keyrings)
    if need == node_keys:
        return ""
    if need and not node_keys:
        return (f"the rules require a signature by {', '.join(sorted(need))} for this user, but "
                "the node accepts it unsigned (another user's unsigned way in is united into "
                "the node-wide file): this requirement is NOT enforced")
    if need:
        extra = ", ".join(sorted(node_keys - need))
        return (f"the rules require a signature by {', '.join(sorted(need))} for this user, but "
                f"the node also accepts {extra}: this requirement is NOT fully enforced")
    return (f"the node requires a signature by {', '.join(sorted(node_keys))} that the rules "
            "do not require of this user: unsigned pulls fail")


def _spelling_bypass(ctx: Context, d: Decision) -> Optional[Bypass]:
    """The deny rule that decided `d`, when other spellings of its registry escape it."""
    if d.allowed or d.rule is None:
        return None
    found = ctx.cache.get("bypassable")
    if found is None:
        images = ctx.policy.images
        found = ctx.cache["bypassable"] = {
            b.rule.scope: b for b in bypassable_denies(images.rules, images.default)}
    return found.get(d.rule.alias_of or d.scope)  # `h:443/x` decided by the rule for `h/x`


def _policy_json(d: Decision, node: Decision, local_allowed: bool,
                 spelling: Optional[Bypass] = None) -> Enforcement:
    signed = f", only if signed by {', '.join(node.keyrings)}" if node.keyrings else ""
    if d.allowed and node.allowed:
        gap = _requirement_gap(d, node)
        if gap:
            kind = "unenforced-requirement" if d.keyrings else "contradiction"
            return Enforcement(POLICY_JSON, False, True, f"{gap}; {_OVERRIDE}", kind)
        return Enforcement(POLICY_JSON, True, True,
                           f"accepts it node-wide ({node.reason}){signed}; {_OVERRIDE}")
    if not d.allowed and not node.allowed:
        if local_allowed:
            return Enforcement(POLICY_JSON, False, True, (
                f"rejects it node-wide ({node.reason}), but accepts local transports "
                f"({LOCAL_RULE} = allow): a user can fetch its blobs over HTTP (curl) into a "
                "dir: layout and load it from there with podman, buildah or skopeo, with no "
                "override of their own; this denial is NOT enforced"), "bypass")
        if spelling is not None:
            return Enforcement(POLICY_JSON, False, True, (
                f"rejects it node-wide ({node.reason}), but the {spelling.message()}; this "
                "denial is NOT enforced"), "bypass")
        return Enforcement(POLICY_JSON, True, True,
                           f"rejects it node-wide ({node.reason}); {_OVERRIDE}")
    if node.allowed:
        return Enforcement(POLICY_JSON, False, True, (
            f"the node accepts it ({node.reason}){signed}: policy.json cannot tell users apart, "
            "so this denial is NOT enforced by podman, buildah or skopeo"), "unenforced-denial")
    return Enforcement(POLICY_JSON, False, True, (
        f"the node rejects it ({node.reason}): the rules allow it for this user's groups, but "
        "node-wide files are rendered for the eligible users only"), "contradiction")


def _registries_conf(allowed: bool, prefix: str) -> Enforcement:
    note = f"blocks prefix {prefix}: a pull fails before policy.json is consulted"
    if allowed:
        note += ("; this contradicts the allow decision (registries.conf matches by string "
                 "prefix, and a host prefix also covers host:port)")
    note += ("; a user's ~/.config/containers/registries.conf replaces the system file, and "
             "registries.conf.d drop-ins can unblock it; Apptainer ignores `blocked`")
    return Enforcement(REGISTRIES_CONF, not allowed, True, note,
                       "contradiction" if allowed else "")


def _release(version: str) -> Tuple[int, ...]:
    parts = [int(p) for p in version.split(".") if p.isdigit()]
    return tuple(parts + [0] * (3 - len(parts)))


def apptainer_registries(version: str) -> str:
    """What Apptainer of the site's oldest release does with registries.conf on docker://."""
    release = _release(version)
    if release < (1, 4, 0):
        return ("Apptainer before 1.4 reads /etc/containers/registries.conf for docker:// pulls: "
                "it uses the first mirror of a registry entry and ignores `blocked`")
    if release < (1, 4, 2):
        return ("Apptainer 1.4.0 and 1.4.1 ignore registries.conf altogether (mirrors and "
                "`blocked`)")
    return ("Apptainer 1.4.2 and later read /etc/containers/registries.conf, registries.conf.d "
            "and the user's own ~/.config/containers/registries.conf: they use the first mirror "
            "of a registry entry (which a user can change) and ignore `blocked`")


def _no_registry_control(runtime: str, allowed: bool, apptainer_version: str) -> Enforcement:
    what = {
        "apptainer": "Apptainer has no registry allow-list: pull/run/build of docker://, "
                     "oras:// and library:// fetch any reference (its OCI pulls ignore "
                     "policy.json; ecl.toml only restricts signed SIF files in setuid mode)",
        "singularity": "SingularityCE has no registry allow-list: pull/run/build of "
                       "docker://, oras:// and library:// fetch any reference (ecl.toml only "
                       "restricts signed SIF files in setuid mode)",
        "enroot": "Enroot has no registry allow-list: `enroot import docker://…` fetches any "
                  "reference (ENROOT_ALLOW_HTTP is its only transport control)",
    }[runtime]
    if runtime == "apptainer":
        what += f"; {apptainer_registries(apptainer_version)}"
    tail = ("it runs this one as it runs any other" if allowed else
            "this denial is NOT enforced by it (network or proxy controls would be)")
    return Enforcement(runtime, False, False, f"{what}; {tail}")


def _with_limits(ctx: Context, e: Enforcement) -> Enforcement:
    """Apptainer's limits on this class, said where a registry reference is judged."""
    note = enforce.reference_note(ctx.policy, ctx.node_class)
    if not note or e.mechanism not in enforce.LIMIT_RUNTIMES:
        return e
    return replace(e, note=f"{e.note}; {note}")


def _file_limits(ctx: Context, runtime: str, path: str, allowed: bool,
                 state: Optional[PathState]) -> Optional[Enforcement]:
    """Apptainer's limits for one image file on this class (None: no limits set)."""
    if runtime not in enforce.LIMIT_RUNTIMES:
        return None
    uid_names = ctx.cache.get("uid_names")
    if uid_names is None:
        uid_names = ctx.cache["uid_names"] = {u.uid: u.name for u in
                                              ctx.snapshot.users.values()}
    got = enforce.file_entry(ctx.policy, ctx.node_class, runtime, path, allowed, state,
                             uid_names, ctx.gid_names)
    if got is None:
        return None
    return Enforcement(runtime, got["enforces"], False, got["note"], got["gap"])


def _chain_of(ctx: Context, image: str) -> Tuple[Reference, List[str], FrozenSet[str]]:
    """(parsed reference, its scope chain, the groups the chain's rules name), once per image:
    a decision depends on the user's groups among those only."""
    key = ("chain", image)
    found = ctx.cache.get(key)
    if found is None:
        parsed = parse(image)
        scopes = parsed.scopes()
        named = frozenset(g for sc in scopes for r in ctx.by_scope.get(sc, ()) for g in r.groups)
        found = ctx.cache[key] = (parsed, scopes, named)
    return found


def _passed_over(ctx: Context, d: Decision, groups: FrozenSet[str]) -> str:
    """Name the more specific group rules that match the reference but not this user."""
    chain_ = _chain_of(ctx, d.image)[1]
    limit = chain_.index(d.scope) if d.scope in chain_ else len(chain_)
    skipped = [r for sc in chain_[:limit] for r in ctx.by_scope.get(sc, ())
               if r.groups and not groups & set(r.groups)]
    if not skipped:
        return ""
    named = "; ".join(f"rule {r.index} ({r.action} {r.scope} for groups {', '.join(r.groups)})"
                      for r in sorted(skipped, key=lambda r: r.index))
    return f" ({named} matches it, but the user is in none of those groups)"


def _reason(d: Decision, passed_over: str) -> str:
    if passed_over and d.rule is None:
        return d.reason.replace("no rule matches", "no rule that applies to the user matches",
                                1) + passed_over
    return d.reason + passed_over


def _reference_body(ctx: Context, target: Target, groups: FrozenSet[str]) -> AuditDecision:
    policy = ctx.policy
    parsed = _chain_of(ctx, target.value)[0]
    d = decide_indexed(ctx.by_scope, policy.images.default, parsed, set(groups))
    node = ctx.node_decision(d.image)
    runtimes = policy.site.runtimes
    enforced: List[Enforcement] = []
    if "podman" in runtimes:
        local = policy.images.local_transports == "allow"
        spelling = _spelling_bypass(ctx, d)
        enforced.append(_policy_json(d, node, local, spelling))
        prefix = ctx.blocked_prefix(d.image)
        if prefix is not None:
            found = _registries_conf(d.allowed, prefix)
            if spelling is not None:  # a string prefix: other spellings are not blocked
                found = replace(found, enforces=False, note=(
                    f"{found.note}; other names of the same registry are not blocked"))
            enforced.append(found)
    version = policy.site.apptainer_version
    enforced += [_with_limits(ctx, _no_registry_control(r, d.allowed, version))
                 for r in NO_CONTROL if r in runtimes]
    return AuditDecision(
        user="", image=d.image, allowed=d.allowed, rule=d.scope,
        reason=_reason(d, _passed_over(ctx, d, groups)),
        enforced_by=tuple(enforced), kind="reference", node_class=ctx.node_class,
        node_allowed=node.allowed if "podman" in runtimes else None, notes=target.notes,
    )


# --- collections and local files -----------------------------------------------------------


def _triple(state: PathState, uid: int, gids: FrozenSet[int]) -> int:
    """The rwx bits the kernel applies to this user (owner, else group, else other)."""
    if uid == state.uid:
        return (state.mode >> 6) & 7
    if state.gid in gids:
        return (state.mode >> 3) & 7
    return state.mode & 7


def _why(state: PathState, uid: int, gids: FrozenSet[int], gid_names: Mapping[int, str]) -> str:
    mode = f"mode {state.mode:04o}"
    if uid == state.uid:
        return f"the user owns {state.path} ({mode})"
    if state.gid in gids:
        name = gid_names.get(state.gid, str(state.gid))
        return f"{state.path} is group-owned by {name}, one of the user's groups ({mode})"
    return f"others may read {state.path} ({mode})"


def _may_read(states: Sequence[PathState], uid: int, gids: FrozenSet[int]) -> bool:
    """Every directory on the way is searchable and the last path readable (and searchable
    when it is a directory: a sandbox image)."""
    *dirs, last = states
    if any(s.kind != "dir" or not _triple(s, uid, gids) & 1 for s in dirs):
        return False
    need = 5 if last.kind == "dir" else 4
    return last.kind in ("dir", "file") and _triple(last, uid, gids) & need == need


def _drift_of(state: PathState, gid: int, group: str, gid_names: Mapping[int, str]) -> List[str]:
    """How one path departs from "group-owned by the licence group, readable by it only"."""
    p, mode = state.path, f"mode {state.mode:04o}"
    if state.kind == "symlink":
        return [f"{p}: a symlink; its target's permissions decide (not followed)"]
    if state.kind not in ("dir", "file"):
        return [f"{p}: not a regular file or directory"] if state.kind != "missing" else []
    out = []
    if state.gid != gid:
        name = gid_names.get(state.gid, "unknown group")
        out.append(f"{p}: group owner {name} (gid {state.gid}), policy: {group} (gid {gid})")
    if state.kind == "dir":
        if state.mode & 0o005:
            out.append(f"{p}: others may list or enter it ({mode})")
        if state.gid == gid and state.mode & 0o050 != 0o050:
            out.append(f"{p}: group {group} cannot list and enter it ({mode})")
    else:
        if state.mode & 0o004:
            out.append(f"{p}: readable by others ({mode})")
        if state.gid == gid and not state.mode & 0o040:
            out.append(f"{p}: group {group} cannot read it ({mode})")
    if state.acl:
        out.append(f"{p}: carries a POSIX ACL; the mode bits may not tell who can read it")
    return out


def _capped(lines: List[str]) -> Tuple[str, ...]:
    if len(lines) <= MAX_DRIFT:
        return tuple(lines)
    return tuple(lines[:MAX_DRIFT]) + (f"... and {len(lines) - MAX_DRIFT} more",)


def _user_ids(ctx: Context, user: User) -> FrozenSet[int]:
    groups = ctx.groups_of(user.name)
    return frozenset({ctx.snapshot.groups[g].gid for g in groups} | {user.gid})


def _states_below(obs: Observation, root: str) -> List[PathState]:
    prefix = root.rstrip("/") + "/"
    return [s for p, s in sorted(obs.states.items()) if p == root or p.startswith(prefix)]


@dataclass(frozen=True)
class _Walked:
    """A collection's observed states, indexed once per run."""

    states: Tuple[PathState, ...]
    by_path: Dict[str, PathState]
    files: Tuple[PathState, ...]
    owners: FrozenSet[int]
    gids: FrozenSet[int]


def _walked(ctx: Context, root: str, obs: Observation) -> _Walked:
    key = ("walked", root)
    found = ctx.cache.get(key)
    if found is None:
        states = tuple(_states_below(obs, root))
        found = ctx.cache[key] = _Walked(
            states, {s.path: s for s in states}, tuple(s for s in states if s.kind == "file"),
            frozenset(s.uid for s in states), frozenset(s.gid for s in states))
    return found


def _collection_perm(
    ctx: Context, user: User, allowed: bool, root: str, obs: Observation
) -> Enforcement:
    """Can this user read the collection's image files, and does that match the verdict?

    Users who own nothing there and share the same groups among the owning groups get the same
    answer, so it is computed once per such profile.
    """
    w = _walked(ctx, root, obs)
    if not w.states or w.states[0].kind == "missing":
        return Enforcement(FILE_PERMISSIONS, False, False, (
            f"{root} is not present on this host: its permissions could not be checked "
            "(run the audit where the collection is mounted)"))
    uid = user.uid if user.uid in w.owners else -2
    gids = _user_ids(ctx, user) & w.gids
    key = ("cperm", root, allowed, uid, gids)
    found = ctx.cache.get(key)
    if found is None:
        found = ctx.cache[key] = _collection_perm_of(ctx, w, allowed, uid, gids)
    return found


def _collection_perm_of(ctx: Context, w: _Walked, allowed: bool, uid: int,
                        gids: FrozenSet[int]) -> Enforcement:
    root = w.states[0]
    readable = [f for f in w.files
                if _may_read([w.by_path[p] for p in chain(root.path, f.path)], uid, gids)]
    enter = _may_read([root], uid, gids)
    mode = f"{root.path} mode {root.mode:04o}"
    total = len(w.files)
    if allowed:
        ok = enter and len(readable) == total
        note = (f"{mode}: the user may enter it and read {len(readable)} of {total} "
                f"image files" if enter else f"{mode}: the user cannot list and enter it")
        return Enforcement(FILE_PERMISSIONS, ok, False, note, "" if ok else "contradiction")
    if readable:
        first = readable[0]
        why = _why(first, uid, gids, ctx.gid_names)
        return Enforcement(FILE_PERMISSIONS, False, False, (
            f"the user can read {len(readable)} of {total} image files, e.g. {first.path}: "
            f"{why}; this denial is NOT enforced"), "unenforced-denial")
    lists = " (file names are visible, contents are not)" if enter else ""
    return Enforcement(FILE_PERMISSIONS, True, False,
                       f"{mode}: the user can read none of its {total} image files{lists}")


def _file_perm(ctx: Context, user: User, allowed: bool, paths: List[str],
               obs: Observation) -> Enforcement:
    states = [obs.states.get(p, PathState(p, "missing")) for p in paths]
    missing = [s.path for s in states if s.kind == "missing"]
    if missing:
        return Enforcement(FILE_PERMISSIONS, False, False, (
            f"{missing[0]} is not present on this host: permissions could not be checked"))
    uid, gids = user.uid, _user_ids(ctx, user)
    can = _may_read(states, uid, gids)
    last = states[-1]
    if can == allowed:
        verb = "can" if can else "cannot"
        return Enforcement(FILE_PERMISSIONS, True, False,
                           f"the user {verb} read {last.path} (mode {last.mode:04o})")
    if can:
        return Enforcement(FILE_PERMISSIONS, False, False, (
            f"the user can read it: {_why(last, uid, gids, ctx.gid_names)}; "
            "this denial is NOT enforced"), "unenforced-denial")
    return Enforcement(FILE_PERMISSIONS, False, False,
                       f"the user cannot read {last.path} although allowed (mode {last.mode:04o})",
                       "contradiction")


def _collection_drift(ctx: Context, c: Collection, states: Iterable[PathState],
                      obs: Observation) -> Tuple[str, ...]:
    gid = ctx.snapshot.groups[c.group].gid
    lines = [line for s in states for line in _drift_of(s, gid, c.group, ctx.gid_names)]
    if c.path in obs.truncated:
        lines.append(f"{c.path}: only part of the collection was examined (entry limit)")
    return _capped(lines)


def _decide_collection(ctx: Context, user: User, c: Collection, target: Target,
                       obs: Observation) -> AuditDecision:
    member = c.group in ctx.groups_of(user.name)
    where = "" if target.value == c.path else f"{target.value} is in collection {c.path}: "
    reason = (f"{where}{user.name} is in group {c.group}, which [[images.collection]] {c.path} "
              f"is limited to" if member else
              f"{where}[[images.collection]] {c.path} is limited to group {c.group}; "
              f"{user.name} is not a member")
    if target.kind == "collection":
        perm = _collection_perm(ctx, user, member, c.path, obs)
        states: Sequence[PathState] = _walked(ctx, c.path, obs).states
    else:
        paths = chain(c.path, target.value)
        perm = _file_perm(ctx, user, member, paths, obs)
        states = [obs.states[p] for p in paths if p in obs.states]
    drift = ctx.cache.get(("drift", target.value))
    if drift is None:
        drift = ctx.cache[("drift", target.value)] = _collection_drift(ctx, c, states, obs)
    notes = target.notes
    if "podman" in ctx.policy.site.runtimes and ctx.policy.images.local_transports == "deny":
        notes += ("podman, buildah and skopeo reject local image files for everybody "
                  "(images.local_transports = deny), members included",)
    limited = [_file_limits(ctx, r, target.value, member, obs.states.get(target.value))
               for r in enforce.LIMIT_RUNTIMES if r in ctx.policy.site.runtimes]
    return AuditDecision(
        user=user.name, image=target.value, allowed=member, rule=c.path, reason=reason,
        enforced_by=(perm,) + tuple(e for e in limited if e is not None), kind="collection",
        node_class=ctx.node_class, notes=notes, drift=drift,
    )


def _local_body(ctx: Context, target: Target, obs: Observation) -> AuditDecision:
    """A file in no collection, or a local transport: images.local_transports decides."""
    word = ctx.policy.images.local_transports
    allowed = word == "allow"
    what = (f"{target.value} is in no [[images.collection]]" if target.kind == "path"
            else f"{target.value.split(':', 1)[0]}: is a local transport")
    reason = (f"{what}: a local image (one a user built or copied) is judged by "
              f"{LOCAL_RULE} = {word}")
    enforced: List[Enforcement] = []
    runtimes = ctx.policy.site.runtimes
    if "podman" in runtimes:
        verb = "accepts" if allowed else "rejects"
        enforced.append(Enforcement(POLICY_JSON, True, True, (
            f"{verb} local transports (oci:, oci-archive:, docker-archive:, sif:, dir:, "
            f"containers-storage:, ...) for everybody; {_OVERRIDE}")))
    state = obs.states.get(target.value) if target.kind == "path" else None
    for runtime in NO_CONTROL:
        limited = (_file_limits(ctx, runtime, target.value, allowed, state)
                   if runtime in runtimes and target.kind == "path" else None)
        if limited is not None:
            enforced.append(limited)
        elif runtime in runtimes:
            enforced.append(Enforcement(runtime, False, False, (
                f"{runtime} runs any image file the user can read; {LOCAL_RULE} does not "
                "reach it" + ("" if allowed else ": this denial is NOT enforced by it"))))
    notes = target.notes
    if state is not None:
        notes += ((f"{target.value}: not present on this host" if state.kind == "missing" else
                   f"{target.value}: {state.kind}, mode {state.mode:04o}, owner uid {state.uid}, "
                   f"group {ctx.gid_names.get(state.gid, state.gid)}"),)
    return AuditDecision(
        user="", image=target.value, allowed=allowed, rule=LOCAL_RULE, reason=reason,
        enforced_by=tuple(enforced), kind="local", node_class=ctx.node_class, notes=notes,
    )


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
            return _decide_collection(ctx, user, c, target, obs)
    if target.kind == "reference":
        groups = ctx.groups_of(user.name) & _chain_of(ctx, target.value)[2]
        key: Any = ("ref", target.value, target.notes, groups)
        body = ctx.cache.get(key)
        if body is None:
            body = ctx.cache[key] = _reference_body(ctx, target, groups)
        return body
    key = ("local", target.value, target.notes)
    body = ctx.cache.get(key)
    if body is None:
        body = ctx.cache[key] = _local_body(ctx, target, obs)
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


def mode_kind(st_mode: int) -> str:
    """`PathState.kind` of an lstat mode (here so `observe` and tests agree)."""
    if stat.S_ISLNK(st_mode):
        return "symlink"
    if stat.S_ISDIR(st_mode):
        return "dir"
    if stat.S_ISREG(st_mode):
        return "file"
    return "other"
