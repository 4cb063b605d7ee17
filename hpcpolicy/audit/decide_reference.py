"""One registry reference, decided for one set of groups: the verdict (`images.scope`, the
evaluator the renderer uses) and what each mechanism of the site does about it: node-wide
policy.json (which cannot tell users apart), registries.conf `blocked`, and the runtimes that
have no registry allow-list at all (Apptainer, SingularityCE, Enroot). Pure.
"""

from __future__ import annotations

from dataclasses import replace
from typing import FrozenSet, List, Optional, Tuple

from hpcpolicy.access.targets import Target
from hpcpolicy.audit import enforce
from hpcpolicy.audit.context import (
    LOCAL_RULE,
    NO_CONTROL,
    OVERRIDE,
    POLICY_JSON,
    REGISTRIES_CONF,
    AuditDecision,
    Context,
    Enforcement,
    chain_of,
)
from hpcpolicy.images.scope import Decision
from hpcpolicy.policy.spellings import Bypass, bypassable_denies


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
            return Enforcement(POLICY_JSON, False, True, f"{gap}; {OVERRIDE}", kind)
        return Enforcement(POLICY_JSON, True, True,
                           f"accepts it node-wide ({node.reason}){signed}; {OVERRIDE}")
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
                           f"rejects it node-wide ({node.reason}); {OVERRIDE}")
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


def _passed_over(ctx: Context, d: Decision, groups: FrozenSet[str]) -> str:
    """Name the more specific group rules that match the reference but not this user."""
    chain_ = chain_of(ctx, d.image)[1]
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


def reference_body(ctx: Context, target: Target, groups: FrozenSet[str]) -> AuditDecision:
    policy = ctx.policy
    d = ctx.decider.reference(target.value, groups)
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
