#!/usr/bin/python
# Copyright: hpcpolicy contributors
# SPDX-License-Identifier: BSD-3-Clause
# ruff: noqa: UP001, UP010 - ansible-test sanity requires these exact __future__/__metaclass__ lines
# (annotations are evaluated: typing generics only, valid on Python >= 3.9)
"""Ansible module `hpcpolicy.site.hpcpolicy_node_sync`: `hpcpolicy node sync` as a task.

Runs on every node (provisioning); the same command runs afterwards from the systemd timer in
packaging/systemd. Check mode is `--check`, diff mode `--diff`, `reload: false` is `--no-reload`.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: hpcpolicy_node_sync
short_description: Install the current hpcpolicy generation on a node
version_added: "0.1.0"
description:
  - Runs C(hpcpolicy node sync) on the managed node.
  - The node's own settings (deploy root, deploy owner, allowed-signers file, channel, class) come
    from C(/etc/hpcpolicy/node.toml) (or I(config)); an option given to the task wins.
  - The node reads only a deploy root whose every part is owned by root or I(deploy_owner) and
    not writable by group or other, installs only the files hpcpolicy manages, and refuses a
    generation older than the one it installed last from the same site and deploy root unless
    I(allow_older).
  - Verifies the channel's generation (and its signature with I(allowed_signers)), picks the node's
    class, and installs each file of that class under I(root) atomically, root-owned, mode 0644.
    Files a previous sync installed that the generation dropped are removed (the distribution's
    original is put back). A changed sysctl file is applied with C(sysctl -p) unless
    I(reload=false).
  - A node that already holds the generation reports C(changed=false). A file edited locally is
    put back and reported as modified.
  - Check mode (C(--check)) compares and writes nothing, not even the lock file. On a node where
    hpcpolicy is not installed yet (the check-mode run of a first rollout, whose install task
    only reported what it would do), it reports C(changed=true) and "would install" instead of
    failing. Diff mode
    (C(--diff)) shows each file's change at its path under I(root).
  - The module calls the hpcpolicy library when the Python that runs it can import C(hpcpolicy);
    otherwise it runs the C(hpcpolicy) CLI with C(--format json), found on C(PATH) or named by
    I(executable).
options:
  deploy_root:
    description:
      - The deploy root on shared storage (C(--from)). Default is C(deploy_root) in node.toml;
        one of the two is required.
    type: path
    aliases: [from]
  config:
    description:
      - The node's settings file (C(--config)). Default C(/etc/hpcpolicy/node.toml) when it
        exists. It must be root-owned and not writable by group or other.
    type: path
  deploy_owner:
    description:
      - The account (name or uid) besides root that may own the deploy root and everything the
        node reads in it (C(--deploy-owner)). Default is C(deploy_owner) in node.toml, else root
        only.
    type: str
  allow_older:
    description:
      - Install a generation older than the one this node installed last from the same site and
        deploy root (C(--allow-older)), after re-initialising the deploy root or to follow a
        channel that is behind. Logged.
    type: bool
    default: false
  root:
    description:
      - Install under this directory instead of C(/) (an image being built, a test tree).
      - C(sysctl -p) runs only when this is C(/).
    type: path
    default: /
  allowed_signers:
    description:
      - OpenSSH allowed-signers file; when given, the manifest must carry a valid signature by a
        key in it. Default is C(allowed_signers) in node.toml. The file must be root-owned and
        not writable by group or other.
    type: path
  node_class:
    description:
      - Node class to install (C(--class)). Default is the class whose node set matches the
        hostname, else C(default).
    type: str
    aliases: [class]
  channel:
    description:
      - Follow this channel instead of C(stable) (the C(current) link). Default is C(channel) in
        node.toml, else C(stable).
    type: str
  reload:
    description:
      - Run C(sysctl -p) on a changed sysctl file. C(false) is C(--no-reload).
    type: bool
    default: true
  lock_timeout:
    description:
      - Seconds to wait for shadow's lock on C(/etc/subuid) and the node's sync lock.
    type: float
    default: 30
  executable:
    description:
      - Run this C(hpcpolicy) CLI instead of importing the library.
    type: path
attributes:
  check_mode:
    support: full
    description: Reports what would change and writes nothing (C(hpcpolicy node sync --check)).
  diff_mode:
    support: full
    description: Returns the before and after text of every file that changes on the node.
requirements:
  - hpcpolicy importable by the Python that runs the module, or the hpcpolicy CLI
author:
  - hpcpolicy contributors
"""

