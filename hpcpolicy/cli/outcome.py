"""What a command hands back to `main`: a JSON payload and the text a person reads."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's, without importing typing: see node/idle.py
if TYPE_CHECKING:
    from typing import Any, Dict, Iterable, List, Optional



class Outcome:
    """Result of one command.

    `data` is the `--format json` object (main adds `changed`, `failed`, `msg` when missing);
    `text` is printed on stdout in text formats; `exit_code` is 0 unless the command found
    a failure it reports as data (e.g. `node doctor`, `subid check`).
    """

    # A plain class, not a dataclass: `dataclasses` imports `inspect` (and with it ast, dis,
    # tokenize), a third of the start-up of the `node sync` every node's timer runs.
    def __init__(self, msg: str, data: Optional[Dict[str, Any]] = None, text: str = "",
                 changed: bool = False, exit_code: int = 0,
                 stream: Optional[Iterable[str]] = None,
                 notes: Optional[List[str]] = None) -> None:
        self.msg = msg
        self.data: Dict[str, Any] = {} if data is None else data
        self.text = text
        self.changed = changed
        self.exit_code = exit_code
        # printed as it is produced instead of `data`/`text` (JSON Lines: `audit --decisions`)
        self.stream = stream
        # lines for stderr, whatever the format (e.g. the failures of a node sync that went on)
        self.notes: List[str] = [] if notes is None else notes

    def __repr__(self) -> str:
        return f"Outcome(msg={self.msg!r}, exit_code={self.exit_code}, changed={self.changed})"

    def payload(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "changed": self.changed,
            "failed": self.exit_code != 0,
            "msg": self.msg,
        }
        out.update(self.data)
        return out
