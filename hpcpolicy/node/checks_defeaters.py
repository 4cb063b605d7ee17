"""`node doctor`'s checks of what silently defeats the policy on a node.

Shadow told to ask SSSD for sub-IDs (`subid: sss`), useradd adding its own overlapping ranges
(`SUB_UID_COUNT`), registries.conf.d drop-ins that override the rendered registries.conf,
policy.json copies in users' reach, and Ubuntu's AppArmor restriction on unprivileged user
namespaces.
"""

from __future__ import annotations

import os
import sys
from typing import List, Optional

from hpcpolicy.fsutil import read_regular
from hpcpolicy.node.checks_basis import (
    FAIL,
    OK,
    WARN,
    Basis,
    Check,
    DoctorOptions,
    node_path,
    read_proc,
    shown_paths,
    userns_forbidden,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SHADOW_DEFAULT_SUB_COUNT = "65536"  # shadow's getdef default when login.defs does not say
DROPIN_DIR = "etc/containers/registries.conf.d"
SKEL_POLICY = "etc/skel/.config/containers/policy.json"
USER_POLICY = ".config/containers/policy.json"


def _config_lines(path: str) -> List[List[str]]:
    """Whitespace-split lines of a simple config file, comments dropped."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return []
    return [line.split("#", 1)[0].split() for line in text.splitlines()
            if line.split("#", 1)[0].strip()]


def check_nsswitch(root: str) -> Check:
    for words in _config_lines(node_path(root, "etc/nsswitch.conf")):
        if words[0] == "subid:" and words[1:] and words[1:] != ["files"]:
            return Check("nsswitch-subid", FAIL,
                         f"/etc/nsswitch.conf has `subid: {' '.join(words[1:])}`: shadow then "
                         "asks that service and ignores /etc/subuid and /etc/subgid",
                         "delete the subid: line from /etc/nsswitch.conf")
    return Check("nsswitch-subid", OK, "shadow reads /etc/subuid and /etc/subgid")


def check_login_defs(root: str, basis: Basis) -> Check:
    if not basis.requirements.get("subid_enabled", True):
        return Check("login-defs", OK, "sub-IDs disabled by the policy")
    if not any(os.path.exists(node_path(root, f"{d}/useradd")) for d in ("usr/sbin", "sbin")):
        return Check("login-defs", OK, "useradd not installed")
    values = {w[0]: w[1] for w in _config_lines(node_path(root, "etc/login.defs")) if len(w) >= 2}
    bad = []
    for key in ("SUB_UID_COUNT", "SUB_GID_COUNT"):
        value = values.get(key, SHADOW_DEFAULT_SUB_COUNT)
        if value != "0":
            bad.append(f"{key} {value}" + ("" if key in values else " (shadow's default)"))
    if bad:
        return Check("login-defs", FAIL,
                     f"/etc/login.defs: {', '.join(bad)}: useradd adds its own sub-ID ranges, "
                     "which can overlap hpcpolicy's",
                     "set SUB_UID_COUNT 0 and SUB_GID_COUNT 0 in /etc/login.defs")
    return Check("login-defs", OK, "SUB_UID_COUNT and SUB_GID_COUNT are 0")


def _podman(basis: Basis) -> bool:
    runtimes = basis.requirements.get("runtimes")
    return runtimes is None or "podman" in runtimes


DROPIN_MAX = 1024 * 1024


def _only_aliases(path: str) -> Optional[bool]:
    """True when a drop-in holds only short-name aliases; None when it is not valid TOML."""
    try:  # a FIFO or a device planted as a drop-in must not hang or exhaust the doctor
        data, _ = read_regular(path, DROPIN_MAX)
        doc = tomllib.loads(data.decode("utf-8"))
    except (OSError, ValueError):
        return None
    return set(doc) <= {"aliases"}


def check_dropins(root: str, basis: Basis) -> Check:
    if not _podman(basis):
        return Check("registries-drop-ins", OK, "Podman is not managed by the policy")
    directory = node_path(root, DROPIN_DIR)
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".conf"))
    except OSError:
        names = []
    ours = {os.path.basename(p) for p in basis.files if os.path.dirname(p) == DROPIN_DIR}
    foreign = [n for n in names if n not in ours]
    overriding = [n for n in foreign if not _only_aliases(os.path.join(directory, n))]
    shown = [f"/{DROPIN_DIR}/{n}" for n in overriding or foreign]
    if overriding:
        return Check("registries-drop-ins", FAIL,
                     f"drop-ins override the rendered registries.conf: {shown_paths(shown)}",
                     "remove them (put what they need into site.toml)")
    if foreign:
        return Check("registries-drop-ins", WARN,
                     f"short-name alias drop-ins: {shown_paths(shown)}; short names may resolve "
                     "differently from what `hpcpolicy audit` assumes",
                     "remove them, or accept that short names resolve through them")
    return Check("registries-drop-ins", OK, "no foreign drop-ins")


def _home_copies(root: str, limit: int) -> List[str]:
    home = node_path(root, "home")
    try:
        with os.scandir(home) as entries:
            users: List[str] = []
            for entry in entries:
                if len(users) >= limit:
                    break
                users.append(entry.name)
    except OSError:
        return []
    return sorted(f"/home/{u}/{USER_POLICY}" for u in users
                  if os.path.isfile(os.path.join(home, u, USER_POLICY)))


def check_user_policies(root: str, basis: Basis, limit: int) -> Check:
    if not _podman(basis):
        return Check("user-policy-json", OK, "Podman is not managed by the policy")
    if os.path.lexists(node_path(root, SKEL_POLICY)):
        return Check("user-policy-json", FAIL,
                     f"/{SKEL_POLICY} exists: every new account gets its own policy.json, "
                     "which overrides the node's", f"rm /{SKEL_POLICY}")
    copies = _home_copies(root, limit)
    if copies:
        return Check("user-policy-json", WARN,
                     f"{len(copies)} user(s) have their own policy.json, which overrides the "
                     f"node's for them (first {limit} homes looked at): {shown_paths(copies)}",
                     "remove them, or accept them: `hpcpolicy audit` does not look in home "
                     "directories (stat-ing every automounted home would be an automount "
                     "storm); it only says that each user can override policy.json")
    return Check("user-policy-json", OK, "no policy.json copies in /etc/skel or /home/*")


def check_apparmor(opts: DoctorOptions, root: str, basis: Basis) -> Check:
    value = read_proc(opts.proc_sys, "kernel.apparmor_restrict_unprivileged_userns")
    if value != "1":
        return Check("apparmor-userns", OK, "AppArmor does not restrict user namespaces"
                     if value is None else f"kernel.apparmor_restrict_unprivileged_userns {value}")
    if userns_forbidden(basis):
        return Check("apparmor-userns", OK, "restricted, and the policy turns user namespaces "
                     "off anyway")
    profiles = [p for p in ("apptainer", "singularity-ce") if
                os.path.isfile(node_path(root, f"etc/apparmor.d/{p}"))]
    if profiles:
        return Check("apparmor-userns", WARN,
                     f"restricted; profile(s) granting userns found: {', '.join(profiles)}; "
                     "other runtimes (rootless Podman, Enroot) need their own",
                     "give each runtime an AppArmor profile with `userns,`")
    return Check("apparmor-userns", FAIL,
                 "kernel.apparmor_restrict_unprivileged_userns = 1 and no runtime profile: "
                 "unprivileged containers fail with 'Permission denied'",
                 "install the runtime's AppArmor profile (e.g. /etc/apparmor.d/apptainer) or "
                 "set kernel.apparmor_restrict_unprivileged_userns = 0")

