"""`node doctor`'s trust checks: whom the node trusts against what the site records.

Both only report: the node keeps trusting root and its own configured deploy owner, and checks
signatures only when node.toml names the allowed signers.
"""

from __future__ import annotations

import pwd
from typing import Optional

from hpcpolicy.errors import HpcPolicyError
from hpcpolicy.node.checks_basis import FAIL, OK, WARN, Basis, Check, DoctorOptions


def _uid(name: str) -> Optional[int]:
    if name.isdigit():
        return int(name)
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def check_deploy_owner(opts: DoctorOptions, basis: Basis) -> Check:
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


def check_signatures(opts: DoctorOptions, basis: Basis) -> Check:
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

