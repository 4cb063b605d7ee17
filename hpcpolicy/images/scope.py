"""Who may run which image: the scope evaluator shared by the renderer and the audit. Pure.

Precedence is containers-policy.json's (see `reference.Reference.scopes`): the most specific
scope that has a rule decides, then `images.default`. The site file adds groups on top:

* for a user, only rules without `groups` or naming one of the user's groups apply, and the
  most specific scope among the *applicable* rules decides;
* within that scope an applicable group-limited rule beats an unlimited one, and when several
  applicable group-limited rules disagree, deny wins.

Node-wide files (policy.json) cannot tell users apart; `node_wide_rules` turns the per-user
rules into one decision per scope that accepts a reference exactly when at least one eligible
user may run it (see its docstring for why one decision per scope is enough).
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter
from typing import Dict, FrozenSet, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

from hpcpolicy.directory.model import Snapshot, User
from hpcpolicy.policy.model import Directory, ImageRule, Policy
from hpcpolicy.policy.reference import Reference, namespaces_of, parse

NOBODY_UIDS = (65534, 4294967294)
DEFAULT_SCOPE = "default"
_BY_NAME = attrgetter("name")


@dataclass(frozen=True)
class Decision:
    """The verdict on one reference for one user (or for the node)."""

    allowed: bool
    rule: Optional[ImageRule]  # None: images.default (or a node-wide rule, see NodeRule)
    scope: str  # the scope that decided, or "default"
    reason: str
    image: str = ""  # the normalised reference
    keyrings: Tuple[str, ...] = ()  # allowed only if signed by one of these keyrings

    @property
    def signed(self) -> bool:
        return bool(self.keyrings)


@dataclass(frozen=True)
class NodeRule:
    """What a node-wide file says for one scope: allow (maybe only signed) or deny."""

    scope: str
    allowed: bool
    keyrings: Tuple[str, ...] = ()  # resolved keyring paths; empty: no signature needed
    reason: str = ""


def _check_default(default: str) -> bool:
    if default not in ("allow", "deny"):
        raise ValueError(f"images.default must be 'allow' or 'deny', not {default!r}")
    return default == "allow"


def _applies(rule: ImageRule, user_groups: Optional[Set[str]]) -> bool:
    return not rule.groups or (user_groups is not None and bool(user_groups & set(rule.groups)))


def _describe(rule: ImageRule) -> str:
    who = f", groups {', '.join(rule.groups)}" if rule.groups else ""
    alias = f", written {rule.alias_of}" if rule.alias_of else ""
    return f"rule {rule.index} (scope {rule.scope}{alias}{who})"


def _keyrings(rule: ImageRule) -> Tuple[str, ...]:
    if rule.action != "allow" or rule.signed_by is None:
        return ()
    return (rule.signed_by_path or rule.signed_by,)


def _decide_at_scope(scope: str, rules: Sequence[ImageRule], image: str) -> Decision:
    """Rules of one scope that all apply to the user: group-limited first, deny wins."""
    limited = [r for r in rules if r.groups]
    chosen = limited or list(rules)
    denying = [r for r in chosen if r.action == "deny"]
    rule = denying[0] if denying else chosen[0]
    allowed = not denying
    verb = "allows" if allowed else "denies"
    reason = f"{_describe(rule)} {verb} it"
    if len(chosen) > 1 and denying and len(denying) < len(chosen):
        reason += "; another applicable group rule of the same scope allows it, deny wins"
    elif limited and len(limited) < len(rules):
        reason += "; a group rule beats the rule for everybody of the same scope"
    if allowed and _keyrings(rule):
        reason += f", if signed by {rule.signed_by}"
    return Decision(allowed, rule, scope, reason, image, _keyrings(rule))


def rules_by_scope(rules: Iterable[ImageRule]) -> Dict[str, List[ImageRule]]:
    """Rules grouped by their scope, file order kept within a scope."""
    out: Dict[str, List[ImageRule]] = {}
    for rule in rules:
        out.setdefault(rule.scope, []).append(rule)
    return out


def decide(
    rules: Sequence[ImageRule],
    default: str,
    ref: str,
    user_groups: Optional[Set[str]],
) -> Decision:
    """May a user in `user_groups` run `ref`? `ValueError` when `ref` is not a reference.

    `user_groups=None` asks about the node without a directory: could *some* user, in any
    combination of groups, run it (`decide_anyone`)? With a directory at hand, the exact
    node-wide answer is `decide_node(node_wide_rules(policy, snapshot), ...)`.
    """
    parsed = parse(ref)
    if user_groups is None:
        return decide_anyone(rules, default, parsed)
    return decide_indexed(rules_by_scope(rules), default, parsed, user_groups)


def decide_indexed(by_scope: Dict[str, List[ImageRule]], default: str, parsed: Reference,
                   user_groups: Set[str]) -> Decision:
    """`decide` over rules already grouped by `rules_by_scope` (callers deciding many
    references index the rules once)."""
    allow_default = _check_default(default)
    for scope in parsed.scopes():
        applicable = [r for r in by_scope.get(scope, ()) if _applies(r, user_groups)]
        if applicable:
            return _decide_at_scope(scope, applicable, str(parsed))
    return _default_decision(allow_default, str(parsed))


def _default_decision(allow_default: bool, image: str) -> Decision:
    word = "allow" if allow_default else "deny"
    return Decision(
        allow_default, None, DEFAULT_SCOPE, f"no rule matches; images.default = {word}", image
    )


def decide_anyone(rules: Sequence[ImageRule], default: str, ref: Reference) -> Decision:
    """Is there any combination of groups for which `ref` is allowed?

    Walks the scope chain once, carrying the groups a user must avoid so that the rules seen so
    far do not decide for them: at each scope a user is allowed through an allow rule that
    names a group none of that scope's deny rules (nor the groups already avoided) names; a
    user in none of a scope's groups falls through to the next scope unless the scope has a
    rule for everybody. Keyrings of every way in are united (a node accepts what anyone may).
    """
    allow_default = _check_default(default)
    by_scope = rules_by_scope(rules)
    avoided: Set[str] = set()
    ways: List[Decision] = []
    for scope in ref.scopes():
        here = by_scope.get(scope, [])
        if not here:
            continue
        deny_groups = {g for r in here if r.groups and r.action == "deny" for g in r.groups}
        for rule in here:
            if rule.groups and rule.action == "allow":
                free = [g for g in rule.groups if g not in avoided and g not in deny_groups]
                if free:
                    ways.append(_decide_at_scope(scope, [rule], str(ref)))
        avoided.update(g for r in here for g in r.groups)
        everybody = [r for r in here if not r.groups]
        if everybody:
            verdict = _decide_at_scope(scope, everybody, str(ref))
            return _union(ways + [verdict], str(ref))
    return _union(ways + [_default_decision(allow_default, str(ref))], str(ref))


def _union(ways: Sequence[Decision], image: str) -> Decision:
    """One decision accepting whatever any of `ways` accepts (first allowing way reported)."""
    allowing = [w for w in ways if w.allowed]
    if not allowing:
        return ways[-1]
    first = allowing[0]
    if any(not w.keyrings for w in allowing):
        keyrings: Tuple[str, ...] = ()
    else:
        keyrings = tuple(sorted({k for w in allowing for k in w.keyrings}))
    return Decision(True, first.rule, first.scope, first.reason, image, keyrings)


# --- node-wide -----------------------------------------------------------------------------


def may_run(d: Directory, user: User) -> bool:
    """Whether node-wide files are rendered for this user (audit profiles use this rule too)."""
    if user.uid < d.min_uid or user.uid in NOBODY_UIDS:
        return False
    if d.max_uid is not None and user.uid > d.max_uid:
        return False
    return not (d.exclude_disabled and user.disabled)


def _eligible(policy: Policy, snapshot: Snapshot) -> Iterator[User]:
    d = policy.directory
    return (u for u in snapshot.users.values() if may_run(d, u))


def eligible_users(policy: Policy, snapshot: Snapshot) -> List[User]:
    """Users who can run containers on a node: uid in [min_uid, max_uid], not nobody, and not
    disabled when `directory.exclude_disabled` (a disabled account cannot log in)."""
    return sorted(_eligible(policy, snapshot), key=_BY_NAME)


def user_classes(policy: Policy, snapshot: Snapshot) -> List[FrozenSet[str]]:
    """The distinct sets of rule groups eligible users hold (users in one set decide alike).

    Built from the members of the few rule groups, not from every user's groups: one pass over
    the users then only looks their set up (30,000 users, typically no or few rule groups).
    """
    named = {g for r in policy.images.rules for g in r.groups}
    return sorted(_classes(policy, snapshot, named), key=lambda c: (len(c), sorted(c)))


def _classes(policy: Policy, snapshot: Snapshot, named: Iterable[str]) -> Set[FrozenSet[str]]:
    """The distinct sets of the `named` groups that eligible users hold, from the members of
    those groups only (the empty set when some eligible user holds none of them)."""
    held: Dict[str, Set[str]] = {}  # user name -> named groups they are in
    for group in named:
        for member in snapshot.members_of(group):
            held.setdefault(member, set()).add(group)
    d = policy.directory
    classes = {frozenset(groups) for name, groups in held.items()
               if name in snapshot.users and may_run(d, snapshot.users[name])}
    if any(u.name not in held for u in _eligible(policy, snapshot)):  # stops at the first
        classes.add(frozenset())
    return classes


def parents(scope: str) -> List[str]:
    """Scopes that match every reference `scope` matches, most specific first (scope excluded).

    For `host:port/ns/repo:tag`: `host:port/ns/repo`, `host:port/ns`, `host:port`, then the
    wildcards of `host`; for `*.b.c`: `*.c`. It is `Reference.scopes()` without its head,
    computed from the scope alone: every reference whose most specific scope is S shares it.
    """
    if scope.startswith("*."):
        rest, out = scope[2:], []
        while "." in rest:
            rest = rest.split(".", 1)[1]
            out.append("*." + rest)
        return out
    name = scope.split("@", 1)[0]
    if "/" in name and ":" in name.rsplit("/", 1)[1]:
        name = name.rsplit(":", 1)[0]
    return [s for s in namespaces_of(name) if s != scope]


def node_wide_rules(policy: Policy, snapshot: Snapshot) -> Dict[str, NodeRule]:
    """For each rule scope, the node decision: accept iff some eligible user may.

    Why one decision per scope is exact: a node file lists every rule scope, so for a reference
    the consumer picks the most specific listed scope S. Every user's own verdict on that
    reference depends only on the rules of S and of the scopes that match *all* of S's
    references (its parents, `parents`): more specific listed scopes do not match (else they
    would have been picked), and the parent chain of a reference below S is S's chain. So every
    reference picked by S gets the same set of user verdicts, and the node verdict "some eligible
    user may" is a function of S alone. Signed allows are united: if any allowed user needs no
    signature, the node needs none; else it accepts a signature by any of their keyrings.

    With no eligible user at all nobody may run anything, so every scope is denied.
    """
    rules = policy.images.rules
    classes = user_classes(policy, snapshot)
    out: Dict[str, NodeRule] = {}
    by_scope = rules_by_scope(rules)
    for scope in sorted(by_scope):
        chain, relevant, named = _chain_rules(by_scope, scope)
        projected = sorted({c & named for c in classes}, key=sorted)  # users alike here
        out[scope] = _node_rule(scope, relevant, chain, policy.images.default, projected)
    return out


def _chain_rules(by_scope: Dict[str, List[ImageRule]], scope: str
                 ) -> Tuple[List[str], List[ImageRule], Set[str]]:
    """`scope` and its parents (the scopes matching every reference it picks), their rules (by
    scope, file order within) and the groups those rules name."""
    chain = [scope] + parents(scope)
    relevant = [r for s in chain for r in by_scope.get(s, ())]
    return chain, relevant, {g for r in relevant for g in r.groups}


def _node_rule(
    scope: str,
    rules: Sequence[ImageRule],
    chain: Sequence[str],
    default: str,
    classes: Sequence[FrozenSet[str]],
) -> NodeRule:
    verdicts = [_decide_chain(rules, chain, default, set(c)) for c in classes]
    if not verdicts:
        return NodeRule(scope, False, (), "no eligible user in the directory")
    union = _union(verdicts, "")
    if not union.allowed:
        return NodeRule(scope, False, (), "denied for every eligible user")
    who = "every" if all(v.allowed for v in verdicts) else "some"
    return NodeRule(scope, True, union.keyrings, f"allowed for {who} eligible user")


def _decide_chain(
    rules: Sequence[ImageRule], chain: Sequence[str], default: str, groups: Set[str]
) -> Decision:
    by_scope = rules_by_scope(rules)
    for scope in chain:
        applicable = [r for r in by_scope.get(scope, ()) if _applies(r, groups)]
        if applicable:
            return _decide_at_scope(scope, applicable, "")
    return _default_decision(_check_default(default), "")


def held_classes(policy: Policy, snapshot: Snapshot, named: Iterable[str]) -> List[FrozenSet[str]]:
    """`user_classes` projected on `named`: the distinct sets of those groups eligible users
    hold, from the members of those groups only (what one scope's node decision needs)."""
    return sorted(_classes(policy, snapshot, named), key=sorted)


def node_rule_for(policy: Policy, snapshot: Snapshot, by_scope: Dict[str, List[ImageRule]],
                  scope: str) -> NodeRule:
    """`node_wide_rules(policy, snapshot)[scope]`, computed for this scope alone (an audit of
    one image needs the node's verdict on its few scopes, not on every rule's)."""
    chain, relevant, named = _chain_rules(by_scope, scope)
    return _node_rule(scope, relevant, chain, policy.images.default,
                      held_classes(policy, snapshot, named))


def node_default(policy: Policy, snapshot: Snapshot) -> bool:
    """The node's verdict on references no rule scope matches."""
    return (_check_default(policy.images.default)
            and next(_eligible(policy, snapshot), None) is not None)


def decide_node(node_rules: Dict[str, NodeRule], allow_default: bool, ref: str) -> Decision:
    """What a node's policy.json says about `ref`, given `node_wide_rules` and `node_default`."""
    parsed = parse(ref)
    for scope in parsed.scopes():
        rule = node_rules.get(scope)
        if rule is not None:
            reason = f"node-wide scope {scope}: {rule.reason}"
            return Decision(rule.allowed, None, scope, reason, str(parsed), rule.keyrings)
    return _default_decision(allow_default, str(parsed))

