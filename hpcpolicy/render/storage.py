"""`etc/containers/storage.conf` from `[runtime.storage]` (containers/storage's configuration).

The rendered file replaces the packaged one whole, so it carries `graphroot` and `runroot`
(root Podman refuses a storage.conf without a runroot). `rootless_storage_path` is each user's
own storage (containers/storage expands `$UID`, `$USER`, `$HOME` in it);
`additional_image_stores` are the read-only site image stores (`[storage.options]
additionalimagestores`), and `mount_program` (e.g. fuse-overlayfs) goes to
`[storage.options.overlay]`: with the kernel's overlay, a rootless container cannot create its
mount points in layers that root filled, where fuse-overlayfs can.

A rootless user's containers/storage takes only the driver and `rootless_storage_path` from the
system file unless `CONTAINERS_STORAGE_CONF` names it; `containers.conf` therefore sets that
variable in `[engine] env` on every class that has a storage.conf (see `render.containers`).
Written with tomli-w.
"""

from __future__ import annotations

from typing import Dict, Optional

import tomli_w

from hpcpolicy.policy.model import Policy, Storage
from hpcpolicy.render.header import header

PATH = "etc/containers/storage.conf"


def document(st: Storage) -> Dict[str, object]:
    """storage.conf as a TOML document."""
    storage: Dict[str, object] = {
        "driver": st.driver,
        "graphroot": st.graphroot,
        "runroot": st.runroot,
    }
    if st.rootless_storage_path is not None:
        storage["rootless_storage_path"] = st.rootless_storage_path
    options: Dict[str, object] = {}
    if st.additional_image_stores:
        options["additionalimagestores"] = list(st.additional_image_stores)
    if st.mount_program is not None:
        options["overlay"] = {"mount_program": st.mount_program}
    if options:
        storage["options"] = options
    return {"storage": storage}


def storage_of(policy: Policy) -> Optional[Storage]:
    """The storage settings of the policy (already the class's own via `Policy.for_class`)."""
    return policy.runtime.storage


def render(policy: Policy) -> Dict[str, bytes]:
    """`{"etc/containers/storage.conf": bytes}`, or nothing where storage is not set."""
    st = storage_of(policy)
    if st is None:
        return {}
    return {PATH: header(policy) + tomli_w.dumps(document(st)).encode()}