EXAMPLES = r"""
- name: Install the site policy (deploy root, owner and allowed signers from node.toml)
  hpcpolicy.site.hpcpolicy_node_sync:
  become: true

- name: The same with every setting given to the task
  hpcpolicy.site.hpcpolicy_node_sync:
    from: /shared/hpcpolicy
    deploy_owner: hpcpolicy
    allowed_signers: /etc/hpcpolicy/allowed_signers
  become: true

- name: Canary nodes follow the canary channel
  hpcpolicy.site.hpcpolicy_node_sync:
    from: /shared/hpcpolicy
    channel: canary
  when: "'canary' in group_names"

- name: Fill a node image being built, without touching the build host's kernel
  hpcpolicy.site.hpcpolicy_node_sync:
    from: /shared/hpcpolicy
    root: /var/lib/images/compute-root
    class: compute
    reload: false
"""

RETURN = r"""
msg:
  description: One line naming the generation, the class, and what changed (or the failure).
  returned: always
  type: str
  sample: "generation 000002-3f2a9c1b, class default (hostname n001 matches no class):
    changed 3 file(s)"
generation:
  description: The generation installed, or null when the failure came before one was resolved.
  returned: always
  type: str
changes:
  description: Every file changed on the node, path relative to I(root).
  returned: always
  type: list
  elements: dict
  sample: [{"path": "etc/subuid", "action": "added"}]
class:
  description: The node class installed.
  returned: success
  type: str
class_reason:
  description: Why that class (C(--class), or which node set matched the hostname).
  returned: success
  type: str
channel:
  description: The channel followed.
  returned: success
  type: str
check:
  description: Whether this was a check-mode run.
  returned: success
  type: bool
notes:
  description: Things to know, e.g. that running rootless Podman users need
    C(podman system migrate).
  returned: success
  type: list
  elements: str
errors:
  description: What failed after the files were installed (a failing C(sysctl -p)).
  returned: on such a failure
  type: list
  elements: str
"""

import os  # noqa: E402 - after the documentation strings, as Ansible modules are laid out
from typing import Any, Dict  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.hpcpolicy.site.plugins.module_utils.hpcpolicy_common import (  # noqa: E402
    backend,
    cli_flags,
    finish,
    run_cli,
    run_library,
    runnable,
)

ARGUMENT_SPEC: Dict[str, Any] = {
    "deploy_root": {"type": "path", "aliases": ["from"]},
    "config": {"type": "path"},
    "deploy_owner": {"type": "str"},
    "allow_older": {"type": "bool", "default": False},
    "root": {"type": "path", "default": "/"},
    "allowed_signers": {"type": "path"},
    "node_class": {"type": "str", "aliases": ["class"]},
    "channel": {"type": "str"},
    "reload": {"type": "bool", "default": True},
    "lock_timeout": {"type": "float", "default": 30},
    "executable": {"type": "path"},
}


def library_sync(params: Dict[str, Any], check: bool, diff: bool) -> Dict[str, Any]:
    """What `hpcpolicy node sync --format json` does, in-process."""
    from hpcpolicy.node import config
    from hpcpolicy.node.sync import describe, sync, sync_options

    result = sync(sync_options(
        config.load(params["config"], root=params["root"]), deploy_root=params["deploy_root"],
        deploy_owner=params["deploy_owner"], allowed_signers=params["allowed_signers"],
        node_class=params["node_class"], channel=params["channel"], root=params["root"],
        check=check, want_diff=diff, reload=params["reload"],
        lock_timeout=params["lock_timeout"], allow_older=params["allow_older"]))
    return dict(describe(result), changed=result.changed, msg=result.msg,
                failed=bool(result.errors))


def cli_argv(exe: str, params: Dict[str, Any], check: bool, diff: bool) -> list:
    """The same request as a CLI command line (argv list, never a shell string)."""
    return [exe, "node", "sync", "--format", "json"] + cli_flags([
        ("--from", params["deploy_root"]), ("--config", params["config"]),
        ("--deploy-owner", params["deploy_owner"]), ("--allow-older", params["allow_older"]),
        ("--root", params["root"]), ("--allowed-signers", params["allowed_signers"]),
        ("--class", params["node_class"]), ("--channel", params["channel"]),
        ("--lock-timeout", params["lock_timeout"]), ("--no-reload", not params["reload"]),
        ("--check", check), ("--diff", diff),
    ])


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    check, diff = module.check_mode, module._diff
    if check and not runnable(module):  # a first rollout in check mode: not installed yet
        module.exit_json(changed=True, check=True, generation=None, changes=[], msg=(
            "would install: hpcpolicy is not installed on this node yet (the task that installs "
            "it ran in check mode too); the first real run installs the current generation"))
    exe = backend(module)
    if exe:
        payload = run_cli(module, cli_argv(exe, module.params, check, diff))
    else:
        payload = run_library(module, lambda: library_sync(module.params, check, diff))
    root = module.params["root"]
    finish(module, payload, header_of=lambda path: os.path.join(root, path))


if __name__ == "__main__":
    main()
