"""`state/site.json`: what `apply` recorded for the commands that write with a bare root.

`rollback`, `promote` and the `subid` commands that change the ledger may be given only
`--deploy-root DIR`. They must then apply the same rules as `apply` did: the deploy owner the
root is checked against, operator approval, `keep` and `gc_grace` for garbage collection, and
whether generations are signed. Taking "whoever owns DIR" as the owner would let anybody who
can create a directory make root publish into (and through) their tree, so apply records the
site's values here and the writers enforce them; without a record they need `--site`.

The record itself is believed only when root wrote it, or the account running the command
did: a record owned by anyone else could name its owner as the deploy owner.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any, Dict, Optional

from hpcpolicy.deploy.store import STATE, Target
from hpcpolicy.errors import UnsafePath, UsageError
from hpcpolicy.fsutil import atomic_write
from hpcpolicy.policy.model import Approval, Policy

SITE_RECORD = "site.json"
FORMAT = 1
MAX_SIZE = 64 * 1024


def record_path(deploy_root: str) -> str:
    return os.path.join(deploy_root, STATE, SITE_RECORD)


def record_of(policy: Policy) -> Dict[str, Any]:
    site = policy.site
    approval = site.approval
    return {
        "format": FORMAT,
        "site": site.name,
        "deploy_owner": site.deploy_owner,
        "approval": None if approval is None else {"pam_service": approval.pam_service,
                                                   "admin_group": approval.admin_group},
        "keep": site.keep,
        "gc_grace": site.gc_grace,
        "signing": site.signing_key is not None,
    }


def save_record(deploy_root: str, policy: Policy) -> bool:
    """Write the record when it differs from what is there (caller holds the deploy lock)."""
    data = (json.dumps(record_of(policy), sort_keys=True, indent=1) + "\n").encode()
    path = record_path(deploy_root)
    try:
        with open(path, "rb") as handle:
            if handle.read(MAX_SIZE + 1) == data:
                return False
    except OSError:
        pass
    atomic_write(path, data, mode=0o644)
    return True


def _bad(path: str, why: str) -> UsageError:
    return UsageError(f"{path}: {why}; give --site SITE")


def load_record(deploy_root: str) -> Optional[Dict[str, Any]]:
    """The checked record, or None when there is none (a root apply never wrote to)."""
    path = record_path(deploy_root)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise UnsafePath(f"{path}: cannot open: {err.strerror} (a symlink?)") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_SIZE:
            raise UnsafePath(f"{path}: not a regular file of at most {MAX_SIZE} bytes")
        if st.st_uid not in (0, os.geteuid()):
            raise _bad(path, f"written by uid {st.st_uid}, neither root nor you, so it cannot "
                             "say who the deploy owner is")
        if st.st_mode & 0o022:
            raise UnsafePath(f"{path}: writable by group or others "
                             f"(mode {stat.S_IMODE(st.st_mode):04o})")
        raw = os.read(fd, MAX_SIZE + 1)
    finally:
        os.close(fd)
    try:
        doc = json.loads(raw)
    except ValueError:
        raise _bad(path, "not valid JSON") from None
    if not _well_formed(doc):
        raise _bad(path, "not a site record this hpcpolicy understands")
    return doc


def _well_formed(doc: Any) -> bool:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        return False
    approval = doc.get("approval")
    ok_approval = approval is None or (
        isinstance(approval, dict) and isinstance(approval.get("pam_service"), str)
        and isinstance(approval.get("admin_group"), str))
    return (isinstance(doc.get("site"), str) and isinstance(doc.get("deploy_owner"), str)
            and bool(doc["deploy_owner"]) and ok_approval
            and type(doc.get("keep")) is int and type(doc.get("gc_grace")) is int
            and type(doc.get("signing")) is bool)


def approval_of(doc: Dict[str, Any]) -> Optional[Approval]:
    approval = doc.get("approval")
    return None if approval is None else Approval(approval["pam_service"],
                                                  approval["admin_group"])


def target_from_record(deploy_root: str, command: str) -> Target:
    """The Target a writer uses with a bare `--deploy-root`: exit 2 without a record."""
    root = os.path.normpath(os.path.abspath(deploy_root))
    doc = load_record(root)
    if doc is None:
        raise UsageError(
            f"{command}: {record_path(root)} does not exist (apply writes it), so nothing says "
            "who owns this deploy root or whether approval is required: give --site SITE")
    return Target(root, doc["deploy_owner"], doc["keep"], doc["gc_grace"], None, doc["site"],
                  approval=approval_of(doc), signed=doc["signing"])
