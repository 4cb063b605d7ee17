"""`hpcpolicy node doctor`: does this node give the policy what it needs?

The requirements come from the node's state file (copied from the manifest at every sync, so
doctor works while the shared storage is away) or, with `--from`, from the channel's current
generation (then the node is also compared with it). Each check gives one line
`OK|FAIL|WARN name: detail — remedy`; any FAIL makes the command exit 1.

Besides what the policy asks for (bind sources, sysctls, newuidmap, no setuid starter, the
installed files), doctor looks for what silently defeats the policy: shadow told to ask SSSD
for sub-IDs (`subid: sss`), useradd adding its own overlapping ranges (`SUB_UID_COUNT`),
registries.conf.d drop-ins that override the rendered registries.conf, policy.json copies in
users' reach, and Ubuntu's AppArmor restriction on unprivileged user namespaces.

Sysctls are read from the live kernel (`/proc/sys`): with `--root` other than / they still
describe the running kernel, and the detail says so.
"""

from __future__ import annotations

import os
import pwd
import stat
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from hpcpolicy.errors import HpcPolicyError, UnsafePath
from hpcpolicy.fsutil import read_regular
from hpcpolicy.generation.manifest import SYSCTL_FILE, class_files
from hpcpolicy.generation.naming import DEFAULT_CLASS, STABLE
from hpcpolicy.generation.verify import verify_generation
from hpcpolicy.node import enforce_checks, install, source
from hpcpolicy.node.config import DEFAULT_PATH, NodeConfig
from hpcpolicy.node.full import site_signs
from hpcpolicy.node.state import load_state

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

OK, WARN, FAIL = "OK", "WARN", "FAIL"
BIN_DIRS = ("usr/bin", "bin", "usr/sbin", "sbin", "usr/local/bin")
SUID_STARTERS = (
    "usr/libexec/apptainer/bin/starter-suid",
    "usr/local/libexec/apptainer/bin/starter-suid",
    "usr/libexec/singularity/bin/starter-suid",
    "usr/local/libexec/singularity/bin/starter-suid",
)
SHADOW_DEFAULT_SUB_COUNT = "65536"  # shadow's getdef default when login.defs does not say
DROPIN_DIR = "etc/containers/registries.conf.d"
SKEL_POLICY = "etc/skel/.config/containers/policy.json"
USER_POLICY = ".config/containers/policy.json"
SHOWN = 5  # paths listed in one detail line


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    status: str
    detail: str
    remedy: str = ""

    def as_dict(self) -> Dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail,
                "remedy": self.remedy}

    def line(self) -> str:
        tail = f" — {self.remedy}" if self.remedy and self.status != OK else ""
        return f"{self.status} {self.name}: {self.detail}{tail}"


@dataclass
class DoctorOptions:
    root: str = "/"
    deploy_root: Optional[str] = None
    node_class: Optional[str] = None
    deploy_owner: int = 0  # whom the node trusts besides root (node.toml / --deploy-owner)
    allowed_signers: Optional[str] = None
    config_path: str = DEFAULT_PATH
    hostname: Optional[str] = None
    proc_sys: str = "/proc/sys"
    home_limit: int = 2000  # home directories looked into, at most (shared /home can be huge)


def doctor_options(config: NodeConfig, *, node_class: Optional[str] = None,
                   **rest: Any) -> DoctorOptions:
    """`node doctor`'s options: whom the node trusts and its class, from node.toml."""
    return DoctorOptions(node_class=node_class or config.node_class,
                         deploy_owner=config.owner_uid(),
                         allowed_signers=config.allowed_signers,
                         config_path=config.path or DEFAULT_PATH, **rest)


@dataclass
class _Basis:
    """What the node is checked against."""

    generation: Optional[str] = None
    node_class: str = DEFAULT_CLASS
    channel: Optional[str] = None
    held: Optional[str] = None  # what the state file says the node installed
    held_class: Optional[str] = None
    files: Dict[str, str] = field(default_factory=dict)
    requirements: Dict[str, Any] = field(default_factory=dict)
    checks: List[Check] = field(default_factory=list)
    site_deploy_owner: Optional[str] = None  # as the site's manifest records it
    site_signs: Optional[bool] = None  # None: not known (a state file older than the record)


