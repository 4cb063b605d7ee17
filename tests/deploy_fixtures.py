"""Helpers shared by the deploy/generation tests: synthetic trees and a published generation."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from hpcpolicy.deploy.site_record import save_record
from hpcpolicy.deploy.store import Target, ensure_layout
from hpcpolicy.deploy.writer import publish_trees
from hpcpolicy.policy.model import Approval, Policy, Site
from hpcpolicy.subid.allocate import allocate
from hpcpolicy.subid.ledger import save_ledger
from tests.subid_fixtures import policy as subid_policy
from tests.subid_fixtures import snap, users

Trees = Dict[str, Dict[str, bytes]]
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def synthetic_trees(variant: int = 0, classes: Tuple[str, ...] = (),
                    policy: str = "reject") -> Trees:
    """Small trees; `variant` moves the sub-ID range, `policy` changes policy.json."""
    base = {
        "etc/subuid": f"1001:{524288 + variant * 65536}:65536\n".encode(),
        "etc/subgid": f"1001:{524288 + variant * 65536}:65536\n".encode(),
        "etc/sysctl.d/90-hpcpolicy.conf": b"# x\nuser.max_user_namespaces = 15000\n",
        "etc/containers/policy.json": f'{{"default": [{{"type": "{policy}"}}]}}\n'.encode(),
    }
    trees: Trees = {"default": base}
    for name in classes:
        trees[name] = dict(base, **{"etc/enroot/mounts.d/90-hpcpolicy.fstab":
                                    f"/opt/{name} /opt/{name} none x-create=dir,bind\n".encode()})
    return trees


FIELDS = {
    "created": "2026-01-02T03:04:05Z",
    "operator": "alice",
    "host": "admin1",
    "site": "test",
    "policy_sha256": "0" * 64,
    "requirements": {"bind_sources": {"default": ["/scratch"]}, "sysctls": {},
                     "setuid_allowed": False, "runtimes": ["podman"], "subid_enabled": True},
}


def write_site_record(root: Path, approval: Optional[Approval] = None, owner: str = "root",
                      signing_key: Optional[str] = None, name: str = "t") -> None:
    """state/site.json as apply writes it, for tests that publish without apply."""
    ensure_layout(str(root))
    site = Site(name=name, deploy_root=str(root), deploy_owner=owner, approval=approval,
                signing_key=signing_key)
    save_record(str(root), Policy(path="site.toml", sha256="0", site=site))


def ledger_root(tmp_path: Path, uids: Iterable[int]) -> Path:
    """tmp_path/deploy as `subid` commands find it: the layout, a ledger that allocated users
    u<uid> for `uids` (cluster-a's defaults), and the site record apply writes."""
    root = tmp_path / "deploy"
    ensure_layout(str(root))
    led = allocate(subid_policy(), snap(users(uids)), None, now="2026-01-01T00:00:00Z")
    save_ledger(str(root), led.ledger)
    write_site_record(root, name=led.ledger.site)  # what apply records for bare --deploy-root
    return root


def publish(root: Path, trees: Trees, channel: str = "stable", now: datetime = NOW,
            target: Optional[Target] = None) -> str:
    """Publish `trees` as the next generation and point `channel` at it."""
    ensure_layout(str(root))
    return publish_trees(target or Target(str(root)), trees, FIELDS, channel, now)


def listing(root: Path) -> List[Tuple[str, int, int, int]]:
    """A full recursive listing: (path, mode, size, mtime_ns) of everything, links included."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            st = os.lstat(os.path.join(dirpath, name))
            rel = os.path.relpath(os.path.join(dirpath, name), root)
            out.append((rel, st.st_mode, st.st_size, st.st_mtime_ns))
    st = os.lstat(root)
    out.append((".", st.st_mode, st.st_size, st.st_mtime_ns))
    return sorted(out)
