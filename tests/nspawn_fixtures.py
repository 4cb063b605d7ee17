"""Boot this machine's own root under systemd-nspawn with systemd as PID 1, changing nothing.

The host root is bind-mounted read-only (not recursively: no /proc, /sys, /dev) and seen
through an overlay whose upper layer is a temp dir, all in a private mount namespace. A shell
snippet places what a test needs into the machine (`$M` is its root) before it boots; the
machine starts only `hpctest.service`, which runs the test's script and powers off. The
script's findings go to /out (a bind of WORK/out).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path
from typing import Iterator

import pytest

SYSTEMD = "/lib/systemd/systemd"
DRIVER = ("[Unit]\nDescription=hpcpolicy test driver\n[Service]\nType=oneshot\n"
          "ExecStart=/out/script.sh\n")


@pytest.fixture
def machine() -> Iterator[Path]:
    """A work directory for one boot (0755 under /tmp: the machine's units read from it)."""
    if os.geteuid() != 0 or shutil.which("systemd-nspawn") is None or \
            not os.path.exists(SYSTEMD) or shutil.which("unshare") is None:
        pytest.skip("needs root, systemd-nspawn (Debian: systemd-container) and systemd")
    work = Path(tempfile.mkdtemp(prefix="hpcpolicy-nspawn-", dir="/tmp"))
    os.chmod(work, 0o755)
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def boot(work: Path, place: str, script: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Place things with `place` (sh, $M = the machine's root), boot, run `script`, power off."""
    for sub in ("hostroot", "upper", "work", "merged", "out", "prep"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    (work / "prep" / "hpctest.service").write_text(DRIVER)
    (work / "out" / "script.sh").write_text(script)
    os.chmod(work / "out" / "script.sh", 0o755)
    m = work / "merged"
    setup = textwrap.dedent(f"""\
        set -e
        mount --bind / {work}/hostroot
        mount -o remount,bind,ro {work}/hostroot
        mount -t overlay overlay \\
            -o lowerdir={work}/hostroot,upperdir={work}/upper,workdir={work}/work {m}
        M={m}
        python3 -c 'import uuid; print(uuid.uuid4().hex)' > $M/etc/machine-id
        install -m 0644 {work}/prep/hpctest.service $M/etc/systemd/system/
        """) + textwrap.dedent(place) + textwrap.dedent(f"""\
        exec timeout {timeout - 20} systemd-nspawn --register=no --keep-unit --link-journal=no \\
            -q -D {m} --console=pipe --bind={work}/out:/out -b -- --unit=hpctest.service
        """)
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", setup],
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