def _shown(paths: List[str]) -> str:
    more = f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else ""
    return ", ".join(paths[:SHOWN]) + more


def _node(root: str, rel: str) -> str:
    return os.path.join(root, rel)


# ----------------------------------------------------------------------------- basis


def _basis(opts: DoctorOptions, root: str) -> _Basis:
    """Requirements and expected files: from --from's current generation, else the state."""
    basis = _Basis()
    try:
        state = load_state(root)
    except HpcPolicyError as err:
        state = None
        basis.checks.append(Check("state", FAIL, str(err), "hpcpolicy node sync --from DIR"))
    if state is not None:
        basis.held, basis.held_class = state.get("generation"), state.get("class")
        basis.channel = str(state.get("channel") or STABLE)
        basis.checks.extend(_pending_checks(state))
    if opts.deploy_root is not None:
        _from_deploy_root(opts, state, basis)
    elif state is not None:
        basis.generation = state.get("generation")
        basis.node_class = opts.node_class or state.get("class") or DEFAULT_CLASS
        basis.files = {str(k): str(v) for k, v in state["files"].items()}
        basis.requirements = dict(state.get("requirements") or {})
        owner = state.get("site_deploy_owner")
        basis.site_deploy_owner = None if owner is None else str(owner)
        signs = state.get("site_signs")
        basis.site_signs = signs if isinstance(signs, bool) else None
        basis.checks.append(Check("generation", OK, f"node has {basis.generation} (class "
                                  f"{basis.node_class}, synced {state.get('synced')})"))
    elif not basis.checks:
        basis.checks.append(Check(
            "generation", FAIL, "this node never ran `node sync` (no state file); only the "
            "host checks below ran", "hpcpolicy node sync --from DEPLOY_ROOT"))
    return basis


def _pending_checks(state: Mapping[str, Any]) -> List[Check]:
    """What the last sync owes: failed steps (retried every run) and stale user namespaces."""
    out: List[Check] = []
    pending = state.get("pending") or {}
    if isinstance(pending, dict) and pending:
        out.append(Check("pending-steps", FAIL, "; ".join(f"{k}: {v}" for k, v in
                                                           sorted(pending.items())),
                         "fix the cause; every node sync retries the step until it works"))
    else:
        out.append(Check("pending-steps", OK, "no failed step pending"))
    stale = state.get("stale_userns") or []
    if stale:
        out.append(Check("stale-userns", WARN,
                         f"{len(stale)} user(s) (uid {', '.join(map(str, stale[:SHOWN]))}) still "
                         "run user namespaces with old sub-ID ranges",
                         "hpcpolicy node sync --migrate-users (interactive)"))
    return out


def _from_deploy_root(opts: DoctorOptions, state: Optional[Mapping[str, Any]],
                      basis: _Basis) -> None:
    assert opts.deploy_root is not None
    channel = str(state.get("channel") or STABLE) if state else STABLE
    try:
        owners = {0, opts.deploy_owner}
        deploy_root = source.check_deploy_root(opts.deploy_root, owners)
        source.check_link(deploy_root, channel, owners)
        name, gen_dir = source.resolve(deploy_root, channel)
        source.check_inner(deploy_root, channel, gen_dir, owners)
        manifest = verify_generation(gen_dir, opts.allowed_signers, owners)
        wanted = opts.node_class or (state.get("class") if state else None)
        node_class, _how = source.select_class(manifest, wanted, opts.hostname)
    except HpcPolicyError as err:
        basis.checks.append(Check("generation", FAIL, str(err), "fix the deploy root"))
        return
    basis.generation, basis.node_class, basis.channel = name, node_class, channel
    basis.files = {e.path: e.sha256 for e in class_files(manifest, node_class)}
    basis.requirements = dict(manifest.get("requirements") or {})
    owner = manifest.get("deploy_owner")
    basis.site_deploy_owner = None if owner is None else str(owner)
    basis.site_signs = site_signs(gen_dir, manifest)
    have = state.get("generation") if state else None
    if have == name:
        basis.checks.append(Check("generation", OK, f"node has the {channel} generation "
                                  f"{name} (class {node_class})"))
    else:
        basis.checks.append(Check(
            "generation", FAIL, f"node has {have or 'nothing'}, the {channel} generation is "
            f"{name}", f"hpcpolicy node sync --from {opts.deploy_root}"))


