"""singularity.conf for SingularityCE >= `site.singularity_version` (rules: `_apptainer_like`).

SingularityCE opens its config with O_NOFOLLOW, so nodes install it as a regular file (node sync
never installs symlinks).
"""

from __future__ import annotations

from typing import Dict, Sequence

from hpcpolicy.policy.model import Bind, Policy
from hpcpolicy.render._apptainer_like import ecl_files, render_conf

PATH = "etc/singularity/singularity.conf"


def render(policy: Policy, binds: Sequence[Bind]) -> Dict[str, bytes]:
    """`{"etc/singularity/singularity.conf": bytes}` for the binds of one node class,
    with the ECL and its keyring where runtime.apptainer_limits names them."""
    conf = render_conf(
        policy, binds, "singularity", policy.site.singularity_version, policy.runtime.singularity
    )
    return {PATH: conf, **ecl_files(policy, "etc/singularity")}
