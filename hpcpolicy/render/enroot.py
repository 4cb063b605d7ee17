"""Enroot: a mounts.d fstab with the site binds, and enroot.conf from `[runtime.enroot]`.

fstab (NVIDIA/enroot `bin/enroot-mount.c`, read with glibc getmntent): one line per bind,
`SRC DST none x-create=auto,rbind[,ro][,nofail]`. `x-create=auto` stats the source, so file binds
work as well as directories; `nofail` is how `required = false` is expressed (a node without the
source skips the mount). No fs_freq/fs_passno fields: pass 0, mounted after the hooks together
with the user's own mounts, as enroot's documented examples do. Fields are escaped as getmntent
decodes them: space, tab, newline and backslash as `\\040 \\011 \\012 \\134`. Before getmntent,
enroot's runtime substitutes `${NAME}` from the caller's environment in every mounts.d line
(`common::envsubst`), and nothing can escape that, so a path containing `${` is refused: a user
could otherwise steer a site mount through an environment variable.

enroot.conf (`enroot.in`, `config::load`): checked `bash -n`, then read with
`IFS=$' \\t=' read -r key value` and set to `$(eval echo "${value}")`. Each line is `NAME VALUE`
(the packaged file's own form), with VALUE checked by `directives.check_enroot` to be inert for
that evaluation. Variables are written sorted by name, so the file does not change when the
site file's key order does.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

from hpcpolicy.errors import InvalidInput
from hpcpolicy.policy import directives
from hpcpolicy.policy.model import Bind, Policy
from hpcpolicy.render.header import header

FSTAB_PATH = "etc/enroot/mounts.d/90-hpcpolicy.fstab"
CONF_PATH = "etc/enroot/enroot.conf"

_ESCAPES = {" ": "\\040", "\t": "\\011", "\n": "\\012", "\\": "\\134"}


def fstab_escape(field: str) -> str:
    """Escape one fstab field the way getmntent(3) decodes it."""
    return "".join(_ESCAPES.get(c, c) for c in field)


def fstab_line(policy: Policy, bind: Bind) -> str:
    """One mounts.d line for `bind`."""
    for part in (bind.source, bind.target):
        if not part.startswith("/") or "${" in part or "\0" in part:
            raise InvalidInput(
                f"bind path {part!r} cannot be written to an enroot fstab line "
                "(must be absolute; enroot substitutes '${NAME}' in mounts.d)",
                file=policy.path,
                path="bind",
            )
    options = ["x-create=auto", "rbind"]
    if bind.readonly:
        options.append("ro")
    if not bind.required:
        options.append("nofail")
    fields = [fstab_escape(bind.source), fstab_escape(bind.target), "none", ",".join(options)]
    return " ".join(fields) + "\n"


def render_fstab(policy: Policy, binds: Sequence[Bind]) -> bytes:
    return header(policy) + "".join(fstab_line(policy, b) for b in binds).encode()


def render_conf(policy: Policy) -> bytes:
    lines: List[str] = []
    for name, value in sorted(policy.runtime.enroot):
        try:
            text = directives.enroot_value(name, value)
        except ValueError as err:
            raise InvalidInput(str(err), file=policy.path, path=f"runtime.enroot.{name}") from err
        lines.append(f"{name} {text}\n")
    return header(policy) + "".join(lines).encode()


def render(policy: Policy, binds: Sequence[Bind]) -> Dict[str, bytes]:
    """Both enroot files for the binds of one node class."""
    return {FSTAB_PATH: render_fstab(policy, binds), CONF_PATH: render_conf(policy)}
