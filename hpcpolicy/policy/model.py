"""The typed model of a validated site.toml (schema 1). Immutable; built only by `policy.load`.

Every other package consumes these types, so field names follow SPEC §2 key names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple, Union

RUNTIMES = ("apptainer", "singularity", "podman", "enroot")

# A passthrough directive value as given in TOML (checked against the directive table).
ConfValue = Union[str, int, bool, Tuple[str, ...]]


@dataclass(frozen=True)
class Approval:
    pam_service: str = "hpcpolicy"
    admin_group: str = "hpcadmin"


@dataclass(frozen=True)
class Site:
    name: str
    deploy_root: str
    keep: int = 10
    gc_grace: int = 3600
    runtimes: Tuple[str, ...] = ("apptainer", "podman", "enroot")
    apptainer_version: str = "1.3"
    singularity_version: str = "4.1"
    deploy_owner: str = "root"
    signing_key: Optional[str] = None  # absolute path of an OpenSSH private key
    approval: Optional[Approval] = None


@dataclass(frozen=True)
class FilesSource:
    passwd: str = "/etc/passwd"
    group: str = "/etc/group"


@dataclass(frozen=True)
class LdapAttributes:
    name: str = "uid"
    uid: str = "uidNumber"
    gid: str = "gidNumber"
    group_name: str = "cn"


@dataclass(frozen=True)
class LdapSource:
    uri: Tuple[str, ...]
    start_tls: bool = False
    ca_file: Optional[str] = "/etc/pki/tls/certs/ca-bundle.crt"
    bind_dn: Optional[str] = None
    bind_password_file: Optional[str] = None
    user_base: str = ""
    user_filter: str = "(objectClass=posixAccount)"
    group_base: str = ""
    group_filter: str = "(objectClass=posixGroup)"
    member_attribute: str = "memberUid"  # or "member" / "uniqueMember"
    attributes: LdapAttributes = field(default_factory=LdapAttributes)
    page_size: int = 1000
    timeout: int = 30


@dataclass(frozen=True)
class Directory:
    sources: Tuple[str, ...] = ("files",)
    min_uid: int = 1000
    max_uid: Optional[int] = None
    exclude_disabled: bool = True
    files: FilesSource = field(default_factory=FilesSource)
    ldap: Optional[LdapSource] = None


@dataclass(frozen=True)
class SubId:
    enabled: bool = True
    strategy: str = "ledger"  # or "uid"
    start: int = 524288
    end: int = 1879048191  # inclusive
    count: int = 65536
    key: str = "uid"  # or "name"
    eligible_groups: Tuple[str, ...] = ()
    exclude_users: Tuple[str, ...] = ()
    reserved: Tuple[Tuple[int, int], ...] = ()  # inclusive [first, last] pairs
    max_revoke: float = 0.05


@dataclass(frozen=True)
class Bind:
    source: str
    target: str
    readonly: bool = False
    required: bool = True
    runtimes: Tuple[str, ...] = ()  # resolved: never empty after load (defaults to site.runtimes)
    classes: Tuple[str, ...] = ()  # empty: every node class


@dataclass(frozen=True)
class ImageRule:
    scope: str
    action: str  # "allow" | "deny"
    groups: Tuple[str, ...] = ()  # empty: everybody
    signed_by: Optional[str] = None  # as written in site.toml (relative to it)
    signed_by_path: Optional[str] = None  # resolved absolute path of the keyring
    index: int = 0  # 1-based position in site.toml, for messages
    # optional signature storage URL (containers-registries.d `lookaside`) for a signed scope
    lookaside: Optional[str] = None
    # set on a rule the loader added for another spelling of a portless host (`h:443`, `h:80`):
    # the scope as written in site.toml
    alias_of: Optional[str] = None


@dataclass(frozen=True)
class Collection:
    path: str
    group: str


@dataclass(frozen=True)
class Images:
    default: str = "deny"
    local_transports: str = "allow"
    rules: Tuple[ImageRule, ...] = ()
    collections: Tuple[Collection, ...] = ()


@dataclass(frozen=True)
class Runtime:
    setuid: bool = False
    user_namespaces: bool = True
    max_user_namespaces: int = 15000
    max_net_namespaces: Optional[int] = None
    fakeroot: bool = True
    mount_home: bool = True
    mount_tmp: bool = True
    mount_hostfs: bool = False
    default_binds: bool = True
    apptainer: Tuple[Tuple[str, ConfValue], ...] = ()  # passthrough, in file order
    singularity: Tuple[Tuple[str, ConfValue], ...] = ()
    enroot: Tuple[Tuple[str, str], ...] = ()


@dataclass(frozen=True)
class NodeClass:
    name: str
    nodes: str  # ClusterShell node set


@dataclass(frozen=True)
class Policy:
    """A whole validated site file."""

    path: str  # the site file as given (used in messages)
    sha256: str  # of the site file's bytes
    site: Site
    directory: Directory = field(default_factory=Directory)
    subid: SubId = field(default_factory=SubId)
    binds: Tuple[Bind, ...] = ()
    images: Images = field(default_factory=Images)
    runtime: Runtime = field(default_factory=Runtime)
    node_classes: Tuple[NodeClass, ...] = ()
    # keyring bytes by resolved path, read at load time so rendering stays pure
    keyrings: Dict[str, bytes] = field(default_factory=dict)

    def class_names(self) -> Tuple[str, ...]:
        return ("default",) + tuple(c.name for c in self.node_classes)
