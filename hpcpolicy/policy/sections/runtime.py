"""[runtime]: typed setuid-free settings and the per-launcher passthrough tables.

Passthrough tables keep file order and are checked against the directive table of the declared
oldest release (`policy.directives`, which knows what each release parses). A directive that a
typed key already renders may not be repeated there: two sources for one line is a review trap.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Dict, List, Optional, Tuple

from hpcpolicy.errors import ProblemCollector
from hpcpolicy.policy import directives
from hpcpolicy.policy.model import ConfValue, Runtime, Site
from hpcpolicy.policy.schema import (
    INVALID,
    Field,
    boolean,
    integer,
    key_path,
    read_table,
    type_name,
)
from hpcpolicy.policy.sections import enforcement

INT_MAX = 2**31 - 1  # sysctl counts are C ints


def _passthrough(value: Any, where: str, out: ProblemCollector) -> Any:
    """Any key; TOML scalars or arrays of strings as values; kept in file order."""
    if not isinstance(value, dict):
        out.add(where, f"expected a table, got {type_name(value)}")
        return INVALID
    pairs: List[Tuple[str, Any]] = []
    for name, item in value.items():
        if isinstance(item, list) and all(isinstance(v, str) for v in item):
            item = tuple(item)
        elif not isinstance(item, (str, int, bool)):
            out.add(key_path(where, name), "expected a string, integer, boolean or array of "
                    f"strings, got {type_name(item)}")
            return INVALID
        pairs.append((name, item))
    return tuple(pairs)


_R = Runtime()


def fields(base_dir: str) -> Dict[str, Field]:
    """The keys of [runtime]; `base_dir` anchors the ECL files of apptainer_limits."""
    return {**_FIELDS, "storage": Field(enforcement.parse_storage, None),
            "apptainer_limits": Field(enforcement.limits_checker(base_dir), None)}


_FIELDS = {
    "setuid": Field(boolean(), _R.setuid),
    "user_namespaces": Field(boolean(), _R.user_namespaces),
    "max_user_namespaces": Field(integer(0, INT_MAX), _R.max_user_namespaces),
    "max_net_namespaces": Field(integer(0, INT_MAX), None),
    "fakeroot": Field(boolean(), _R.fakeroot),
    "mount_home": Field(boolean(), _R.mount_home),
    "mount_tmp": Field(boolean(), _R.mount_tmp),
    "mount_hostfs": Field(boolean(), _R.mount_hostfs),
    "default_binds": Field(boolean(), _R.default_binds),
    "apptainer": Field(_passthrough, ()),
    "singularity": Field(_passthrough, ()),
    "enroot": Field(_passthrough, ()),
}
FIELDS = fields("/")


def _check_typed(rt: Runtime, out: ProblemCollector) -> bool:
    if rt.fakeroot and not rt.user_namespaces:
        out.add("runtime.fakeroot", "true needs runtime.user_namespaces = true (--fakeroot and "
                "rootless Podman run in a user namespace)")
        return False
    if rt.user_namespaces and rt.max_user_namespaces == 0:
        out.add("runtime.max_user_namespaces", "0 turns user namespaces off although "
                "runtime.user_namespaces = true")
        return False
    return True


def parse(raw: Any, out: ProblemCollector, base_dir: str = "/") -> Optional[Runtime]:
    values = read_table(raw, "runtime", fields(base_dir), out)
    if values is None:
        return None
    runtime = Runtime(**values)
    return runtime if _check_typed(runtime, out) else None


_OWNER = {directive: key for key, directive in directives.TYPED_KEYS.items()
          if key not in ("binds", "default_binds")}


def _check_dialect(dialect: str, pairs: Tuple[Tuple[str, ConfValue], ...], version: str,
                   out: ProblemCollector, typed_limits: bool = False) -> bool:
    ok = True
    for name, value in pairs:
        where = key_path(f"runtime.{dialect}", name)
        if name in _OWNER:
            out.add(where, f"is set by the typed key runtime.{_OWNER[name]}: set it there only")
            ok = False
            continue
        if typed_limits and name in enforcement.limit_directive_names():
            out.add(where, "is set by runtime.apptainer_limits (here or in a node class): set "
                    "it there only")
            ok = False
            continue
        problem = directives.check_passthrough(dialect, name, value, version)
        if problem is not None:
            out.add(where, problem)
            ok = False
    return ok


def _check_enroot(pairs: Tuple[Tuple[str, Any], ...], out: ProblemCollector) -> Optional[Any]:
    checked: List[Tuple[str, str]] = []
    for name, value in pairs:
        problem = directives.check_enroot(name, value)
        if problem is not None:
            out.add(key_path("runtime.enroot", name), problem)
        else:
            checked.append((name, directives.enroot_value(name, value)))
    return tuple(checked) if len(checked) == len(pairs) else None


def check_passthrough(rt: Runtime, site: Site, out: ProblemCollector,
                      typed_limits: bool = False) -> Optional[Runtime]:
    """The runtime with passthroughs checked against the site's oldest releases, or None.

    `typed_limits`: apptainer_limits is set somewhere, so its directives are typed keys."""
    ok = _check_dialect("apptainer", rt.apptainer, site.apptainer_version, out, typed_limits)
    ok = _check_dialect("singularity", rt.singularity, site.singularity_version, out,
                        typed_limits) and ok
    enroot = _check_enroot(rt.enroot, out)
    if not ok or enroot is None:
        return None
    return replace(rt, enroot=enroot)
