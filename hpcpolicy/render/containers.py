"""Podman/Buildah/Skopeo node files: policy.json, registries.conf, registries.d, containers.conf.

* `etc/containers/policy.json` enforces the image rules. Node files cannot tell users apart, so
  each rule scope carries the node-wide decision of `images.scope.node_wide_rules` (accept when
  some eligible user may). Local transports (`oci:`, `dir:`, archives, `containers-storage:`,
  ...) get one transport-wide `""` scope from `images.local_transports`; the docker transport
  never gets a `""` scope, so unmatched registry references fall to `default`.
* Signed scopes use `signedBy` / `GPGKeys`; the keyrings are shipped in the tree under
  `etc/containers/hpcpolicy-keys/` (named by content hash, so a changed key is a new file and a
  node never reads half-replaced key material). Where several keyrings could admit a reference
  (`keyPaths`, containers/image >= 5.22) any of them is accepted.
* `etc/containers/registries.d/hpcpolicy.yaml` tells the tools where signatures of signed scopes
  live (`lookaside`). Without a `lookaside` the scope gets no entry, on purpose: an entry hides
  every less specific one (containers-registries.d(5)), so it would disable the registry-side
  signature API and any site lookaside configured in another file. Written as JSON, which is
  YAML.
* `etc/containers/registries.conf` (v2): `short-name-mode = "enforcing"` with no search
  registries, so a short name never resolves to a registry the policy did not anticipate;
  `blocked = true` for prefixes every eligible user is denied, where registries.conf can say it
  (a host, namespace or repository with no allowed scope below it: registries.conf matches by
  longest string prefix and ignores tags). policy.json remains the enforcement; the block only
  makes the failure earlier and clearer.
* `etc/containers/containers.conf`: `[containers] volumes` from the podman binds.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import tomli_w

from hpcpolicy.directory.model import Snapshot
from hpcpolicy.errors import InvalidInput
from hpcpolicy.images.scope import NodeRule, node_default, node_wide_rules
from hpcpolicy.policy.model import Bind, ImageRule, Policy
from hpcpolicy.policy.reference import check_scope, namespaces_of
from hpcpolicy.render.header import header

POLICY_JSON = "etc/containers/policy.json"
REGISTRIES_CONF = "etc/containers/registries.conf"
REGISTRIES_D = "etc/containers/registries.d/hpcpolicy.yaml"
CONTAINERS_CONF = "etc/containers/containers.conf"
STORAGE_ENV = "CONTAINERS_STORAGE_CONF=/etc/containers/storage.conf"
KEY_DIR = "etc/containers/hpcpolicy-keys"

# Transports whose images come from local files or stores, not from a registry (policy.json
# transport names of containers/image 5.x).
LOCAL_TRANSPORTS = (
    "containers-storage",
    "dir",
    "docker-archive",
    "docker-daemon",
    "oci",
    "oci-archive",
    "sif",
    "tarball",
)

_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
_LOOKASIDE = re.compile(r"(https?|file)://[^\s\x00-\x1f\x7f]+")

Requirement = Dict[str, object]


def render(policy: Policy, snapshot: Snapshot, binds: Sequence[Bind]) -> Dict[str, bytes]:
    """Every containers-common file of one node class, plus the keyrings they name."""
    out = render_images(policy, snapshot)
    out.update(render_volumes(policy, binds))
    return out


def render_images(policy: Policy, snapshot: Snapshot) -> Dict[str, bytes]:
    """The image-source files (policy.json, registries.conf, registries.d, keyrings): the same
    on every node class, so a multi-class render computes them once."""
    nodes = node_wide_rules(policy, snapshot)
    keys = _key_files(policy, nodes)
    out: Dict[str, bytes] = {
        POLICY_JSON: render_policy_json(policy, snapshot, nodes, keys),
        REGISTRIES_CONF: render_registries_conf(policy, snapshot, nodes),
    }
    lookaside = render_registries_d(policy)
    if lookaside is not None:  # no signed scope with a lookaside: ship no empty file
        out[REGISTRIES_D] = lookaside
    out.update({path: data for path, data in keys.values()})
    return out


def render_volumes(policy: Policy, binds: Sequence[Bind]) -> Dict[str, bytes]:
    """containers.conf: the one containers file that depends on the node class's binds."""
    return {CONTAINERS_CONF: render_containers_conf(policy, binds)}


