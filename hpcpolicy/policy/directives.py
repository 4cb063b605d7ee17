"""Directive tables of apptainer.conf, singularity.conf and enroot.conf, and their checks.

Why a table per release: Apptainer and SingularityCE parse their config with the same Go
parser (`pkg/util/apptainerconf/parser.go`, `pkg/util/singularityconf/parser.go`). Unknown keys
are silently ignored (a typo weakens policy without a word), while a bool or enum value the
running release does not know makes EVERY command fail ("couldn't parse configuration file").
So a value is accepted only when every release from the declared oldest one
(`site.apptainer_version` / `site.singularity_version`) to the newest we know parses it, and a key
only when the oldest release knows it and no later release dropped it.

The tables were extracted from the struct tags of `type File struct` in `config.go` at every
release tag (apptainer/apptainer v1.0.0..v1.5.3 and main; sylabs/singularity v3.6.0..v4.5.1):
each directive holds one `Span` per change (type, default, allowed values), `None` kind = removed.

Parser facts the checks rely on (parser.go): a line is
`^\\s*([a-zA-Z _-]+)[[:blank:]]*=[[:blank:]]*(.*)$`; key and value are TrimSpace'd; there are
no inline comments (`#` stays in the value); every value is split on `,` and scalars use the
first element of the FIRST occurrence; lists accumulate;
bools are exactly `yes`/`no`; uints go through `strconv.ParseUint(v, 0, 64)` (`010` is 8).

enroot.conf (NVIDIA/enroot `enroot.in`, `config::load`): the file must pass `bash -n`, each line is
read with `IFS=$' \\t=' read -r key value` and the value is passed through `eval echo`. A rendered
value is therefore only safe when `eval echo` gives it back unchanged: `check_enroot` allows a
small character set with no shell meaning and, for free-text options, single spaces.

Pure data and pure functions: no I/O.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

Version = Tuple[int, int, int]

PRODUCT = {"apptainer": "Apptainer", "singularity": "SingularityCE"}

# Typed Runtime fields (the site file's [runtime]) -> the directive they own in BOTH dialects.
# `binds` and `default_binds` together produce every `bind path` line. `fakeroot` has no
# directive (no launcher can forbid --fakeroot while user namespaces exist); `user_namespaces`
# maps to `allow user ns` (Apptainer >= 1.4, SingularityCE >= 4.2) and is enforced everywhere by
# the sysctl file.
TYPED_KEYS: Dict[str, str] = {
    "setuid": "allow setuid",
    "user_namespaces": "allow user ns",
    "mount_home": "mount home",
    "mount_tmp": "mount tmp",
    "mount_hostfs": "mount hostfs",
    "binds": "bind path",
    "default_binds": "bind path",
}

# Directives a passthrough may never set, with the reason.
_FORBIDDEN = {
    "bind path": "set by [[bind]] tables and runtime.default_binds, not as a passthrough",
    "suidbinary path": "internal to Apptainer (always overwritten), not a configuration directive",
}

# Kinds: "bool" (yes/no), "enum", "uint", "string" (one value, up to the first comma),
# "list" (repeatable, comma-separated). kind None: the key was removed in that release.


@dataclass(frozen=True)
class Span:
    """What one directive is from release `since` until the next span."""

    since: Version
    kind: Optional[str]
    default: Optional[str] = None  # as written in the file; None: no default line
    allowed: Tuple[str, ...] = ()  # enum values ("bool" is yes/no)

    def values(self) -> Tuple[str, ...]:
        return ("yes", "no") if self.kind == "bool" else self.allowed


def _v(text: str) -> Version:
    a, b, c = (int(x) for x in text.split("."))
    return (a, b, c)


def _s(since: str, kind: Optional[str], default: Optional[str] = None, allowed: str = "") -> Span:
    return Span(_v(since), kind, default, tuple(allowed.split(",")) if allowed else ())


_PATHS = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_BINDS = "/etc/localtime,/etc/hosts"

# Apptainer: order is the order of `type File struct` (and so of the rendered file).
_APPTAINER: Dict[str, Tuple[Span, ...]] = {
    "allow setuid": (_s("1.0.0", "bool", "yes"),),
    "allow ipc ns": (_s("1.4.0", "bool", "yes"),),
    "allow pid ns": (_s("1.0.0", "bool", "yes"),),
    "allow user ns": (_s("1.4.0", "bool", "yes"),),
    "allow uts ns": (_s("1.4.0", "bool", "yes"),),
    "config passwd": (_s("1.0.0", "bool", "yes"),),
    "config group": (_s("1.0.0", "bool", "yes"),),
    "config resolv_conf": (_s("1.0.0", "bool", "yes"),),
    "mount proc": (_s("1.0.0", "bool", "yes"),),
    "mount sys": (_s("1.0.0", "bool", "yes"),),
    "mount devpts": (_s("1.0.0", "bool", "yes"),),
    "mount home": (_s("1.0.0", "bool", "yes"),),
    "mount tmp": (_s("1.0.0", "bool", "yes"),),
    "mount hostfs": (_s("1.0.0", "bool", "no"),),
    "user bind control": (_s("1.0.0", "bool", "yes"),),
    "enable fusemount": (_s("1.0.0", "bool", "yes"),),
    "enable underlay": (
        _s("1.0.0", "bool", "yes"),
        _s("1.3.0", "enum", "yes", "yes,no,preferred"),
    ),
    "mount slave": (_s("1.0.0", "bool", "yes"),),
    "allow container sif": (_s("1.0.0", "bool", "yes"),),
    "allow container encrypted": (_s("1.0.0", "bool", "yes"),),
    "allow container squashfs": (_s("1.0.0", "bool", "yes"),),
    "allow container extfs": (_s("1.0.0", "bool", "yes"),),
    "allow container dir": (_s("1.0.0", "bool", "yes"),),
    "allow setuid-mount encrypted": (_s("1.1.8", "bool", "yes"),),
    "allow setuid-mount squashfs": (
        _s("1.1.8", "bool", "yes"),
        _s("1.3.0", "enum", "iflimited", "yes,no,iflimited"),
    ),
    "allow setuid-mount extfs": (_s("1.1.8", "bool", "no"),),
    "sync writable extfs": (_s("1.6.0", "bool", "no"),),  # on main only (unreleased)
    "always use nv": (_s("1.0.0", "bool", "no"),),
    "use nvidia-container-cli": (_s("1.0.0", "bool", "no"),),
    "always use rocm": (_s("1.0.0", "bool", "no"),),
    "shared loop devices": (_s("1.0.0", "bool", "no"),),
    "max loop devices": (_s("1.0.0", "uint", "256"),),
    "sessiondir max size": (_s("1.0.0", "uint", "16"), _s("1.2.0", "uint", "64")),
    "mount dev": (_s("1.0.0", "enum", "yes", "yes,no,minimal"),),
    "enable overlay": (
        _s("1.0.0", "enum", "try", "yes,no,try,driver"),
        _s("1.3.0", "enum", "yes", "yes,no,try,driver"),
    ),
    "bind path": (_s("1.0.0", "list", _BINDS),),
    "limit container owners": (_s("1.0.0", "list"),),
    "limit container groups": (_s("1.0.0", "list"),),
    "limit container paths": (_s("1.0.0", "list"),),
    "allow net users": (_s("1.0.0", "list"),),
    "allow net groups": (_s("1.0.0", "list"),),
    "allow net networks": (_s("1.0.0", "list"),),
    "allow netns paths": (_s("1.4.0", "list"),),
    "root default capabilities": (_s("1.0.0", "enum", "full", "full,file,no"),),
    "memory fs type": (_s("1.0.0", "enum", "tmpfs", "tmpfs,ramfs"),),
    "cni configuration path": (_s("1.0.0", "string"),),
    "cni plugin path": (_s("1.0.0", "string"),),
    "binary path": (_s("1.1.0", "string", "$PATH:" + _PATHS),),
    "suidbinary path": (_s("1.1.0", "string"),),
    "mksquashfs procs": (_s("1.0.0", "uint", "0"),),
    "mksquashfs mem": (_s("1.0.0", "string"),),
    "image driver": (_s("1.0.0", "string"),),
    "download concurrency": (_s("1.0.0", "uint", "3"),),
    "download part size": (_s("1.0.0", "uint", "5242880"),),
    "download buffer size": (_s("1.0.0", "uint", "32768"),),
    "systemd cgroups": (_s("1.1.0", "bool", "yes"),),
    "apptheus communication socket path": (_s("1.3.0", "string", "/run/apptheus/gateway.sock"),),
    "allow monitoring": (_s("1.3.0", "bool", "no"),),
    # Removed in 1.1.0 (the paths are found through `binary path` since then).
    "cryptsetup path": (_s("1.0.0", "string"), _s("1.1.0", None)),
    "go path": (_s("1.0.0", "string"), _s("1.1.0", None)),
    "ldconfig path": (_s("1.0.0", "string"), _s("1.1.0", None)),
    "mksquashfs path": (_s("1.0.0", "string"), _s("1.1.0", None)),
    "nvidia-container-cli path": (_s("1.0.0", "string"), _s("1.1.0", None)),
    "unsquashfs path": (_s("1.0.0", "string"), _s("1.1.0", None)),
}

# SingularityCE (sylabs/singularity pkg/util/singularityconf/config.go).
_SINGULARITY: Dict[str, Tuple[Span, ...]] = {
    "allow setuid": (_s("3.6.0", "bool", "yes"),),
    "allow ipc ns": (_s("4.2.0", "bool", "yes"),),
    "allow pid ns": (_s("3.6.0", "bool", "yes"),),
    "allow user ns": (_s("4.2.0", "bool", "yes"),),
    "allow uts ns": (_s("4.2.0", "bool", "yes"),),
    "config passwd": (_s("3.6.0", "bool", "yes"),),
    "config group": (_s("3.6.0", "bool", "yes"),),
    "config resolv_conf": (_s("3.6.0", "bool", "yes"),),
    "mount proc": (_s("3.6.0", "bool", "yes"),),
    "mount sys": (_s("3.6.0", "bool", "yes"),),
    "mount devpts": (_s("3.6.0", "bool", "yes"),),
    "mount home": (_s("3.6.0", "bool", "yes"),),
    "mount tmp": (_s("3.6.0", "bool", "yes"),),
    "mount hostfs": (_s("3.6.0", "bool", "no"),),
    "user bind control": (_s("3.6.0", "bool", "yes"),),
    "enable fusemount": (_s("3.6.0", "bool", "yes"),),
    "enable underlay": (_s("3.6.0", "bool", "yes"),),
    "mount slave": (_s("3.6.0", "bool", "yes"),),
    "allow container sif": (_s("3.9.0", "bool", "yes"),),
    "allow container encrypted": (_s("3.6.0", "bool", "yes"),),
    "allow container squashfs": (_s("3.6.0", "bool", "yes"),),
    "allow container extfs": (_s("3.6.0", "bool", "yes"),),
    "allow container dir": (_s("3.6.0", "bool", "yes"),),
    "allow kernel squashfs": (_s("3.11.2", "bool", "yes"),),
    "allow kernel extfs": (_s("3.11.2", "bool", "yes"),),
    "always use nv": (_s("3.6.0", "bool", "no"),),
    "use nvidia-container-cli": (_s("3.9.0", "bool", "no"),),
    "always use rocm": (_s("3.6.0", "bool", "no"),),
    "shared loop devices": (_s("3.6.0", "bool", "no"),),
    "max loop devices": (_s("3.6.0", "uint", "256"),),
    "sessiondir max size": (_s("3.6.0", "uint", "16"), _s("3.11.0", "uint", "64")),
    "mount dev": (_s("3.6.0", "enum", "yes", "yes,no,minimal"),),
    "enable overlay": (
        _s("3.6.0", "enum", "try", "yes,no,try,driver"),
        _s("4.0.0", "enum", "try", "yes,no,try"),
    ),
    "bind path": (_s("3.6.0", "list", _BINDS),),
    "limit container owners": (_s("3.6.0", "list"),),
    "limit container groups": (_s("3.6.0", "list"),),
    "limit container paths": (_s("3.6.0", "list"),),
    "allow net users": (_s("3.8.0", "list"),),
    "allow net groups": (_s("3.8.0", "list"),),
    "allow net networks": (_s("3.8.0", "list"),),
    "allow netns paths": (_s("4.2.0", "list"),),
    "root default capabilities": (_s("3.6.0", "enum", "full", "full,file,no"),),
    "memory fs type": (_s("3.6.0", "enum", "tmpfs", "tmpfs,ramfs"),),
    "cni configuration path": (_s("3.6.0", "string"),),
    "cni plugin path": (_s("3.6.0", "string"),),
    "cryptsetup path": (_s("3.6.0", "string"),),
    "go path": (_s("3.9.0", "string"),),
    "ldconfig path": (_s("3.9.0", "string"),),
    "mksquashfs path": (_s("3.6.0", "string"),),
    "mksquashfs procs": (_s("3.6.0", "uint", "0"),),
    "mksquashfs mem": (_s("3.6.0", "string"),),
    "nvidia-container-cli path": (_s("3.9.0", "string"),),
    "unsquashfs path": (_s("3.9.0", "string"),),
    "root search path": (_s("4.4.2", "string", _PATHS),),
    "user search path": (_s("4.4.2", "string", "$PATH:" + _PATHS),),
    "download concurrency": (_s("3.9.0", "uint", "3"),),
    "download part size": (_s("3.9.0", "uint", "5242880"),),
    "download buffer size": (_s("3.9.0", "uint", "32768"),),
    "systemd cgroups": (_s("3.10.0", "bool", "yes"),),
    "sif fuse": (_s("3.10.0", "bool", "no"),),  # deprecated since 4.1, no effect
    "oci mode": (_s("4.0.0", "bool", "no"),),
    "tmp sandbox": (_s("4.0.0", "bool", "yes"),),
    "image driver": (_s("3.6.0", "string"), _s("4.0.0", None)),
}


def _releases(spec: str) -> Tuple[Version, ...]:
    """'1.0.0-3 1.1.0-9' -> every patch release of each minor (first-last)."""
    out: List[Version] = []
    for item in spec.split():
        minor, last = item.rsplit("-", 1)
        first = _v(minor)
        out.extend((first[0], first[1], p) for p in range(first[2], int(last) + 1))
    return tuple(out)


# Published release tags (rc/alpha/beta excluded).
RELEASES: Dict[str, Tuple[Version, ...]] = {
    "apptainer": _releases("1.0.0-3 1.1.0-9 1.2.0-5 1.3.0-6 1.4.0-5 1.5.0-3"),
    "singularity": _releases(
        "3.6.0-4 3.7.0-4 3.8.0-4 3.9.0-9 3.10.0-5 3.11.0-5 4.0.0-3 4.1.0-5 4.2.0-2 "
        "4.3.0-7 4.4.0-2 4.5.0-1"
    ),
}

TABLES: Dict[str, Dict[str, Tuple[Span, ...]]] = {
    "apptainer": _APPTAINER,
    "singularity": _SINGULARITY,
}


def vtext(version: Version) -> str:
    """(1, 3, 0) -> '1.3' (patch shown only when it matters)."""
    return f"{version[0]}.{version[1]}" + (f".{version[2]}" if version[2] else "")


# ---------------------------------------------------------------------------- versions


def parse_version(dialect: str, version: str) -> Version:
    """'1.3' -> (1, 3, 0), the oldest release of that minor; '1.3.2' -> (1, 3, 2).

    Raises ValueError with a user-facing message for an unknown dialect or release.
    """
    if dialect not in TABLES:
        raise ValueError(f"unknown dialect {dialect!r} (expected apptainer or singularity)")
    product = PRODUCT[dialect]
    m = re.fullmatch(r"(0|[1-9][0-9]{0,3})\.(0|[1-9][0-9]{0,3})(?:\.(0|[1-9][0-9]{0,3}))?", version)
    if not m:
        return _bad_version(product, version, "expected a release like '1.3' or '1.3.2'")
    major, minor = int(m.group(1)), int(m.group(2))
    patch = int(m.group(3)) if m.group(3) is not None else None
    releases = RELEASES[dialect]
    same_minor = [r for r in releases if r[:2] == (major, minor)]
    if not same_minor:
        known = ", ".join(sorted({vtext((r[0], r[1], 0)) for r in releases}, key=_vkey))
        return _bad_version(product, version, f"not a known {product} release (known: {known})")
    if patch is None:
        return same_minor[0]
    if (major, minor, patch) not in same_minor:
        last = ".".join(str(x) for x in same_minor[-1])
        return _bad_version(product, version, f"not a known {product} release (latest: {last})")
    return (major, minor, patch)


def _vkey(text: str) -> Tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


def _bad_version(product: str, version: str, why: str) -> Version:
    raise ValueError(f"{product} version {version!r}: {why}")


def check_version(dialect: str, version: str) -> Optional[str]:
    """None when `version` names a known release of `dialect`, else the message."""
    if not isinstance(version, str):
        return "expected a string such as '1.3'"
    try:
        parse_version(dialect, version)
    except ValueError as err:
        return str(err)
    return None


# ---------------------------------------------------------------------------- table queries


def span_at(dialect: str, name: str, version: Version) -> Optional[Span]:
    """The definition of `name` in release `version`, None when that release does not know it."""
    current: Optional[Span] = None
    for span in TABLES[dialect].get(name, ()):
        if span.since <= version:
            current = span
    return current if current is not None and current.kind is not None else None


def later_spans(dialect: str, name: str, version: Version) -> List[Span]:
    """Every definition of `name` after `version` (what newer nodes will parse)."""
    return [s for s in TABLES[dialect].get(name, ()) if s.since > version]


def directives_at(dialect: str, version: Version) -> List[Tuple[str, Span]]:
    """Every directive `version` knows, in table (= rendering) order."""
    out = []
    for name in TABLES[dialect]:
        span = span_at(dialect, name, version)
        if span is not None:
            out.append((name, span))
    return out


# ---------------------------------------------------------------------------- values

_SCALAR_KINDS = ("bool", "enum", "uint", "string")


def unsafe_text(text: str) -> Optional[str]:
    """Why `text` cannot be one value in an apptainer.conf line (None: it can).

    The parser TrimSpaces values, splits them on ',', and has no inline comments; a newline or
    control character would start or corrupt another directive.
    """
    if text == "":
        return "must not be empty (the parser drops a line with an empty value)"
    if not text.isprintable():
        return "must not contain newlines, tabs or other control/non-printable characters"
    if text != text.strip():
        return "must not start or end with whitespace (the parser trims it)"
    if "," in text:
        return "must not contain ',' (the parser splits every value on commas)"
    if "#" in text:
        return "must not contain '#' (no inline comments in apptainer.conf: it stays in the value)"
    return None


def _as_strings(value: object) -> Optional[List[str]]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def normalize(kind: str, value: object) -> Tuple[Optional[List[str]], Optional[str]]:
    """TOML value -> the strings written in the file, or an error for a wrong type.

    bool/enum accept TOML true/false as yes/no (enums only when they offer yes/no); uint takes a
    TOML integer only (a string like '010' would be octal to Go's ParseUint).
    """
    if kind in ("bool", "enum"):
        if isinstance(value, bool):
            return (["yes" if value else "no"], None)
        if isinstance(value, str):
            return ([value], None)
        return (None, "expected yes/no" if kind == "bool" else "expected a string")
    if kind == "uint":
        if isinstance(value, bool) or not isinstance(value, int):
            return (None, "expected a non-negative integer")
        if value < 0 or value >= 2**64:
            return (None, "expected a non-negative integer below 2^64")
        return ([str(value)], None)
    if kind == "string":
        if not isinstance(value, str):
            return (None, "expected a string")
        return ([value], None)
    items = _as_strings(value)
    if items is None:
        return (None, "expected a string or a list of strings")
    if not items:
        return (None, "expected at least one value")
    return (items, None)


def _value_problem(name: str, span: Span, items: Sequence[str]) -> Optional[str]:
    for item in items:
        why = unsafe_text(item)
        if why is not None:
            return f"value {item!r} {why}"
    if span.kind in ("bool", "enum"):
        value = items[0]
        if value not in span.values():
            if span.kind == "bool":
                return f"expected yes/no (lowercase), got {value!r}"
            return f"expected one of {', '.join(span.values())}, got {value!r}"
    return None


def check_passthrough(dialect: str, name: str, value: object, version: str) -> Optional[str]:
    """None when `name = value` is safe to render for every release from `version` on.

    `value` is what TOML gave (str, int, bool, list of str). Messages name the directive's
    problem only; the caller prefixes file and key path.
    """
    try:
        ver = parse_version(dialect, version)
    except ValueError as err:
        return str(err)
    product = PRODUCT[dialect]
    if not isinstance(name, str) or name not in TABLES[dialect]:
        return _unknown(dialect, str(name))
    if name in _FORBIDDEN:
        return f"{name!r} is {_FORBIDDEN[name]}"
    span = span_at(dialect, name, ver)
    if span is None:
        return _unknown_in(dialect, name, ver)
    items, type_problem = normalize(span.kind or "", value)
    if type_problem is not None or items is None:
        return type_problem
    if span.kind in _SCALAR_KINDS and len(items) != 1:
        return "expected a single value"
    problem = _value_problem(name, span, items)
    if problem is not None:
        return _version_hint(dialect, name, items[0], ver, problem)
    for later in later_spans(dialect, name, ver):
        if later.kind is None:
            return (
                f"{name!r} was removed in {product} {vtext(later.since)}: nodes running it or a "
                "later release would silently ignore it"
            )
        problem = _value_problem(name, later, items)
        if problem is not None:
            return (
                f"value {items[0]!r} is refused by {product} >= {vtext(later.since)} "
                f"({problem}): every command would fail on such nodes"
            )
    return None


def _version_hint(dialect: str, name: str, value: str, ver: Version, problem: str) -> str:
    """Say 'needs X >= V' when a newer release accepts the value the declared one refuses."""
    for later in later_spans(dialect, name, ver):
        if later.kind in ("bool", "enum") and value in later.values():
            product = PRODUCT[dialect]
            return (
                f"value {value!r} needs {product} >= {vtext(later.since)} but "
                f"{dialect}_version is {vtext(ver)}"
            )
    return problem


def _unknown_in(dialect: str, name: str, ver: Version) -> str:
    product = PRODUCT[dialect]
    spans = TABLES[dialect][name]
    first = spans[0].since
    if first > ver:
        return (
            f"directive {name!r} needs {product} >= {vtext(first)} "
            f"but {dialect}_version is {vtext(ver)}"
        )
    return f"directive {name!r} was removed before {product} {vtext(ver)}"


# Names admins write that the parser ignores, with what they meant.
_KNOWN_MISTAKES = {
    # Apptainer's own template writes this short form, which the parser ignores (template bug).
    "apptheus socket path": "did you mean 'apptheus communication socket path'?",
    # apptainer/apptainer#2790: no such key; drop the default binds instead.
    "mount localtime": "set runtime.default_binds = false and bind what you need instead",
}


def _unknown(dialect: str, name: str) -> str:
    if name in _KNOWN_MISTAKES:
        return f"unknown directive {name!r} ({_KNOWN_MISTAKES[name]})"
    other = "singularity" if dialect == "apptainer" else "apptainer"
    if name in TABLES[other]:
        return (
            f"unknown directive {name!r}: it is a {PRODUCT[other]} directive, which "
            f"{PRODUCT[dialect]} silently ignores"
        )
    guess = difflib.get_close_matches(name, list(TABLES[dialect]), n=1, cutoff=0.75)
    if not guess and name.lower() in TABLES[dialect]:
        guess = [name.lower()]
    hint = f" (did you mean {guess[0]!r}?)" if guess else ""
    return f"unknown directive {name!r}{hint}"


def render_values(dialect: str, name: str, value: object, version: str) -> List[str]:
    """The strings to write for a checked passthrough (one line each); ValueError if unchecked."""
    problem = check_passthrough(dialect, name, value, version)
    if problem is not None:
        raise ValueError(f"{name}: {problem}")
    span = span_at(dialect, name, parse_version(dialect, version))
    assert span is not None and span.kind is not None
    items, _ = normalize(span.kind, value)
    assert items is not None
    return items


# ---------------------------------------------------------------------------- enroot

# Every variable of NVIDIA/enroot conf/enroot.conf.in, with the kind of value it takes.
ENROOT_VARS: Dict[str, str] = {
    "ENROOT_LIBRARY_PATH": "path",
    "ENROOT_SYSCONF_PATH": "path",
    "ENROOT_RUNTIME_PATH": "path",
    "ENROOT_CONFIG_PATH": "path",
    "ENROOT_CACHE_PATH": "path",
    "ENROOT_DATA_PATH": "path",
    "ENROOT_TEMP_PATH": "path",
    "ENROOT_GZIP_PROGRAM": "program",
    "ENROOT_ZSTD_OPTIONS": "options",
    "ENROOT_SQUASH_OPTIONS": "options",
    "ENROOT_ROOTFS_WRITABLE": "bool",
    "ENROOT_NATIVE_OVERLAYFS": "bool",
    "ENROOT_REMAP_ROOT": "bool",
    "ENROOT_UNSHARE_NET": "bool",
    "ENROOT_UNSHARE_PID": "bool",
    "ENROOT_UNSHARE_IPC": "bool",
    "ENROOT_UNSHARE_UTS": "bool",
    "ENROOT_MAX_PROCESSORS": "uint",
    "ENROOT_MAX_CONNECTIONS": "uint",
    "ENROOT_CONNECT_TIMEOUT": "uint",
    "ENROOT_TRANSFER_TIMEOUT": "uint",
    "ENROOT_TRANSFER_RETRIES": "uint",
    "ENROOT_LOGIN_SHELL": "bool",
    "ENROOT_ALLOW_SUPERUSER": "bool",
    "ENROOT_ALLOW_HTTP": "bool",
    "ENROOT_BUNDLE_ALL": "bool",
    "ENROOT_BUNDLE_CHECKSUM": "bool",
    "ENROOT_MOUNT_HOME": "bool",
    "ENROOT_RESTRICT_DEV": "bool",
    "ENROOT_FORCE_OVERRIDE": "bool",
    "SSL_CERT_DIR": "path",
    "SSL_CERT_FILE": "path",
    "all_proxy": "url",
    "no_proxy": "url",
    "http_proxy": "url",
    "https_proxy": "url",
}

# Characters with no meaning to `eval echo` anywhere in a word: no quoting, expansion,
# globbing, brace expansion, comments, redirection or command separation.
_ENROOT_WORD = {
    "path": r"/[A-Za-z0-9._/+@%-]*",
    "program": r"[A-Za-z0-9._/+-]+",
    "url": r"[A-Za-z0-9._/:@%+,=-]+",
    "options": r"[A-Za-z0-9._/:@%+,=-]+",
    "uint": r"0|[1-9][0-9]{0,9}",
    "bool": r"yes|no",
}
_ENROOT_SHELL_CHARS = set("$`\\\"';&|<>()*?[]{}~#!\n\r\t")


def enroot_value(name: str, value: object) -> str:
    """The inert text written after `name` in enroot.conf; ValueError when check_enroot fails."""
    problem = check_enroot(name, value)
    if problem is not None:
        raise ValueError(f"{name}: {problem}")
    return _enroot_text(ENROOT_VARS[name], value)


_ENROOT_BOOL_WORDS = {"yes": "yes", "no": "no", "true": "yes", "false": "no"}


def _enroot_text(kind: str, value: object) -> str:
    """TOML true/false, or 'yes'/'no'/'true'/'false' in any case (a loader may store str(True)),
    become yes/no: enroot itself treats only n/no/f/false-like words as false."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if kind == "bool" and isinstance(value, str):
        return _ENROOT_BOOL_WORDS.get(value.lower(), value)
    return str(value)


def check_enroot(name: str, value: object) -> Optional[str]:
    """None when `name value` loads into enroot exactly as written, else the message."""
    if not isinstance(name, str) or name not in ENROOT_VARS:
        guess = difflib.get_close_matches(str(name), list(ENROOT_VARS), n=1, cutoff=0.75)
        hint = f" (did you mean {guess[0]!r}?)" if guess else ""
        return f"unknown enroot variable {name!r}{hint}"
    kind = ENROOT_VARS[name]
    if kind == "bool" and not isinstance(value, (bool, str)):
        return "expected true/false or 'yes'/'no'"
    if kind == "uint" and (isinstance(value, bool) or not isinstance(value, (int, str))):
        return "expected a non-negative integer"
    if kind not in ("bool", "uint") and not isinstance(value, str):
        return "expected a string"
    return _enroot_text_problem(kind, _enroot_text(kind, value))


def _enroot_text_problem(kind: str, text: str) -> Optional[str]:
    bad = sorted({c for c in text if c in _ENROOT_SHELL_CHARS or not c.isprintable()})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        return f"must not contain {shown}: enroot evaluates values with the shell (eval echo)"
    if text == "":
        return "must not be empty"
    words = text.split(" ")
    if kind != "options" and len(words) > 1:
        return "must not contain spaces (the shell would split the value)"
    if any(w == "" for w in words):
        return "words must be separated by single spaces (the shell would squeeze them)"
    if re.fullmatch(r"-[neE]+", words[0]):
        return f"must not start with {words[0]!r} (echo would take it as an option)"
    if words[0].startswith("=") or text.endswith("="):
        return "must not start or end with '=' (enroot's reader takes it as a separator)"
    pattern = _ENROOT_WORD[kind]
    for word in words:
        if not re.fullmatch(pattern, word):
            return _enroot_expect(kind, text)
    return None


def _enroot_expect(kind: str, text: str) -> str:
    return {
        "path": f"expected an absolute path, got {text!r}",
        "program": f"expected a program name or path, got {text!r}",
        "url": f"expected a URL or comma-separated host list, got {text!r}",
        "options": f"unexpected characters in {text!r}",
        "uint": f"expected a non-negative integer, got {text!r}",
        "bool": f"expected true/false or 'yes'/'no', got {text!r}",
    }[kind]
