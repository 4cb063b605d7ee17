"""What apply, rollback and promote hand back (the faces turn it into text or JSON)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hpcpolicy.generation.naming import STABLE


@dataclass
class ApplyResult:
    """What apply / rollback / promote did (or, with check, would do)."""

    changed: bool
    generation: Optional[str]
    previous: Optional[str]
    msg: str
    changes: List[Dict[str, str]] = field(default_factory=list)
    diff: Optional[List[Dict[str, Any]]] = None
    channel: str = STABLE
    check: bool = False
    ledger_saved: bool = False
    removed: List[str] = field(default_factory=list)  # generations GC deleted
    subid: Dict[str, Any] = field(default_factory=dict)
    # who gained or lost which image ({image, before, after, users, groups, sample, class})
    access_changes: List[Dict[str, Any]] = field(default_factory=list)
    # what the site file risks (cautions), then what the directory read noticed (referrals)
    warnings: List[str] = field(default_factory=list)

    def as_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "changed": self.changed, "generation": self.generation, "previous": self.previous,
            "msg": self.msg, "changes": self.changes, "channel": self.channel,
            "check": self.check, "ledger_saved": self.ledger_saved, "gc_removed": self.removed,
            "access_changes": self.access_changes, "warnings": self.warnings,
        }
        if self.subid:
            out["subid"] = self.subid
        if self.diff is not None:
            out["diff"] = self.diff
        return out
