"""`node doctor`'s checks of what the policy asks of the node.

The installed files, bind sources users can read, the sysctls (read from the live kernel:
with `--root` other than / they still describe the running kernel, and the detail says so),
unprivileged user namespaces, root-owned newuidmap/newgidmap, and no setuid starter unless
the policy allows one.
"""

from __future__ import annotations

import os
import stat
from typing import Any, List, Mapping, Optional, Tuple

from hpcpolicy.errors import UnsafePath
from hpcpolicy.generation.manifest import SYSCTL_FILE
from hpcpolicy.generation.naming import DEFAULT_CLASS
from hpcpolicy.node import enforce_checks, install
from hpcpolicy.node.checks_basis import (
    FAIL,
    OK,
    WARN,
    Basis,
    Check,
    DoctorOptions,
    need,
    node_path,
    read_proc,
    shown_paths,
    userns_forbidden,
)

BIN_DIRS = ("usr/bin", "bin", "usr/sbin", "sbin", "usr/local/bin")
SUID_STARTERS = (
    "usr/libexec/apptainer/bin/starter-suid",
    "usr/local/libexec/apptainer/bin/starter-suid",
    "usr/libexec/singularity/bin/starter-suid",
    "usr/local/libexec/singularity/bin/starter-suid",
)


def check_files(root: str, basis: Basis) -> Check:
    bad: List[str] = []
    for rel, sha in sorted(basis.files.items()):
        try:
            install.check_parents(root, rel)
            good = install.installed_ok(install.target_path(root, rel), sha)
        except UnsafePath:
            good = False
        if not good:
            bad.append("/" + rel)
    if not basis.files:
        return Check("installed-files", WARN, "no generation to compare with")
    if bad:
        return Check("installed-files", FAIL,
                     f"{len(bad)} of {len(basis.files)} differ from {basis.generation} "
                     f"(content, mode 0644 or root ownership): {shown_paths(bad)}",
                     "hpcpolicy node sync (restores them)")
    return Check("installed-files", OK,
                 f"{len(basis.files)} files equal to {basis.generation}")


def _bind_sources(req: Mapping[str, Any], node_class: str) -> List[str]:
    raw: Any = req.get("bind_sources") or []
    if isinstance(raw, dict):
        raw = raw.get(node_class, raw.get(DEFAULT_CLASS)) or []
    return [str(s) for s in raw]


def _access_problem(root: str, source: str) -> Optional[Tuple[str, bool]]:
    """Why users cannot read a bind source: (reason, group may), or None when all can.

    Every user's container mounts the same source, so it must be readable (a directory also
    searchable) by other, and every directory above it searchable. Root passes any mode check,
    so the modes are read, not tried. `group may` is True when the group bits would allow it
    (a deliberately group-restricted source).
    """
    path = node_path(root, source.lstrip("/"))
    st = os.stat(path)
    isdir = stat.S_ISDIR(st.st_mode)
    need_o = stat.S_IROTH | (stat.S_IXOTH if isdir else 0)
    need_g = stat.S_IRGRP | (stat.S_IXGRP if isdir else 0)
    mode = stat.S_IMODE(st.st_mode)
    if mode & need_o != need_o:
        what = "directory" if isdir else "file"
        return (f"{source} ({what} mode {mode:04o}, uid {st.st_uid}, gid {st.st_gid})",
                mode & need_g == need_g)
    parent = os.path.dirname(path)
    while len(parent) > len(root) and parent.startswith(root):
        pmode = stat.S_IMODE(os.stat(parent).st_mode)
        if not pmode & stat.S_IXOTH:
            shown = "/" + os.path.relpath(parent, root)
            return f"{source} (its parent {shown} has mode {pmode:04o})", \
                bool(pmode & stat.S_IXGRP)
        parent = os.path.dirname(parent)
    return None


def check_binds(root: str, basis: Basis) -> Check:
    sources = _bind_sources(basis.requirements, basis.node_class)
    missing = [s for s in sources if not os.path.exists(node_path(root, s.lstrip("/")))]
    if missing:
        return Check("bind-sources", FAIL,
                     f"required bind source(s) missing: {shown_paths(missing)}",
                     "mount or create them (or set required = false in site.toml, Enroot only)")
    problems = [p for p in (_access_problem(root, s) for s in sources) if p is not None]
    closed = [why for why, group in problems if not group]
    grouped = [why for why, group in problems if group]
    if closed:
        return Check("bind-sources", FAIL,
                     f"required bind source(s) not readable by users: {shown_paths(closed)}",
                     "chmod o+rX them (and o+x every directory above them)")
    if grouped:
        return Check("bind-sources", WARN,
                     f"bind source(s) readable by their group only: {shown_paths(grouped)}; other "
                     "users' containers get them unreadable", "chmod o+rX them, or accept it")
    return Check("bind-sources", OK, f"{len(sources)} required source(s) present and readable"
                 if sources else "no required bind sources")



