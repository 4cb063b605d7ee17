"""Shared renderer of apptainer.conf and singularity.conf (one parser, two directive tables).

The rendered file replaces the packaged one whole, so it is complete and explicit: every
directive the declared oldest release knows is written with its value (typed key, passthrough,
or the table default of that release), in the order of Go's `type File struct`, one `key = value`
line each. Nothing the oldest release cannot parse is written: no key it lacks (new keys would be
ignored there anyway) and no enum value it or any later release refuses (checked by
`directives.check_passthrough`). Precedence: passthrough (the loader refuses one that repeats a
typed key the file also sets) > typed `[runtime]` key > table default.

Setuid-free site (`runtime.setuid = false`): `allow setuid = no` makes non-root users run in a
user namespace even if a setuid starter gets installed, and Apptainer's `allow setuid-mount *`
are written `no` unless a passthrough says otherwise: they matter only in setuid mode
(`elevated = isSUID && !userNS`, prepare_linux.go), where a kernel mount of a user-supplied image
is the attack surface; for root they change nothing (`squashfs = no` behaves like the default
`iflimited` without limits). SingularityCE's `allow kernel squashfs/extfs` keep their defaults:
they also apply to root outside a user namespace (launcher_linux.go), where `no` would break
encrypted SIF for administrators, and non-root users in a user namespace never kernel-mount.
`allow user ns` follows `runtime.user_namespaces` where the release knows it (Apptainer >= 1.4,
SingularityCE >= 4.2); elsewhere the sysctl file is what turns user namespaces off. There is no
fakeroot directive: --fakeroot is governed by /etc/subuid and user namespaces.

Binds: the packaged defaults `/etc/localtime` and `/etc/hosts` come first unless
`runtime.default_binds = false` (a hand-written file without `bind path` lines has NO system binds:
list defaults apply only when no file is parsed), then one `bind path = SRC[:DST]` per bind
(there is no read-only system bind; validation refuses readonly binds for these runtimes).
A default bind whose target a site bind also uses is left out, so nothing is mounted twice.
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Sequence, Tuple

from hpcpolicy.errors import InvalidInput
from hpcpolicy.policy import directives as d
from hpcpolicy.policy.model import Bind, ConfValue, Policy
from hpcpolicy.policy.sections import enforcement
from hpcpolicy.render.header import header

DEFAULT_BINDS = ("/etc/localtime", "/etc/hosts")

# Directives never written: internal, or owned by the bind logic below.
_SKIP = {"suidbinary path"}

# Written `no` on a setuid-free site unless a passthrough sets them.
_SETUID_ONLY_MOUNTS = {
    "apptainer": (
        "allow setuid-mount encrypted",
        "allow setuid-mount squashfs",
        "allow setuid-mount extfs",
    ),
    "singularity": (),
}

_KEY_RE = re.compile(r"[a-zA-Z_-]+(?: [a-zA-Z_-]+)*")


def render_conf(
    policy: Policy,
    binds: Sequence[Bind],
    dialect: str,
    version: str,
    passthrough: Tuple[Tuple[str, ConfValue], ...],
) -> bytes:
    """The whole configuration file of `dialect` for releases >= `version`."""
    ver = _version(policy, dialect, version)
    given = _passthrough_values(policy, dialect, version, passthrough)
    typed = _typed_values(policy, dialect)
    limits = _limit_values(policy, dialect, ver)
    product = d.PRODUCT[dialect]
    lines: List[Tuple[str, str]] = []
    for name, span in d.directives_at(dialect, ver):
        if name in _SKIP:
            continue
        if name == "bind path":
            lines.extend(("bind path", v) for v in bind_values(policy, binds))
        elif name in limits:
            lines.extend((name, v) for v in limits[name])
        elif name in given:
            lines.extend((name, v) for v in given[name])
        elif name in typed:
            lines.append((name, typed[name]))
        elif span.default is not None:
            lines.extend((name, v) for v in span.default.split(","))
    text = header(policy).decode()
    text += f"# {product} >= {d.vtext(ver)}: every directive that release knows, explicitly.\n"
    text += "".join(_line(policy, dialect, k, v) for k, v in lines)
    return text.encode()


def _version(policy: Policy, dialect: str, version: str) -> d.Version:
    try:
        return d.parse_version(dialect, version)
    except ValueError as err:
        raise InvalidInput(str(err), file=policy.path, path=f"site.{dialect}_version") from err


def _passthrough_values(
    policy: Policy,
    dialect: str,
    version: str,
    passthrough: Tuple[Tuple[str, ConfValue], ...],
) -> Dict[str, List[str]]:
    out: Dict[str, List[str]] = {}
    for name, value in passthrough:
        try:
            out[name] = d.render_values(dialect, name, value, version)
        except ValueError as err:
            raise InvalidInput(
                str(err), file=policy.path, path=f'runtime.{dialect}."{name}"'
            ) from err
    return out


def _typed_values(policy: Policy, dialect: str) -> Dict[str, str]:
    rt = policy.runtime
    yes = {True: "yes", False: "no"}
    out = {
        "allow setuid": yes[rt.setuid],
        "allow user ns": yes[rt.user_namespaces],
        "mount home": yes[rt.mount_home],
        "mount tmp": yes[rt.mount_tmp],
        "mount hostfs": yes[rt.mount_hostfs],
    }
    if not rt.setuid:
        out.update((name, "no") for name in _SETUID_ONLY_MOUNTS[dialect])
    return out


def _limit_values(policy: Policy, dialect: str, ver: d.Version) -> Dict[str, List[str]]:
    """`limit container *` / `allow container *` lines of runtime.apptainer_limits (the
    class's own where it sets them); validation proved the release knows each directive."""
    limits = policy.runtime.apptainer_limits
    if limits is None:
        return {}
    out = dict(enforcement.limit_directives(limits))
    for name in out:
        if d.span_at(dialect, name, ver) is None:
            raise InvalidInput(f"{d.PRODUCT[dialect]} {d.vtext(ver)} does not know {name!r}",
                               file=policy.path, path="runtime.apptainer_limits")
    return out


def bind_values(policy: Policy, binds: Sequence[Bind]) -> List[str]:
    """The `bind path` values, defaults first: `SRC` or `SRC:DST`."""
    targets = {b.target for b in binds}
    out: List[str] = []
    if policy.runtime.default_binds:
        out.extend(p for p in DEFAULT_BINDS if p not in targets)
    for b in binds:
        for part in (b.source, b.target):
            if ":" in part or _line_problem(part) is not None or not part.startswith("/"):
                raise InvalidInput(
                    f"bind path {part!r} cannot be written to a bind path line",
                    file=policy.path,
                    path="bind",
                )
        out.append(b.source if b.target == b.source else f"{b.source}:{b.target}")
    return out


def _line_problem(value: str) -> Optional[str]:
    """What would make `value` parse differently (a '#' is literal to the parser, so allowed)."""
    if "#" in value:
        return d.unsafe_text(value.replace("#", "_"))
    return d.unsafe_text(value)


def _line(policy: Policy, dialect: str, name: str, value: str) -> str:
    """One `key = value` line, re-asserting what validation proved (defence in depth)."""
    problem = _line_problem(value)
    if problem is not None or not _KEY_RE.fullmatch(name):
        raise InvalidInput(
            f"{name!r} = {value!r}: {problem or 'bad directive name'}",
            file=policy.path,
            path=f"runtime.{dialect}",
        )
    return f"{name} = {value}\n"


def ecl_files(policy: Policy, etc_dir: str) -> Dict[str, bytes]:
    """`ecl.toml` and the global keyring of runtime.apptainer_limits, where given, under
    `etc_dir` (`etc/apptainer` or `etc/singularity`); bytes as checked at load time (the
    keyring de-armoured: the runtimes read `global-pgp-public` as binary packets)."""
    limits = policy.runtime.apptainer_limits
    out: Dict[str, bytes] = {}
    if limits is None:
        return out
    for path, name in ((limits.ecl_path, "ecl.toml"),
                       (limits.ecl_keyring_path, "global-pgp-public")):
        if path is None:
            continue
        data = policy.inputs.get(path)
        if data is None:
            raise InvalidInput(f"{path} was not loaded", file=policy.path,
                               path="runtime.apptainer_limits")
        out[f"{etc_dir}/{name}"] = data
    return out
