"""What the enforcement settings add to the audit: Apptainer limits, site image stores, and
read-only binds with mounts below them. Pure, given the observation and the mount points.

* Apptainer / SingularityCE (`[runtime.apptainer_limits]`, per class): `limit container
  paths/owners/groups`, `allow container *` and the ECL are a boundary only where the class runs
  in setuid mode with unprivileged user namespaces off; elsewhere a user runs their own
  unprivileged Apptainer, so they are advisory and the audit says why. Where they hold, they
  decide image *files* for everybody (never per user, never a registry reference): a file they
  refuse is refused to every user, so they enforce a denial of that file (and contradict an
  allow); a file they let through is a decision left to the other mechanisms. The ECL's
  signature checks are not evaluated here (the audit does not read SIF signatures).
* A site image store (`additional_image_stores`) is audited like a collection: every user may
  run what is in it, so it must be readable by all and writable by nobody but root; anything
  else is drift.
* A read-only bind whose source has mounts below it on this host is a route around read-only
  for the runtimes that cannot make a bind recursively read-only (Podman, Enroot).
"""

from __future__ import annotations

import posixpath
import stat
from typing import Any, Dict, List, Optional, Sequence

from hpcpolicy.policy import directives, ecl
from hpcpolicy.policy.model import ApptainerLimits, Policy, Runtime

_KIND_BY_SUFFIX = {".sif": "sif", ".sqsh": "squashfs", ".squashfs": "squashfs",
                   ".img": "extfs", ".ext3": "extfs"}
LIMIT_RUNTIMES = ("apptainer", "singularity")


def _kind(path: str, state: Any) -> Optional[str]:
    if state is not None and getattr(state, "kind", "") == "dir":
        return "dir"
    for suffix, kind in _KIND_BY_SUFFIX.items():
        if path.endswith(suffix):
            return kind
    return None


def _below(path: str, tree: str) -> bool:
    return path == tree or path.startswith(tree.rstrip("/") + "/")


# Releases that match `limit container paths` by path component; before them a plain string
# prefix (`/c` admits `/c2/x.sif`): Apptainer 1.5.1, SingularityCE 4.4.2.
COMPONENT_MATCH = {"apptainer": (1, 5, 1), "singularity": (4, 4, 2)}


def string_prefix_releases(policy: Policy, runtime: str) -> bool:
    """Whether nodes may run a release of `runtime` that matches paths by string prefix."""
    version = getattr(policy.site, f"{runtime}_version", None)
    if runtime not in COMPONENT_MATCH or version is None:
        return False
    try:
        oldest = directives.parse_version(runtime, version)
    except ValueError:
        return True
    return oldest < COMPONENT_MATCH[runtime]


def refusals(limits: ApptainerLimits, path: str, state: Any, uid_names: Dict[int, str],
             gid_names: Dict[int, Any], string_prefix: bool = False,
             ecl_dirs: Optional[Sequence[str]] = None) -> List[str]:
    """Why the limits refuse the image file `path` for every user (empty: they let it run).

    `string_prefix`: some nodes run a release that matches paths by string prefix, so only
    a path no entry is even a string prefix of is refused everywhere. `ecl_dirs`: the
    directories of an activated ECL without a catch-all group (a SIF elsewhere is in no
    execgroup: refused whatever its signatures)."""
    out: List[str] = []
    paths = limits.container_paths or ()
    inside = any(_below(posixpath.dirname(path) or "/", p) or _below(path, p) for p in paths)
    loose = string_prefix and any(path.startswith(p) for p in paths)
    if paths and not inside and not loose:
        out.append(f"outside limit container paths ({', '.join(paths)})")
    kind = _kind(path, state)
    if limits.allow_container is not None and kind is not None \
            and kind not in limits.allow_container:
        out.append(f"allow container {kind} = no")
    if ecl_dirs is not None and kind == "sif" and posixpath.dirname(path) not in ecl_dirs:
        out.append("in no execgroup of the activated ECL")
    if state is not None and getattr(state, "kind", "missing") != "missing":
        if limits.container_owners:
            owner = uid_names.get(state.uid, str(state.uid))
            if owner not in limits.container_owners:
                out.append(f"owner {owner} is not in limit container owners")
        if limits.container_groups:
            group = str(gid_names.get(state.gid, state.gid))
            if group not in limits.container_groups:
                out.append(f"group {group} is not in limit container groups")
    return out


def ecl_scope(policy: Policy, limits: ApptainerLimits) -> Optional[List[str]]:
    """The directories an activated ECL without a catch-all execgroup admits SIF files from
    (None: no ECL, not activated, or a catch-all group that admits every directory)."""
    data = policy.inputs.get(limits.ecl_path or "")
    if data is None or not ecl.activated(data):
        return None
    doc = ecl.parsed(data)
    dirs = [g.get("dirpath", "") for g in doc.get("execgroup", [])]
    return None if "" in dirs else dirs


def _setting(rt: Runtime) -> str:
    return (f"setuid = {str(rt.setuid).lower()}, user_namespaces = "
            f"{str(rt.user_namespaces).lower()}")


def advisory_reason(rt: Runtime, node_class: str) -> str:
    return (f"runtime.apptainer_limits on class {node_class} are advisory: they hold only in "
            f"setuid mode with unprivileged user namespaces off, and this class has "
            f"{_setting(rt)} (a user can run their own unprivileged Apptainer)")