def check_sysctls(opts: DoctorOptions, root: str, basis: Basis) -> List[Check]:
    wanted = need(basis, "sysctls") or {}
    where = "" if root == "/" else " (live kernel: --root does not apply to /proc)"
    out: List[Check] = []
    remedy = f"sysctl -e -p /{SYSCTL_FILE} (and find what overrides it)"
    optional = set(need(basis, "sysctls_optional") or ())
    for key, value in sorted(wanted.items()):
        want = " ".join(str(value).split())
        have = read_proc(opts.proc_sys, key)
        if have is None and key in optional:  # written `-key`: kernels without it are fine
            out.append(Check(f"sysctl {key}", OK, f"not in this kernel, optional{where}"))
        elif have is None:
            out.append(Check(f"sysctl {key}", FAIL, f"not available in this kernel{where}",
                             "remove it from the policy or use a kernel that has it"))
        elif have != want:
            out.append(Check(f"sysctl {key}", FAIL, f"is {have}, policy wants {want}{where}",
                             remedy))
        else:
            out.append(Check(f"sysctl {key}", OK, f"{have}{where}"))
    return out



def check_userns(opts: DoctorOptions, basis: Basis) -> Check:
    """Unprivileged user namespaces must be possible (fakeroot, rootless, Apptainer), unless
    the policy itself turns them off; then the sysctl checks compare the values it wants."""
    limit = read_proc(opts.proc_sys, "user.max_user_namespaces")
    if userns_forbidden(basis):
        return Check("user-namespaces", OK,
                     f"off by the policy (user.max_user_namespaces {limit or 'unknown'}; "
                     "the sysctl checks compare it)")
    clone = read_proc(opts.proc_sys, "kernel.unprivileged_userns_clone")
    if limit == "0":
        return Check("user-namespaces", FAIL, "user.max_user_namespaces is 0",
                     "set user.max_user_namespaces (e.g. 15000) in sysctl.d")
    if clone == "0":
        return Check("user-namespaces", FAIL, "kernel.unprivileged_userns_clone is 0 (Debian)",
                     "set kernel.unprivileged_userns_clone = 1")
    return Check("user-namespaces", OK, f"user.max_user_namespaces {limit or 'unknown'}")


def _find_binary(root: str, name: str) -> Optional[str]:
    for directory in BIN_DIRS:
        path = node_path(root, f"{directory}/{name}")
        if os.path.exists(path):
            return path
    return None


def _has_caps(path: str) -> bool:
    try:
        return bool(os.getxattr(path, "security.capability"))
    except OSError:
        return False


def check_idmap(root: str, name: str, basis: Basis) -> Check:
    needed = basis.requirements.get("subid_enabled", True)
    path = _find_binary(root, name)
    if path is None:
        status = FAIL if needed else OK
        return Check(name, status, "not installed" + ("" if needed else " (sub-IDs disabled)"),
                     "install uidmap (Debian/Ubuntu) or shadow-utils (RHEL)")
    st = os.stat(path)
    problems: List[str] = []
    if st.st_uid != 0:
        problems.append(f"owned by uid {st.st_uid}, not root")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        problems.append(f"writable by group or other (mode {stat.S_IMODE(st.st_mode):04o})")
    if not stat.S_ISREG(st.st_mode):
        problems.append("not a regular file")
    if not (st.st_mode & stat.S_ISUID or _has_caps(path)):
        problems.append("neither setuid nor given file capabilities")
    if problems:
        return Check(name, FAIL, f"{path}: " + "; ".join(problems),
                     f"reinstall the package (chown root:root {path}; chmod 4755 {path})")
    how = "setuid" if st.st_mode & stat.S_ISUID else "file capabilities"
    return Check(name, OK, f"{path}: root-owned, {how}")


def check_starter(root: str, basis: Basis) -> Check:
    allowed = bool(need(basis, "setuid_allowed", False))
    if allowed:
        found_check = enforce_checks.check_setuid_starter(
            root, {"setuid_allowed": True}, basis.requirements.get("runtimes") or ())
        if found_check is not None:
            return Check(*found_check)
    found = [p for p in SUID_STARTERS if os.path.lexists(node_path(root, p))]
    setuid = [p for p in found if os.stat(node_path(root, p)).st_mode & stat.S_ISUID]
    if allowed:
        return Check("setuid-starter", OK, "setuid allowed by the policy")
    if setuid:
        return Check("setuid-starter", FAIL,
                     f"setuid starter present although the policy sets setuid = false: "
                     f"{shown_paths(['/' + p for p in setuid])}",
                     "remove the apptainer-suid / setuid package (or chmod u-s the starter)")
    detail = "present but not setuid: " + shown_paths(found) if found else "no setuid starter"
    return Check("setuid-starter", OK, detail)

