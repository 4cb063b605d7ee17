"""Golden files and determinism for the runtime renderers (apptainer, singularity, enroot, sysctl).

The reference site is built from the model dataclasses (`runtime_fixtures.reference_policy`).
Regenerate after an intended change with
`HPCPOLICY_UPDATE_GOLDEN=1 pytest tests/test_render_apptainer_golden.py` and review the diff
like any other change to what nodes install.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Dict

import pytest
from apptainer_checker import check_file
from runtime_fixtures import reference_policy

from hpcpolicy.policy.model import Policy
from hpcpolicy.render import apptainer, enroot, singularity, sysctl
from hpcpolicy.render.tree import binds_for

GOLDEN = Path(__file__).parent / "data" / "golden"


def render_all(pol: Policy) -> Dict[str, bytes]:
    out: Dict[str, bytes] = {}
    out.update(apptainer.render(pol, binds_for(pol, "apptainer", "default")))
    out.update(singularity.render(pol, binds_for(pol, "singularity", "default")))
    out.update(enroot.render(pol, binds_for(pol, "enroot", "default")))
    out.update(sysctl.render(pol))
    return out


FILES = sorted(render_all(reference_policy()))


@pytest.mark.parametrize("node_path", FILES)
def test_golden(node_path: str) -> None:
    data = render_all(reference_policy())[node_path]
    golden = GOLDEN / node_path.replace("/", "__")
    if os.environ.get("HPCPOLICY_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_bytes(data)
    assert data == golden.read_bytes()


def test_files_are_lf_terminated_ascii_text() -> None:
    for node_path, data in render_all(reference_policy()).items():
        text = data.decode("ascii")
        assert text.endswith("\n") and "\r" not in text and "\n\n" not in text, node_path


def test_rendering_is_deterministic_and_ignores_passthrough_order() -> None:
    pol = reference_policy()
    shuffled = dataclasses.replace(
        pol,
        runtime=dataclasses.replace(
            pol.runtime,
            apptainer=tuple(reversed(pol.runtime.apptainer)),
            singularity=tuple(reversed(pol.runtime.singularity)),
            enroot=tuple(reversed(pol.runtime.enroot)),
        ),
    )
    assert render_all(pol) == render_all(pol) == render_all(shuffled)


def test_golden_apptainer_files_pass_the_checker() -> None:
    pol = reference_policy()
    files = render_all(pol)
    conf = files[apptainer.PATH].decode()
    assert check_file(conf, "apptainer", pol.site.apptainer_version) == []
    conf = files[singularity.PATH].decode()
    assert check_file(conf, "singularity", pol.site.singularity_version) == []
