# Copyright: hpcpolicy contributors
# SPDX-License-Identifier: BSD-3-Clause
# ruff: noqa: UP001, UP010 - ansible-test sanity requires these exact __future__/__metaclass__ lines
# (annotations are evaluated: typing generics only, valid on Python >= 3.9)
"""What every hpcpolicy module shares: pick a backend, run it, hand Ansible its result.

Two backends give the same result dict (the CLI's `--format json` object):

* the library, imported in-process, when the Python that runs the module can import
  `hpcpolicy` (the recommended set-up: `ansible_python_interpreter` is the venv that holds it);
* the CLI (`hpcpolicy ... --format json`) when it cannot, or when the task names `executable`.
  Ansible then runs the module with any Python (for example the node's `/usr/bin/python3`) and
  hpcpolicy lives in its own venv. AnsiballZ ships `ansible.module_utils` and this file, never
  third-party packages, so this fallback is what makes the modules work without installing
  hpcpolicy into the interpreter Ansible discovers.

Nothing here imports Ansible: the module object is duck-typed, so the pure helpers are tested
under the project's own pytest, which has no Ansible.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import logging
import os
import traceback
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional

try:
    import hpcpolicy  # noqa: F401 - only whether it imports matters here
except ImportError:
    HPCPOLICY_IMPORT_ERROR: Optional[str] = traceback.format_exc()
else:
    HPCPOLICY_IMPORT_ERROR = None

CLI_NAME = "hpcpolicy"

# The keys apply and node sync report on every path, errors included.
ON_ERROR: Dict[str, Any] = {"generation": None, "changes": []}


def one_line(msg: str) -> str:
    """The CLI prints one line per problem; Ansible's `msg` gets them all on one line."""
    return "; ".join(line.strip() for line in msg.splitlines() if line.strip())


def ansible_diff(entries: List[Dict[str, Any]],
                 header_of: Callable[[str], str]) -> List[Dict[str, Any]]:
    """hpcpolicy's `[{path, before, after}]` in Ansible's diff shape (one dict per file).

    A summarised entry (file over 256 KiB) keeps its one-line summaries as before/after, so
    Ansible shows which file changed and its sha256 instead of a megabyte of subuid lines.
    """
    out: List[Dict[str, Any]] = []
    for entry in entries:
        header = header_of(str(entry["path"]))
        out.append({
            "before_header": header,
            "after_header": header,
            "before": _text_line(entry.get("before")),
            "after": _text_line(entry.get("after")),
        })
    return out


def _text_line(value: Any) -> str:
    """Summaries have no trailing newline; without one Ansible's diff adds a warning line."""
    text = "" if value is None else str(value)
    return text if not text or text.endswith("\n") else text + "\n"


def runnable(module: Any) -> bool:
    """Can this node run hpcpolicy at all (library, the named executable, or the CLI on PATH)?

    False in the check-mode run of a first rollout: the task that would install hpcpolicy ran
    in check mode too, so nothing is there yet.
    """
    exe = module.params.get("executable")
    if exe:
        return os.path.exists(str(exe))
    return HPCPOLICY_IMPORT_ERROR is None or bool(module.get_bin_path(CLI_NAME))


def backend(module: Any) -> Optional[str]:
    """The CLI to run, or None to call the library in-process.

    `executable` wins when given (a site may pin the venv it released). Otherwise the library
    is used when importable, else `hpcpolicy` on PATH; with neither the task fails with
    Ansible's usual "missing required library" message, which names the interpreter.
    """
    exe = module.params.get("executable")
    if exe:
        return str(exe)
    if HPCPOLICY_IMPORT_ERROR is None:
        return None
    found = module.get_bin_path(CLI_NAME)
    if found:
        return str(found)
    from ansible.module_utils.basic import missing_required_lib

    module.fail_json(msg=missing_required_lib(
        CLI_NAME, reason="unless the hpcpolicy CLI is on PATH or named by the executable option"),
        exception=HPCPOLICY_IMPORT_ERROR, **ON_ERROR)
    return None  # not reached: fail_json exits


class _Warnings(logging.Handler):
    """Library warnings (a generation failing verification, ...) become Ansible warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def warnings_to(module: Any) -> Iterator[None]:
    """Send hpcpolicy's log warnings to module.warn (stderr is not shown by Ansible)."""
    handler = _Warnings()
    logger = logging.getLogger(CLI_NAME)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        for message in handler.messages:
            module.warn(message)


def run_library(module: Any, call: Callable[[], Dict[str, Any]],
                on_error: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Run `call` (a library call returning the JSON object); a failure is what the CLI's
    `--format json` prints for it (`hpcpolicy.errors.failure_of`, the funnel of both faces)."""
    from hpcpolicy.errors import failure_of

    extra = dict(ON_ERROR if on_error is None else on_error)
    try:
        with warnings_to(module):
            return call()
    except Exception as err:
        failure = failure_of(err)
        result = dict(extra, **failure.fields, changed=False, failed=True, msg=failure.msg)
        if failure.internal:  # a bug: the traceback, shown with -vvv
            result["exception"] = traceback.format_exc()
        return result


def run_cli(module: Any, argv: List[str]) -> Dict[str, Any]:
    """Run the CLI with `--format json`; its one JSON object is the result."""
    rc, out, err = module.run_command(argv, check_rc=False)
    for line in err.splitlines():
        if ": WARNING: " in line:
            module.warn(line.split(": WARNING: ", 1)[1])
    payload = _last_json(out)
    if payload is None:
        why = one_line(err) or "no output"
        return dict(ON_ERROR, changed=False, failed=True,
                    msg=f"{argv[0]} printed no JSON object (exit {rc}): {why}")
    payload["failed"] = bool(payload.get("failed")) or rc != 0  # a non-zero exit is never success
    return payload


def _last_json(out: str) -> Optional[Dict[str, Any]]:
    lines = [line for line in out.splitlines() if line.strip()]
    if not lines:
        return None
    try:
        obj = json.loads(lines[-1])
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def cli_flags(pairs: List[Any]) -> List[str]:
    """[(flag, value)] -> argv: a value of None or False is left out, True is the bare flag."""
    out: List[str] = []
    for flag, value in pairs:
        if value is None or value is False:
            continue
        out.extend([flag] if value is True else [flag, str(value)])
    return out


def finish(module: Any, payload: Dict[str, Any], header_of: Callable[[str], str]) -> None:
    """exit_json / fail_json with the payload; its diff in Ansible's shape under --diff.

    `changed` stays what hpcpolicy reported, also on failure: a sync whose files went in but
    whose `sysctl -p` failed did change the node, and saying otherwise would hide it.
    """
    result = dict(payload)
    failed = bool(result.pop("failed", False))
    result["msg"] = one_line(str(result.get("msg", "")))
    entries = result.pop("diff", None)
    if entries is not None and getattr(module, "_diff", False):
        result["diff"] = ansible_diff(entries, header_of)
    if failed:
        module.fail_json(**result)
    module.exit_json(**result)
