"""Names and links on a deploy root, shared by the publisher and the nodes.

A generation is `generations/NNNNNN-HHHHHHHH`: a number one above the highest before it, and
the first 8 hex digits of the sha256 over its trees (so two generations with the same files are
visibly alike). `current` is the channel `stable`; another channel is `channels/NAME`. Both are
relative symlinks, so a deploy root can be mounted at different paths on different hosts.
Anything starting with `.` under `generations/` is work in progress and never a generation.
"""

from __future__ import annotations

import errno
import os
import re

from hpcpolicy.errors import RuntimeFailure, UsageError, os_failure

TYPE_CHECKING = False  # typing's, without importing typing: see node/idle.py
if TYPE_CHECKING:
    from typing import Dict, List, Mapping, Optional, Tuple

GENERATIONS = "generations"
CURRENT = "current"
CHANNELS = "channels"
STABLE = "stable"
MANIFEST = "manifest.json"
TREE = "tree"
CLASS_DIR = "class"
DEFAULT_CLASS = "default"
TMP_PREFIX = ".tmp-"

NAME_RE = re.compile(r"^(\d{6,})-([0-9a-f]{8})$")
CHANNEL_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
CLASS_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def format_name(number: int, tree_sha256: str) -> str:
    """`format_name(42, "3f2a9c1b...")` -> `"000042-3f2a9c1b"`."""
    return f"{number:06d}-{tree_sha256[:8]}"


def parse_name(name: str) -> Optional[Tuple[int, str]]:
    """(number, short hash) of a generation name, or None when it is not one."""
    match = NAME_RE.match(name)
    return (int(match.group(1)), match.group(2)) if match else None


def number_of(name: str) -> int:
    parsed = parse_name(name)
    if parsed is None:
        raise ValueError(f"not a generation name: {name!r}")
    return parsed[0]


def tree_dir(node_class: str) -> str:
    """Where a class's tree lives inside a generation: `tree` or `class/NAME/tree`."""
    if node_class == DEFAULT_CLASS:
        return TREE
    if not CLASS_RE.match(node_class):
        raise ValueError(f"invalid node class name {node_class!r}")
    return f"{CLASS_DIR}/{node_class}/{TREE}"


def trees_sha256(trees: Mapping[str, Mapping[str, bytes]]) -> str:
    """One digest over every class's files (class, path and content, in a fixed order)."""
    import hashlib  # here: nodes read names and links on every timer run, never hash trees

    digest = hashlib.sha256()
    for node_class in sorted(trees):
        for path in sorted(trees[node_class]):
            content = trees[node_class][path]
            for part in (node_class.encode(), path.encode(), str(len(content)).encode()):
                digest.update(part + b"\0")
            digest.update(hashlib.sha256(content).digest())
    return digest.hexdigest()


def generations_dir(deploy_root: str) -> str:
    return os.path.join(deploy_root, GENERATIONS)


def list_generations(deploy_root: str) -> List[str]:
    """Every published generation name, oldest (lowest number) first."""
    try:
        entries = os.listdir(generations_dir(deploy_root))
    except FileNotFoundError:
        return []
    except OSError as err:
        where = generations_dir(deploy_root)
        raise os_failure(err, where, "cannot list") from None
    return sorted((e for e in entries if parse_name(e)), key=number_of)


def channel_link(deploy_root: str, channel: str = STABLE) -> str:
    """The symlink of a channel: `current` for stable, `channels/NAME` otherwise."""
    if channel == STABLE:
        return os.path.join(deploy_root, CURRENT)
    if not CHANNEL_RE.match(channel):
        raise UsageError(f"invalid channel name {channel!r}: [a-z0-9][a-z0-9-]{{0,62}}")
    return os.path.join(deploy_root, CHANNELS, channel)


def link_target(channel: str, name: str) -> str:
    """The relative target a channel's link gets for generation `name`."""
    return f"{GENERATIONS}/{name}" if channel == STABLE else f"../{GENERATIONS}/{name}"


def channel_generation(deploy_root: str, channel: str = STABLE) -> Optional[str]:
    """The generation a channel names, or None when the channel does not exist yet.

    A link that is not a symlink to `generations/<valid name>` is an error: a node must never
    follow a link somebody pointed elsewhere.
    """
    link = channel_link(deploy_root, channel)
    try:
        target = os.readlink(link)
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno == errno.EINVAL:
            raise RuntimeFailure(f"{link}: is not a symlink") from None
        raise os_failure(err, link, "cannot read") from None
    name = os.path.basename(target)
    if target != link_target(channel, name) or not parse_name(name):
        raise RuntimeFailure(f"{link}: points to {target!r}, not to a generation")
    return name


def channels(deploy_root: str) -> Dict[str, Optional[str]]:
    """Every channel and the generation it names (`stable` always listed)."""
    out: Dict[str, Optional[str]] = {STABLE: channel_generation(deploy_root, STABLE)}
    try:
        names = sorted(os.listdir(os.path.join(deploy_root, CHANNELS)))
    except FileNotFoundError:
        names = []
    for name in names:
        if CHANNEL_RE.match(name) and name != STABLE:
            out[name] = channel_generation(deploy_root, name)
    return out


def resolve(deploy_root: str, spec: str) -> str:
    """A generation from its directory name (`000042-3f2a9c1b`) or number (`42`)."""
    names = list_generations(deploy_root)
    if spec.isdigit():
        found = [n for n in names if number_of(n) == int(spec)]
    else:
        found = [n for n in names if n == spec]
    if not found:
        raise UsageError(f"no generation {spec!r} in {generations_dir(deploy_root)}")
    return found[0]
