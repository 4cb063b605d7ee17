"""Asking a fleet of nodes what they hold (`hpcpolicy fleet status`). Never installs anything."""

from __future__ import annotations

from hpcpolicy.fleet.status import DEFAULT_COMMAND, FleetStatus, NodeAnswer, fold, status

__all__ = ["DEFAULT_COMMAND", "FleetStatus", "NodeAnswer", "fold", "status"]
