#!/usr/bin/python
# Copyright: hpcpolicy contributors
# SPDX-License-Identifier: BSD-3-Clause
# ruff: noqa: UP001, UP010 - ansible-test sanity requires these exact __future__/__metaclass__ lines
# (annotations are evaluated: typing generics only, valid on Python >= 3.9)
"""Ansible module `hpcpolicy.site.hpcpolicy_node_doctor`: `hpcpolicy node doctor` as a task.

Read-only: never changes anything, so it runs the same in check mode. Any FAIL check fails the
task, as the CLI exits 1; `failed_when: false` turns the report into data.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: hpcpolicy_node_doctor
short_description: Check that a node gives the hpcpolicy policy what it needs
version_added: "0.1.0"
description:
  - Runs C(hpcpolicy node doctor) on the managed node and returns one entry per check.
  - Checks the installed files against the synced (or, with I(deploy_root), the current) generation,
    required bind sources, sysctls in force, C(newuidmap)/C(newgidmap), no setuid starter where the
    policy forbids it, and what silently defeats the policy (C(subid sss) in nsswitch.conf,
    C(SUB_UID_COUNT) in login.defs, registries.conf.d drop-ins, users' policy.json copies,
    Ubuntu's AppArmor user-namespace restriction).
  - The task fails when any check is C(FAIL); it never reports a change.
options:
  root:
    description:
      - Check the node tree under this directory. Sysctls are always read from the running kernel.
    type: path
    default: /
  config:
    description:
      - The node's settings file (C(--config)); default C(/etc/hpcpolicy/node.toml) when it
        exists. Its deploy owner and allowed-signers file are what the trust checks compare
        with the site.
    type: path
  deploy_root:
    description:
      - Compare with this deploy root's current generation too (C(--from)).
    type: path
    aliases: [from]
  node_class:
    description:
      - Node class to check against (C(--class)).
    type: str
    aliases: [class]
  executable:
    description:
      - Run this C(hpcpolicy) CLI instead of importing the library.
    type: path
attributes:
  check_mode:
    support: full
    description: The module only reads; check mode runs it unchanged.
  diff_mode:
    support: none
requirements:
  - hpcpolicy importable by the Python that runs the module, or the hpcpolicy CLI
author:
  - hpcpolicy contributors
"""

EXAMPLES = r"""
- name: Check the node
  hpcpolicy.site.hpcpolicy_node_doctor:
    from: /shared/hpcpolicy

- name: Collect the report without failing the play
  hpcpolicy.site.hpcpolicy_node_doctor:
  register: doctor
  failed_when: false
"""

RETURN = r"""
msg:
  description: The summary line (how many checks passed, warned, failed).
  returned: always
  type: str
checks:
  description: One entry per check.
  returned: success
  type: list
  elements: dict
  sample: [{"name": "files", "status": "OK", "detail": "5 file(s) as installed", "remedy": ""}]
"""

from typing import Any, Dict  # noqa: E402 - after the documentation strings

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.hpcpolicy.site.plugins.module_utils.hpcpolicy_common import (  # noqa: E402
    backend,
    cli_flags,
    finish,
    run_cli,
    run_library,
)

ARGUMENT_SPEC: Dict[str, Any] = {
    "root": {"type": "path", "default": "/"},
    "config": {"type": "path"},
    "deploy_root": {"type": "path", "aliases": ["from"]},
    "node_class": {"type": "str", "aliases": ["class"]},
    "executable": {"type": "path"},
}


def library_doctor(params: Dict[str, Any]) -> Dict[str, Any]:
    """What `hpcpolicy node doctor --format json` does, in-process."""
    from hpcpolicy.node import config
    from hpcpolicy.node.doctor import FAIL, doctor, doctor_options, summary

    checks = doctor(doctor_options(config.load(params["config"]), root=params["root"],
                                   deploy_root=params["deploy_root"],
                                   node_class=params["node_class"]))
    return {"changed": False, "failed": any(c.status == FAIL for c in checks),
            "msg": summary(checks), "checks": [c.as_dict() for c in checks]}


def cli_argv(exe: str, params: Dict[str, Any]) -> list:
    return [exe, "node", "doctor", "--format", "json"] + cli_flags([
        ("--root", params["root"]), ("--config", params["config"]),
        ("--from", params["deploy_root"]),
        ("--class", params["node_class"]),
    ])


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    exe = backend(module)
    if exe:
        payload = run_cli(module, cli_argv(exe, module.params))
    else:
        payload = run_library(module, lambda: library_doctor(module.params), on_error={})
    payload["changed"] = False  # a check never changes the node
    finish(module, payload, header_of=lambda path: path)


if __name__ == "__main__":
    main()
