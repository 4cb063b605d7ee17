"""A `node sync` with nothing to do, decided from the node's own record.

The timer runs `node sync` on every node every few minutes; nearly always nothing changed.
Then this reads, from shared storage, the channel link only (after the same trust checks as a
full sync: owners and modes of the deploy root, its parents and the link, by `stat`), and on
the node its state file and one `lstat` per installed file. The sync is idle when the link
names the generation the node installed, from the same deploy root, channel, class choice,
deploy owner and allowed-signers file, with no step pending, and every installed file still
equals its record (see `record.py`). Anything else returns None and the full sync runs:
it verifies the new generation, and rehashes (and repairs) what changed on the node.

Imports are kept to what this needs: it decides the cost of every idle run. Every module on
this path (the console script's fast path `cli.quick`, `node.sync`, this, and what they import)
imports typing only for the type checker (`TYPE_CHECKING = False` and `if TYPE_CHECKING:`,
which mypy reads as typing's own): typing would cost about a third of Python's start-up.
tests/test_start_up.py checks that an idle sync imports neither typing nor the full sync.
"""

from __future__ import annotations

import os

from hpcpolicy.errors import HpcPolicyError
from hpcpolicy.node import link
from hpcpolicy.node.options import UNCHECKED_NOTE, SyncOptions, SyncResult, class_key
from hpcpolicy.node.record import file_key, intact

TYPE_CHECKING = False  # typing's, without importing typing: see node/idle.py
if TYPE_CHECKING:
    from typing import Any, Mapping, Optional


def basis_of(opts: SyncOptions, deploy_root: str) -> dict:
    """What the node's record must match for an idle sync (saved by every full sync)."""
    return {"deploy_root": deploy_root, "channel": opts.channel, "class_key": class_key(opts),
            "deploy_owner": opts.deploy_owner, "allowed_signers": opts.allowed_signers,
            "signers_key": file_key(opts.allowed_signers)}


def _load(root: str) -> Optional[Mapping[str, Any]]:
    from hpcpolicy.node.state import load_state

    try:
        return load_state(root)
    except HpcPolicyError:
        return None  # the full sync reports it


def idle(opts: SyncOptions) -> Optional[SyncResult]:
    """The result of a sync with nothing to do, or None when a full sync must run.

    Raises what the full sync would raise about the deploy root and its link (unsafe owner or
    mode, nothing published), so both paths refuse the same things.
    """
    if opts.migrate_users or opts.allow_older or opts.want_diff:
        return None
    root = os.path.realpath(os.path.abspath(opts.root))
    state = _load(root)
    if state is None or state.get("pending"):
        return None  # first sync, damaged state, or a step still owed: the full sync does it
    deploy_root = link.check_deploy_root(opts.deploy_root, opts.owners)
    link.check_link(deploy_root, opts.channel, opts.owners)
    name, _gen_dir = link.resolve(deploy_root, opts.channel)
    if state.get("generation") != name or state.get("idle") != basis_of(opts, deploy_root):
        return None
    if opts.node_toml is not None and state.get("node_toml") != opts.node_toml:
        return None  # node.toml was read anew: the full sync records it (next runs reuse it)
    files = state.get("files")
    if not isinstance(files, dict) or not all(intact(root, rel, state) for rel in files):
        return None
    result = SyncResult(name, str(state.get("class")), str(state.get("class_reason") or
                        "as installed"), opts.channel, opts.check)
    if state.get("site_signs") and opts.allowed_signers is None:
        result.notes.append(UNCHECKED_NOTE)
    stale = state.get("stale_userns")
    if stale:  # users still running old user namespaces: looked at again (local /proc only)
        from hpcpolicy.node.userns import report

        report(opts, root, False, state, result)
        if sorted(u["uid"] for u in result.stale_userns) != sorted(stale):
            return None  # some ended (or more appeared): the full sync records it
    return result