def reference_note(policy: Policy, node_class: str) -> str:
    """What the limits mean for a registry reference on this class ('' without limits)."""
    rt = policy.runtime_for(node_class)
    if rt.apptainer_limits is None or not rt.apptainer_limits.restricts():
        return ""
    if not rt.limits_hold():
        return advisory_reason(rt, node_class)
    return (f"runtime.apptainer_limits hold on class {node_class} (setuid, no user namespaces) "
            "but decide image files (paths, owners, groups, kinds, ECL signatures), not "
            "registry references")


def file_entry(policy: Policy, node_class: str, runtime: str, path: str, allowed: bool,
               state: Any, uid_names: Dict[int, str], gid_names: Dict[int, Any]
               ) -> Optional[Dict[str, Any]]:
    """{enforces, note, gap} of Apptainer's limits for one image file, or None (no limits)."""
    rt = policy.runtime_for(node_class)
    limits = rt.apptainer_limits
    if limits is None or not limits.restricts():
        return None
    if not rt.limits_hold():
        return {"enforces": False, "gap": "",
                "note": advisory_reason(rt, node_class) + ("" if allowed else
                                                          ": this denial is NOT enforced by it")}
    why = refusals(limits, path, state, uid_names, gid_names,
                   string_prefix_releases(policy, runtime), ecl_scope(policy, limits))
    ecl = (f"; the ECL ({limits.ecl}) also checks SIF signatures, which the audit does not "
           "evaluate" if limits.ecl else "")
    if why:
        if allowed:
            return {"enforces": False, "gap": "contradiction",
                    "note": f"{runtime} refuses {path} for everybody ({'; '.join(why)}) although "
                            f"the rules allow it{ecl}"}
        return {"enforces": True, "gap": "",
                "note": f"{runtime} refuses {path} for everybody: {'; '.join(why)}{ecl}"}
    return {"enforces": False, "gap": "",
            "note": f"the limits let {path} run for everybody (node-wide: they cannot tell users "
                    f"apart){ecl}" + ("" if allowed else "; this denial is NOT enforced by them")}


# --- site image stores ---------------------------------------------------------------------


def store_paths(policy: Policy, node_class: str) -> List[str]:
    rt = policy.runtime_for(node_class)
    return list(rt.storage.additional_image_stores) if rt.storage else []


def store_drift(path: str, state: Any, uid_names: Dict[int, str]) -> List[str]:
    """What is wrong with a store as found: missing, writable by others, unreadable by users."""
    if state is None or state.kind == "missing":
        return [f"{path}: not present on this host (the audit cannot see who may read it)"]
    out = []
    if state.kind != "dir":
        out.append(f"{path}: is a {state.kind}, not a directory")
    if state.uid != 0:
        out.append(f"{path}: owned by {uid_names.get(state.uid, state.uid)}, not root: its owner "
                   "can put any image there for every user")
    if state.mode & (stat.S_IWGRP | stat.S_IWOTH):
        out.append(f"{path}: mode {state.mode:04o} lets group or others write images for every "
                   "user")
    if state.mode & (stat.S_IROTH | stat.S_IXOTH) != (stat.S_IROTH | stat.S_IXOTH):
        out.append(f"{path}: mode {state.mode:04o}: not every user can read it (a site store "
                   "is for everybody)")
    return out


def store_findings(policy: Policy, node_class: str, states: Dict[str, Any],
                   uid_names: Dict[int, str]) -> List[Dict[str, Any]]:
    out = []
    for path in store_paths(policy, node_class):
        lines = store_drift(path, states.get(path), uid_names)
        if lines:
            out.append({"kind": "drift", "image": path, "mechanism": "image-store",
                        "profiles": [], "groups": [], "users": 0, "msg": "; ".join(lines),
                        "note": None,
                        "remedy": f"chown root: {path} && chmod 0755 {path} (and run `hpcpolicy "
                                  "node doctor` on a node: lock files, metadata readable)"})
    return out


# --- read-only binds -----------------------------------------------------------------------


def readonly_bind_findings(policy: Policy, node_class: str,
                           points: Optional[Sequence[str]]) -> List[Dict[str, Any]]:
    """A `bypass` per read-only bind whose source has mounts below it (Podman, Enroot)."""
    if points is None:
        return []
    from hpcpolicy.node.enforce_checks import weak_readonly_binds
    from hpcpolicy.render.needs import readonly_binds

    out = []
    for weak in weak_readonly_binds(readonly_binds(policy, node_class), points):
        subs = ", ".join(weak["submounts"][:5])
        out.append({
            "kind": "bypass", "image": weak["source"], "mechanism": weak["runtime"],
            "profiles": [], "groups": [], "users": 0, "note": None,
            "msg": f"read-only bind {weak['source']}: mounts below it on this host stay "
                   f"writable in {weak['runtime']} containers (not recursively read-only): {subs}",
            "remedy": "add a readonly [[bind]] for each of them (same relative target), or "
                      "unmount them"})
    return out


def findings(policy: Policy, node_class: str, states: Dict[str, Any], uid_names: Dict[int, str],
             points: Optional[Sequence[str]]) -> List[Dict[str, Any]]:
    """Store drift and read-only-bind bypasses, appended to the report's findings."""
    return (store_findings(policy, node_class, states, uid_names)
            + readonly_bind_findings(policy, node_class, points))
