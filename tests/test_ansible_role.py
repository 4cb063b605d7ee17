"""The role `hpcpolicy.site.node` under the real ansible-playbook, on a node with systemd.

The node is this machine's own root booted under systemd-nspawn (overlay: the host changes
nothing). In it, as a site would roll out to a running node: `--check` first (hpcpolicy not
installed yet: the sync task must say what it would do, not fail), then the real run (pip
installs hpcpolicy into /opt/hpcpolicy from wheels built here, writes node.toml, the
allowed-signers file, the units and their drop-in, runs the first sync of a signed
generation, enables the timer), then again (nothing changes).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest
from node_fixtures import BASE_TREE, allowed_signers_for, make_signing_key
from nspawn_fixtures import boot, machine

from hpcpolicy.deploy.publish import switch_channel, utc_now, write_generation
from hpcpolicy.deploy.store import Target, ensure_layout
from tests.conftest import REPO

__all__ = ["machine"]

RECAP = re.compile(r"^localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+"
                   r"failed=(\d+)", re.MULTILINE)
SCRIPT = """\
#!/bin/sh
export ANSIBLE_COLLECTIONS_PATH={repo} ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=0
export ANSIBLE_LOCALHOST_WARNING=0 HOME=/root LC_ALL=C.UTF-8
N=1
run() {{
  ansible-playbook -v -i /out/inventory.ini /out/play.yml "$@" > /out/run-$N.txt 2>&1
  echo $? > /out/rc-$N.txt; N=$((N+1))
}}
run --check
run
run
systemctl is-enabled hpcpolicy-sync.timer > /out/enabled.txt 2>&1
systemctl is-active hpcpolicy-sync.timer > /out/active.txt 2>&1
systemctl cat hpcpolicy-sync.service > /out/unit.txt 2>&1
cp /etc/hpcpolicy/node.toml /var/lib/hpcpolicy/installed.json /out/ 2>> /out/errors.txt
/opt/hpcpolicy/bin/hpcpolicy node doctor --format json > /out/doctor.json 2>> /out/errors.txt
echo done > /out/done.txt
systemctl --no-block poweroff
"""


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """hpcpolicy and its dependencies as wheels, for an offline pip install on the node."""
    out = tmp_path_factory.mktemp("wheels")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(out),
                           str(REPO)], capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot build wheels here (no package index?): {proc.stderr[-300:]}")
    return out


def _recap(text: str) -> Dict[str, int]:
    found = RECAP.findall(text)
    assert found, text[-3000:]
    ok, changed, unreachable, failed = (int(v) for v in found[-1])
    return {"ok": ok, "changed": changed, "unreachable": unreachable, "failed": failed}


def test_role_check_then_install_then_idempotent(machine: Path, wheels: Path) -> None:
    prep = machine / "prep"
    shared = prep / "shared" / "hpcpolicy"
    ensure_layout(str(shared))
    (prep / "shared").chmod(0o755)
    key = make_signing_key(prep)
    signers = allowed_signers_for(key, prep / "allowed_signers").read_text()
    name = write_generation(Target(str(shared), signing_key=str(key), site="s"),
                            {"default": dict(BASE_TREE)}, {
                                "created": "2026-01-01T00:00:00Z", "operator": "t", "host": "h",
                                "site": "s", "policy_sha256": "0" * 64, "requirements": {}})
    switch_channel(str(shared), "stable", name, utc_now())
    out = machine / "out"
    out.mkdir()
    (out / "inventory.ini").write_text(
        "localhost ansible_connection=local ansible_python_interpreter=/usr/bin/python3\n")
    play = [{"hosts": "localhost", "gather_facts": False, "roles": [{
        "role": "hpcpolicy.site.node",
        "vars": {"hpcpolicy_deploy_root": "/shared/hpcpolicy",
                 "hpcpolicy_pip_extra_args": "--no-index --find-links /wheels",
                 "hpcpolicy_allowed_signers_content": signers,
                 "hpcpolicy_reload": False}}]}]  # /proc/sys is read-only in the machine
    (out / "play.yml").write_text(json.dumps(play, indent=1))
    place = f"""\
        mkdir -p $M/shared $M/wheels
        rm -rf $M/shared/hpcpolicy $M/opt/hpcpolicy $M/etc/hpcpolicy $M/var/lib/hpcpolicy
        cp -a {shared} $M/shared/hpcpolicy
        cp {wheels}/*.whl $M/wheels/
        """
    proc = boot(machine, place, SCRIPT.format(repo=REPO), timeout=420)
    assert (out / "done.txt").exists(), f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    runs = [(out / f"run-{n}.txt").read_text() for n in (1, 2, 3)]
    rcs = [(out / f"rc-{n}.txt").read_text().strip() for n in (1, 2, 3)]
    assert rcs == ["0", "0", "0"], "\n=====\n".join(r[-4000:] for r in runs)
    check, real, again = (_recap(r) for r in runs)
    assert "would install" in runs[0] and check["changed"] >= 1
    assert real["changed"] >= 5 and real["failed"] == 0
    assert again["changed"] == 0, runs[2][-4000:]
    assert (out / "enabled.txt").read_text().strip() == "enabled"
    assert (out / "active.txt").read_text().strip() == "active"
    unit = (out / "unit.txt").read_text()
    assert "ExecStart=/opt/hpcpolicy/bin/hpcpolicy node sync --format json" in unit
    assert "RequiresMountsFor=/shared/hpcpolicy" in unit
    assert 'allowed_signers = "/etc/hpcpolicy/allowed_signers"' in (out / "node.toml").read_text()
    state = json.loads((out / "installed.json").read_text())
    assert state["generation"] == name and state["checks_signatures"] is True
    doctor = json.loads((out / "doctor.json").read_text())
    assert doctor["generation"] == name and doctor["channel"] == "stable"


def test_role_ships_the_packaged_units() -> None:
    """The role's copies of the units are the ones packaging/ ships (one source of truth)."""
    role = REPO / "ansible_collections/hpcpolicy/site/roles/node/files"
    for unit in ("hpcpolicy-sync.service", "hpcpolicy-sync.timer"):
        assert (role / unit).read_bytes() == (REPO / "packaging/systemd" / unit).read_bytes()