# ----------------------------------------------------------------------------- trust


def _uid(name: str) -> Optional[int]:
    if name.isdigit():
        return int(name)
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def check_deploy_owner(opts: DoctorOptions, basis: _Basis) -> Check:
    """Say when the site publishes as another deploy owner than the node trusts (never decides:
    the node keeps trusting only root and its own configured owner)."""
    node = "root" if opts.deploy_owner == 0 else f"uid {opts.deploy_owner}"
    if basis.site_deploy_owner is None:
        return Check("deploy-owner", OK, f"node trusts root and {node}; the generation does "
                     "not record the site's deploy owner")
    site = basis.site_deploy_owner
    if _uid(site) == opts.deploy_owner:
        return Check("deploy-owner", OK, f"node and site agree: deploy owner {site}")
    return Check(
        "deploy-owner", WARN, f"the site records deploy owner {site}, this node trusts {node} "
        "(and root): the node refuses what the site's owner writes, or trusts an account the "
        "site does not use",
        f"if {site} is right, set deploy_owner = \"{site}\" in {opts.config_path}")


def check_signatures(opts: DoctorOptions, basis: _Basis) -> Check:
    """A site that signs protects only the nodes that check; say so on the others."""
    if opts.allowed_signers is not None:
        from hpcpolicy.generation.signing import check_allowed_signers

        try:
            check_allowed_signers(opts.allowed_signers)
        except HpcPolicyError as err:
            return Check("signatures", FAIL, str(err), "fix the allowed-signers file")
        if basis.site_signs is False and basis.generation is not None:
            return Check("signatures", WARN, f"this node requires signed generations, but "
                         f"{basis.generation} is not signed: its syncs fail",
                         "set site.signing_key on the publisher, or drop allowed_signers "
                         f"from {opts.config_path}")
        return Check("signatures", OK, f"signatures checked with {opts.allowed_signers}")
    if basis.site_signs:
        return Check("signatures", WARN, "the site signs its generations but this node does "
                     "not check the signature: whoever can write the deploy root as the deploy "
                     "owner can change what it installs",
                     f"set allowed_signers in {opts.config_path}")
    return Check("signatures", OK, "the site does not sign its generations; nothing to check")


# ----------------------------------------------------------------------------- policy checks


def check_files(root: str, basis: _Basis) -> Check:
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
                     f"(content, mode 0644 or root ownership): {_shown(bad)}",
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
    path = _node(root, source.lstrip("/"))
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


def check_binds(root: str, basis: _Basis) -> Check:
    sources = _bind_sources(basis.requirements, basis.node_class)
    missing = [s for s in sources if not os.path.exists(_node(root, s.lstrip("/")))]
    if missing:
        return Check("bind-sources", FAIL, f"required bind source(s) missing: {_shown(missing)}",
                     "mount or create them (or set required = false in site.toml, Enroot only)")
    problems = [p for p in (_access_problem(root, s) for s in sources) if p is not None]
    closed = [why for why, group in problems if not group]
    grouped = [why for why, group in problems if group]
    if closed:
        return Check("bind-sources", FAIL,
                     f"required bind source(s) not readable by users: {_shown(closed)}",
                     "chmod o+rX them (and o+x every directory above them)")
    if grouped:
        return Check("bind-sources", WARN,
                     f"bind source(s) readable by their group only: {_shown(grouped)}; other "
                     "users' containers get them unreadable", "chmod o+rX them, or accept it")
    return Check("bind-sources", OK, f"{len(sources)} required source(s) present and readable"
                 if sources else "no required bind sources")


def read_proc(proc_sys: str, key: str) -> Optional[str]:
    """A live kernel parameter (`user.max_user_namespaces`), None when the kernel has none."""
    try:
        with open(os.path.join(proc_sys, *key.split(".")), encoding="utf-8") as handle:
            return " ".join(handle.read().split())
    except OSError:
        return None


def class_needs(basis: _Basis) -> Dict[str, Any]:
    """The node class's own requirements (manifests before per-class needs: {})."""
    classes = basis.requirements.get("classes")
    if isinstance(classes, dict) and isinstance(classes.get(basis.node_class), dict):
        return dict(classes[basis.node_class])
    return {}