# --- keyrings ------------------------------------------------------------------------------


def _safe_basename(path: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(path)) or "keyring"
    return name.lstrip(".") or "keyring"


def _key_files(policy: Policy, nodes: Dict[str, NodeRule]) -> Dict[str, Tuple[str, bytes]]:
    """Resolved keyring path -> (node path relative to /, bytes) for every keyring in use."""
    out: Dict[str, Tuple[str, bytes]] = {}
    for rule in nodes.values():
        for path in rule.keyrings:
            if path in out:
                continue
            data = policy.keyrings.get(path)
            if data is None:
                raise InvalidInput(
                    f"keyring {path} was not loaded", policy.path, "images.rule.signed_by"
                )
            digest = hashlib.sha256(data).hexdigest()[:16]
            out[path] = (f"{KEY_DIR}/{digest}-{_safe_basename(path)}", data)
    return out


# --- policy.json ---------------------------------------------------------------------------


def _requirement(rule: NodeRule, keys: Dict[str, Tuple[str, bytes]]) -> List[Requirement]:
    if not rule.allowed:
        return [{"type": "reject"}]
    if not rule.keyrings:
        return [{"type": "insecureAcceptAnything"}]
    paths = sorted("/" + keys[k][0] for k in rule.keyrings)
    req: Requirement = {"type": "signedBy", "keyType": "GPGKeys"}
    if len(paths) == 1:
        req["keyPath"] = paths[0]
    else:
        req["keyPaths"] = paths
    return [req]


def _accept(allowed: bool) -> List[Requirement]:
    return [{"type": "insecureAcceptAnything" if allowed else "reject"}]


def policy_document(
    policy: Policy,
    snapshot: Snapshot,
    nodes: Dict[str, NodeRule],
    keys: Dict[str, Tuple[str, bytes]],
) -> Dict[str, object]:
    """The policy.json document as a dict (also what the audit reads back)."""
    docker: Dict[str, List[Requirement]] = {}
    for scope, rule in sorted(nodes.items()):
        problem = check_scope(scope)
        if problem:
            raise InvalidInput(
                f"refusing to render scope {scope!r}: {problem}", policy.path, "images.rule.scope"
            )
        docker[scope] = _requirement(rule, keys)
    local = policy.images.local_transports == "allow"
    transports: Dict[str, Dict[str, List[Requirement]]] = {"docker": docker}
    for name in LOCAL_TRANSPORTS:
        transports[name] = {"": _accept(local)}
    return {"default": _accept(node_default(policy, snapshot)), "transports": transports}


def render_policy_json(
    policy: Policy,
    snapshot: Snapshot,
    nodes: Dict[str, NodeRule],
    keys: Dict[str, Tuple[str, bytes]],
) -> bytes:
    doc = policy_document(policy, snapshot, nodes, keys)
    return (json.dumps(doc, sort_keys=True, indent=2) + "\n").encode()


# --- registries.d --------------------------------------------------------------------------


def render_registries_d(policy: Policy) -> Optional[bytes]:
    """Lookaside locations of signed scopes (wildcard scopes cannot have one: no such key)."""
    docker: Dict[str, Dict[str, str]] = {}
    for rule in policy.images.rules:
        if rule.action != "allow" or not rule.signed_by or not rule.lookaside:
            continue
        _assert_lookaside(policy, rule)
        if rule.scope.startswith("*."):
            continue
        docker[rule.scope] = {"lookaside": rule.lookaside}
    if not docker:
        return None
    doc = {"docker": docker}
    return header(policy) + (json.dumps(doc, sort_keys=True, indent=2) + "\n").encode()


def _assert_lookaside(policy: Policy, rule: ImageRule) -> None:
    url = rule.lookaside or ""
    if not _LOOKASIDE.fullmatch(url):
        raise InvalidInput(
            f"lookaside {url!r} must be an http://, https:// or file:// URL",
            policy.path,
            f"images.rule[{rule.index}].lookaside",
        )


