"""`manifest.json`: what a generation holds, and what a node needs for it to work.

Shape (format 1)::

    {"format": 1, "generation": "000042-3f2a9c1b", "number": 42, "tree_sha256": "...",
     "created": "2026-...Z", "operator": "alice", "host": "admin1", "site": "cluster-a",
     "policy_sha256": "...", "action": "apply" | "rollback" | ..., "previous": name | null,
     "classes": {"default": {"tree": "tree", "files": [{"path", "sha256", "size", "mode"}]},
                 "gpu": {"tree": "class/gpu/tree", "files": [...]}},
     "files": [...same as classes.default.files...],
     "requirements": {"bind_sources": {"default": [...], "gpu": [...]},
                      "sysctls": {"user.max_user_namespaces": "15000"},
                      "sysctls_optional": ["kernel.unprivileged_userns_clone"],
                      "setuid_allowed": false, "runtimes": [...], "subid_enabled": true,
                      "classes": {"default": {"sysctls", "sysctls_optional", "setuid_allowed",
                                              "user_namespaces", "image_stores",
                                              "storage_driver", "ecl_dirs", "container_paths",
                                              "readonly_binds"}, "gpu": {...}}}}

The top-level requirement keys are the default class's (what nodes before per-class
requirements read); `requirements.classes` holds each class's own (`render.needs`).

Also `min_node_version` (the oldest hpcpolicy a node may run to install it), `deploy_owner`
(the site's, so that `node doctor` can say when a node was told another) and `signed`.

`mode` is an octal string ("0644"): the manifest is read by people too. Paths are node paths
without a leading slash; `load_manifest` refuses any path that could leave the tree, and
`check_managed` any path hpcpolicy does not manage or a file over its size bound.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from hpcpolicy.errors import VerificationError
from hpcpolicy.fsutil import read_bytes_nofollow
from hpcpolicy.generation.naming import (
    CLASS_RE,
    DEFAULT_CLASS,
    MANIFEST,
    parse_name,
    tree_dir,
    trees_sha256,
)

FORMAT = 1
FILE_MODE = 0o644
# The oldest node that installs what this publisher writes: raise it whenever a manifest gains
# something an older node would misread or ignore to the node's harm.
MIN_NODE_VERSION = "0.1.0"
MANIFEST_LIMIT = 64 << 20  # bytes; a manifest lists a few files per class

_MIB = 1 << 20
# Every path a node installs, with the largest size it accepts (a verified generation can
# still only replace these: a signing key or a deploy-owner account is not root on every node).
MANAGED_FILES: Dict[str, int] = {
    "etc/subuid": 64 * _MIB,
    "etc/subgid": 64 * _MIB,
    **{path: _MIB for path in (
        "etc/apptainer/apptainer.conf",
        "etc/apptainer/ecl.toml",
        "etc/apptainer/global-pgp-public",
        "etc/singularity/singularity.conf",
        "etc/singularity/ecl.toml",
        "etc/singularity/global-pgp-public",
        "etc/containers/policy.json",
        "etc/containers/registries.conf",
        "etc/containers/containers.conf",
        "etc/containers/storage.conf",
        "etc/enroot/enroot.conf",
        "etc/enroot/mounts.d/90-hpcpolicy.fstab",
        "etc/sysctl.d/90-hpcpolicy.conf",
    )},
}
# Directories whose files (one level, no hidden names) are managed: (name suffix, size bound).
MANAGED_DIRS: Dict[str, Tuple[str, int]] = {
    "etc/containers/registries.d": (".yaml", _MIB),
    "etc/containers/hpcpolicy-keys": ("", _MIB),
}
ACCESS = "access.json"  # beside the manifest: who may run what (never installed on a node)
ACCESS_MODE = 0o640  # it lists group members
SYSCTL_FILE = "etc/sysctl.d/90-hpcpolicy.conf"
_TOP_KEYS = {"format", "generation", "number", "created", "operator", "host", "site",
             "policy_sha256", "classes", "files", "requirements"}


@dataclass(frozen=True)
class FileEntry:
    """One file of a class tree as the manifest lists it."""

    path: str
    sha256: str
    size: int
    mode: int

    def as_dict(self) -> Dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size,
                "mode": f"{self.mode:04o}"}


def file_entries(tree: Mapping[str, bytes]) -> List[Dict[str, Any]]:
    """Manifest entries of one tree, sorted by path."""
    return [
        FileEntry(path, hashlib.sha256(data).hexdigest(), len(data), FILE_MODE).as_dict()
        for path, data in sorted(tree.items())
    ]


def _sysctl_lines(data: bytes) -> List[Tuple[str, str, bool]]:
    """(key, value, optional) of `key = value` lines; `-key` is optional (sysctl.d(5))."""
    out: List[Tuple[str, str, bool]] = []
    for raw in data.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        out.append((key.lstrip("-").replace("/", "."), value, key.startswith("-")))
    return out


def parse_sysctl(data: bytes) -> Dict[str, str]:
    """{key: value} of a sysctl.d file (comments and blanks skipped, `-` dropped)."""
    return {key: value for key, value, _ in _sysctl_lines(data)}


def optional_sysctls(data: bytes) -> List[str]:
    """Keys written `-key`: a kernel without them is fine (node doctor must not fail)."""
    return [key for key, _, optional in _sysctl_lines(data) if optional]


def build_manifest(
    *,
    name: str,
    created: str,
    operator: str,
    host: str,
    site: str,
    policy_sha256: str,
    trees: Mapping[str, Mapping[str, bytes]],
    requirements: Mapping[str, Any],
    extra: Optional[Mapping[str, Any]] = None,
    deploy_owner: str = "root",
    signed: bool = False,
    access: Optional[bytes] = None,
) -> Dict[str, Any]:
    """The manifest of generation `name` holding `trees` (node class -> {path: bytes}), and
    `access.json` when given (listed apart from the trees: nodes never install it)."""
    parsed = parse_name(name)
    if parsed is None:
        raise ValueError(f"not a generation name: {name!r}")
    classes = {c: {"tree": tree_dir(c), "files": file_entries(trees[c])} for c in sorted(trees)}
    doc: Dict[str, Any] = dict(extra or {})
    doc.update({
        "format": FORMAT,
        "generation": name,
        "number": parsed[0],
        "tree_sha256": trees_sha256(trees),
        "created": created,
        "operator": operator,
        "host": host,
        "site": site,
        "policy_sha256": policy_sha256,
        "classes": classes,
        "files": classes.get(DEFAULT_CLASS, {"files": []})["files"],
        "requirements": dict(requirements),
        "min_node_version": MIN_NODE_VERSION,
        "deploy_owner": deploy_owner,
        "signed": signed,
    })
    if access is not None:
        doc["access"] = FileEntry(ACCESS, hashlib.sha256(access).hexdigest(), len(access),
                                  ACCESS_MODE).as_dict()
    return doc


def access_entry(manifest: Mapping[str, Any]) -> Optional[FileEntry]:
    """The manifest's `access.json` entry (None: published before access records existed)."""
    item = manifest.get("access")
    if item is None:
        return None
    (entry,) = _check_files("", "access", [item])
    return entry


