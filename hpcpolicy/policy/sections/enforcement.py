"""[runtime.storage] and [runtime.apptainer_limits]: the levers that hold where users run images.

* A site image store (`additional_image_stores`) is read-only for users: rootless Podman runs
  what is in it without a pull. It must never be somewhere a user can write (below /tmp,
  /var/tmp, /dev/shm, /run/user or /home), or a user could put any image there for everybody.
  `rootless_storage_path` is each user's own writable storage: it must name a per-user path
  (`$UID`, `$USER` or `$HOME`, which containers/storage expands).
* Apptainer's and SingularityCE's `limit container *` / `allow container *` directives and the
  ECL are typed here; each directive must be known to the declared oldest release, else nodes
  running it would ignore it silently (an `allow container` kind left out is rendered `no`, so
  a release without that directive cannot honour it either).

Per class: `[[node_class]]` may carry a `runtime` table with `setuid`, `user_namespaces`,
`storage` and `apptainer_limits`, each replacing the site's value for that class.
"""

from __future__ import annotations

import os
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from hpcpolicy.errors import ProblemCollector
from hpcpolicy.policy import directives, paths
from hpcpolicy.policy.model import ALLOW_CONTAINER, ApptainerLimits, Runtime, Site, Storage
from hpcpolicy.policy.schema import (
    INVALID,
    Field,
    array,
    boolean,
    one_of,
    read_table,
    show,
    string,
)
from hpcpolicy.policy.sections.common import account, relative_rule

# Trees users can write to on every Linux node (homes by their usual parent).
USER_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/run/user", "/home")
DRIVERS = ("overlay", "vfs", "btrfs", "zfs")
ROOTLESS_VARS = ("$UID", "$USER", "$HOME")
_VAR_RE = re.compile(r"\$(?:UID|USER|HOME)(?![A-Za-z0-9_])")

_S = Storage()


def _store_rule(value: str) -> Optional[str]:
    bad = paths.check_path(value)
    if bad:
        return bad
    if value == "/":
        return "must not be / (a store is a directory of its own)"
    for tree in USER_WRITABLE:
        if paths.is_below(value, tree):
            return (f"must not be below {tree}: users can write there, and a read-only image "
                    "store must be writable by nobody but its owner")
    return None


def _rootless_rule(value: str) -> Optional[str]:
    """Absolute (or starting with $HOME), per user, otherwise a plain path."""
    if "$HOME" in value and not value.startswith("$HOME"):
        return "may use $HOME only at its start"
    if not _VAR_RE.search(value):
        return ("must name a per-user path with $UID, $USER or $HOME (every user would share "
                "one writable storage otherwise)")
    if "$" in _VAR_RE.sub("", value):
        return "may use only the variables $UID, $USER and $HOME"
    if value.startswith("$HOME"):
        value = "/home/x" + value[len("$HOME"):]
    return paths.check_path(_VAR_RE.sub("x", value))


def _path_rule(value: str) -> Optional[str]:
    return paths.check_path(value)


STORAGE_FIELDS = {
    "driver": Field(one_of(*DRIVERS), _S.driver),
    "graphroot": Field(string(_path_rule), _S.graphroot),
    "runroot": Field(string(_path_rule), _S.runroot),
    "rootless_storage_path": Field(string(_rootless_rule), None),
    "additional_image_stores": Field(array(string(_store_rule), unique=True), ()),
    "mount_program": Field(string(_path_rule), None),
}

LIMITS_FIELDS = {
    "container_paths": Field(array(string(_path_rule), unique=True), None),
    "container_groups": Field(array(account("group name"), unique=True), None),
    "container_owners": Field(array(account("user name"), unique=True), None),
    "allow_container": Field(array(one_of(*ALLOW_CONTAINER), unique=True), None),
    "ecl": Field(string(relative_rule), None),
    "ecl_keyring": Field(string(relative_rule), None),
}


def _overlaps(a: str, b: str) -> bool:
    return paths.is_below(a, b) or paths.is_below(b, a)


def _check_storage(st: Storage, where: str, out: ProblemCollector) -> bool:
    ok = True
    if st.mount_program is not None and st.driver != "overlay":
        out.add(f"{where}.mount_program", f"is an overlay option; driver is {show(st.driver)}")
        ok = False
    own = [("graphroot", st.graphroot), ("runroot", st.runroot)]
    if st.rootless_storage_path and st.rootless_storage_path.startswith("/"):
        own.append(("rootless_storage_path", _VAR_RE.split(st.rootless_storage_path)[0]
                     .rstrip("/") or "/"))
    for i, store in enumerate(st.additional_image_stores, 1):
        for key, mine in own:
            if mine != "/" and _overlaps(store, mine):
                out.add(f"{where}.additional_image_stores[{i}]",
                        f"overlaps {key} {show(mine)}: a read-only store must be a tree of its "
                        "own, apart from writable storage")
                ok = False
    return ok


def parse_storage(raw: Any, where: str, out: ProblemCollector) -> Any:
    values = read_table(raw, where, STORAGE_FIELDS, out)
    if values is None:
        return INVALID
    st = Storage(**values)
    return st if _check_storage(st, where, out) else INVALID


