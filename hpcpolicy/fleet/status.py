"""`fleet status`: run `node doctor --format json` on every node through ClusterShell, fold it.

The fan-out is ClusterShell's (its ssh worker, or its exec worker, which runs the command on
this host with `%h` replaced by each node name): its fanout window, timeouts, node sets and
groups, and the ssh settings a site already keeps in ClusterShell's `clush.conf`
(`ssh_user`, `ssh_path`, `ssh_options`). This module only schedules one worker and folds the
answers, so its cost grows with the number of distinct answers, not with a loop of its own.

Folding, per node: an answer that is doctor's JSON gives the node's generation, channel and
class, and `failed`; anything else (no JSON, a traceback, a login banner only) makes the node
*failing* with the first line it printed; no answer at all (ssh could not connect: exit 255, or
the timeout passed) makes it *unreachable*. A node is *behind* when the generation it holds is
not the one its own channel names now (a node that never synced holds none). Node sets are
folded in ClusterShell's syntax (`node[1-3,7]`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

from hpcpolicy.errors import RuntimeFailure, UsageError
from hpcpolicy.generation.naming import STABLE

DEFAULT_COMMAND = "hpcpolicy node doctor --format json"
WORKERS = ("ssh", "exec")
SSH_UNREACHABLE = 255  # ssh's own exit code when it could not reach or log in to the node
UNREACHABLE, FAILING, OK = "unreachable", "failing", "ok"
MSG_LIMIT = 300  # characters of a node's message kept (a garbage answer can be huge)


@dataclass(frozen=True)
class Raw:
    """What ClusterShell gathered for one node."""

    rc: Optional[int]
    out: bytes = b""
    err: bytes = b""
    timed_out: bool = False


@dataclass(frozen=True)
class NodeAnswer:
    """One node, folded: what it holds and whether it passed."""

    generation: Optional[str]
    channel: Optional[str]
    node_class: Optional[str]
    failed: bool
    msg: str
    state: str  # ok | failing | unreachable
    answered: bool = True  # False: no doctor answer, so what it holds is unknown

    def as_dict(self) -> Dict[str, Any]:
        return {"generation": self.generation, "channel": self.channel,
                "class": self.node_class, "failed": self.failed, "msg": self.msg}


@dataclass
class FleetStatus:
    """The folded answers of a node set."""

    channel: str
    channels: Dict[str, Optional[str]]
    nodes: Dict[str, NodeAnswer] = field(default_factory=dict)

    @property
    def current(self) -> Optional[str]:
        """The generation of the channel asked about (`--channel`, default stable)."""
        return self.channels.get(self.channel)

    def _nodeset(self, names: List[str]) -> str:
        from ClusterShell.NodeSet import NodeSet

        return str(NodeSet.fromlist(names)) if names else ""

    def _names(self, state: str) -> List[str]:
        return [n for n, a in self.nodes.items() if a.state == state]

    def behind_names(self) -> List[str]:
        out = []
        for name, answer in self.nodes.items():
            if not answer.answered:
                continue
            want = self.channels.get(answer.channel or self.channel)
            if want is not None and answer.generation != want:
                out.append(name)
        return out

    @property
    def failed(self) -> bool:
        return any(a.state != OK for a in self.nodes.values())

    def generations(self) -> Dict[str, str]:
        by_gen: Dict[str, List[str]] = {}
        for name, answer in self.nodes.items():
            if answer.generation is not None:
                by_gen.setdefault(answer.generation, []).append(name)
        return {gen: self._nodeset(names) for gen, names in sorted(by_gen.items())}

    @property
    def msg(self) -> str:
        total = len(self.nodes)
        counts = [(len(self._names(s)), s) for s in (FAILING, UNREACHABLE)]
        behind = len(self.behind_names())
        parts = [f"{n} {what}" for n, what in counts + [(behind, "behind")] if n]
        head = f"{total} node(s)"
        current = f"{self.channel} is {self.current or 'unpublished'}"
        if not parts:
            return f"{head} answered and passed; {current}"
        return f"{head}: " + ", ".join(parts) + f"; {current}"

    def as_dict(self) -> Dict[str, Any]:
        """The --format json object (node sets as folded strings)."""
        return {
            "changed": False,
            "failed": self.failed,
            "msg": self.msg,
            "current": self.current,
            "channel": self.channel,
            "channels": dict(self.channels),
            "nodes": {n: a.as_dict() for n, a in sorted(self.nodes.items())},
            "generations": self.generations(),
            "behind": self._nodeset(self.behind_names()),
            "failing": self._nodeset(self._names(FAILING)),
            "unreachable": self._nodeset(self._names(UNREACHABLE)),
        }

    def as_text(self) -> str:
        doc = self.as_dict()
        lines = [doc["msg"]]
        for chan, gen in sorted(self.channels.items()):
            lines.append(f"  channel {chan}: {gen or 'nothing published'}")
        for gen, nodes in doc["generations"].items():
            lines.append(f"  {gen}: {nodes}")
        never = [n for n, a in self.nodes.items() if a.answered and a.generation is None]
        if never:
            lines.append(f"  never synced: {self._nodeset(never)}")
        for key in ("behind", "failing", "unreachable"):
            if doc[key]:
                lines.append(f"  {key}: {doc[key]}")
        for name, answer in sorted(self.nodes.items()):
            if answer.state != OK:
                lines.append(f"    {name}: {answer.msg}")
        return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- folding


def _first_line(data: bytes) -> str:
    for line in data.decode("utf-8", "replace").splitlines():
        if line.strip():
            return line.strip()[:MSG_LIMIT]
    return ""


def _doctor_json(out: bytes) -> Optional[Dict[str, Any]]:
    """Doctor's one JSON object, or None. Tolerates noise before it (a login banner)."""
    text = out.decode("utf-8", "replace").strip()
    candidates = [text] + [line for line in reversed(text.splitlines()[1:])
                           if line.startswith("{")][:1]
    for candidate in candidates:
        try:
            doc = json.loads(candidate)
        except ValueError:
            continue
        if (isinstance(doc, dict) and isinstance(doc.get("failed"), bool)
                and isinstance(doc.get("msg"), str) and isinstance(doc.get("checks"), list)):
            return doc
    return None