# --- registries.conf -----------------------------------------------------------------------


def blockable(nodes: Dict[str, NodeRule], allow_default: bool = True) -> List[str]:
    """Denied scopes registries.conf can block without blocking anything allowed.

    A host, namespace or repository (no tag, digest or wildcard) denied for everybody, with no
    allowed scope below it: a blocked prefix also stops every longer reference. A bare host
    `h` also covers `h:PORT/...` (registries.conf matches string prefixes), which policy.json
    treats as another host: such references reach `h`'s wildcards or the default
    (`allow_default`, the node's verdict on unmatched references), so `h` is blocked only when
    those deny too. Without `allow_default` the default is taken to allow (never block more
    than policy.json rejects).
    """
    allowed = [s for s, r in nodes.items() if r.allowed and not s.startswith("*.")]
    out = []
    for scope, rule in sorted(nodes.items()):
        if rule.allowed or scope.startswith("*.") or _has_tag_or_digest(scope):
            continue
        if any(prefix_covers(scope, a) for a in allowed):
            continue
        if "/" not in scope and _other_ports_allowed(scope, nodes, allow_default):
            continue
        out.append(scope)
    return out


def _other_ports_allowed(host: str, nodes: Dict[str, NodeRule], allow_default: bool) -> bool:
    """What policy.json says about `host:PORT/...` for a port no rule names: the most specific
    listed wildcard of the bare host decides, else the default."""
    if host.startswith("["):
        return host.endswith("]") and allow_default  # IPv6 literal: no wildcards
    if ":" in host:
        return False  # `h:5000` covers `h:5000/...` only
    bare = host
    for scope in namespaces_of(bare)[1:]:
        rule = nodes.get(scope)
        if rule is not None:
            return rule.allowed
    return allow_default


def prefix_covers(prefix: str, ref: str) -> bool:
    """Whether a registries.conf `prefix` covers `ref` (containers/image refMatchingPrefix):
    equal, or followed by '/', ':' or '@' — so a bare host also covers `host:port/...`."""
    if ref == prefix:
        return True
    return ref.startswith(prefix) and ref[len(prefix)] in "/:@"


def _has_tag_or_digest(scope: str) -> bool:
    if "@" in scope:
        return True
    _, slash, path = scope.partition("/")
    return bool(slash) and ":" in path.rsplit("/", 1)[-1]


def render_registries_conf(policy: Policy, snapshot: Snapshot,
                           nodes: Dict[str, NodeRule]) -> bytes:
    allow_default = node_default(policy, snapshot)
    registries = [{"prefix": s, "location": s, "blocked": True}
                  for s in blockable(nodes, allow_default)]
    doc: Dict[str, object] = {"short-name-mode": "enforcing", "unqualified-search-registries": []}
    if registries:
        doc["registry"] = registries
    return header(policy) + tomli_w.dumps(doc).encode()


# --- containers.conf -----------------------------------------------------------------------


def _volume(policy: Policy, bind: Bind) -> str:
    """`SRC:DST[:ro]`, re-asserting what validation proved (defence in depth)."""
    for value in (bind.source, bind.target):
        bad = (
            not value.startswith("/")
            or _UNSAFE.search(value)
            or any(c in value for c in ":, \t")
            or ".." in value.split("/")
        )
        if bad:
            raise InvalidInput(f"refusing to render bind path {value!r}", policy.path, "bind")
    if not bind.required:
        raise InvalidInput(
            f"bind {bind.source}: podman cannot skip a missing source (required = false)",
            policy.path,
            "bind",
        )
    return f"{bind.source}:{bind.target}" + (":ro" if bind.readonly else "")


def render_containers_conf(policy: Policy, binds: Sequence[Bind]) -> bytes:
    doc: Dict[str, object] = {"containers": {"volumes": [_volume(policy, b) for b in binds]}}
    if policy.runtime.storage is not None:
        # rootless Podman reads the site's image stores only from a file this variable names
        doc["engine"] = {"env": [STORAGE_ENV]}
    return header(policy) + tomli_w.dumps(doc).encode()
