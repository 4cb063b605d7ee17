"""The shipped hpcpolicy-sync.service under a real systemd: settings from node.toml, signatures.

The machine's own root file system boots in `systemd-nspawn` through an overlay (nothing on
the host changes). The unit file is the one in packaging/systemd, unmodified: its ExecStart
names no deploy root and no allowed-signers file, so everything it does comes from
/etc/hpcpolicy/node.toml. A signed generation is installed; a channel repointed at an unsigned
generation is refused with the node left as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Dict

import pytest
from node_fixtures import POLICY_JSON, SUBUID, Deploy, allowed_signers_for, make_signing_key

from hpcpolicy.deploy.store import ensure_layout
from hpcpolicy.fsutil import atomic_symlink

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "packaging/systemd/hpcpolicy-sync.service"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("systemd-nspawn") is None or shutil.which("unshare") is None,
    reason="needs root, systemd-nspawn (systemd-container) and unshare")

DRIVER_UNIT = """\
[Unit]
Description=hpcpolicy test driver
SuccessAction=poweroff-force
FailureAction=poweroff-force
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/hpcpolicy-test
"""

DRIVER = """\
#!/bin/sh
systemctl start hpcpolicy-sync.service; echo $? > /out/rc1
cp /etc/subuid /out/subuid1
cd /shared/hpcpolicy && ln -s generations/{unsigned} cur.new && mv -T cur.new current
systemctl start hpcpolicy-sync.service; echo $? > /out/rc2
cp /etc/subuid /out/subuid2
journalctl -u hpcpolicy-sync.service -o cat > /out/journal
exit 0
"""

BOOT = r"""
set -e
W="$1"
mount --bind / "$W/hostroot" && mount -o remount,bind,ro "$W/hostroot"
mount -t overlay overlay -o "lowerdir=$W/hostroot,upperdir=$W/upper,workdir=$W/work" "$W/merged"
M="$W/merged"
cp "$W/machine-id" "$M/etc/machine-id"
cp "$W/units/"* "$M/etc/systemd/system/"
install -m 0755 "$W/driver" "$M/usr/local/sbin/hpcpolicy-test"
mkdir -p "$M/etc/hpcpolicy"
ln -sf "$2" "$M/usr/bin/hpcpolicy"
cp "$W/etc-hpcpolicy/"* "$M/etc/hpcpolicy/"
timeout 240 systemd-nspawn --register=no --keep-unit --link-journal=no -D "$M" \
    --console=pipe --bind="$W/out:/out" --bind="$W/deploy:/shared/hpcpolicy" \
    -b -- --unit=hpcpolicy-test.service >/dev/null 2>&1 || true
"""


def test_shipped_unit_reads_node_toml_and_checks_signatures(tmp_path: Path) -> None:
    work = tmp_path
    for sub in ("hostroot", "upper", "work", "merged", "out", "units", "etc-hpcpolicy"):
        (work / sub).mkdir()
    key = make_signing_key(work)
    signers = allowed_signers_for(key, work / "etc-hpcpolicy" / "allowed_signers")
    os.chmod(signers, 0o644)
    (work / "etc-hpcpolicy" / "node.toml").write_text(
        'deploy_root = "/shared/hpcpolicy"\n'
        'allowed_signers = "/etc/hpcpolicy/allowed_signers"\n')
    deploy = Deploy(work / "deploy", signing_key=str(key))
    ensure_layout(str(deploy.root))
    tree: Dict[str, bytes] = {"etc/subuid": SUBUID, "etc/subgid": SUBUID,
                              "etc/containers/policy.json": POLICY_JSON}
    signed = deploy.publish({"default": tree})
    deploy.signing_key = None  # whoever can write the deploy root, without the key
    unsigned = deploy.publish({"default": dict(tree, **{"etc/subuid": b"65534:0:4294967295\n"})})
    atomic_symlink(f"generations/{signed}", str(deploy.root / "current"))
    shutil.copy(UNIT, work / "units")
    (work / "units" / "hpcpolicy-test.service").write_text(DRIVER_UNIT)
    (work / "driver").write_text(DRIVER.format(unsigned=unsigned))
    (work / "machine-id").write_text(uuid.uuid4().hex + "\n")
    cli = REPO / ".venv" / "bin" / "hpcpolicy"
    subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", BOOT, "boot",
                    str(work), str(cli)], check=True, timeout=300)
    out = work / "out"
    assert (out / "rc1").read_text().strip() == "0", (out / "journal").read_text()
    assert (out / "subuid1").read_bytes() == SUBUID
    assert (out / "rc2").read_text().strip() != "0"
    assert (out / "subuid2").read_bytes() == SUBUID  # the unsigned generation installed nothing
    reports = [json.loads(line) for line in (out / "journal").read_text().splitlines()
               if line.startswith("{")]
    assert [r["generation"] for r in reports] == [signed, unsigned]
    assert reports[0]["failed"] is False and reports[1]["failed"] is True
    assert "signature" in reports[1]["msg"]
