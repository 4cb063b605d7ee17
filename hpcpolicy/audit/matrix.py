"""The audit by access profile: summary, findings, then the image x profile matrix. Pure.

Users are partitioned into access profiles (`access.profiles`; here the groups that own an
observed collection path count too, and each owner of one is a profile of their own), and every
image is decided once per profile with one member as its representative: a profile's members
are exactly the users whose decisions are all the same, so the report grows with profiles x
images, not with users. Explanations are stated once, in `legend`; a cell's `enforced_by[].note`
holds a key of it.

Findings are the gaps an `Enforcement` reports (`gap`), grouped by (kind, image, mechanism,
explanation) with the profiles and the number of users concerned, plus collection drift, each
with the site change that would close it where there is one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple

from hpcpolicy.access.profiles import Profile, build_profiles, directory_users, named_groups
from hpcpolicy.access.targets import Target, classified, collection_of
from hpcpolicy.audit.context import (
    FILE_PERMISSIONS,
    LOCAL_RULE,
    NO_CONTROL,
    POLICY_JSON,
    REGISTRIES_CONF,
    AuditDecision,
    Context,
    Observation,
)
from hpcpolicy.audit.decide import decide_body, decide_one, for_user, user_notes
from hpcpolicy.directory.model import User
from hpcpolicy.policy.reference import parse

KINDS = ("unenforced-denial", "unenforced-requirement", "contradiction", "bypass", "drift")

MECHANISMS = {
    POLICY_JSON: (
        "/etc/containers/policy.json, read by Podman, Buildah and Skopeo: one node-wide "
        "decision per rule scope, accepting a reference when at least one eligible user may "
        "run it (it cannot tell users apart); local transports (dir:, oci:, archives) are "
        "accepted or rejected for everybody by images.local_transports. A user can replace it "
        "(~/.config/containers/policy.json, --signature-policy, skopeo --policy)."),
    REGISTRIES_CONF: (
        "/etc/containers/registries.conf `blocked` prefixes: a Podman/Skopeo pull fails before "
        "policy.json is read; matched by string prefix (a host also covers host:port). A user's "
        "~/.config/containers/registries.conf replaces it; Apptainer ignores `blocked`."),
    FILE_PERMISSIONS: (
        "the permissions of a collection's files as found on this host: the only mechanism "
        "of an [[images.collection]]; every launcher runs an image file its user can read."),
    "apptainer": (
        "Apptainer has no registry allow-list: docker://, oras:// and library:// pulls fetch any "
        "reference, its OCI pulls ignore policy.json; it runs any image file its user can read."),
    "singularity": (
        "SingularityCE has no registry allow-list: it fetches any reference and runs any image "
        "file its user can read."),
    "enroot": (
        "Enroot has no registry allow-list: `enroot import docker://...` fetches any reference."),
}
MARKS = {
    "enforced": "every mechanism meant to carry this verdict carries it",
    "gap": "a mechanism meant to carry this verdict does not (see the findings)",
    "none": "no mechanism of the site is known to carry this verdict (only runtimes without "
            "registry control, or a collection not present on this host)",
}


@dataclass
class Cell:
    """One image for one profile."""

    image: int  # index into Report.targets
    profile: int  # index into Report.profiles
    decision: AuditDecision
    notes: Tuple[str, ...] = ()  # legend keys of enforced_by, in order

    @property
    def mark(self) -> str:
        control = [e for e in self.decision.enforced_by if e.mechanism not in NO_CONTROL]
        if any(e.gap for e in self.decision.enforced_by):
            return "gap"
        if not control or not any(e.enforces for e in control):
            return "none"
        return "enforced"


@dataclass
class Report:
    """Everything the profile report prints, in every format."""

    site: str
    node_class: str
    targets: List[Target]
    profiles: List[Profile]
    cells: List[Cell]  # image-major: cells[i * len(profiles) + j]
    legend: Dict[str, str]
    findings: List[Dict[str, Any]]
    provenance: Dict[str, Any] = field(default_factory=dict)

    def cell(self, image: int, profile: int) -> Cell:
        return self.cells[image * len(self.profiles) + profile]

    def summary(self) -> Dict[str, int]:
        users = sum(len(p.members) for p in self.profiles)
        sizes = [len(p.members) for p in self.profiles]
        allowed = sum(sizes[c.profile] for c in self.cells if c.decision.allowed)
        gaps = sum(sizes[c.profile] for c in self.cells if c.decision.unenforced_denial)
        return {"users": users, "profiles": len(self.profiles), "images": len(self.targets),
                "allowed": allowed, "denied": users * len(self.targets) - allowed,
                "unenforced_denials": gaps, "findings": len(self.findings)}

    def images(self) -> List[Dict[str, Any]]:
        out = []
        for i, t in enumerate(self.targets):
            first = self.cells[i * len(self.profiles)].decision if self.profiles else None
            out.append({"image": t.value, "rule": first.rule if first else None,
                        "kind": first.kind if first else t.kind})
        return out

    def matrix(self) -> List[Dict[str, Any]]:
        out = []
        for c in self.cells:
            d = c.decision
            out.append({
                "image": d.image, "profile": self.profiles[c.profile].id, "allowed": d.allowed,
                "rule": d.rule, "mark": c.mark,
                "enforced_by": [{"mechanism": e.mechanism, "enforces": e.enforces,
                                 "user_can_override": e.user_can_override, "note": key}
                                for e, key in zip(d.enforced_by, c.notes)],
            })
        return out

    def as_dict(self, members: bool = False) -> Dict[str, Any]:
        return {
            "site": self.site, "class": self.node_class, "summary": self.summary(),
            "findings": self.findings,
            "profiles": [p.as_dict(members) for p in self.profiles],
            "images": self.images(), "matrix": self.matrix(), "legend": self.legend,
            "provenance": self.provenance,
        }


# --- building ------------------------------------------------------------------------------


def _observed_owners(ctx: Context, obs: Observation) -> Tuple[Set[int], Set[str]]:
    """(uids, group names) owning an observed collection path: they change a user's access."""
    uids: Set[int] = set()
    gids: Set[int] = set()
    for state in obs.states.values():
        if state.kind != "missing":
            uids.add(state.uid)
            gids.add(state.gid)
    names = {g.name for g in ctx.snapshot.groups.values() if g.gid in gids}
    return uids, names


