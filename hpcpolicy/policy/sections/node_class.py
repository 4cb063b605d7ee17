"""[[node_class]]: named node sets that get their own tree (login, compute, gpu...).

Node sets use ClusterShell's syntax without group resolution (`@group` would run the site's
group upcalls from a validator), and their size is bounded before parsing: ClusterShell expands
ranges, and `n[1-100000000]` would take minutes.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ClusterShell.NodeSet import RESOLVER_NOGROUP, NodeSet, NodeSetException

from hpcpolicy.errors import ProblemCollector
from hpcpolicy.policy import paths
from hpcpolicy.policy.model import NodeClass
from hpcpolicy.policy.schema import Field, read_table, string
from hpcpolicy.policy.sections import enforcement

MAX_NODES = 65536
_RANGE_RE = re.compile(r"(\d+)-(\d+)")
_NODESET_CHARS = re.compile(r"[A-Za-z0-9_.\-\[\],!&^/]+")


def _class_name(value: str) -> Optional[str]:
    if value == "default":
        return '"default" is the implicit class of every node no class matches'
    return None


def _group_size(inner: str) -> int:
    """Indices in one bracket group: `001-128,200` is 129 (a `/step` only lowers it)."""
    size = 0
    for item in inner.split(","):
        m = _RANGE_RE.match(item)
        size += max(int(m.group(2)) - int(m.group(1)) + 1, 0) if m else 1
    return size


def _upper_bound(value: str) -> int:
    """How many nodes a set names at most: the bracket groups of one pattern multiply
    (`a[1-100]b[1-100]` is 10,000), patterns and set operations add up."""
    total, pattern, depth, inner = 0, 1, 0, ""
    for ch in value + ",":
        if depth:
            if ch == "]":
                depth, pattern = 0, pattern * _group_size(inner)
                if pattern > MAX_NODES:
                    return pattern
            else:
                inner += ch
        elif ch == "[":
            depth, inner = 1, ""
        elif ch in ",!&^":
            total, pattern = total + pattern, 1
    return total


def _nodes_text(value: str) -> Optional[str]:
    if not value:
        return "must not be empty"
    if _NODESET_CHARS.fullmatch(value) is None:
        return ("must be a ClusterShell node set such as gpu[001-128],dgx[01-04] "
                "(no spaces, no @groups)")
    if len(value) > 65536 or _upper_bound(value) > MAX_NODES:
        return f"names more than {MAX_NODES} nodes"
    return None


def fields(base_dir: str) -> Dict[str, Field]:
    """The keys of one [[node_class]]; `base_dir` anchors ECL files in its runtime table."""
    return {
        "name": Field(string(lambda v: paths.check_name(v, paths.CLASS_NAME_RE,
                                                        "node class name") or _class_name(v))),
        "nodes": Field(string(_nodes_text)),
        "runtime": Field(enforcement.class_runtime_checker(base_dir), ()),
    }


FIELDS = fields("/")

Parsed = Tuple[NodeClass, NodeSet]


def parse_one(raw: Any, where: str, out: ProblemCollector,
              base_dir: str = "/") -> Optional[Parsed]:
    values = read_table(raw, where, fields(base_dir), out)
    if values is None:
        return None
    try:
        nodes = NodeSet(values["nodes"], resolver=RESOLVER_NOGROUP)
    except (NodeSetException, ValueError, IndexError) as err:
        out.add(f"{where}.nodes", f"is not a valid node set: {str(err).splitlines()[0]}")
        return None
    if len(nodes) == 0:
        out.add(f"{where}.nodes", "names no node")
        return None
    return NodeClass(**values), nodes


def check_all(parsed: Sequence[Tuple[int, Parsed]], out: ProblemCollector) -> List[NodeClass]:
    """Names unique, node sets disjoint (a node in two classes would have two trees)."""
    done: List[NodeClass] = []
    seen: List[Tuple[int, Parsed]] = []
    for index, (cls, nodes) in parsed:
        for other_index, (other, other_nodes) in seen:
            if cls.name == other.name:
                out.add(f"node_class[{index}].name", f"duplicate of node_class[{other_index}]")
            else:
                common = nodes & other_nodes
                if len(common):
                    out.add(f"node_class[{index}].nodes", f"overlaps node_class[{other_index}] "
                            f"({other.name}) on {str(common)[:80]}")
        seen.append((index, (cls, nodes)))
        done.append(cls)
    return done