def _opt_str(value: Any) -> Optional[str]:
    return value if isinstance(value, str) and value else None


def parse_answer(raw: Raw, worker: str, timeout: float) -> NodeAnswer:
    """One node's output -> NodeAnswer (never raises: any answer is a result)."""
    if raw.timed_out:
        return NodeAnswer(None, None, None, True, f"no answer within {timeout:g} s", UNREACHABLE,
                          answered=False)
    doc = _doctor_json(raw.out)
    if doc is None:
        said = _first_line(raw.out) or _first_line(raw.err)
        if worker == "ssh" and raw.rc == SSH_UNREACHABLE:
            return NodeAnswer(None, None, None, True, said or "ssh failed (exit 255)",
                              UNREACHABLE, answered=False)
        what = f"(exit {raw.rc}): {said}" if said else f"(exit {raw.rc}, no output)"
        return NodeAnswer(None, None, None, True, f"not a node doctor answer {what}", FAILING,
                          answered=False)
    failed = bool(doc["failed"]) or raw.rc not in (0, None)
    msg = str(doc["msg"])[:MSG_LIMIT]
    if failed and not doc["failed"]:
        msg = f"exit {raw.rc}: {msg}"
    if failed:
        bad = [str(c.get("name")) for c in doc["checks"]
               if isinstance(c, dict) and c.get("status") == "FAIL"]
        if bad:
            msg = f"{msg} ({', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''})"
    return NodeAnswer(_opt_str(doc.get("generation")), _opt_str(doc.get("channel")),
                      _opt_str(doc.get("class")), failed, msg, FAILING if failed else OK)


def fold(raws: Mapping[str, Raw], channels: Mapping[str, Optional[str]], channel: str = STABLE,
         worker: str = "ssh", timeout: float = 30.0) -> FleetStatus:
    """Pure: every node's raw answer and the deploy root's channels -> FleetStatus."""
    result = FleetStatus(channel=channel, channels=dict(channels))
    for name, raw in raws.items():
        result.nodes[name] = parse_answer(raw, worker, timeout)
    return result


# ----------------------------------------------------------------------------- fan-out


