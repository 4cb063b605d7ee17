"""What a node of each class needs for its rendered files to hold (the manifest's
`requirements.classes`), read by `node doctor`.

Per class: the sysctls of that class's sysctl file, whether setuid is allowed and user
namespaces are on, the site image stores (which must exist, writable by nobody but their owner,
with their lock files), the directories the ECL names and `limit container paths` (Apptainer
refuses every container when one is missing), and the read-only binds with the runtimes that
cannot make them recursively read-only (Podman's `ro`, Enroot's `rbind,ro`: a mount below the
source stays writable), so doctor names every such bind whose source has submounts.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List

from hpcpolicy.policy import ecl
from hpcpolicy.policy.model import Policy
from hpcpolicy.render import sysctl

# Runtimes whose read-only binds leave submounts writable (Podman 4.3 refuses `rro`).
NOT_RECURSIVE_RO = ("podman", "enroot")


def readonly_binds(policy: Policy, node_class: str) -> List[Dict[str, Any]]:
    """[{source, target, runtimes}] of read-only binds whose runtimes cannot hold submounts."""
    out = []
    for b in policy.binds:
        if not b.readonly or (b.classes and node_class not in b.classes):
            continue
        weak = [r for r in b.runtimes if r in NOT_RECURSIVE_RO]
        if weak:
            out.append({"source": b.source, "target": b.target, "runtimes": weak})
    return out


def class_needs(policy: Policy, node_class: str) -> Dict[str, Any]:
    """The requirements of one class."""
    cls_policy = policy.for_class(node_class)
    rt = cls_policy.runtime
    settings = sysctl.settings(cls_policy)
    limits = rt.apptainer_limits
    ecl_dirs: List[str] = []
    if limits is not None and limits.ecl_path is not None and limits.ecl_path in policy.inputs:
        ecl_dirs = ecl.check(policy.inputs[limits.ecl_path])[1]
    return {
        "sysctls": {key: str(value) for key, value, _ in settings},
        "sysctls_optional": [key for key, _, optional in settings if optional],
        "setuid_allowed": rt.setuid,
        "user_namespaces": rt.user_namespaces,
        "image_stores": list(rt.storage.additional_image_stores) if rt.storage else [],
        "storage_driver": rt.storage.driver if rt.storage else None,
        "ecl_dirs": ecl_dirs,
        "container_paths": list(limits.container_paths or ()) if limits else [],
        "readonly_binds": readonly_binds(policy, node_class),
    }


def all_class_needs(policy: Policy, classes: Iterable[str]) -> Dict[str, Dict[str, Any]]:
    return {name: class_needs(policy, name) for name in sorted(classes)}
