"""What `node doctor` checks the node against, and the shape of its answer.

`Check` is one line of the report; `Basis` is what the node is compared with: the requirements
and expected files from the node's state file (so doctor works while the shared storage is
away) or, with `--from`, from the channel's current generation, plus the checks that building
it already gave (the state file, the generation, pending steps). The helpers below read the
policy's needs for this node's class and the live kernel's parameters; the `checks_*` modules
share them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

from hpcpolicy.errors import HpcPolicyError
from hpcpolicy.generation.manifest import class_files
from hpcpolicy.generation.naming import DEFAULT_CLASS, STABLE
from hpcpolicy.generation.verify import verify_generation
from hpcpolicy.node import source
from hpcpolicy.node.config import DEFAULT_PATH, NodeConfig
from hpcpolicy.node.full import site_signs
from hpcpolicy.node.state import load_state

OK, WARN, FAIL = "OK", "WARN", "FAIL"
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
class Basis:
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


def shown_paths(paths: List[str]) -> str:
    """The first few paths and how many more (one detail line stays readable)."""
    more = f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else ""
    return ", ".join(paths[:SHOWN]) + more


def node_path(root: str, rel: str) -> str:
    """A node path (relative, no leading /) under the checked root."""
    return os.path.join(root, rel)



# ----------------------------------------------------------------------------- basis


def basis_of(opts: DoctorOptions, root: str) -> Basis:
    """Requirements and expected files: from --from's current generation, else the state."""
    basis = Basis()
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
                      basis: Basis) -> None:
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



# ----------------------------------------------------------------------------- needs


def read_proc(proc_sys: str, key: str) -> Optional[str]:
    """A live kernel parameter (`user.max_user_namespaces`), None when the kernel has none."""
    try:
        with open(os.path.join(proc_sys, *key.split(".")), encoding="utf-8") as handle:
            return " ".join(handle.read().split())
    except OSError:
        return None


def class_needs(basis: Basis) -> Dict[str, Any]:
    """The node class's own requirements (manifests before per-class needs: {})."""
    classes = basis.requirements.get("classes")
    if isinstance(classes, dict) and isinstance(classes.get(basis.node_class), dict):
        return dict(classes[basis.node_class])
    return {}


def need(basis: Basis, key: str, default: Any = None) -> Any:
    """A requirement of this node's class, else the generation-wide (default class) one."""
    needs = class_needs(basis)
    return needs[key] if key in needs else basis.requirements.get(key, default)



def userns_forbidden(basis: Basis) -> bool:
    """The policy turns user namespaces off on this node's class (`runtime.user_namespaces =
    false`, site-wide or for the class: a count of 0)."""
    if need(basis, "user_namespaces") is False:
        return True
    wanted = (need(basis, "sysctls") or {}).get("user.max_user_namespaces")
    return wanted is not None and str(wanted).strip() == "0"

