"""Policies for the runtime renderer tests (apptainer, singularity, enroot, sysctl).

Built from the model dataclasses directly, so these tests do not depend on the TOML loader.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Tuple

from hpcpolicy.policy.model import Bind, ConfValue, Policy, Runtime, Site

ALL = ("apptainer", "singularity", "podman", "enroot")


def bind(source: str, target: str = "", **kw: object) -> Bind:
    """A bind for every runtime (target defaults to source)."""
    return Bind(source=source, target=target or source, runtimes=ALL, **kw)  # type: ignore[arg-type]


def policy(
    *binds: Bind,
    apptainer_version: str = "1.3",
    singularity_version: str = "4.1",
    apptainer: Tuple[Tuple[str, ConfValue], ...] = (),
    singularity: Tuple[Tuple[str, ConfValue], ...] = (),
    enroot: Tuple[Tuple[str, str], ...] = (),
    **runtime: Any,
) -> Policy:
    """A small valid site; keyword arguments override `Runtime` fields."""
    site = Site(
        name="cluster-a",
        deploy_root="/shared/hpcpolicy",
        runtimes=ALL,
        apptainer_version=apptainer_version,
        singularity_version=singularity_version,
    )
    rt = replace(Runtime(), apptainer=apptainer, singularity=singularity, enroot=enroot, **runtime)
    return Policy(path="site.toml", sha256="0" * 64, site=site, binds=tuple(binds), runtime=rt)


def reference_policy() -> Policy:
    """The site behind the golden files: every kind of bind and passthrough."""
    return policy(
        bind("/scratch"),
        bind("/gpfs/project", "/project"),
        bind("/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/certs/ca-bundle.crt"),
        Bind(
            "/opt/site-tools",
            "/opt/site-tools",
            readonly=True,
            required=False,
            runtimes=("enroot",),
        ),
        apptainer=(
            ("enable overlay", "try"),
            ("limit container paths", ("/shared/containers", "/scratch")),
            ("max loop devices", 128),
            ("always use nv", True),
        ),
        singularity=(("mount dev", "minimal"), ("oci mode", "yes")),
        enroot=(
            ("ENROOT_ROOTFS_WRITABLE", "yes"),
            ("ENROOT_SQUASH_OPTIONS", "-comp zstd -Xcompression-level 3 -noD"),
            ("ENROOT_MAX_CONNECTIONS", "4"),
            ("ENROOT_CACHE_PATH", "/var/cache/enroot"),
        ),
        max_net_namespaces=0,
    )
