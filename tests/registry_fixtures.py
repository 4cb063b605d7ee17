"""A loopback docker-registry with a tiny image, and a private mount namespace for consumers.

Recipe from notes/containers-consumers.md §2-3: `docker-registry serve` on 127.0.0.1 (free
port) with its storage in a temp dir; a one-layer OCI image built offline with umoci; pushed
with skopeo under several repositories. Every skopeo/podman call runs through `in_ns`:
`unshare --mount` with a temp dir bind-mounted over /etc/containers (which also hides the
host's registries.conf.d drop-ins), tmpfs over the state the tools write outside --root
(/var/lib/containers, /var/cache/containers, /run/containers, or their parent where they do
not exist, so nothing is created on the host), and HOME/XDG dirs in the temp dir (no
`~/.config/containers`). The host's /etc is never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import pytest

from tests.net_fixtures import free_port

TOOLS = ("docker-registry", "umoci", "skopeo", "unshare")
PERMISSIVE_POLICY = {"default": [{"type": "insecureAcceptAnything"}]}
REPOS = (
    "allowed/tool",
    "blocked/tool",
    "other/tool",
    "a/x",
    "a/y",
    "a/b/x",
    "b/x",
)
TAGS = ("1.0", "2.0")

_NS_SCRIPT = r"""
set -e
mount --bind "$1" /etc/containers
# state the tools write as root outside --root: a private tmpfs, never the host's directory
# (where a containers dir is missing, its parent is covered instead, so nothing is created)
for d in /var/lib /var/cache; do
    if [ -d "$d/containers" ]; then
        mount -t tmpfs tmpfs "$d/containers"
    else
        mount -t tmpfs tmpfs "$d"; mkdir "$d/containers"
    fi
done
# podman creates /run/containers/networks even with --network none
if [ -d /run/containers ]; then
    mount -t tmpfs tmpfs /run/containers
else
    mount -t tmpfs tmpfs /run
fi
shift
exec "$@"
"""


def missing_tools(extra: Sequence[str] = ()) -> List[str]:
    return [t for t in (*TOOLS, *extra) if shutil.which(t) is None]


def skip_unless_able(extra: Sequence[str] = ()) -> None:
    missing = missing_tools(extra)
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)}")
    if os.geteuid() != 0:
        pytest.skip("needs root (unshare --mount, bind mounts)")


def in_ns(
    etc_containers: Path,
    argv: Sequence[str],
    home: Path,
    timeout: float = 60,
    extra_env: Optional[Dict[str, str]] = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv with `etc_containers` mounted at /etc/containers in a private mount namespace."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_RUNTIME_DIR": str(home / "run"),
        "TMPDIR": str(home),
        "LANG": "C",
        **(extra_env or {}),
    }
    (home / "run").mkdir(exist_ok=True)
    cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _NS_SCRIPT, "sh"]
    return subprocess.run(
        [*cmd, str(etc_containers), *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def write_tree(tree: Dict[str, bytes], root: Path) -> Path:
    """Write a rendered tree under root; returns root/etc/containers."""
    for rel, data in tree.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    etc = root / "etc" / "containers"
    etc.mkdir(parents=True, exist_ok=True)
    return etc


@dataclass
class Registry:
    """A running loopback registry holding `REPOS` x `TAGS` of one tiny image."""

    base: Path
    port: int
    process: subprocess.Popen[bytes]
    oci: Path  # OCI layout holding the image as `1.0`
    open_etc: Path  # /etc/containers content with a permissive policy (for pushes)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def ref(self, repo: str, tag: str = "1.0") -> str:
        return f"{self.host}/{repo}:{tag}"

    def skopeo(self, etc: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return in_ns(etc, ["skopeo", *args], self.base / "home")

    def push(self, repo: str, tag: str, *extra: str, etc: Optional[Path] = None) -> None:
        res = self.skopeo(
            etc or self.open_etc,
            "copy",
            "--dest-tls-verify=false",
            *extra,
            f"oci:{self.oci}:1.0",
            f"docker://{self.ref(repo, tag)}",
        )
        if res.returncode != 0:
            raise RuntimeError(f"push {repo}:{tag} failed: {res.stderr}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _build_image(base: Path) -> Path:
    """One-layer OCI image, offline: umoci init/new/insert/config (about 0.1 s)."""
    oci = base / "oci"
    rootfs = base / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "hpcpolicy-test").write_text("hello from hpcpolicy test image\n")
    steps = [
        ["umoci", "init", "--layout", str(oci)],
        ["umoci", "new", "--image", f"{oci}:1.0"],
        ["umoci", "insert", "--rootless", "--image", f"{oci}:1.0", str(rootfs), "/"],
        [
            "umoci", "config", "--image", f"{oci}:1.0", "--config.cmd", "/bin/sh",
            "--architecture", "amd64", "--os", "linux",
        ],
    ]  # fmt: skip
    for step in steps:
        subprocess.run(step, check=True, capture_output=True, timeout=60)
    return oci


def _start(base: Path) -> tuple[subprocess.Popen[bytes], int]:
    for _attempt in range(5):
        port = free_port()
        config = base / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {base / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{port}\n  secret: hpcpolicy-test\n"
        )
        log = open(base / "registry.log", "ab")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1):
                    return proc, port
            except OSError:
                time.sleep(0.05)
        proc.terminate()
        proc.wait()
    raise RuntimeError(f"docker-registry did not start: {(base / 'registry.log').read_text()}")


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """The session's loopback registry with every repository of REPOS pushed."""
    skip_unless_able()
    base = tmp_path_factory.mktemp("registry")
    (base / "data").mkdir()
    oci = _build_image(base)
    open_etc = base / "open-etc"
    open_etc.mkdir()
    (open_etc / "policy.json").write_text(json.dumps(PERMISSIVE_POLICY))
    (open_etc / "registries.conf").write_text("unqualified-search-registries = []\n")
    proc, port = _start(base)
    reg = Registry(base, port, proc, oci, open_etc)
    try:
        for repo in REPOS:
            for tag in TAGS:
                reg.push(repo, tag)
        yield reg
    finally:
        reg.stop()