def dump_manifest(doc: Mapping[str, Any]) -> bytes:
    """Stable bytes (sorted keys) so a signature covers a canonical text."""
    return (json.dumps(doc, sort_keys=True, indent=1) + "\n").encode()


def size_bound(path: str) -> Optional[int]:
    """The size bound of a node path hpcpolicy manages; None when it manages no such path."""
    if path in MANAGED_FILES:
        return MANAGED_FILES[path]
    directory, _, name = path.rpartition("/")
    if directory not in MANAGED_DIRS or not name or name.startswith("."):
        return None
    suffix, bound = MANAGED_DIRS[directory]
    return bound if name.endswith(suffix) and len(name) > len(suffix) else None


def check_managed(gen_dir: str, node_class: str, entries: List[FileEntry]) -> None:
    """Refuse a class that names a path hpcpolicy does not manage, or a file over its bound."""
    for entry in entries:
        bound = size_bound(entry.path)
        if bound is None:
            raise _fail(gen_dir, f"classes.{node_class}.files: {entry.path}: not a file "
                                 "hpcpolicy manages; refusing the generation")
        if entry.size > bound:
            raise _fail(gen_dir, f"classes.{node_class}.files: {entry.path}: {entry.size} "
                                 f"bytes, over the {bound} byte bound for this file")


def _version(text: str) -> Tuple[int, ...]:
    """'1.2.3' -> (1, 2, 3); a suffix after the digits of a part is ignored ('0.2.0rc1')."""
    out = []
    for part in text.split("."):
        digits = ""
        for char in part:
            if not char.isdigit():
                break
            digits += char
        if not digits:
            raise ValueError(text)
        out.append(int(digits))
    return tuple(out)


def check_node_version(doc: Any, gen_dir: str, running: str) -> None:
    """Refuse a generation that needs a newer hpcpolicy than this node runs."""
    if not isinstance(doc, dict) or "min_node_version" not in doc:
        return  # written before the key existed: any node reads it
    wanted = doc["min_node_version"]
    try:
        too_old = _version(running) < _version(str(wanted))
    except ValueError:
        raise _fail(gen_dir, f"min_node_version: {wanted!r} is not a version") from None
    if too_old:
        raise _fail(gen_dir, f"needs hpcpolicy {wanted} or later on the node, this node runs "
                             f"{running}: upgrade hpcpolicy on this node (nodes first, then "
                             "the publisher)")