def profiles_for(ctx: Context, obs: Observation, users: Sequence[User]) -> List[Profile]:
    owners, groups = _observed_owners(ctx, obs)
    named = named_groups(ctx.policy) | groups
    return build_profiles(ctx.policy, ctx.snapshot, users, named, frozenset(owners))


def audited_users(ctx: Context, group: Optional[str] = None) -> List[User]:
    """Every user the policy is about (uid >= min_uid, not nobody), within `--group`."""
    users = directory_users(ctx.policy, ctx.snapshot)
    if group is not None:
        members = ctx.snapshot.members_of(group)
        users = [u for u in users if u.name in members]
    return users


class _Legend:
    """Explanations stated once: mechanisms by name, notes by a short key."""

    def __init__(self) -> None:
        self.text: Dict[str, str] = {}
        self._keys: Dict[Tuple[str, str], str] = {}
        self._count: Dict[str, int] = {}

    def mechanism(self, name: str) -> None:
        if name not in self.text:
            self.text[name] = MECHANISMS.get(name, name)

    def note(self, mechanism: str, note: str) -> str:
        key = self._keys.get((mechanism, note))
        if key is None:
            n = self._count[mechanism] = self._count.get(mechanism, 0) + 1
            key = self._keys[(mechanism, note)] = f"{mechanism}/{n}"
            self.text[key] = note
        return key


def build_report(ctx: Context, targets: Sequence[Target], obs: Observation,
                 users: Sequence[User]) -> Report:
    """Decide every target once per profile; findings and legend from those decisions."""
    chosen = [classified(ctx.policy, t) for t in targets]
    profiles = profiles_for(ctx, obs, users)
    reps = [ctx.snapshot.users[p.members[0]] for p in profiles]
    legend = _Legend()
    cells: List[Cell] = []
    for i, target in enumerate(chosen):
        for j, rep in enumerate(reps):
            d = decide_body(ctx, rep, target, obs)
            keys = []
            for e in d.enforced_by:
                legend.mechanism(e.mechanism)
                keys.append(legend.note(e.mechanism, e.note))
            cells.append(Cell(i, j, d, tuple(keys)))
    text = dict(legend.text)
    text.update({f"mark/{k}": v for k, v in MARKS.items()})
    report = Report(ctx.policy.site.name, ctx.node_class, chosen, profiles, cells, text, [])
    report.findings = findings(ctx, report)
    return report


