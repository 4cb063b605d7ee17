"""What a command hands back to `main`: a JSON payload and the text a person reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional


@dataclass
class Outcome:
    """Result of one command.

    `data` is the `--format json` object (main adds `changed`, `failed`, `msg` when missing);
    `text` is printed on stdout in text formats; `exit_code` is 0 unless the command found
    a failure it reports as data (e.g. `node doctor`, `subid check`).
    """

    msg: str
    data: Dict[str, Any] = field(default_factory=dict)
    text: str = ""
    changed: bool = False
    exit_code: int = 0
    # printed as it is produced instead of `data`/`text` (JSON Lines: `audit --decisions`)
    stream: Optional[Iterable[str]] = None
    # lines for stderr, whatever the format (e.g. the failures of a node sync that went on)
    notes: List[str] = field(default_factory=list)

    def payload(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "changed": self.changed,
            "failed": self.exit_code != 0,
            "msg": self.msg,
        }
        out.update(self.data)
        return out
