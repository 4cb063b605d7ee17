"""What the audit and `access.json` judge: image targets (references, files, local transports,
collections) and the representative reference of each rule scope. Pure.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, replace
from typing import List, Optional, Sequence, Set, Tuple

from hpcpolicy.policy.model import Collection, Policy
from hpcpolicy.policy.reference import parse
from hpcpolicy.render.containers import LOCAL_TRANSPORTS

EXAMPLE = "example"
UNLISTED = "unlisted.example.invalid/example:latest"  # a reference no sane rule matches
# transports whose argument is a file or directory path (`oci:/path[:ref]`)
PATH_TRANSPORTS = ("dir", "docker-archive", "oci", "oci-archive", "sif", "tarball")


@dataclass(frozen=True)
class Target:
    """What `--image` (or a representative) names."""

    kind: str  # "reference" | "path" | "transport" | "collection"
    value: str  # normalised reference, absolute path, transport reference, collection path
    given: str  # as typed
    notes: Tuple[str, ...] = ()

# --- targets -------------------------------------------------------------------------------


def _is_short(given: str) -> bool:
    """Docker's rule: the first component is a host only with `.`, `:` or `localhost`."""
    text = given[len("docker://") :] if given.startswith("docker://") else given
    first, slash, _ = text.partition("/")
    return not slash or (not any(c in first for c in ".:") and first != "localhost")


def _has_tag_or_digest(scope: str) -> bool:
    if "@" in scope:
        return True
    _, slash, path = scope.partition("/")
    return bool(slash) and ":" in path.rsplit("/", 1)[-1]


def _reference_target(arg: str, given: str, notes: Tuple[str, ...] = ()) -> Target:
    ref = parse(arg)  # ValueError says what is wrong
    if _is_short(arg):
        notes += (
            f"short name {given!r}: normalised as Docker does to {ref}; a node whose "
            "registries.conf.d, ~/.config/containers/registries.conf or short-name-aliases.conf "
            "carries an alias for it may resolve it elsewhere (the rendered registries.conf "
            "has no search registries and enforces short names, so Podman needs such an alias)",
        )
    return Target("reference", str(ref), given, notes)


def parse_target(arg: str, cwd: str = "/") -> Target:
    """Classify `--image`: a registry reference, an image file path or a local transport.

    `./x` and `../x` are paths relative to `cwd`; anything else without a leading `/` is a
    reference (`foo.sif` is the valid reference `docker.io/library/foo.sif:latest`).
    """
    if not arg or any(ord(c) < 32 or ord(c) == 127 for c in arg):
        raise ValueError(f"invalid image {arg!r}: empty, or a control character")
    if arg.startswith(("./", "../")):
        return Target("path", posixpath.normpath(posixpath.join(cwd, arg)), arg)
    if arg.startswith("/"):
        return Target("path", posixpath.normpath(arg), arg)
    transport, colon, rest = arg.partition(":")
    if colon and transport in LOCAL_TRANSPORTS and not rest.startswith("//"):
        if transport in PATH_TRANSPORTS and rest.startswith("/"):
            path = posixpath.normpath(rest.split(":", 1)[0])
            note = f"{transport}: transport: judged as the file {path}"
            return Target("path", path, arg, (note,))
        return Target("transport", arg, arg)
    if arg.startswith("oras://"):
        note = ("oras:// is pulled by Apptainer only, which has no registry control; "
                "judged by the image rules as the same registry reference")
        return _reference_target(arg[len("oras://") :], arg, (note,))
    if "://" in arg and not arg.startswith("docker://"):
        raise ValueError(
            f"invalid image {arg!r}: image rules judge registry references (docker:// or "
            "none, oras://), image file paths and local transports (oci:, sif:, ...)"
        )
    return _reference_target(arg, arg)


def _representative(scope: str, scopes: Set[str]) -> str:
    """A reference the rule of `scope` decides: the scope itself, or an example below it."""
    if scope.startswith("*."):
        candidates = [f"registry.{scope[2:]}/{EXAMPLE}:latest",
                      f"hpcpolicy-audit.{scope[2:]}/{EXAMPLE}:latest"]
    elif _has_tag_or_digest(scope):
        candidates = [scope]
    else:
        candidates = [f"{scope}:latest"] if "/" in scope else []
        candidates += [f"{scope}/{EXAMPLE}:latest", f"{scope}/hpcpolicy-audit-{EXAMPLE}:latest"]
    chosen: List[str] = []
    for cand in candidates:
        try:
            ref = parse(cand)
        except ValueError:
            continue
        if cand.endswith(":latest") and "/" not in cand[len(scope) :] and ref.name != scope:
            continue  # docker.io/library:latest is docker.io/library/library: not the scope
        chosen.append(str(ref))
        if next((s for s in ref.scopes() if s in scopes), None) == scope:
            return str(ref)
    return chosen[0] if chosen else scope


def default_targets(policy: Policy) -> List[Target]:
    """Without --image: one example per rule scope, one unlisted reference, every collection."""
    scopes = {r.scope for r in policy.images.rules}
    out: List[Target] = []
    seen: Set[str] = set()
    for rule in sorted(policy.images.rules, key=lambda r: r.index):
        if rule.alias_of:  # `h:443/...` decides as the rule written for `h/...`
            continue
        ref = _representative(rule.scope, scopes)
        if ref not in seen:
            seen.add(ref)
            out.append(Target("reference", ref, ref))
    if not any(s in scopes for s in parse(UNLISTED).scopes()):
        out.append(Target("reference", UNLISTED, UNLISTED))
    out += [Target("collection", c.path, c.path) for c in policy.images.collections]
    return out


def collection_of(policy: Policy, path: str) -> Optional[Collection]:
    """The collection holding `path`, compared by path component (never by string prefix)."""
    for c in policy.images.collections:
        root = c.path.rstrip("/") + "/"
        if path == c.path or path.startswith(root):
            return c
    return None


def classified(policy: Policy, target: Target) -> Target:
    """A path naming a collection itself is the whole collection (walked, every file judged)."""
    if target.kind == "path" and any(c.path == target.value for c in policy.images.collections):
        return replace(target, kind="collection")
    return target


def paths_to_observe(policy: Policy, targets: Sequence[Target]) -> Tuple[List[str], List[str]]:
    """(collection roots to walk, single paths to stat with their chain from the collection)."""
    walk: List[str] = []
    single: List[str] = []
    for t in (classified(policy, t) for t in targets):
        if t.kind == "collection":
            walk.append(t.value)
        elif t.kind == "path":
            c = collection_of(policy, t.value)
            single += chain(c.path, t.value) if c else [t.value]
    return walk, single


def chain(root: str, path: str) -> List[str]:
    """`root` and every path below it down to `path` (`/c`, `/c/a`, `/c/a/x.sif`)."""
    out = [root]
    rest = path[len(root) :].strip("/")
    current = root
    for part in [p for p in rest.split("/") if p]:
        current = posixpath.join(current, part)
        out.append(current)
    return out
