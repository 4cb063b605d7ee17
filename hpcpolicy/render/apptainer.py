"""apptainer.conf for Apptainer >= `site.apptainer_version` (rules: `_apptainer_like`)."""

from __future__ import annotations

from typing import Dict, Sequence

from hpcpolicy.policy.model import Bind, Policy
from hpcpolicy.render._apptainer_like import ecl_files, render_conf

PATH = "etc/apptainer/apptainer.conf"


def render(policy: Policy, binds: Sequence[Bind]) -> Dict[str, bytes]:
    """`{"etc/apptainer/apptainer.conf": bytes}` for the binds of one node class,
    with the ECL and its keyring where runtime.apptainer_limits names them."""
    conf = render_conf(
        policy, binds, "apptainer", policy.site.apptainer_version, policy.runtime.apptainer
    )
    return {PATH: conf, **ecl_files(policy, "etc/apptainer")}
