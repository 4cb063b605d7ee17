"""[images]: the default decision, image rules by scope, and group-restricted collections.

Rules of one scope must differ by `groups` (otherwise one silently shadows the other), and a
scope cannot mix `signed_by` with `groups`: node-wide policy.json can require a signature per
scope only, for everybody.
"""

from __future__ import annotations

import os
import re
from typing import Any, Dict, FrozenSet, List, Optional, Sequence, Tuple

from hpcpolicy.errors import ProblemCollector
from hpcpolicy.policy.model import Collection, ImageRule, Images
from hpcpolicy.policy.reference import check_scope
from hpcpolicy.policy.schema import (
    Field,
    array,
    one_of,
    read_table,
    string,
    table_array,
)
from hpcpolicy.policy.sections.common import account, path, relative_rule
from hpcpolicy.policy.spellings import port_aliases


def _scope(value: str) -> Optional[str]:
    return check_scope(value)


_LOOKASIDE_RE = re.compile(r"(https?|file)://[^\s\x00-\x1f\x7f\"'\\\\]+")


def _lookaside(value: str) -> Optional[str]:
    if _LOOKASIDE_RE.fullmatch(value) is None:
        return "must be an http://, https:// or file:// URL (where the signatures are stored)"
    return None


RULE_FIELDS = {
    "scope": Field(string(_scope)),
    "action": Field(one_of("allow", "deny")),
    "groups": Field(
        array(account("group name"), nonempty=True, unique=True,
              empty_hint="leave it out for everybody"),
        (),
    ),
    "signed_by": Field(string(relative_rule), None),
    "lookaside": Field(string(_lookaside), None),
}

COLLECTION_FIELDS = {
    "path": Field(path()),
    "group": Field(account("group name")),
}


def _rule(raw: Any, where: str, index: int, out: ProblemCollector,
          base_dir: str) -> Optional[ImageRule]:
    values = read_table(raw, where, RULE_FIELDS, out)
    if values is None:
        return None
    resolved = None
    if values["signed_by"] is not None:
        resolved = os.path.normpath(os.path.join(base_dir, values["signed_by"]))
        if values["action"] != "allow":
            out.add(f"{where}.signed_by", "only an allow rule can require a signature")
            return None
    elif values["lookaside"] is not None:
        out.add(f"{where}.lookaside", "needs signed_by (a lookaside stores signatures to check)")
        return None
    return ImageRule(index=index, signed_by_path=resolved, **values)


def _collection(raw: Any, where: str, index: int, out: ProblemCollector) -> Optional[Collection]:
    values = read_table(raw, where, COLLECTION_FIELDS, out)
    return None if values is None else Collection(**values)


FIELDS = {
    "default": Field(one_of("allow", "deny"), Images.default),
    "local_transports": Field(one_of("allow", "deny"), Images.local_transports),
    "rule": Field(lambda v, w, o: v, []),  # checked by table_array below
    "collection": Field(lambda v, w, o: v, []),
}


def _check_rules(rules: Sequence[ImageRule], out: ProblemCollector) -> bool:
    ok = True
    same: Dict[Tuple[str, FrozenSet[str]], int] = {}
    by_scope: Dict[str, List[ImageRule]] = {}
    for rule in rules:
        key = (rule.scope, frozenset(rule.groups))
        where = f"images.rule[{rule.index}]"
        if key in same:
            out.add(f"{where}.scope", f"{rule.scope!r} with the same groups as "
                    f"images.rule[{same[key]}] (rules of one scope must differ by groups)")
            ok = False
        same.setdefault(key, rule.index)
        by_scope.setdefault(rule.scope, []).append(rule)
    for scope, group in by_scope.items():
        # One rule may carry both (the usual example: bio may run signed images of its
        # scope; node-wide that is signedBy for everybody, the group limit audit-only). Across
        # rules of one scope it cannot be rendered: policy.json holds one requirement per scope.
        signed = [r for r in group if r.signed_by is not None]
        if len(group) > 1 and signed:
            other = next(r for r in group if r is not signed[0])
            out.add(f"images.rule[{max(signed[0].index, other.index)}]",
                    f"scope {scope!r} mixes signed_by (images.rule[{signed[0].index}]) and groups "
                    f"(images.rule[{other.index}]) in different rules: node-wide policy.json can "
                    "require a signature per scope only, for everybody")
            ok = False
    return ok


def _ancestors(path: str) -> List[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) or "/" for i in range(1, len(parts))]


def _check_collections(collections: Sequence[Collection], out: ProblemCollector) -> bool:
    """One file, one group: collection paths are distinct and never nested."""
    ok = True
    first: Dict[str, int] = {}
    for i, c in enumerate(collections, 1):
        if c.path in first:
            out.add(f"images.collection[{i}].path",
                    f"duplicate of images.collection[{first[c.path]}]")
            ok = False
        first.setdefault(c.path, i)
    for i, c in enumerate(collections, 1):
        outer = [first[a] for a in _ancestors(c.path) if a in first]
        if outer:
            j = outer[-1]
            out.add(f"images.collection[{i}].path", f"{c.path} is inside images.collection[{j}] "
                    f"({collections[j - 1].path}): one file, one group")
            ok = False
    return ok


def parse(raw: Any, out: ProblemCollector, base_dir: str) -> Optional[Images]:
    values = read_table(raw, "images", FIELDS, out)
    if values is None:
        return None
    rules = table_array(values["rule"], "images.rule", out,
                        lambda r, w, i: _rule(r, w, i, out, base_dir))
    collections = table_array(values["collection"], "images.collection", out,
                              lambda r, w, i: _collection(r, w, i, out))
    if None in rules or None in collections or not isinstance(values["rule"], list) or \
            not isinstance(values["collection"], list):
        return None
    if not (_check_rules(rules, out) & _check_collections(collections, out)):
        return None
    # `h:443/...` and `h:80/...` are the same images as `h/...`: repeat the rules of hosts
    # with a deny rule at those spellings, so a port cannot walk around a deny.
    return Images(default=values["default"], local_transports=values["local_transports"],
                  rules=tuple(rules) + tuple(port_aliases(rules)),
                  collections=tuple(collections))
