"""What `validate` can see of the enforcement settings on the host it runs on.

* A site image store that exists here and is writable by anyone but its root owner (or sits
  below a directory that is) is an error: a user could put any image there for everybody.
* With the directory read (not `--offline`), a store below the home directory of a user
  (uid >= min_uid; the passwd file's home field or LDAP's home attribute) is an error,
  wherever that home is.
* A read-only bind whose source has mounts below it here is a warning: those mounts stay
  writable in Podman and Enroot containers (a bind is read-only on its top mount only).

The host may not be a node (an admin host without the shared storage): what is not here is
not judged; `node doctor` checks both on every node. `validate_here` is the call behind
`hpcpolicy validate`: the site file and its directory (`deploy.validate`), then this host.
"""

from __future__ import annotations

import os
import stat
from typing import Dict, List, Optional, Sequence, Tuple

from hpcpolicy.deploy.validate import Validation, validate_site
from hpcpolicy.directory.model import Snapshot
from hpcpolicy.errors import InvalidInput, Problem, printable
from hpcpolicy.node import mountinfo
from hpcpolicy.node.enforce_checks import weak_readonly_binds
from hpcpolicy.policy.model import Policy
from hpcpolicy.render.needs import readonly_binds


def _writable(path: str, min_uid: int) -> Optional[str]:
    """Why `path` or an existing parent lets someone but root change it (None: it does not)."""
    current = path
    while True:
        try:
            st = os.lstat(current)
        except OSError:
            st = None
        if st is not None:
            mode = stat.S_IMODE(st.st_mode)
            sticky_root = st.st_mode & stat.S_ISVTX and st.st_uid == 0 and current != path
            if mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky_root:
                return f"{current} has mode {mode:04o} on this host"
            if st.st_uid >= min_uid:
                return f"{current} is owned by uid {st.st_uid} on this host"
        if current == "/":
            return None
        current = os.path.dirname(current)


def store_problems(policy: Policy) -> List[Problem]:
    out = []
    for where, storage in policy.storages():
        for i, store in enumerate(storage.additional_image_stores, 1):
            if not os.path.lexists(store):
                continue
            why = _writable(store, policy.directory.min_uid)
            if why:
                out.append(Problem(policy.path, f"{where}.additional_image_stores[{i}]",
                                   f"users can write there ({why}): a read-only image store "
                                   "must be writable by nobody but root"))
    return out


def bind_warnings(policy: Policy, points: Optional[Sequence[str]] = None) -> List[str]:
    points = mountinfo.read_mount_points() if points is None else points
    if points is None:
        return []
    index = {b.source: i for i, b in enumerate(policy.binds, 1) if b.readonly}
    found: Dict[str, Tuple[List[str], List[str]]] = {}
    for node_class in policy.class_names():
        for weak in weak_readonly_binds(readonly_binds(policy, node_class), points):
            found.setdefault(weak["source"], (weak["submounts"], []))[1].append(weak["runtime"])
    return [f"{policy.path}: bind[{index[src]}].readonly: warning: {src} has mounts below it on "
            f"this host ({', '.join(subs[:5])}): they stay writable in "
            f"{', '.join(sorted(set(rts)))} containers (a bind is read-only on its top mount "
            "only); add a readonly [[bind]] for each, or unmount them"
            for src, (subs, rts) in found.items()]


def _homes(policy: Policy, snapshot: Snapshot) -> List[Tuple[str, str]]:
    """(user, home) of every user the directory read holds with uid >= min_uid, whichever
    source (passwd file or LDAP) gave the home; users without a home are skipped."""
    out = []
    for user in snapshot.users.values():
        home = user.home
        if home is None or user.uid < policy.directory.min_uid:
            continue
        home = home.rstrip("/")
        if home.startswith("/") and home not in ("/nonexistent", "/dev/null"):
            out.append((user.name, home))
    return out


def home_problems(policy: Policy, snapshot: Snapshot) -> List[Problem]:
    """Stores below a user's home directory (the home's owner could write there)."""
    stores = [(f"{where}.additional_image_stores[{i}]", store)
              for where, storage in policy.storages()
              for i, store in enumerate(storage.additional_image_stores, 1)]
    if not stores:
        return []
    out = []
    homes = _homes(policy, snapshot)
    for key, store in stores:
        for user, home in homes:
            if store == home or store.startswith(home + "/"):
                out.append(Problem(policy.path, key,
                                   f"is below the home of {user} ({printable(home, 200)}): a "
                                   "read-only image store must be writable by nobody but root"))
                break
    return out


def validate_here(site: str, offline: bool = False) -> Validation:
    """`validate_site`, then what this host shows of the site's stores (and, with the directory
    read, the homes they may sit in): InvalidInput for every such problem at once; the binds'
    weak spots join the warnings."""
    done = validate_site(site, offline)
    local = store_problems(done.policy)
    if done.snapshot is not None:
        local += home_problems(done.policy, done.snapshot)
    if local:
        raise InvalidInput(local)
    done.warnings += bind_warnings(done.policy)
    return done