def _need(basis: _Basis, key: str, default: Any = None) -> Any:
    """A requirement of this node's class, else the generation-wide (default class) one."""
    needs = class_needs(basis)
    return needs[key] if key in needs else basis.requirements.get(key, default)


def check_sysctls(opts: DoctorOptions, root: str, basis: _Basis) -> List[Check]:
    wanted = _need(basis, "sysctls") or {}
    where = "" if root == "/" else " (live kernel: --root does not apply to /proc)"
    out: List[Check] = []
    remedy = f"sysctl -e -p /{SYSCTL_FILE} (and find what overrides it)"
    optional = set(_need(basis, "sysctls_optional") or ())
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


def userns_forbidden(basis: _Basis) -> bool:
    """The policy turns user namespaces off on this node's class (`runtime.user_namespaces =
    false`, site-wide or for the class: a count of 0)."""
    if _need(basis, "user_namespaces") is False:
        return True
    wanted = (_need(basis, "sysctls") or {}).get("user.max_user_namespaces")
    return wanted is not None and str(wanted).strip() == "0"


def check_userns(opts: DoctorOptions, basis: _Basis) -> Check:
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
        path = _node(root, f"{directory}/{name}")
        if os.path.exists(path):
            return path
    return None


def _has_caps(path: str) -> bool:
    try:
        return bool(os.getxattr(path, "security.capability"))
    except OSError:
        return False


def check_idmap(root: str, name: str, basis: _Basis) -> Check:
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


def check_starter(root: str, basis: _Basis) -> Check:
    allowed = bool(_need(basis, "setuid_allowed", False))
    if allowed:
        found_check = enforce_checks.check_setuid_starter(
            root, {"setuid_allowed": True}, basis.requirements.get("runtimes") or ())
        if found_check is not None:
            return Check(*found_check)
    found = [p for p in SUID_STARTERS if os.path.lexists(_node(root, p))]
    setuid = [p for p in found if os.stat(_node(root, p)).st_mode & stat.S_ISUID]
    if allowed:
        return Check("setuid-starter", OK, "setuid allowed by the policy")
    if setuid:
        return Check("setuid-starter", FAIL,
                     f"setuid starter present although the policy sets setuid = false: "
                     f"{_shown(['/' + p for p in setuid])}",
                     "remove the apptainer-suid / setuid package (or chmod u-s the starter)")
    detail = "present but not setuid: " + _shown(found) if found else "no setuid starter"
    return Check("setuid-starter", OK, detail)


# ----------------------------------------------------------------------------- defeaters


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
    for words in _config_lines(_node(root, "etc/nsswitch.conf")):
        if words[0] == "subid:" and words[1:] and words[1:] != ["files"]:
            return Check("nsswitch-subid", FAIL,
                         f"/etc/nsswitch.conf has `subid: {' '.join(words[1:])}`: shadow then "
                         "asks that service and ignores /etc/subuid and /etc/subgid",
                         "delete the subid: line from /etc/nsswitch.conf")
    return Check("nsswitch-subid", OK, "shadow reads /etc/subuid and /etc/subgid")


def check_login_defs(root: str, basis: _Basis) -> Check:
    if not basis.requirements.get("subid_enabled", True):
        return Check("login-defs", OK, "sub-IDs disabled by the policy")
    if not any(os.path.exists(_node(root, f"{d}/useradd")) for d in ("usr/sbin", "sbin")):
        return Check("login-defs", OK, "useradd not installed")
    values = {w[0]: w[1] for w in _config_lines(_node(root, "etc/login.defs")) if len(w) >= 2}
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


def _podman(basis: _Basis) -> bool:
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


def check_dropins(root: str, basis: _Basis) -> Check:
    if not _podman(basis):
        return Check("registries-drop-ins", OK, "Podman is not managed by the policy")
    directory = _node(root, DROPIN_DIR)
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
                     f"drop-ins override the rendered registries.conf: {_shown(shown)}",
                     "remove them (put what they need into site.toml)")
    if foreign:
        return Check("registries-drop-ins", WARN,
                     f"short-name alias drop-ins: {_shown(shown)}; short names may resolve "
                     "differently from what `hpcpolicy audit` assumes",
                     "remove them, or accept that short names resolve through them")
    return Check("registries-drop-ins", OK, "no foreign drop-ins")


