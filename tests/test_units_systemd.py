"""The shipped timer and service under a real systemd as PID 1 (systemd-nspawn).

The machine's own root is booted read-only through an overlay (nothing on the host changes):
the shipped units go to /etc/systemd/system unchanged, with a drop-in that shortens the
timer's delays to seconds; a deploy root at /shared/hpcpolicy and node.toml naming it. A test
unit (the only one started) waits until the boot delay has long passed, enables the timer as
an Ansible rollout to a running node would, and watches the runs. nspawn mounts /proc/sys
read-only, so `sysctl -p` fails inside as on a node whose kernel refuses a key: every run must
fail (unit failed, the error in its JSON) until the site publishes a sysctl file the kernel
takes; then the next run succeeds and clears the pending step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

from node_fixtures import BASE_TREE
from nspawn_fixtures import boot, machine

from hpcpolicy.deploy.publish import switch_channel, utc_now
from hpcpolicy.deploy.store import Target, ensure_layout
from hpcpolicy.deploy.writer import publish_trees
from tests.conftest import REPO

__all__ = ["machine"]  # fixture, imported for pytest

REFUSED = b"user.max_user_namespaces = 15000\n"  # /proc/sys is read-only in the container
TAKEN = b"-kernel.hpcpolicy_test_absent_key = 1\n"  # optional, absent: sysctl -e -p accepts it
FAST = """\
[Timer]
OnBootSec=
OnBootSec=3s
OnUnitActiveSec=3s
AccuracySec=1s
RandomizedDelaySec=1s
"""
SCRIPT = """\
#!/bin/sh
# runs as the container's only started unit; everything it sees goes to /out
log() { echo "$(date +%s.%N) $*" >> /out/steps.txt; }
runs() { journalctl -u hpcpolicy-sync.service -o cat 2>/dev/null | grep -c '^{' ; }
wait_runs() {
  i=0; while [ "$(runs)" -lt "$1" ] && [ $i -lt 240 ]; do sleep 0.25; i=$((i+1)); done
}
log boot; sleep 6   # long after OnBootSec: enabled on a running node, as a rollout does
systemctl list-timers --all --no-pager > /out/timers-before.txt
log enable; systemctl enable --now hpcpolicy-sync.timer >> /out/steps.txt 2>&1
systemctl list-timers --all --no-pager > /out/timers-after.txt
wait_runs 3
systemctl show hpcpolicy-sync.service -p Result -p ExecMainStatus > /out/failed-show.txt
log fix; cd /shared/hpcpolicy && ln -s generations/{fixed} .new && mv -T .new current
n=$(runs); wait_runs $((n + 2))
systemctl show hpcpolicy-sync.service -p Result -p ExecMainStatus > /out/fixed-show.txt
systemctl show hpcpolicy-sync.timer -p RandomizedDelayUSec -p FixedRandomDelay \
    > /out/timer-show.txt
journalctl -u hpcpolicy-sync.service -o cat --no-pager > /out/journal.txt
log done; systemctl --no-block poweroff
"""


def _publish(root: Path, sysctl: bytes) -> str:
    tree = {**BASE_TREE, "etc/sysctl.d/90-hpcpolicy.conf": sysctl}
    return publish_trees(Target(str(root)), {"default": tree}, {
        "created": "2026-01-01T00:00:00Z", "operator": "tester", "host": "admin1",
        "site": "test-site", "policy_sha256": "0" * 64, "requirements": {}})


def _boot(work: Path, fixed: str) -> subprocess.CompletedProcess:
    prep = work / "prep"
    (prep / "unit.d").mkdir(parents=True, exist_ok=True)
    (prep / "node.toml").write_text('deploy_root = "/shared/hpcpolicy"\n')
    (prep / "unit.d" / "fast.conf").write_text(FAST)
    cli = Path(sys.executable).parent / "hpcpolicy"
    place = f"""\
        mkdir -p $M/etc/hpcpolicy $M/shared
        mkdir -p $M/etc/systemd/system/hpcpolicy-sync.timer.d
        install -m 0644 {prep}/node.toml $M/etc/hpcpolicy/node.toml
        ln -sfn {cli} $M/usr/bin/hpcpolicy
        install -m 0644 {REPO}/packaging/systemd/hpcpolicy-sync.service \\
            {REPO}/packaging/systemd/hpcpolicy-sync.timer $M/etc/systemd/system/
        install -m 0644 {prep}/unit.d/fast.conf $M/etc/systemd/system/hpcpolicy-sync.timer.d/
        rm -rf $M/shared/hpcpolicy $M/var/lib/hpcpolicy
        cp -a {prep}/shared/hpcpolicy $M/shared/hpcpolicy
        """
    return boot(work, place, SCRIPT.replace("{fixed}", fixed))


def _runs(journal: str) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in journal.splitlines() if line.startswith("{")]


def test_timer_enabled_late_fires_and_a_failed_step_fails_every_run(machine: Path) -> None:
    shared = machine / "prep" / "shared" / "hpcpolicy"
    ensure_layout(str(shared))
    os.chmod(machine / "prep" / "shared", 0o755)
    refused = _publish(shared, REFUSED)
    fixed = _publish(shared, TAKEN)  # newer: the fix the site publishes later
    switch_channel(str(shared), "stable", refused, utc_now())  # nodes start on the refused one
    proc = _boot(machine, fixed)
    out = machine / "out"
    steps = (out / "steps.txt").read_text() if (out / "steps.txt").exists() else ""
    assert "done" in steps, f"rc={proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    journal = (out / "journal.txt").read_text()
    runs = _runs(journal)
    before = [r for r in runs if r["generation"] == refused]
    after = [r for r in runs if r["generation"] == fixed]
    # enabled ~6 s after boot, long after OnBootSec=3s: it fired at once, then every 3 s
    assert "hpcpolicy-sync.timer" in (out / "timers-after.txt").read_text()
    assert len(before) >= 3, journal
    assert before[0]["changed"] is True  # the first run installed the files
    for run in before:  # ... and every run, changed or not, failed on the step it owes
        assert run["failed"] is True, run
        assert [p["step"] for p in run["pending"]] == ["sysctl"], run
        assert "sysctl" in run["msg"] and "up to date" not in run["msg"]
    assert before[1]["changed"] is False  # nothing new to install, still failing
    assert "ExecMainStatus=1" in (out / "failed-show.txt").read_text()
    assert after and after[0]["failed"] is False and after[0]["pending"] == [], after
    assert any(not r["changed"] and not r["failed"] for r in after[1:]), after
    fixed_show = (out / "fixed-show.txt").read_text()
    assert "ExecMainStatus=0" in fixed_show and "Result=success" in fixed_show
    timer = (out / "timer-show.txt").read_text()
    assert "RandomizedDelayUSec=1s" in timer and "FixedRandomDelay=yes" in timer
