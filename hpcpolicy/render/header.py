"""The comment header of every rendered file that has comments (a leaf: renderers import it)."""

from __future__ import annotations

from hpcpolicy.policy.model import Policy


def header(policy: Policy, comment: str = "#") -> bytes:
    """Tells whoever opens a node's file that it is generated and where changes belong."""
    lines = [
        f"{comment} Rendered by hpcpolicy for site {policy.site.name}. Do not edit:",
        f"{comment} changes are overwritten at the next `hpcpolicy node sync`.",
    ]
    return ("\n".join(lines) + "\n").encode()