def _home_copies(root: str, limit: int) -> List[str]:
    home = _node(root, "home")
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


def check_user_policies(root: str, basis: _Basis, limit: int) -> Check:
    if not _podman(basis):
        return Check("user-policy-json", OK, "Podman is not managed by the policy")
    if os.path.lexists(_node(root, SKEL_POLICY)):
        return Check("user-policy-json", FAIL,
                     f"/{SKEL_POLICY} exists: every new account gets its own policy.json, "
                     "which overrides the node's", f"rm /{SKEL_POLICY}")
    copies = _home_copies(root, limit)
    if copies:
        return Check("user-policy-json", WARN,
                     f"{len(copies)} user(s) have their own policy.json, which overrides the "
                     f"node's for them (first {limit} homes looked at): {_shown(copies)}",
                     "remove them, or accept them: `hpcpolicy audit` does not look in home "
                     "directories (stat-ing every automounted home would be an automount "
                     "storm); it only says that each user can override policy.json")
    return Check("user-policy-json", OK, "no policy.json copies in /etc/skel or /home/*")


def check_apparmor(opts: DoctorOptions, root: str, basis: _Basis) -> Check:
    value = read_proc(opts.proc_sys, "kernel.apparmor_restrict_unprivileged_userns")
    if value != "1":
        return Check("apparmor-userns", OK, "AppArmor does not restrict user namespaces"
                     if value is None else f"kernel.apparmor_restrict_unprivileged_userns {value}")
    if userns_forbidden(basis):
        return Check("apparmor-userns", OK, "restricted, and the policy turns user namespaces "
                     "off anyway")
    profiles = [p for p in ("apptainer", "singularity-ce") if
                os.path.isfile(_node(root, f"etc/apparmor.d/{p}"))]
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


# ----------------------------------------------------------------------------- entry point


@dataclass
class Report:
    """Doctor's answer: the checks, and what the node holds (for `fleet status`)."""

    checks: List[Check]
    generation: Optional[str]  # installed generation; None when the node never synced
    channel: Optional[str]
    node_class: Optional[str]


def examine(opts: DoctorOptions) -> Report:
    """Every check, in a fixed order, and the node's installed generation, channel, class."""
    root = os.path.realpath(os.path.abspath(opts.root))
    basis = _basis(opts, root)
    return Report(_checks(opts, root, basis), basis.held, basis.channel, basis.held_class)


def doctor(opts: DoctorOptions) -> List[Check]:
    """Every check, in a fixed order."""
    return examine(opts).checks


def _checks(opts: DoctorOptions, root: str, basis: _Basis) -> List[Check]:
    steps: List[Callable[[], List[Check]]] = [
        lambda: basis.checks,
        lambda: [check_deploy_owner(opts, basis), check_signatures(opts, basis)],
        lambda: [check_files(root, basis), check_binds(root, basis)],
        lambda: check_sysctls(opts, root, basis),
        lambda: [check_userns(opts, basis), check_idmap(root, "newuidmap", basis),
                 check_idmap(root, "newgidmap", basis), check_starter(root, basis)],
        lambda: [check_nsswitch(root), check_login_defs(root, basis),
                 check_dropins(root, basis), check_user_policies(root, basis, opts.home_limit),
                 check_apparmor(opts, root, basis)],
        lambda: enforcement(root, basis),
    ]
    out: List[Check] = []
    for step in steps:
        out.extend(step())
    return out


def enforcement(root: str, basis: _Basis) -> List[Check]:
    """Image stores, ECL and limit directories, read-only binds (node.enforce_checks)."""
    needs = class_needs(basis)
    results = (enforce_checks.check_image_stores(root, needs)
               + enforce_checks.check_limit_dirs(root, needs)
               + enforce_checks.check_readonly_binds(root, needs))
    return [Check(*r) for r in results]


def summary(checks: List[Check]) -> str:
    fails = sum(c.status == FAIL for c in checks)
    warns = sum(c.status == WARN for c in checks)
    if fails:
        return f"{fails} check(s) failed, {warns} warning(s)"
    return f"all {len(checks)} checks passed" + (f", {warns} warning(s)" if warns else "")

