"""What `node sync` is asked (SyncOptions) and what it reports (SyncResult, its JSON and text).

Kept apart from `full.py` so that a sync with nothing to do (`node.idle`) imports only this,
the node's record and the channel link's checks: the timer runs it on every node every few
minutes, and its cost is mostly Python's own start-up and imports. No dataclasses here (nor in
what this imports): `dataclasses` imports `inspect` (and ast, dis, tokenize), about as much
CPU as Python's own start-up, which every idle run would pay; and no typing at run time
(about a third of that start-up again).
"""

from __future__ import annotations

from hpcpolicy.errors import UsageError
from hpcpolicy.generation.naming import STABLE
from hpcpolicy.node.config import DEFAULT_PATH, NodeConfig

TYPE_CHECKING = False  # typing's, without importing typing: see node/idle.py
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Set, Union


if TYPE_CHECKING:
    from typing import NamedTuple

    class _SyncOptions(NamedTuple):
        deploy_root: str
        root: str = "/"
        allowed_signers: Optional[str] = None
        node_class: Optional[str] = None
        channel: str = STABLE
        check: bool = False
        want_diff: bool = False
        reload: bool = True
        hostname: Optional[str] = None
        lock_timeout: float = 30.0
        deploy_owner: int = 0  # the uid besides root that may own what the node reads
        allow_older: bool = False
        migrate_users: bool = False  # end stale pause processes (interactive only: the CLI checks)
        userns: Optional[bool] = None  # look for stale user namespaces; None: only when root is /
        proc: str = "/proc"
        node_toml: Optional[Dict[str, Any]] = None  # node.toml as read (config.load), recorded
else:  # the same tuple type at run time, without importing typing (tests/test_start_up.py)
    from collections import namedtuple

    _SyncOptions = namedtuple("SyncOptions", (
        "deploy_root", "root", "allowed_signers", "node_class", "channel", "check", "want_diff",
        "reload", "hostname", "lock_timeout", "deploy_owner", "allow_older", "migrate_users",
        "userns", "proc", "node_toml"), defaults=(
        "/", None, None, STABLE, False, False, True, None, 30.0, 0, False, False, None, "/proc",
        None))


class SyncOptions(_SyncOptions):
    """What `node sync` was asked to do (the CLI flags)."""

    __slots__ = ()

    @property
    def owners(self) -> Set[int]:
        return {0, self.deploy_owner}


class SyncResult:
    """What a sync did (or, with --check, would do)."""

    def __init__(self, generation: str, node_class: str, class_reason: str, channel: str,
                 check: bool) -> None:
        self.generation = generation
        self.node_class = node_class
        self.class_reason = class_reason
        self.channel = channel
        self.check = check
        self.changes: List[Dict[str, str]] = []
        self.diff: Optional[List[Dict[str, Any]]] = None
        self.notes: List[str] = []
        self.errors: List[str] = []
        self.pending: Dict[str, str] = {}  # step -> why it failed (still due)
        self.stale_userns: List[Dict[str, Any]] = []
        self.migrated: List[Dict[str, Any]] = []

    def __repr__(self) -> str:
        return f"SyncResult({self.msg!r})"

    @property
    def changed(self) -> bool:
        return bool(self.changes) or bool(self.migrated)

    @property
    def msg(self) -> str:
        head = f"generation {self.generation}, class {self.node_class} ({self.class_reason})"
        if self.errors:
            return f"{head}: " + "; ".join(self.errors)
        if not self.changes:
            return f"{head}: nothing to do, the node is up to date"
        verb = "would change" if self.check else "changed"
        return f"{head}: {verb} {len(self.changes)} file(s)"



def describe(result: SyncResult) -> Dict[str, Any]:
    """The --format json fields of a sync beyond changed/failed/msg."""
    out: Dict[str, Any] = {
        "generation": result.generation,
        "class": result.node_class,
        "class_reason": result.class_reason,
        "channel": result.channel,
        "check": result.check,
        "changes": result.changes,
        "notes": result.notes,
        "pending": [{"step": k, "error": v} for k, v in sorted(result.pending.items())],
        "stale_userns": result.stale_userns,
    }
    if result.migrated:
        out["migrated"] = result.migrated
    if result.diff is not None:
        out["diff"] = result.diff
    if result.errors:
        out["errors"] = result.errors
    return out


def as_text(result: SyncResult) -> str:
    """What a person reads: the summary, one line per change, notes, then any diff."""
    lines = [result.msg]
    lines += [f"  {c['action']:<8} /{c['path']}" for c in result.changes]
    lines += [f"  note: {n}" for n in result.notes]
    text = "\n".join(lines) + "\n"
    if result.diff:
        from hpcpolicy.generation import diff as diffs

        text += diffs.unified(result.diff)
    return text



UNCHECKED_NOTE = ("the site signs its generations but this node does not check the signature: "
                  "set allowed_signers in /etc/hpcpolicy/node.toml (or --allowed-signers)")


def class_key(opts: SyncOptions) -> str:
    """What picked the class: `--class NAME`, or the hostname matched against node sets. The
    node's record keeps it, so that a renamed host or another --class is not an idle sync."""
    import os

    if opts.node_class:
        return f"class:{opts.node_class}"
    return f"host:{opts.hostname or os.uname().nodename}"


def sync_options(config: NodeConfig, *, deploy_root: Optional[str] = None,
                 deploy_owner: Union[str, int, None] = None,
                 allowed_signers: Optional[str] = None, node_class: Optional[str] = None,
                 channel: Optional[str] = None, **rest: Any) -> SyncOptions:
    """The options of a sync: the command line's values over node.toml's (the CLI, Ansible)."""
    merged = config.override(deploy_root=deploy_root, deploy_owner=deploy_owner,
                             allowed_signers=allowed_signers, node_class=node_class,
                             channel=channel)
    if merged.deploy_root is None:
        where = config.path or DEFAULT_PATH
        raise UsageError(f"no deploy root: give --from DEPLOY_ROOT or set deploy_root in {where}")
    return SyncOptions(deploy_root=merged.deploy_root, allowed_signers=merged.allowed_signers,
                       node_class=merged.node_class, channel=merged.channel_name,
                       deploy_owner=merged.owner_uid(), node_toml=merged.record, **rest)
