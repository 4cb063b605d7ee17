"""An image file or a collection, decided for one user: membership of the collection's group,
and whether the file permissions as they really are (`PathState`, observed by `audit.observe`)
carry that verdict, with the drift from "group-owned by the licence group, readable by it
only". A file in no collection, or a local transport, is judged by `images.local_transports`.
Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Tuple

from hpcpolicy.access.targets import Target, chain
from hpcpolicy.audit import enforce
from hpcpolicy.audit.context import (
    FILE_PERMISSIONS,
    LOCAL_RULE,
    MAX_DRIFT,
    NO_CONTROL,
    OVERRIDE,
    POLICY_JSON,
    AuditDecision,
    Context,
    Enforcement,
    Observation,
    PathState,
)
from hpcpolicy.directory.model import User
from hpcpolicy.policy.model import Collection


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


def decide_collection(ctx: Context, user: User, c: Collection, target: Target,
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


def local_body(ctx: Context, target: Target, obs: Observation) -> AuditDecision:
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
            f"containers-storage:, ...) for everybody; {OVERRIDE}")))
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
