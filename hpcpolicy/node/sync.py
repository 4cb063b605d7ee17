"""`hpcpolicy node sync` as one library call, `sync(options)`: the CLI, the console script's
fast path (`cli.quick`) and the Ansible module all make this call, so they decide alike.

A timer runs it on every node every few minutes and nearly always nothing changed. Then
`node.idle` decides from the node's own record, and this module has imported nothing more:
the verification and install code (`node.full`) is imported only when there is work to do.
"""

from __future__ import annotations

from hpcpolicy.node.idle import idle
from hpcpolicy.node.options import SyncOptions, SyncResult, as_text, describe, sync_options

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up cost)
if TYPE_CHECKING:
    from typing import Callable, Optional

# re-exported: callers import the whole node sync API from here
__all__ = ["SyncOptions", "SyncResult", "as_text", "describe", "sync", "sync_options"]


def sync(opts: SyncOptions, before_full: Optional[Callable[[], None]] = None) -> SyncResult:
    """Install the channel's generation under `opts.root`, or find that the node holds it.

    An idle sync is decided from the node's record alone (`node.idle`); anything else runs the
    full sync (`node.full.full_sync`), which verifies the generation before installing.
    `before_full` is called once, just before the full sync starts, never on an idle sync: the
    CLI sets up its logging there, and the console script's fast path raises there to hand the
    command over to the full CLI. What it raises propagates, with nothing done.
    """
    result = idle(opts)
    if result is not None:
        return result
    if before_full is not None:
        before_full()
    from hpcpolicy.node.full import full_sync

    return full_sync(opts)
