"""`access.json`: who may run what under the rules, by profile, in every generation. Pure.

`apply` computes it from the same directory read as the node files, so a generation records
both what nodes install and who that lets run which image. It lists group members, so it is
published with mode 0640 and never installed on a node.

Shape (format 1)::

    {"format": 1, "site": "cluster-a",
     "images": [{"image", "kind", "rule"}],          # the representative targets, in order
     "profiles": [{"id", "groups", "eligible", "members"}],
     "classes": {"default": {"allow": {PROFILE_ID: [image index, ...]}}, ...}}

Only the verdict *under the rules* is recorded (observed file permissions are the audit's
business); the enforcement picture is recomputed by `hpcpolicy audit`. An access change is a
change of any user's verdict for any image, users who joined or left the directory included;
`changes` computes them between two documents, grouped by (image, before, after, groups) so the
result grows with profiles, not users.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple

from hpcpolicy.access.profiles import (
    SAMPLE,
    Profile,
    build_profiles,
    directory_users,
    named_groups,
)
from hpcpolicy.access.targets import Target, collection_of, default_targets
from hpcpolicy.directory.model import Snapshot
from hpcpolicy.images.scope import Decision, decide_indexed, rules_by_scope
from hpcpolicy.policy.model import Collection, ImageRule, Images, NodeClass, Policy
from hpcpolicy.policy.reference import Reference
from hpcpolicy.policy.reference import parse as parse_ref

ACCESS = "access.json"
FORMAT = 1
MODE = 0o640
LOCAL_RULE = "images.local_transports"

Verdict = Tuple[bool, str]  # (allowed, rule that decided)


class Decider:
    """The rules' verdict per (reference, groups), indexed and cached once per run.

    A verdict depends only on the holder's groups among those the reference's scope chain
    names, so profiles that differ elsewhere share one evaluation.
    """

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.by_scope = rules_by_scope(policy.images.rules)
        self._chain: Dict[str, Tuple[Reference, List[str], FrozenSet[str]]] = {}
        self._cache: Dict[Tuple[str, FrozenSet[str]], Decision] = {}

    def chain(self, ref: str) -> Tuple[Reference, List[str], FrozenSet[str]]:
        """(parsed reference, its scope chain, the groups the chain's rules name), once per
        reference: a verdict depends on the holder's groups among those only."""
        found = self._chain.get(ref)
        if found is None:
            parsed = parse_ref(ref)
            scopes = parsed.scopes()
            named = frozenset(g for s in scopes for r in self.by_scope.get(s, ())
                              for g in r.groups)
            found = self._chain[ref] = (parsed, scopes, named)
        return found

    def reference(self, ref: str, groups: FrozenSet[str]) -> Decision:
        parsed, _scopes, named = self.chain(ref)
        key = (ref, groups & named)
        d = self._cache.get(key)
        if d is None:
            d = self._cache[key] = decide_indexed(self.by_scope, self.policy.images.default,
                                                  parsed, set(key[1]))
        return d

    def verdict(self, target: Target, groups: FrozenSet[str]) -> Verdict:
        """The verdict of the rules alone for a holder of `groups` (no enforcement, no files)."""
        policy = self.policy
        if target.kind in ("collection", "path"):
            c = collection_of(policy, target.value)
            if c is not None:
                return c.group in groups, c.path
        if target.kind == "reference":
            d = self.reference(target.value, groups)
            return d.allowed, d.scope
        return policy.images.local_transports == "allow", LOCAL_RULE


def image_kind(policy: Policy, target: Target) -> str:
    if target.kind in ("collection", "path") and collection_of(policy, target.value):
        return "collection"
    return "reference" if target.kind == "reference" else "local"


def build(policy: Policy, snapshot: Snapshot,
          targets: Optional[Sequence[Target]] = None) -> Dict[str, Any]:
    """The access document of `policy` over `snapshot` (every declared class)."""
    targets = list(targets) if targets is not None else default_targets(policy)
    profiles = build_profiles(policy, snapshot, directory_users(policy, snapshot),
                              named_groups(policy))
    decider = Decider(policy)
    images: List[Dict[str, Any]] = []
    allow: Dict[str, List[int]] = {p.id: [] for p in profiles}
    for i, target in enumerate(targets):
        rules: Dict[str, None] = {}
        for p in profiles:
            allowed, rule = decider.verdict(target, p.group_set)
            rules.setdefault(rule, None)
            if allowed:
                allow[p.id].append(i)
        images.append({"image": target.value, "kind": image_kind(policy, target),
                       "rule": next(iter(rules), "default")})
    classes = {c: {"allow": allow} for c in policy.class_names()}
    return {
        "format": FORMAT,
        "site": policy.site.name,
        "rules": rules_of(policy),
        "named": sorted(named_groups(policy)),
        "images": images,
        "profiles": [{"id": p.id, "groups": list(p.groups), "eligible": p.eligible,
                      "members": list(p.members)} for p in profiles],
        "classes": classes,
    }


def rules_of(policy: Policy) -> Dict[str, Any]:
    """The image rules the verdicts come from, so access can be recomputed for another
    directory (a rollback publishes old rules with today's users)."""
    im = policy.images
    return {
        "default": im.default, "local_transports": im.local_transports,
        "rules": [{"scope": r.scope, "action": r.action, "groups": list(r.groups),
                   "signed_by": r.signed_by, "index": r.index, "alias_of": r.alias_of}
                  for r in im.rules],
        "collections": [{"path": c.path, "group": c.group} for c in im.collections],
        "classes": list(policy.class_names()),
    }


def with_rules(policy: Policy, doc: Mapping[str, Any]) -> Policy:
    """`policy` (its directory settings, today's) with the image rules recorded in `doc`."""
    r = doc["rules"]
    images = Images(
        default=r["default"], local_transports=r["local_transports"],
        rules=tuple(ImageRule(x["scope"], x["action"], tuple(x["groups"]),
                              signed_by=x["signed_by"], index=x["index"],
                              alias_of=x.get("alias_of")) for x in r["rules"]),
        collections=tuple(Collection(c["path"], c["group"]) for c in r["collections"]))
    classes = tuple(NodeClass(c, "") for c in r["classes"] if c != "default")
    return replace(policy, images=images, node_classes=classes)


def dump(doc: Mapping[str, Any]) -> bytes:
    """Stable compact bytes (sorted keys: equal access is equal bytes, so equal hashes)."""
    return (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode()


def parse(data: bytes, where: str) -> Dict[str, Any]:
    """A document read back; ValueError naming `where` and what is wrong."""
    try:
        doc = json.loads(data)
    except ValueError as err:
        raise ValueError(f"{where}: not valid JSON: {err}") from None
    ok = (isinstance(doc, dict) and doc.get("format") == FORMAT
          and isinstance(doc.get("images"), list) and isinstance(doc.get("profiles"), list)
          and isinstance(doc.get("classes"), dict) and isinstance(doc.get("rules"), dict))
    if not ok:
        raise ValueError(f"{where}: not an access document of format {FORMAT}")
    return doc


def profiles_of(doc: Mapping[str, Any]) -> List[Profile]:
    return [Profile(p["id"], tuple(p["groups"]), bool(p["eligible"]), None,
                    tuple(p["members"])) for p in doc["profiles"]]


# --- changes -------------------------------------------------------------------------------


class _View:
    """One class of a document: who is in which profile, which images each profile may run."""

    def __init__(self, doc: Optional[Mapping[str, Any]], node_class: str) -> None:
        self.images: List[str] = []
        self.groups: Dict[str, Tuple[str, ...]] = {}
        self.user: Dict[str, str] = {}
        self.allowed: Dict[str, FrozenSet[str]] = {}
        if doc is None:
            return
        body = doc["classes"].get(node_class)
        if body is None:
            return
        self.images = [i["image"] for i in doc["images"]]
        for p in doc["profiles"]:
            self.groups[p["id"]] = tuple(p["groups"])
            for name in p["members"]:
                self.user[name] = p["id"]
        for pid, indexes in body["allow"].items():
            self.allowed[pid] = frozenset(self.images[i] for i in indexes)

    def verdict(self, pid: Optional[str], image: str, present: FrozenSet[str]) -> str:
        if pid is None or image not in present:
            return "absent"
        return "allowed" if image in self.allowed.get(pid, frozenset()) else "denied"


def changes(before: Optional[Mapping[str, Any]], after: Optional[Mapping[str, Any]],
            node_class: str = "default") -> List[Dict[str, Any]]:
    """Who gained or lost which image between two documents, for one class.

    `[{image, before, after, users, groups, sample}]` with before/after `allowed`, `denied` or
    `absent`; `groups` are the profile's groups on the `after` side (before, for users who
    left). Users moving between the same two profiles are counted together.
    """
    b, a = _View(before, node_class), _View(after, node_class)
    pairs: Counter = Counter()
    samples: Dict[Tuple[Optional[str], Optional[str]], List[str]] = {}
    for name in sorted(set(b.user) | set(a.user)):
        key = (b.user.get(name), a.user.get(name))
        pairs[key] += 1
        shown = samples.setdefault(key, [])
        if len(shown) < SAMPLE:
            shown.append(name)
    b_present, a_present = frozenset(b.images), frozenset(a.images)
    images = list(dict.fromkeys(a.images + b.images))
    out: Dict[Tuple[str, str, str, Tuple[str, ...]], Dict[str, Any]] = {}
    for (pb, pa), count in pairs.items():
        if (pb is not None and pa is not None and b_present == a_present
                and b.allowed.get(pb, frozenset()) == a.allowed.get(pa, frozenset())):
            continue  # same images, same verdicts: nothing for these users
        groups = a.groups[pa] if pa is not None else b.groups.get(pb or "", ())
        for image in images:
            vb, va = b.verdict(pb, image, b_present), a.verdict(pa, image, a_present)
            if vb == va:
                continue
            entry = out.setdefault((image, vb, va, groups), {
                "image": image, "before": vb, "after": va, "users": 0,
                "groups": list(groups), "sample": []})
            entry["users"] += count
            room = SAMPLE - len(entry["sample"])
            if room > 0:
                entry["sample"].extend(samples[(pb, pa)][:room])
    return [out[k] for k in sorted(out)]


def summary(entries: Sequence[Mapping[str, Any]]) -> str:
    """One line a person reads: how many users gained or lost access to how many images."""
    if not entries:
        return "no access change"
    gained = sum(e["users"] for e in entries if e["after"] == "allowed")
    lost = sum(e["users"] for e in entries if e["before"] == "allowed")
    images = len({e["image"] for e in entries})
    return (f"access changes on {images} image(s): {gained} user verdict(s) became allowed, "
            f"{lost} stopped being allowed")


def describe(entries: Sequence[Mapping[str, Any]], limit: int = 50) -> List[str]:
    """Text lines for people (apply, rollback, diff)."""
    lines = []
    for e in entries[:limit]:
        who = " + ".join(e["groups"]) if e["groups"] else "no named group"
        where = f"[class {e['class']}] " if e.get("class", "default") != "default" else ""
        lines.append(f"{where}{e['image']}: {e['before']} -> {e['after']} for {e['users']} "
                     f"user(s) [{who}] e.g. {', '.join(e['sample'])}")
    if len(entries) > limit:
        lines.append(f"... and {len(entries) - limit} more access changes")
    return lines
