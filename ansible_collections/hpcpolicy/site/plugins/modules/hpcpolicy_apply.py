#!/usr/bin/python
# Copyright: hpcpolicy contributors
# SPDX-License-Identifier: BSD-3-Clause
# ruff: noqa: UP001, UP010 - ansible-test sanity requires these exact __future__/__metaclass__ lines
# (annotations are evaluated: typing generics only, valid on Python >= 3.9)
"""Ansible module `hpcpolicy.site.hpcpolicy_apply`: `hpcpolicy apply SITE` as a task.

A thin wrapper: options map one to one onto the CLI flags, the result is the CLI's JSON object.
Check mode is `--check` (nothing written, not even the lock), diff mode is `--diff`.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: hpcpolicy_apply
short_description: Publish a site's container policy as a new generation
version_added: "0.1.0"
description:
  - Runs C(hpcpolicy apply SITE) on the machine that holds the site file and can write the
    deploy root on shared storage (usually one admin host; run it with C(run_once) or on that
    host only).
  - Validates the site file, reads the user directory, allocates sub-ID ranges, renders every node
    class and publishes a new immutable generation, then switches the channel to it.
  - A site whose rendered files equal the channel's current generation publishes nothing and reports
    C(changed=false), so a second run is idempotent.
  - Check mode (C(--check)) plans everything and writes nothing at all. Diff mode (C(--diff)) shows
    the change of each file; a file over 256 KiB is shown as its size, line count and sha256.
  - The module calls the hpcpolicy library when the Python that runs it can import C(hpcpolicy)
    (set C(ansible_python_interpreter) to the venv that holds it); otherwise it runs the
    C(hpcpolicy) CLI with C(--format json), found on C(PATH) or named by I(executable).
  - Ansible has no terminal to ask for a password, so a site with C([site.approval]) must set
    C([site] signing_key); the signature is then the accountable act.
options:
  site:
    description:
      - Path of the site file (C(site.toml)) on the managed host. Use an absolute path.
    type: path
    required: true
  deploy_root:
    description:
      - Publish to this deploy root instead of the site file's C(site.deploy_root).
    type: path
  channel:
    description:
      - Publish to this channel only. C(stable) is the C(current) link every node follows by
        default.
    type: str
    default: stable
  allow_revoke:
    description:
      - Allow withdrawing more sub-ID ranges than C(subid.max_revoke) in one apply.
    type: bool
    default: false
  lock_timeout:
    description:
      - Seconds to wait for another writer holding the deploy lock before failing.
    type: float
    default: 60
  init:
    description:
      - Create the deploy root when it is missing (mode 0755, owned by the deploy owner; its
        parent must exist). Without it a missing deploy root, for example a share that is not
        mounted, fails the task instead of starting a fresh sub-ID ledger. Changes nothing on an
        existing deploy root.
    type: bool
    default: false
  executable:
    description:
      - Run this C(hpcpolicy) CLI instead of importing the library (for example the CLI of a venv
        when Ansible uses the system Python).
    type: path
attributes:
  check_mode:
    support: full
    description: Plans the apply and writes nothing (C(hpcpolicy apply --check)).
  diff_mode:
    support: full
    description: Returns the before and after text of every changed file.
requirements:
  - hpcpolicy importable by the Python that runs the module, or the hpcpolicy CLI
author:
  - hpcpolicy contributors
"""

EXAMPLES = r"""
- name: Publish the site policy (once, from the admin host)
  hpcpolicy.site.hpcpolicy_apply:
    site: /srv/hpcpolicy/site.toml
  run_once: true
  register: published

- name: First publication into a new deploy root (a subdirectory of the mounted share)
  hpcpolicy.site.hpcpolicy_apply:
    site: /srv/hpcpolicy/site.toml
    init: true

- name: Publish a candidate to the canary channel, refusing mass sub-ID withdrawals
  hpcpolicy.site.hpcpolicy_apply:
    site: /srv/hpcpolicy/site.toml
    channel: canary
    lock_timeout: 120

- name: Use the hpcpolicy venv's CLI while Ansible runs the system Python
  hpcpolicy.site.hpcpolicy_apply:
    site: /srv/hpcpolicy/site.toml
    executable: /opt/hpcpolicy/bin/hpcpolicy
"""

RETURN = r"""
msg:
  description: One line saying what was published (all problems, joined by C(; ), on failure).
  returned: always
  type: str
  sample: "published generation 000002-3f2a9c1b (2 files changed)"
generation:
  description: Name of the generation the channel holds after the run (would hold, in check mode).
  returned: always
  type: str
  sample: 000002-3f2a9c1b
previous:
  description: The generation the channel held before, or null.
  returned: success
  type: str
changes:
  description: Every changed file, flattened over node classes (C(class/NAME/) prefix for a class).
  returned: always
  type: list
  elements: dict
  sample: [{"path": "etc/subuid", "action": "modified"}]
channel:
  description: The channel published to.
  returned: success
  type: str
check:
  description: Whether this was a check-mode run.
  returned: success
  type: bool
ledger_saved:
  description: Whether the sub-ID ledger was written.
  returned: success
  type: bool
gc_removed:
  description: Old generations garbage-collected by this run.
  returned: success
  type: list
  elements: str
subid:
  description: Sub-ID allocation summary (live, added, withdrawn, restored).
  returned: when the site allocates sub-IDs
  type: dict
errors:
  description: One entry per problem found in the site file or directory data.
  returned: when the input is invalid
  type: list
  elements: str
"""

from typing import Any, Dict  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.hpcpolicy.site.plugins.module_utils.hpcpolicy_common import (  # noqa: E402
    backend,
    cli_flags,
    finish,
    run_cli,
    run_library,
)

ARGUMENT_SPEC: Dict[str, Any] = {
    "site": {"type": "path", "required": True},
    "deploy_root": {"type": "path"},
    "channel": {"type": "str", "default": "stable"},
    "allow_revoke": {"type": "bool", "default": False},
    "lock_timeout": {"type": "float", "default": 60},
    "init": {"type": "bool", "default": False},
    "executable": {"type": "path"},
}


def library_apply(params: Dict[str, Any], check: bool, diff: bool) -> Dict[str, Any]:
    """What `hpcpolicy apply --format json` does, in-process; never asks for a password."""
    from hpcpolicy.deploy.publish import apply_site

    return apply_site(params["site"], deploy_root=params["deploy_root"], check=check, diff=diff,
                      allow_revoke=params["allow_revoke"], lock_timeout=params["lock_timeout"],
                      channel=params["channel"], batch=True, init=params["init"]).as_dict()


def cli_argv(exe: str, params: Dict[str, Any], check: bool, diff: bool) -> list:
    """The same request as a CLI command line (argv list, never a shell string)."""
    # --non-interactive: Ansible has no terminal; under approval the signature is what counts
    return [exe, "apply", params["site"], "--format", "json", "--non-interactive"] + cli_flags([
        ("--deploy-root", params["deploy_root"]), ("--channel", params["channel"]),
        ("--lock-timeout", params["lock_timeout"]), ("--allow-revoke", params["allow_revoke"]),
        ("--init", params["init"]), ("--check", check), ("--diff", diff),
    ])


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    check, diff = module.check_mode, module._diff
    exe = backend(module)
    if exe:
        payload = run_cli(module, cli_argv(exe, module.params, check, diff))
    else:
        payload = run_library(module, lambda: library_apply(module.params, check, diff))
    finish(module, payload, header_of=lambda path: path)


if __name__ == "__main__":
    main()