def _fail(gen_dir: str, why: str) -> VerificationError:
    return VerificationError(f"{os.path.join(gen_dir, MANIFEST)}: {why}")


def safe_node_path(path: Any) -> bool:
    """A relative, normalised path with no `..`, empty, `.` or control-character parts."""
    if not isinstance(path, str) or not path or path.startswith("/"):
        return False
    parts = path.split("/")
    return all(p not in ("", ".", "..") and p.isprintable() for p in parts)


def _check_files(gen_dir: str, where: str, files: Any) -> List[FileEntry]:
    if not isinstance(files, list):
        raise _fail(gen_dir, f"{where}: not a list")
    out: List[FileEntry] = []
    for i, item in enumerate(files, 1):
        ok = isinstance(item, dict) and set(item) == {"path", "sha256", "size", "mode"}
        if not ok or not safe_node_path(item["path"]):
            raise _fail(gen_dir, f"{where}[{i}]: malformed or unsafe file entry")
        sha, size, mode = item["sha256"], item["size"], item["mode"]
        good = isinstance(sha, str) and len(sha) == 64 and isinstance(size, int) and size >= 0
        if not good or not isinstance(mode, str) or not mode.isdigit():
            raise _fail(gen_dir, f"{where}[{i}]: bad sha256, size or mode")
        out.append(FileEntry(item["path"], sha, size, int(mode, 8)))
    if len({f.path for f in out}) != len(out):
        raise _fail(gen_dir, f"{where}: a path is listed twice")
    return out


def class_files(manifest: Mapping[str, Any], node_class: str = DEFAULT_CLASS) -> List[FileEntry]:
    """Typed file entries of one class of an already loaded manifest."""
    return _check_files("", f"classes.{node_class}.files",
                        manifest["classes"][node_class]["files"])


def check_manifest(doc: Any, gen_dir: str) -> Dict[str, Any]:
    """Validate the shape of a parsed manifest; VerificationError naming what is wrong."""
    if not isinstance(doc, dict) or not set(doc) >= _TOP_KEYS:
        raise _fail(gen_dir, "not a hpcpolicy manifest (missing keys)")
    if doc["format"] != FORMAT:
        raise _fail(gen_dir, f"unsupported format {doc['format']!r}")
    if not isinstance(doc["generation"], str) or parse_name(doc["generation"]) is None:
        raise _fail(gen_dir, "bad generation name")
    classes = doc["classes"]
    if not isinstance(classes, dict) or DEFAULT_CLASS not in classes:
        raise _fail(gen_dir, "classes: the default class is missing")
    for name, body in classes.items():
        if not isinstance(name, str) or not CLASS_RE.match(name) or not isinstance(body, dict):
            raise _fail(gen_dir, f"classes: bad class {name!r}")
        if body.get("tree") != tree_dir(name):
            raise _fail(gen_dir, f"classes.{name}.tree: must be {tree_dir(name)!r}")
        _check_files(gen_dir, f"classes.{name}.files", body.get("files"))
    if doc["files"] != classes[DEFAULT_CLASS]["files"]:
        raise _fail(gen_dir, "files: differs from classes.default.files")
    if not isinstance(doc["requirements"], dict):
        raise _fail(gen_dir, "requirements: not an object")
    if "access" in doc:
        (entry,) = _check_files(gen_dir, "access", [doc["access"]])
        if entry.path != ACCESS or entry.mode != ACCESS_MODE:
            raise _fail(gen_dir, f"access: must name {ACCESS} with mode {ACCESS_MODE:04o}")
    return doc


def parse_manifest(data: bytes, gen_dir: str) -> Dict[str, Any]:
    """Parse and validate manifest bytes already read (e.g. the very bytes a signature covers).

    The node version comes first: a newer format must say "upgrade", not "malformed".
    """
    from hpcpolicy import __version__

    try:
        doc = json.loads(data)
    except ValueError as err:
        raise _fail(gen_dir, f"not valid JSON: {err}") from None
    check_node_version(doc, gen_dir, __version__)
    return check_manifest(doc, gen_dir)


def read_manifest_bytes(gen_dir: str) -> bytes:
    """The manifest's bytes, refusing a symlink in its place."""
    path = os.path.join(gen_dir, MANIFEST)
    try:
        data = read_bytes_nofollow(path, MANIFEST_LIMIT + 1)
    except OSError as err:
        raise VerificationError(f"{path}: cannot read: {err.strerror}") from None
    if len(data) > MANIFEST_LIMIT:
        raise VerificationError(f"{path}: larger than {MANIFEST_LIMIT} bytes; not a manifest")
    return data


def load_manifest(gen_dir: str) -> Dict[str, Any]:
    """Read and validate `GEN_DIR/manifest.json` (shape only; see verify for the files)."""
    return parse_manifest(read_manifest_bytes(gen_dir), gen_dir)
