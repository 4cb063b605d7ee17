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

The parts: `checks_basis` (the report's `Check`, the options, what the node is checked
against), `checks_trust` (deploy owner, signatures), `checks_policy` (what the policy asks),
`checks_defeaters` (what defeats it) and `enforce_checks` (image stores, ECL and limit
directories, read-only binds); this module runs them in a fixed order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional

from hpcpolicy.node import enforce_checks
from hpcpolicy.node.checks_basis import (  # noqa: F401 - re-exported for the CLI, Ansible, tests
    FAIL,
    OK,
    WARN,
    Basis,
    Check,
    DoctorOptions,
    basis_of,
    class_needs,
    doctor_options,
)
from hpcpolicy.node.checks_defeaters import (
    check_apparmor,
    check_dropins,
    check_login_defs,
    check_nsswitch,
    check_user_policies,
)
from hpcpolicy.node.checks_policy import (
    check_binds,
    check_files,
    check_idmap,
    check_starter,
    check_sysctls,
    check_userns,
)
from hpcpolicy.node.checks_trust import check_deploy_owner, check_signatures


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
    basis = basis_of(opts, root)
    return Report(_checks(opts, root, basis), basis.held, basis.channel, basis.held_class)


def doctor(opts: DoctorOptions) -> List[Check]:
    """Every check, in a fixed order."""
    return examine(opts).checks


def _checks(opts: DoctorOptions, root: str, basis: Basis) -> List[Check]:
    return [
        *basis.checks,
        check_deploy_owner(opts, basis), check_signatures(opts, basis),
        check_files(root, basis), check_binds(root, basis),
        *check_sysctls(opts, root, basis),
        check_userns(opts, basis), check_idmap(root, "newuidmap", basis),
        check_idmap(root, "newgidmap", basis), check_starter(root, basis),
        check_nsswitch(root), check_login_defs(root, basis),
        check_dropins(root, basis), check_user_policies(root, basis, opts.home_limit),
        check_apparmor(opts, root, basis),
        *enforcement(root, basis),
    ]


def enforcement(root: str, basis: Basis) -> List[Check]:
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

