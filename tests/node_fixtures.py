"""Fixtures for the node tests: real generations published by the real publisher.

`Deploy.publish(trees)` builds a generation with `hpcpolicy.deploy.writer.publish_trees`
(the same code `apply` uses: manifest, optional ssh-keygen signature, atomic rename) and points
a channel at it, so the node reads exactly what a site would give it.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import pytest

from hpcpolicy.deploy.store import Target, ensure_layout
from hpcpolicy.deploy.writer import publish_trees

SUBUID = b"1001:524288:65536\n1002:589824:65536\n"
SUBGID = SUBUID
SYSCTL = b"# hpcpolicy\nuser.max_user_namespaces = 15000\n"
POLICY_JSON = b'{"default": [{"type": "reject"}]}\n'
APPTAINER = b"# hpcpolicy\nallow setuid = no\nbind path = /scratch\n"

BASE_TREE: Dict[str, bytes] = {
    "etc/subuid": SUBUID,
    "etc/subgid": SUBGID,
    "etc/sysctl.d/90-hpcpolicy.conf": SYSCTL,
    "etc/containers/policy.json": POLICY_JSON,
    "etc/apptainer/apptainer.conf": APPTAINER,
}

REQUIREMENTS: Dict[str, Any] = {
    "bind_sources": {"default": ["/scratch"]},
    "sysctls": {"user.max_user_namespaces": "15000"},
    "setuid_allowed": False,
    "runtimes": ["apptainer", "podman"],
    "subid_enabled": True,
}


@dataclass
class Deploy:
    """A deploy root in tmp and a publisher for it."""

    root: Path
    signing_key: Optional[str] = None
    owner: str = "root"  # the site's deploy_owner, as the manifest records it
    published: Dict[str, Dict[str, Dict[str, bytes]]] = field(default_factory=dict)

    def publish(
        self,
        trees: Optional[Mapping[str, Mapping[str, bytes]]] = None,
        channel: str = "stable",
        requirements: Optional[Mapping[str, Any]] = None,
        node_sets: Optional[Mapping[str, str]] = None,
    ) -> str:
        trees = {"default": dict(BASE_TREE)} if trees is None else trees
        full = {c: dict(t) for c, t in trees.items()}
        reqs = dict(REQUIREMENTS if requirements is None else requirements)
        if "bind_sources" in reqs and isinstance(reqs["bind_sources"], dict):
            reqs["bind_sources"] = {c: reqs["bind_sources"].get(c, []) for c in full}
        extra = {"node_classes": dict(node_sets)} if node_sets else None
        target = Target(str(self.root), owner=self.owner, signing_key=self.signing_key,
                        site="test-site")
        name = publish_trees(target, full, {
            "created": "2026-01-01T00:00:00Z", "operator": "tester", "host": "admin1",
            "site": "test-site", "policy_sha256": "0" * 64, "requirements": reqs,
            "extra": extra,
        }, channel)
        self.published[name] = full
        return name

    def gen_dir(self, name: str) -> Path:
        return self.root / "generations" / name


@pytest.fixture
def deploy(tmp_path: Path) -> Deploy:
    root = tmp_path / "deploy"
    ensure_layout(str(root))
    return Deploy(root)


@pytest.fixture
def node_root(tmp_path: Path) -> Path:
    """An empty node root with an /etc that has a few of a distribution's own files."""
    root = tmp_path / "node"
    (root / "etc" / "containers").mkdir(parents=True)
    (root / "etc" / "containers" / "policy.json").write_bytes(b'{"default": [{"type": '
                                                               b'"insecureAcceptAnything"}]}\n')
    (root / "etc" / "subuid").write_bytes(b"olduser:100000:65536\n")
    return root


def make_signing_key(directory: Path) -> Path:
    key = directory / "signing_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", str(key)],
                   check=True, stdin=subprocess.DEVNULL)
    return key


def allowed_signers_for(key: Path, path: Path, principal: str = "admin") -> Path:
    pub = Path(str(key) + ".pub").read_text().split()
    path.write_text(f'{principal} namespaces="hpcpolicy" {pub[0]} {pub[1]}\n')
    return path


def snapshot(root: Path) -> Dict[str, Any]:
    """Every path under `root` with its type, bytes, mode and owner (to prove 'touched nothing')."""
    out: Dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            data: Any = None
            if os.path.islink(path):
                data = os.readlink(path)
            elif os.path.isfile(path):
                data = Path(path).read_bytes()
            out[os.path.relpath(path, root)] = (st.st_mode, st.st_uid, st.st_ino, data)
    return out
