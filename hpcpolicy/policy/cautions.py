"""Warnings about a valid site file: things it may mean on purpose but a reviewer should see.

`validate` and `apply` print them (text) and list them (`warnings` in JSON); they never change
the exit code. Pure: the policy alone.
"""

from __future__ import annotations

from typing import List, Optional

from hpcpolicy.errors import Problem
from hpcpolicy.policy.model import Policy
from hpcpolicy.policy.paths import is_below, non_ascii_message
from hpcpolicy.policy.spellings import bypassable_denies

PREFIX = "warning: "

# Bind sources that hand every container the host's secrets or its control surfaces.
_EXACT = {
    "/": "the host's whole file system",
    "/etc": "the host's configuration, keys included",
    "/var": "the host's state, spools and sockets",
    "/run": "the host's runtime sockets",
    "/var/run": "the host's runtime sockets",
}
_TREES = {
    "/etc/shadow": "password hashes",
    "/etc/gshadow": "group password hashes",
    "/etc/sudoers": "sudo rules",
    "/etc/sudoers.d": "sudo rules",
    "/etc/ssh": "the host's SSH keys",
    "/etc/munge": "the cluster's MUNGE key",
    "/etc/hpcpolicy": "hpcpolicy's signing key and LDAP password",
    "/root": "root's home",
    "/boot": "the kernel and boot loader",
    "/var/lib/sss": "SSSD's cached credentials",
    "/dev": "the host's devices",
    "/proc": "the host's processes",
    "/sys": "the host's kernel interfaces",
}


def dangerous_source(source: str) -> Optional[str]:
    """What a bind source exposes that no container should see, or None."""
    if source in _EXACT:
        return _EXACT[source]
    for tree, what in _TREES.items():
        if is_below(source, tree):
            return what
    if source.endswith(".sock"):
        return "a host daemon's control socket"
    return None


def cautions(policy: Policy) -> List[Problem]:
    """Every warning for `policy`, in file order of the sections."""
    out: List[Problem] = []

    def add(path: str, message: str) -> None:
        out.append(Problem(policy.path, path, PREFIX + message))

    if 0 < policy.directory.min_uid < 1000:
        add("directory.min_uid", f"{policy.directory.min_uid} makes system accounts (daemons, "
            "below 1000 on most distributions) eligible for sub-IDs")
    for i, bind in enumerate(policy.binds, 1):
        what = dangerous_source(bind.source)
        if what:
            add(f"bind[{i}].source", f"{bind.source} puts {what} into every container")
        odd = non_ascii_message(bind.source)
        if odd:
            add(f"bind[{i}].source", odd)
    for i, collection in enumerate(policy.images.collections, 1):
        odd = non_ascii_message(collection.path)
        if odd:
            add(f"images.collection[{i}].path", odd)
    for bypass in bypassable_denies(policy.images.rules, policy.images.default):
        add(f"images.rule[{bypass.rule.index}]", bypass.message())
    for rule in policy.images.rules:
        host, _, rest = rule.scope.partition("/")
        if host == "docker.io" and rest not in ("", "library") and "/" not in rest \
                and not rule.alias_of:
            add(f"images.rule[{rule.index}].scope",
                f"{rule.scope} is the namespace of the Docker Hub account {rest!r} "
                f"({rule.scope}/...), not the official image docker.io/library/{rest}")
    for where, storage in policy.storages():
        if storage.additional_image_stores and storage.rootless_storage_path is None:
            add(f"{where}.rootless_storage_path", "not set: rootless Podman keeps each user's "
                "storage in $HOME/.local/share/containers/storage, often on a network file "
                "system where overlay fails; name a node-local path with $UID")
    return out


