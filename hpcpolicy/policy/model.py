"""The typed model of a validated site.toml (schema 1). Immutable; built only by `policy.load`.

Every other package consumes these types, so field names follow the site file's key names.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple, Type, TypeVar, Union

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
    home: str = "homeDirectory"  # absent on an entry: that user has no home (not an error)


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
    timeout: int = 30  # seconds for one operation
    deadline: int = 300  # seconds for the whole directory read (a dripping server)


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
class Storage:
    """[runtime.storage]: containers/storage's storage.conf for Podman/Buildah/Skopeo."""

    driver: str = "overlay"
    graphroot: str = "/var/lib/containers/storage"
    runroot: str = "/run/containers/storage"
    rootless_storage_path: Optional[str] = None  # may hold $UID, $USER, $HOME
    additional_image_stores: Tuple[str, ...] = ()  # read-only site image stores
    mount_program: Optional[str] = None  # e.g. /usr/bin/fuse-overlayfs (overlay only)


ALLOW_CONTAINER = ("sif", "encrypted", "squashfs", "extfs", "dir")


@dataclass(frozen=True)
class ApptainerLimits:
    """[runtime.apptainer_limits]: image restrictions of Apptainer and SingularityCE.

    None: the key is absent, so nothing is rendered and the packaged default stays.
    """

    container_paths: Optional[Tuple[str, ...]] = None
    container_groups: Optional[Tuple[str, ...]] = None
    container_owners: Optional[Tuple[str, ...]] = None
    allow_container: Optional[Tuple[str, ...]] = None  # kinds of ALLOW_CONTAINER that are yes
    ecl: Optional[str] = None  # as written (relative to the site file)
    ecl_path: Optional[str] = None  # resolved
    ecl_keyring: Optional[str] = None
    ecl_keyring_path: Optional[str] = None

    def restricts(self) -> bool:
        """Whether any limit is set (an empty list limits nothing)."""
        return bool(self.container_paths or self.container_groups or self.container_owners
                    or self.allow_container is not None or self.ecl)


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
    storage: Optional[Storage] = None
    apptainer_limits: Optional[ApptainerLimits] = None

    def limits_hold(self) -> bool:
        """Apptainer's image restrictions are a boundary only in setuid mode without
        unprivileged user namespaces (elsewhere a user runs their own unprivileged copy)."""
        return self.setuid and not self.user_namespaces


# Keys of [runtime] a [[node_class]] runtime table may replace for its class.
CLASS_RUNTIME_KEYS = ("setuid", "user_namespaces", "storage", "apptainer_limits")


@dataclass(frozen=True)
class NodeClass:
    name: str
    nodes: str  # ClusterShell node set
    runtime: Tuple[Tuple[str, Any], ...] = ()  # (key of CLASS_RUNTIME_KEYS, value) given


T = TypeVar("T")


def runtime_settings(rt: Runtime, classes: Sequence[NodeClass], key: str,
                     kind: Type[T]) -> List[Tuple[str, T]]:
    """(key path, value) of [runtime] `key` (a table of type `kind`) of the site and of every
    class that sets its own."""
    site = getattr(rt, key)
    out = [(f"runtime.{key}", site)] if isinstance(site, kind) else []
    for i, cls in enumerate(classes, 1):
        value = dict(cls.runtime).get(key)
        if isinstance(value, kind):
            out.append((f"node_class[{i}].runtime.{key}", value))
    return out


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
    # ECL files and their keyrings (de-armoured) by resolved path, likewise
    inputs: Dict[str, bytes] = field(default_factory=dict)

    def class_names(self) -> Tuple[str, ...]:
        return ("default",) + tuple(c.name for c in self.node_classes)

    def runtime_for(self, node_class: str) -> Runtime:
        """[runtime] as one node class gets it: the class's own keys replace the site's.

        Without user namespaces there is no --fakeroot on that class."""
        rt = self.runtime
        for cls in self.node_classes:
            if cls.name == node_class and cls.runtime:
                rt = replace(rt, **dict(cls.runtime))
        if not rt.user_namespaces and rt.fakeroot:
            rt = replace(rt, fakeroot=False)
        return rt

    def for_class(self, node_class: str) -> Policy:
        """This policy with [runtime] as `node_class` gets it (what its renderers read)."""
        rt = self.runtime_for(node_class)
        return self if rt == self.runtime else replace(self, runtime=rt)

    def storages(self) -> List[Tuple[str, Storage]]:
        """(key path, [runtime.storage]) of the site and of every class that sets its own."""
        return runtime_settings(self.runtime, self.node_classes, "storage", Storage)
