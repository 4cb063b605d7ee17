"""`/etc/hpcpolicy/node.toml`: what a node was told to trust, and where to sync from.

Read by `node sync`, `node doctor`, the systemd unit (through `node sync`) and the Ansible
modules; a command-line option overrides the key of the same meaning. Every key is optional::

    deploy_root = "/shared/hpcpolicy"              # --from
    deploy_owner = "hpcpolicy"                     # --deploy-owner: a user name or a uid
    allowed_signers = "/etc/hpcpolicy/allowed_signers"   # --allowed-signers
    channel = "stable"                             # --channel
    class = "gpu"                                  # --class

Why it is always read from this host's `/etc` (or `--config FILE`), never from below `--root`:
it says whom this machine trusts, and a tree being filled (a node image) is what is written,
not what decides. The file must be root-owned and not writable by group or other, like the
allowed-signers file it names: whoever could edit it could point the node at their own deploy
root. A missing default file means "nothing configured"; a missing `--config FILE` is an error.

Parsing TOML costs `tomllib`'s import, as much as the rest of a `node sync` with nothing to do,
which every node's timer runs every few minutes. So every full sync records the file's checked
content with its identity (size, mtime, ctime, inode, device: ctime cannot be set from user
space, so any change or replacement shows) in the node's state, and `load(..., root=ROOT)`
reuses that content while the identity is unchanged. The trust checks run every time.
"""

from __future__ import annotations

import os
import pwd
import sys

from hpcpolicy.errors import HpcPolicyError, InvalidInput, ProblemCollector, UsageError
from hpcpolicy.generation.naming import CHANNEL_RE, CLASS_RE, STABLE
from hpcpolicy.generation.trust import anchor_problem
from hpcpolicy.node.record import identity

TYPE_CHECKING = False  # typing's, without importing typing: see node/idle.py
if TYPE_CHECKING:
    from typing import Any, Dict, Optional, Set, Union

DEFAULT_PATH = "/etc/hpcpolicy/node.toml"
KEYS = ("deploy_root", "deploy_owner", "allowed_signers", "channel", "class")


if TYPE_CHECKING:
    from typing import NamedTuple

    class _NodeConfig(NamedTuple):
        path: Optional[str] = None  # the file read, None when there was none
        deploy_root: Optional[str] = None
        deploy_owner: Union[str, int, None] = None
        allowed_signers: Optional[str] = None
        channel: Optional[str] = None
        node_class: Optional[str] = None
        owner_where: str = "--deploy-owner"  # where deploy_owner came from, for messages
        record: Optional[Dict[str, Any]] = None  # {path, key, doc}: kept by a full sync
else:  # the same tuple type at run time, without importing typing (tests/test_start_up.py)
    from collections import namedtuple

    _NodeConfig = namedtuple("NodeConfig", (
        "path", "deploy_root", "deploy_owner", "allowed_signers", "channel", "node_class",
        "owner_where", "record"), defaults=(None, None, None, None, None, None, "--deploy-owner",
                                            None))


class NodeConfig(_NodeConfig):
    """The node's settings after node.toml and the command line (None: not set anywhere).

    A named tuple, not a dataclass: every timer run of `node sync` reads it, and `dataclasses`
    would import `inspect` (and ast, dis, tokenize) into that run (typing's NamedTuple would
    import typing).
    """

    __slots__ = ()

    def override(self, **options: Any) -> NodeConfig:
        """Command-line values win over the file's; None leaves the file's value."""
        given = {k: v for k, v in options.items() if v is not None}
        if "deploy_owner" in given:
            given["owner_where"] = "--deploy-owner"
        return self._replace(**given)

    @property
    def channel_name(self) -> str:
        return self.channel or STABLE

    def owner_uid(self) -> int:
        """The deploy owner as a uid (root when neither the file nor the command line says)."""
        return resolve_owner(self.deploy_owner, self.owner_where)

    def trusted_uids(self) -> Set[int]:
        """Who may own what a node reads from the deploy root: root and the deploy owner."""
        return {0, self.owner_uid()}