# --- findings ------------------------------------------------------------------------------


def _remedy(ctx: Context, kind: str, mechanism: str, image: str) -> Optional[str]:
    policy = ctx.policy
    if kind == "bypass":
        if policy.images.local_transports == "allow":
            return f'set {LOCAL_RULE} = "deny" (local transports: dir:, oci:, archives)'
        if policy.images.default == "allow":
            return ('set images.default = "deny" and allow what may run (a deny rule is a '
                    "blocklist other names of the registry walk around)")
        return "narrow the allowing *.domain rule above this registry, or deny its other names"
    if mechanism == FILE_PERMISSIONS:
        c = collection_of(policy, image)
        if c is None:
            return None
        if kind == "unenforced-denial":
            return f"chgrp -R {c.group} {c.path} && chmod -R o-rwx {c.path}"
        return f"chgrp -R {c.group} {c.path} && chmod -R g+rX {c.path}"
    if mechanism == POLICY_JSON and kind in ("unenforced-denial", "unenforced-requirement"):
        try:
            chain = parse(image).scopes()
        except ValueError:
            return None
        rules = [r for r in policy.images.rules if r.scope in chain and r.action == "allow"]
        if kind == "unenforced-requirement":
            unsigned = [r for r in rules if r.signed_by is None]
            if unsigned:
                named = ", ".join(f"{r.index} ({r.scope})" for r in unsigned)
                return f"give signed_by to the allow rule(s) {named} as well, or remove them"
            return None
        limited = [r for r in rules if r.groups]
        if limited:
            named = ", ".join(f"{r.index} ({r.scope}, groups {', '.join(r.groups)})"
                              for r in limited)
            return (f"node-wide policy.json cannot limit rule(s) {named} to groups: serve these "
                    "images from an [[images.collection]] limited to the group, or drop groups")
    return None


def findings(ctx: Context, report: Report) -> List[Dict[str, Any]]:
    """Gaps grouped by (kind, image, mechanism, explanation), then drift per collection."""
    grouped: Dict[Tuple[str, str, str, str], Dict[str, Any]] = {}
    drift: Dict[str, Tuple[str, ...]] = {}
    for c in report.cells:
        d = c.decision
        p = report.profiles[c.profile]
        if d.drift and d.kind == "collection":
            drift.setdefault(d.image, d.drift)
        for e, key in zip(d.enforced_by, c.notes):
            if not e.gap:
                continue
            f = grouped.get((e.gap, d.image, e.mechanism, key))
            if f is None:
                f = grouped[(e.gap, d.image, e.mechanism, key)] = {
                    "kind": e.gap, "image": d.image, "mechanism": e.mechanism, "profiles": [],
                    "groups": [], "users": 0, "msg": e.note, "note": key,
                    "remedy": _remedy(ctx, e.gap, e.mechanism, d.image)}
            f["profiles"].append(p.id)
            f["groups"].append(p.label)
            f["users"] += len(p.members)
    out = sorted(grouped.values(), key=lambda f: (KINDS.index(f["kind"]), -f["users"],
                                                  f["image"]))
    for image, lines in drift.items():
        coll = collection_of(ctx.policy, image)
        out.append({
            "kind": "drift", "image": image, "mechanism": FILE_PERMISSIONS, "profiles": [],
            "groups": [], "users": 0, "msg": "; ".join(lines), "note": None,
            "remedy": (f"chgrp -R {coll.group} {coll.path} && chmod -R o-rwx,g+rX {coll.path}"
                       if coll else None)})
    return out


def decisions_stream(ctx: Context, report: Report, obs: Observation) -> Iterator[AuditDecision]:
    """The full cross product, one decision per (image, user), built as it is consumed.

    Reference and local decisions come from the profile's cell (only the user's own notes are
    added); a collection decision names the user in its reason, so it is made per user (its
    permission check is still cached per profile). Memory: the report, and one decision.
    """
    for i, target in enumerate(report.targets):
        for j, p in enumerate(report.profiles):
            body = report.cell(i, j).decision
            for name in p.members:
                user = ctx.snapshot.users[name]
                if body.kind == "collection":
                    yield decide_one(ctx, user, target, obs)
                else:
                    yield for_user(body, name, user_notes(ctx, user))
