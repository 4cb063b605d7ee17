"""A sub-ID range handed to one user: the same [start, start+count) in subuid and subgid."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Allocation:
    name: str
    uid: int
    start: int
    count: int

    @property
    def last(self) -> int:
        return self.start + self.count - 1