def resolve_owner(value: Union[str, int, None], where: str = "--deploy-owner") -> int:
    """A user name or uid (as text or number) as a uid; None is root."""
    if value is None:
        return 0
    if isinstance(value, int) or value.isdigit():
        uid = int(value)
        if uid >= 2**32 - 1:
            raise UsageError(f"{where}: {value} is not a valid uid")
        return uid
    try:
        return pwd.getpwnam(value).pw_uid
    except KeyError:
        raise UsageError(f"{where}: no user {value!r} on this node") from None


def _check(doc: Any, problems: ProblemCollector) -> NodeConfig:
    for key in sorted(set(doc) - set(KEYS)):
        problems.add(key, f"unknown key (known: {', '.join(KEYS)})")
    for key in ("deploy_root", "allowed_signers"):
        value = doc.get(key)
        if value is not None and (not isinstance(value, str) or not os.path.isabs(value)):
            problems.add(key, "must be an absolute path")
    owner = doc.get("deploy_owner")
    if owner is not None:
        good_int = isinstance(owner, int) and not isinstance(owner, bool) and 0 <= owner < 2**32 - 1
        good_name = isinstance(owner, str) and owner != "" and owner.isprintable()
        if not (good_int or good_name):
            problems.add("deploy_owner", "must be a user name or a uid")
    for key, pattern in (("channel", CHANNEL_RE), ("class", CLASS_RE)):
        value = doc.get(key)
        if value is not None and (not isinstance(value, str) or not pattern.match(value)):
            problems.add(key, "must be a name of lower-case letters, digits and '-'")
    return NodeConfig(deploy_root=doc.get("deploy_root"), deploy_owner=owner,
                      allowed_signers=doc.get("allowed_signers"), channel=doc.get("channel"),
                      node_class=doc.get("class"))


def _recorded(file: str, root: Optional[str]) -> Optional[Dict[str, Any]]:
    """The content of `file` a full sync recorded under `root`, while the file is unchanged."""
    if root is None:
        return None
    from hpcpolicy.node.state import load_state

    try:
        state = load_state(os.path.realpath(os.path.abspath(root)))
        rec = (state or {}).get("node_toml")
        if not isinstance(rec, dict) or rec.get("path") != file or \
                not isinstance(rec.get("doc"), dict) or rec.get("key") != identity(os.stat(file)):
            return None
    except (HpcPolicyError, OSError):
        return None  # read and checked the normal way
    return rec


def _parse(file: str) -> Dict[str, Any]:
    """{path, key, doc}: the file parsed, with the identity of what was read (fstat of the
    open file, so a change while reading shows as a different identity next time)."""
    if sys.version_info >= (3, 11):  # here: most runs reuse the recorded content (no parser)
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        with open(file, "rb") as handle:
            key = identity(os.fstat(handle.fileno()))
            doc = tomllib.load(handle)
    except OSError as err:
        raise InvalidInput(f"cannot read: {err.strerror}", file=file) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise InvalidInput(f"not valid TOML: {err}", file=file) from None
    return {"path": file, "key": key, "doc": doc}


def load(path: Optional[str] = None, root: Optional[str] = None) -> NodeConfig:
    """node.toml from `path` (`--config`), else the default path when it exists.

    `root`: the node root of a `node sync`, whose state may hold this file's content as the
    last full sync checked it (reused while the file is unchanged; see the module docstring).
    Raises InvalidInput (exit 2) naming the file, and every bad key at once.
    """
    explicit = path is not None
    file = path if path is not None else DEFAULT_PATH
    if not explicit and not os.path.lexists(file):
        return NodeConfig()
    problems = ProblemCollector(file)
    why = anchor_problem(file, {0, os.geteuid()})
    if why:
        raise InvalidInput(why, file=file)
    record = _recorded(file, root) or _parse(file)
    config = _check(record["doc"], problems)
    problems.raise_if_any()
    config = config._replace(path=file, owner_where=f"{file}: deploy_owner", record=record)
    if config.deploy_owner is not None:
        config.owner_uid()  # an unknown user name is this file's error, said now
    return config

