"""Other spellings of one registry, which policy.json's string-compared scopes tell apart. Pure.

A reference's host is compared as written: `REG.EXAMPLE.ORG/x`, `reg.example.org:443/x`, the
server's IP address, `localhost` or any other DNS name reach the same images as
`reg.example.org/x` but match no rule written for it. `port_aliases` closes the two port
spellings (the loader adds the rules); `bypassable_denies` names the deny rules the others
still walk around, for `validate` and the audit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, List, Sequence, Tuple

from hpcpolicy.policy.model import ImageRule
from hpcpolicy.policy.reference import check_scope, namespaces_of

DEFAULT_SCOPE = "default"


# A registry named without a port is reached on 443 (TLS) or 80 (plain HTTP): `h:443/x` and
# `h:80/x` are the same images as `h/x`, but policy.json compares scopes as strings.
DEFAULT_PORTS = ("443", "80")


def _host_of(scope: str) -> str:
    return scope.split("/", 1)[0]


def _portless(host: str) -> bool:
    if host.startswith("*."):
        return False
    if host.startswith("["):
        return host.endswith("]")
    return ":" not in host


def port_aliases(rules: Sequence[ImageRule]) -> List[ImageRule]:
    """The rules to add so that `h:443/...` and `h:80/...` decide exactly as `h/...` does.

    Only for portless hosts that have a deny rule (elsewhere the port spelling can reach only
    wildcards and the default, which the written spelling reaches too, so nothing is bypassed),
    and never at a scope the site names itself. Every rule of such a host is repeated, allows
    included, so both spellings walk the same chain of rules: the alias of `h/ns/x` is matched
    before `h:443`'s wildcards exactly as `h/ns/x` is before `h`'s.
    """
    written = {r.scope for r in rules}
    denied_hosts = {_host_of(r.scope) for r in rules if r.action == "deny"}
    out: List[ImageRule] = []
    for rule in rules:
        host = _host_of(rule.scope)
        if rule.alias_of or host not in denied_hosts or not _portless(host):
            continue
        for port in DEFAULT_PORTS:
            alias = f"{host}:{port}" + rule.scope[len(host):]
            if alias in written or check_scope(alias) is not None:
                continue
            out.append(replace(rule, scope=alias, alias_of=rule.scope))
    return out


@dataclass(frozen=True)
class Bypass:
    """A deny rule that other spellings of the same registry escape (`bypassable_denies`)."""

    rule: ImageRule
    via: str  # what decides for those spellings: "default" or an allowing wildcard scope
    examples: Tuple[str, ...]  # references that reach the same images without meeting the rule

    def message(self) -> str:
        where = ("images.default = \"allow\"" if self.via == DEFAULT_SCOPE
                 else f"the allow rule for {self.via}")
        return (f"deny rule for {self.rule.scope} is a blocklist that other names of the same "
                f"registry bypass ({', '.join(self.examples)}): {where} accepts them. "
                "Prefer images.default = \"deny\" with allow rules")


def _other_names(scope: str) -> Tuple[str, ...]:
    """Example spellings that name the same registry but match no rule written for `scope`."""
    host, slash, rest = scope.partition("/")
    tail = "/" + rest if slash else ""
    names: List[str] = []
    bare = host[2:] if host.startswith("*.") else host
    if any(c.isalpha() for c in bare) and not bare.startswith("["):
        names.append(bare.upper() + tail)
    return tuple(names) + ("its IP address", "localhost", "another DNS name of the server")


def bypassable_denies(rules: Sequence[ImageRule], default: str) -> List[Bypass]:
    """Deny rules that another spelling of the same registry escapes. Pure: validate warns
    with it and the audit reports it.

    policy.json matches scopes as lowercase strings against references as written, and a
    reference's host is not normalised: an upper-case host, the IP address, `localhost` or any
    other DNS name of the server matches no rule written for the host (wildcards are lowercase
    names too), so it gets `images.default`. Under `images.default = "allow"` every deny rule
    is therefore only a blocklist. Under "deny", other names of the server below an allowing
    `*.domain` rule escape a deny on one host of that domain. (`h:443` and `h:80` are handled
    by `port_aliases` and not reported.)
    """
    allow_default = default == "allow"
    by_scope: Dict[str, List[ImageRule]] = {}
    for r in rules:
        by_scope.setdefault(r.scope, []).append(r)
    out: List[Bypass] = []
    for rule in sorted(rules, key=lambda r: r.index):
        if rule.action != "deny" or rule.alias_of:
            continue
        examples = _other_names(rule.scope)
        if allow_default:
            out.append(Bypass(rule, DEFAULT_SCOPE, examples))
            continue
        host = _host_of(rule.scope)
        wildcards = namespaces_of(host.split(":", 1)[0] if not host.startswith("[") else host)
        for wild in (w for w in wildcards if w.startswith("*.") and w != rule.scope):
            here = by_scope.get(wild, [])
            if any(r.action == "allow" for r in here):
                out.append(Bypass(rule, wild, (f"another name under {wild}",)))
                break
            if any(not r.groups for r in here):
                break  # a rule for everybody decides there: deny, nothing further applies
    return out