def limits_checker(base_dir: str) -> Any:
    """[runtime.apptainer_limits] with `ecl` / `ecl_keyring` resolved against the site file."""

    def check(value: Any, where: str, out: ProblemCollector) -> Any:
        values = read_table(value, where, LIMITS_FIELDS, out)
        if values is None:
            return INVALID
        resolved: Dict[str, Any] = {}
        for key in ("ecl", "ecl_keyring"):
            given = values[key]
            resolved[f"{key}_path"] = (os.path.normpath(os.path.join(base_dir, given))
                                       if given is not None else None)
        limits = ApptainerLimits(**values, **resolved)
        if limits.ecl_keyring is not None and limits.ecl is None:
            out.add(f"{where}.ecl_keyring", "needs ecl (the keyring is what the ECL checks "
                    "signatures against)")
            return INVALID
        return limits

    return check


# --------------------------------------------------------------------------- per class

_CLASS_RUNTIME_HINTS = {
    key: "a node class may replace only setuid, user_namespaces, storage and apptainer_limits"
    for key in ("fakeroot", "max_user_namespaces", "max_net_namespaces", "mount_home",
                "mount_tmp", "mount_hostfs", "default_binds", "apptainer", "singularity",
                "enroot")
}


def class_runtime_fields(base_dir: str) -> Dict[str, Field]:
    return {
        "setuid": Field(boolean(), None),
        "user_namespaces": Field(boolean(), None),
        "storage": Field(parse_storage, None),
        "apptainer_limits": Field(limits_checker(base_dir), None),
    }


def class_runtime_checker(base_dir: str) -> Any:
    """A `[[node_class]]` runtime table -> the (key, value) pairs it sets, in key order."""
    fields = class_runtime_fields(base_dir)

    def check(value: Any, where: str, out: ProblemCollector) -> Any:
        values = read_table(value, where, fields, out, _CLASS_RUNTIME_HINTS)
        if values is None:
            return INVALID
        return tuple((k, v) for k, v in values.items() if k in value)

    return check


# --------------------------------------------------------------------------- releases

_KIND_DIRECTIVE = {kind: f"allow container {kind}" for kind in ALLOW_CONTAINER}
_LIMIT_DIRECTIVES = {
    "container_paths": "limit container paths",
    "container_groups": "limit container groups",
    "container_owners": "limit container owners",
}


def limit_directives(limits: ApptainerLimits) -> List[Tuple[str, List[str]]]:
    """(directive, values) lines the limits render, in directive-table order of keys."""
    out: List[Tuple[str, List[str]]] = []
    for key, directive in _LIMIT_DIRECTIVES.items():
        values = getattr(limits, key)
        if values:
            out.append((directive, list(values)))
    if limits.allow_container is not None:
        for kind in ALLOW_CONTAINER:
            out.append((_KIND_DIRECTIVE[kind], ["yes" if kind in limits.allow_container
                                                else "no"]))
    return out


def _dialects(site: Site) -> List[Tuple[str, str]]:
    return [(d, getattr(site, f"{d}_version")) for d in ("apptainer", "singularity")
            if d in site.runtimes]


def check_limit_releases(limits: ApptainerLimits, site: Site, where: str,
                         out: ProblemCollector) -> bool:
    """Every directive the limits render is known to each declared oldest release."""
    ok = True
    for dialect, version in _dialects(site):
        try:
            ver = directives.parse_version(dialect, version)
        except ValueError:
            continue  # [site] reports the version itself
        product = directives.PRODUCT[dialect]
        for key, directive in _LIMIT_DIRECTIVES.items():
            if getattr(limits, key) and directives.span_at(dialect, directive, ver) is None:
                out.add(f"{where}.{key}", f"{product} {directives.vtext(ver)} has no "
                        f"{show(directive)} directive: it would ignore the limit")
                ok = False
        if limits.allow_container is None:
            continue
        for kind in ALLOW_CONTAINER:
            directive = _KIND_DIRECTIVE[kind]
            if directives.span_at(dialect, directive, ver) is not None:
                continue
            first = directives.TABLES[dialect][directive][0].since
            need = (f"needs {product} >= {directives.vtext(first)} ({show(directive)}) but "
                    f"{dialect}_version is {directives.vtext(ver)}")
            if kind in limits.allow_container:
                index = limits.allow_container.index(kind) + 1
                out.add(f"{where}.allow_container[{index}]", f"{show(kind)} {need}")
            else:
                out.add(f"{where}.allow_container", f"cannot turn {show(kind)} images off: "
                        f"that {need}")
            ok = False
    return ok


def limit_directive_names() -> Sequence[str]:
    return tuple(_LIMIT_DIRECTIVES.values()) + tuple(_KIND_DIRECTIVE.values())


def check_class_runtime(rt: Runtime, where: str, out: ProblemCollector) -> bool:
    """The typed rules of [runtime] that a class's replacement values can break."""
    if rt.user_namespaces and rt.max_user_namespaces == 0:
        out.add(f"{where}.user_namespaces", "true, but runtime.max_user_namespaces = 0 turns "
                "user namespaces off")
        return False
    return True