def parse_nodeset(nodes: str) -> Any:
    """A ClusterShell NodeSet (groups resolved); UsageError (exit 2) when it does not parse."""
    from ClusterShell.NodeSet import NodeSet, NodeSetException

    try:
        nodeset = NodeSet(nodes)
    except (NodeSetException, ValueError, TypeError) as err:
        raise UsageError(f"node set {nodes!r} does not parse: {err}") from None
    if len(nodeset) == 0:
        raise UsageError(f"node set {nodes!r} names no node")
    return nodeset


def _ssh_settings(task: Any) -> None:
    """ssh_user / ssh_path / ssh_options from clush.conf, as `clush` itself would use them."""
    from types import SimpleNamespace

    from ClusterShell.CLI.Config import ClushConfig, ClushConfigError

    none = SimpleNamespace(quiet=False, verbose=False, debug=False, fanout=None, user=None,
                           options=None, connect_timeout=None, command_timeout=None,
                           whencolor=None, maxrc=None, option=[])
    try:
        config = ClushConfig(none)
        values = {"ssh_user": config.ssh_user, "ssh_path": config.ssh_path,
                  "ssh_options": config.ssh_options}
    except (ClushConfigError, ValueError) as err:
        raise RuntimeFailure(f"clush.conf: {err}") from None
    for key, value in values.items():
        if value:
            task.set_info(key, value)


def gather(nodeset: Any, command: str, worker: str, fanout: int, timeout: float
           ) -> Dict[str, Raw]:
    """Run `command` on every node through one ClusterShell worker; {node: Raw}."""
    from ClusterShell.Task import task_self
    from ClusterShell.Worker.Exec import ExecWorker
    from ClusterShell.Worker.Ssh import WorkerSsh
    from ClusterShell.Worker.Worker import WorkerError

    task = task_self()
    task.set_info("fanout", fanout)
    task.set_info("connect_timeout", min(timeout, 10.0))
    if worker == "ssh":
        _ssh_settings(task)
    cls = WorkerSsh if worker == "ssh" else ExecWorker
    work = cls(nodeset, handler=None, timeout=timeout, command=command, stderr=True)
    work.set_write_eof()  # nothing on stdin: a command that reads it must not hang
    task.schedule(work)
    try:
        task.run()
    except WorkerError as err:  # e.g. an exec command with a bad %-pattern
        raise UsageError(f"--command {command!r}: {err}") from None
    outs = {str(n): bytes(b) for n, b in work.iter_node_buffers()}
    errs = {str(n): bytes(b) for n, b in work.iter_node_errors()}
    rcs = {str(n): rc for n, rc in work.iter_node_retcodes()}
    timed = {str(n) for n in work.iter_keys_timeout()}
    return {str(n): Raw(rcs.get(str(n)), outs.get(str(n), b""), errs.get(str(n), b""),
                        str(n) in timed) for n in nodeset}


def status(nodes: str, site: Optional[str] = None, deploy_root: Optional[str] = None,
           channel: Optional[str] = None, worker: str = "ssh", command: str = DEFAULT_COMMAND,
           fanout: int = 64, timeout: float = 30.0) -> FleetStatus:
    """`fleet status`: ask every node of `nodes` (ClusterShell syntax) and fold the answers.

    The deploy root whose channels the nodes are compared with is `deploy_root`, or the one the
    site file `site` names; it is checked as every reader checks it. Bad options and a node set
    that does not parse are refused (exit 2) before the deploy root is read, and a bad channel
    name before any node is asked.
    """
    from hpcpolicy.generation.naming import channels
    from hpcpolicy.generation.reading import read_root

    if worker not in WORKERS:
        raise UsageError(f"--worker {worker}: use one of {', '.join(WORKERS)}")
    if fanout < 1:
        raise UsageError(f"--fanout {fanout}: must be at least 1")
    if timeout <= 0:
        raise UsageError(f"--timeout {timeout:g}: must be more than 0 seconds")
    if not command.strip():
        raise UsageError("--command: empty")
    nodeset = parse_nodeset(nodes)
    root = read_root(site, deploy_root, "fleet status", channel)
    raws = gather(nodeset, command, worker, fanout, timeout)
    return fold(raws, channels(root), channel or STABLE, worker, timeout)
