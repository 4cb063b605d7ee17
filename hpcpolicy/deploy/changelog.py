"""`log/changes.jsonl`: one JSON line per apply, rollback, promote or sub-ID command.

Why appending (and not atomic_write of the whole file) is safe here: every writer holds the
deploy lock, so there is one appender at a time, and a line is written by a single
`write()` on an O_APPEND descriptor then fsynced. The only damage a crash can do is a torn
LAST line; readers skip a line that is not valid JSON, and the next append first ends a torn
line with a newline so that it never glues onto it. Rewriting the file instead would cost
O(history) per apply and risk the whole history on a full disk.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timezone
from typing import Any, Dict, List

from hpcpolicy.deploy.store import LOG
from hpcpolicy.fsutil import append_line, make_dirs

CHANGES = "changes.jsonl"


def changes_path(deploy_root: str) -> str:
    return os.path.join(deploy_root, LOG, CHANGES)


def current_operator() -> str:
    """The account running the command (used when no approval step named one); never taken
    from $LOGNAME/$USER, which anybody sets (`approval.operator_name`)."""
    from hpcpolicy.deploy.approval import operator_name

    try:
        return operator_name()
    except KeyError:
        return str(os.getuid())


def append_change(deploy_root: str, entry: Dict[str, Any]) -> None:
    """Append `entry` as one line, adding `time` (ISO-8601 UTC), `host`, `operator` if absent.

    Call it while holding the DeployLock.
    """
    record = dict(entry)
    record.setdefault("time", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    record.setdefault("host", socket.gethostname())
    record.setdefault("operator", current_operator())
    line = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
    directory = os.path.join(deploy_root, LOG)
    if not os.path.isdir(directory):
        make_dirs(deploy_root, LOG)
    append_line(os.path.join(directory, CHANGES), line.encode())


def read_changes(deploy_root: str) -> List[Dict[str, Any]]:
    """Every well-formed entry, oldest first (a torn last line from a crash is skipped)."""
    path = changes_path(deploy_root)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return []
    out: List[Dict[str, Any]] = []
    for line in raw.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict):
            out.append(item)
    return out


def log_access(entries: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Access changes as the log records them: counts per image and group, no user names
    (the log is read more widely than access.json, which lists members and is mode 0640)."""
    return [{k: v for k, v in e.items() if k != "sample"} for e in entries]
