"""Fixtures for `fleet status`: node roots on this machine, prepared answers, a real sshd.

* `answers(dir, {node: doc})` writes one doctor answer per node, for ClusterShell's exec worker
  to `cat` (`cat DIR/%h.json`): the fan-out and fold are then timed without doctor's own cost.
* `sshd` starts Debian's OpenSSH server as root on 127.0.0.1 on a spare port, with its own host
  key, its own authorized key and its own config, all in a temp dir; ClusterShell finds the
  client settings (port, identity, known hosts) in a clush.conf named by CLUSTERSHELL_CFGDIR,
  as a site's own clush.conf would give them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence

import pytest

from tests.net_fixtures import free_port

SSHD = "/usr/sbin/sshd"


def doctor_answer(generation: Optional[str], channel: str = "stable", node_class: str = "default",
                  failed: bool = False) -> Dict[str, Any]:
    """What `node doctor --format json` prints, reduced to what the fold reads."""
    status = "FAIL" if failed else "OK"
    return {"changed": False, "failed": failed,
            "msg": "1 check(s) failed, 0 warning(s)" if failed else "all 1 checks passed",
            "checks": [{"name": "installed-files", "status": status, "detail": "", "remedy": ""}],
            "generation": generation, "channel": channel, "class": node_class}


def answers(directory: Path, docs: Mapping[str, Any]) -> str:
    """Write DIR/NODE.json per node; the exec-worker command that reads them back."""
    directory.mkdir(parents=True, exist_ok=True)
    for node, doc in docs.items():
        text = doc if isinstance(doc, str) else json.dumps(doc)
        (directory / f"{node}.json").write_text(text + "\n")
    return f"cat {directory}/%h.json"


@dataclass
class Sshd:
    port: int
    cfgdir: Path  # CLUSTERSHELL_CFGDIR holding clush.conf for this server
    log: Path


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                   check=True, stdin=subprocess.DEVNULL)


def start_sshd(work: Path, port: int, extra: Sequence[str] = ()) -> subprocess.Popen:
    """Debian's sshd on 127.0.0.1:PORT (root), everything in WORK: host_key, client_key (its
    public half the only authorized key), sshd_config (+ `extra` lines), sshd.log. Returns at
    once; `wait_listening` tells when it accepts connections. Shared with bench/fleet.py."""
    _keygen(work / "host_key")
    _keygen(work / "client_key")
    (work / "authorized_keys").write_text((work / "client_key.pub").read_text())
    os.chmod(work / "authorized_keys", 0o600)
    config = work / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {work}/host_key",
        f"AuthorizedKeysFile {work}/authorized_keys", f"PidFile {work}/sshd.pid",
        "PermitRootLogin prohibit-password", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "UsePAM no", "PrintMotd no", "PrintLastLog no",
        "UseDNS no", *extra,
        # the keys sit in a 0700 temp dir under /tmp (world-writable, sticky), which StrictModes
        # refuses as a parent of an authorized_keys file
        "StrictModes no", ""]))
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation dir (Debian's own)
    with open(work / "sshd.log", "wb") as out:
        return subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=out, stderr=out,
                                stdin=subprocess.DEVNULL)


def wait_listening(proc: subprocess.Popen, port: int, log: Path, seconds: float = 10) -> str:
    """Wait until the server `proc` accepts on 127.0.0.1:PORT; "" then, else why not."""
    deadline = time.monotonic() + seconds
    while True:
        if proc.poll() is not None:
            return f"sshd exited: {log.read_text()}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return ""
        except OSError:
            if time.monotonic() > deadline:
                return f"sshd did not listen: {log.read_text()}"
            time.sleep(0.05)


@pytest.fixture
def sshd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sshd]:
    if os.geteuid() != 0 or not os.path.exists(SSHD) or shutil.which("ssh") is None:
        pytest.skip("needs root, openssh-server and openssh-client")
    work = tmp_path / "sshd"
    work.mkdir(mode=0o700)
    port = free_port()
    proc = start_sshd(work, port, ["MaxStartups 100:30:200"])
    log = work / "sshd.log"
    host_pub = (work / "host_key.pub").read_text().split()
    (work / "known_hosts").write_text(f"[localhost]:{port} {host_pub[0]} {host_pub[1]}\n"
                                      f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    cfgdir = work / "clustershell"
    cfgdir.mkdir()
    (cfgdir / "clush.conf").write_text(
        "[Main]\nssh_user: root\n"
        f"ssh_options: -p {port} -i {work}/client_key -oUserKnownHostsFile={work}/known_hosts "
        "-oStrictHostKeyChecking=yes -oGlobalKnownHostsFile=/dev/null -F /dev/null\n")
    monkeypatch.setenv("CLUSTERSHELL_CFGDIR", str(cfgdir))
    try:
        why = wait_listening(proc, port, log)
        if why:
            pytest.fail(why)
        yield Sshd(port, cfgdir, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
