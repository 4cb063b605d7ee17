"""What this node installed: `ROOT/var/lib/hpcpolicy/installed.json`.

Kept on the node (not on shared storage) so that `node sync` knows which files it owns (to
remove the ones a new generation drops, and to keep an original only the first time) and
`node doctor` can check the node even when the shared storage is not mounted: the manifest's
requirements for this node's class are copied here at every sync.

Shape (format 1)::

    {"format": 1, "generation": "000042-3f2a9c1b", "class": "default", "channel": "stable",
     "deploy_root": "/shared/hpcpolicy", "site": "cluster-a", "synced": "2026-...Z",
     "files": {"etc/subuid": "<sha256>", ...}, "requirements": {...},
     "floors": [{"site": "cluster-a", "deploy_root": "/shared/hpcpolicy", "number": 42,
                 "generation": "000042-3f2a9c1b"}],
     "site_deploy_owner": "root", "site_signs": false, "checks_signatures": false}

`floors`: the generation installed last from each site and deploy root; a sync refuses a lower
number from the same pair (a channel pointed back at an old signed generation would bring back
revoked sub-ID ranges). A node that loses this file (a diskless node at boot) loses the guard
until its next sync.
"""

from __future__ import annotations

import json
import os

from hpcpolicy.errors import RuntimeFailure
from hpcpolicy.fsutil import atomic_write, read_bytes_nofollow

TYPE_CHECKING = False  # typing's, without importing typing: see node/idle.py
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple

STATE_FILE = "var/lib/hpcpolicy/installed.json"
SYNC_LOCK = "var/lib/hpcpolicy/sync.lock"
FORMAT = 1


def state_path(root: str) -> str:
    return os.path.join(root, *STATE_FILE.split("/"))


def load_state(root: str) -> Optional[Dict[str, Any]]:
    """The recorded state, None when this node never synced; a damaged file is an error."""
    path = state_path(root)
    try:
        data = read_bytes_nofollow(path)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise RuntimeFailure(f"{path}: cannot read: {err.strerror}") from None
    try:
        doc = json.loads(data)
    except ValueError as err:
        raise RuntimeFailure(f"{path}: not valid JSON ({err}); remove it and sync again") \
            from None
    good = isinstance(doc, dict) and doc.get("format") == FORMAT
    if not good or not isinstance(doc.get("files"), dict):
        raise RuntimeFailure(f"{path}: not a hpcpolicy node state file (format {FORMAT})")
    return doc


def installed_files(state: Optional[Dict[str, Any]]) -> Dict[str, str]:
    """{node path: sha256} recorded by the last sync (empty before the first)."""
    if state is None:
        return {}
    return {str(k): str(v) for k, v in state["files"].items()}


def same_state(old: Optional[Dict[str, Any]], new: Dict[str, Any]) -> bool:
    """Equal apart from the time stamp (so an idle sync writes nothing)."""
    if old is None:
        return False
    strip = {"synced"}
    return {k: v for k, v in old.items() if k not in strip} == \
        {k: v for k, v in new.items() if k not in strip}


def save_state(root: str, doc: Dict[str, Any]) -> None:
    from hpcpolicy.node.install import make_parents  # here: an idle sync only reads the state

    make_parents(root, STATE_FILE)
    data = (json.dumps(doc, sort_keys=True, indent=1) + "\n").encode()
    owner = 0 if os.geteuid() == 0 else None
    atomic_write(state_path(root), data, mode=0o644, uid=owner, gid=owner)


def floor_of(state: Optional[Dict[str, Any]], site: str, deploy_root: str
             ) -> Optional[Tuple[int, str]]:
    """(number, name) of the generation last installed from this site and deploy root."""
    for entry in floors(state):
        if entry.get("site") == site and entry.get("deploy_root") == deploy_root:
            number, name = entry.get("number"), entry.get("generation")
            if isinstance(number, int) and isinstance(name, str):
                return number, name
    return None


def floors(state: Optional[Dict[str, Any]]) -> List[Dict[str, Any]]:
    found = state.get("floors") if state else None
    return [dict(e) for e in found if isinstance(e, dict)] if isinstance(found, list) else []


def with_floor(state: Optional[Dict[str, Any]], site: str, deploy_root: str, number: int,
               name: str) -> List[Dict[str, Any]]:
    """The floors after installing `name` (number) from this site and deploy root."""
    out = [e for e in floors(state)
           if (e.get("site"), e.get("deploy_root")) != (site, deploy_root)]
    out.append({"site": site, "deploy_root": deploy_root, "number": number, "generation": name})
    return sorted(out, key=lambda e: (str(e.get("site")), str(e.get("deploy_root"))))
