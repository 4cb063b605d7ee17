"""A small real site for apply tests: passwd/group files and a Policy built from the model.

Built from `policy.model` directly (the interface between packages), so the publish pipeline is
tested with the real directory reader, allocator and renderers; the site-file path is covered by
the CLI tests through `hpcpolicy apply SITE`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

from hpcpolicy.policy.model import (
    Bind,
    Directory,
    FilesSource,
    NodeClass,
    Policy,
    Site,
    SubId,
)

RUNTIMES = ("apptainer", "podman", "enroot")


def write_directory(
    where: Path, users: int, extra: Tuple[Tuple[str, int], ...] = ()
) -> Tuple[str, str]:
    """passwd/group with `users` users (uid 2000...) in group containers, plus (name, uid)s."""
    where.mkdir(parents=True, exist_ok=True)
    accounts = [(f"user{i:05d}", 2000 + i) for i in range(users)] + list(extra)
    names = [name for name, _ in accounts]
    passwd = ["root:x:0:0:root:/root:/bin/bash"]
    for name, uid in accounts:
        passwd.append(f"{name}:x:{uid}:100:{name}:/home/{name}:/bin/bash")
    group = ["root:x:0:", "users:x:100:", "containers:x:500:" + ",".join(names)]
    (where / "passwd").write_text("\n".join(passwd) + "\n")
    (where / "group").write_text("\n".join(group) + "\n")
    return str(where / "passwd"), str(where / "group")


def make_policy(
    root: str,
    files: Tuple[str, str],
    binds: Tuple[str, ...] = ("/scratch",),
    classes: Tuple[Tuple[str, str], ...] = (),
    name: str = "test",
    keep: int = 3,
    gc_grace: int = 0,
    max_revoke: float = 0.05,
) -> Policy:
    text = repr((root, files, binds, classes, name)).encode()
    return Policy(
        path="site.toml",
        sha256=hashlib.sha256(text).hexdigest(),
        site=Site(name=name, deploy_root=root, keep=keep, gc_grace=gc_grace, runtimes=RUNTIMES),
        directory=Directory(sources=("files",), files=FilesSource(*files)),
        subid=SubId(eligible_groups=("containers",), max_revoke=max_revoke),
        binds=tuple(Bind(b, b, runtimes=RUNTIMES) for b in binds),
        node_classes=tuple(NodeClass(n, nodes) for n, nodes in classes),
    )


def fast_dir(tmp_path: Path) -> Path:
    """A private dir on tmpfs when there is one (fsync is free there), else under tmp_path."""
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else str(tmp_path)
    path = Path(tempfile.mkdtemp(prefix="hpcpolicy-test-", dir=base))
    os.chmod(path, 0o755)
    return path


def subuid_ranges(data: bytes) -> List[Tuple[int, int, int]]:
    out = []
    for line in data.decode().splitlines():
        key, start, count = line.split(":")
        out.append((int(key), int(start), int(count)))
    return out


def ledger_ranges(root: str) -> Dict[int, Tuple[int, int, str]]:
    import json

    with open(os.path.join(root, "state", "subid-ledger.json"), "rb") as handle:
        doc = json.loads(handle.read())
    return {r["uid"]: (r["start"], r["count"], r["state"]) for r in doc["records"]}


def write_site(
    where: Path,
    root: Path,
    files: Tuple[str, str],
    binds: Tuple[str, ...] = ("/scratch",),
    name: str = "test",
    make_root: bool = True,
    **site: object,
) -> Path:
    """A real site.toml (written with tomli_w) for CLI and subprocess tests; with `make_root`
    its deploy root exists (0755), as an initialised share does."""
    import tomli_w

    if make_root:
        root.mkdir(mode=0o755, parents=True, exist_ok=True)
    doc = {
        "schema": 1,
        "site": {"name": name, "deploy_root": str(root), "runtimes": list(RUNTIMES),
                 "deploy_owner": str(os.geteuid()), **site},
        "directory": {"sources": ["files"], "files": {"passwd": files[0], "group": files[1]}},
        "subid": {"eligible_groups": ["containers"]},
        "bind": [{"source": b} for b in binds],
    }
    where.mkdir(parents=True, exist_ok=True)
    path = where / "site.toml"
    path.write_bytes(tomli_w.dumps(doc).encode())
    return path
