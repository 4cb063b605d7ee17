"""Cross-checks and input files of the enforcement settings, site-wide and per node class.

* Per class, the effective [runtime] (the class's `setuid`, `user_namespaces`, `storage` and
  `apptainer_limits` replacing the site's) must keep the typed rules, and every Apptainer limit
  it renders must be known to the declared oldest releases.
* The ECL and its keyring are read here (so rendering stays pure) through the one checked input
  reader: regular files, not writable by group or others, owned by root, the deploy owner or the
  operator. The ECL must pass the upstream schema (`policy.ecl`); the keyring must be an OpenPGP
  *public* keyring that is world-readable already (it is published to every node). The keyring
  is kept de-armoured: Apptainer reads `global-pgp-public` as binary packets only.
"""

from __future__ import annotations

import errno
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from hpcpolicy.errors import InvalidInput, ProblemCollector
from hpcpolicy.policy import ecl, inputs, keyring
from hpcpolicy.policy.model import (
    ApptainerLimits,
    NodeClass,
    Runtime,
    Site,
    Storage,
    runtime_settings,
)
from hpcpolicy.policy.sections import enforcement

ECL_MAX = 1024 * 1024  # what a node installs at most per file
KeyringReader = Callable[[str, str], Optional[bytes]]  # (path, key path) -> bytes or None


def all_limits(rt: Runtime, classes: Sequence[NodeClass]) -> List[Tuple[str, ApptainerLimits]]:
    """(key path, limits) of the site and of every class that sets its own."""
    return runtime_settings(rt, classes, "apptainer_limits", ApptainerLimits)


def any_limits(rt: Runtime, classes: Sequence[NodeClass]) -> bool:
    return bool(all_limits(rt, classes))


def check_classes(rt: Runtime, classes: Sequence[NodeClass], site: Site,
                  out: ProblemCollector) -> bool:
    """Each class's effective runtime and every set of limits against the oldest releases."""
    ok = True
    for i, cls in enumerate(classes, 1):
        given = dict(cls.runtime)
        if not given:
            continue
        merged = Runtime(**{**rt.__dict__, **given})
        ok = enforcement.check_class_runtime(merged, f"node_class[{i}].runtime", out) and ok
    for where, limits in all_limits(rt, classes):
        ok = enforcement.check_limit_releases(limits, site, where, out) and ok
        if not {"apptainer", "singularity"} & set(site.runtimes):
            out.add(where, "renders nothing: neither apptainer nor singularity is in "
                    "site.runtimes")
            ok = False
    stores = runtime_settings(rt, classes, "storage", Storage)
    if stores and "podman" not in site.runtimes:
        for where, _ in stores:
            out.add(where, "renders nothing: podman is not in site.runtimes")
        ok = False
    return ok


def _read(path: str, where: str, trust: inputs.Trust, out: ProblemCollector,
          file: str) -> Optional[bytes]:
    try:
        return inputs.read_input(path, file=file, key=where, max_size=ECL_MAX, trust=trust)
    except InvalidInput as err:
        out.extend(err.problems)
        return None
    except OSError as err:
        reason = "does not exist" if err.errno == errno.ENOENT else (err.strerror or str(err))
        out.add(where, f"cannot read {path}: {reason}")
        return None


def _read_ecl(limits: ApptainerLimits, where: str, trust: inputs.Trust, out: ProblemCollector,
              got: Dict[str, bytes]) -> None:
    assert limits.ecl_path is not None
    if limits.ecl_path not in got:
        data = _read(limits.ecl_path, f"{where}.ecl", trust, out, out.file)
        if data is None:
            return
        problems, _dirs = ecl.check(data)
        for key, message in problems:
            inner = f"{key}: " if key else ""
            out.add(f"{where}.ecl", f"{limits.ecl_path}: {inner}{message}")
        if problems:
            return
        got[limits.ecl_path] = data
    if limits.ecl_keyring_path is None and ecl.activated(got[limits.ecl_path]):
        out.add(f"{where}.ecl_keyring", "is required with an activated ECL: the ECL checks "
                "signatures against this keyring only, and a node's own copy is not managed")


def _read_keyring(path: str, where: str, reader: KeyringReader,
                  got: Dict[str, bytes]) -> None:
    if path in got:
        return
    data = reader(path, where)
    if data is not None:
        got[path] = keyring.binary(data)


def read(rt: Runtime, classes: Sequence[NodeClass], trust: inputs.Trust, out: ProblemCollector,
         read_keyring: KeyringReader) -> Dict[str, bytes]:
    """ECL files and keyrings by resolved path (keyrings de-armoured). ECL files are read under
    `trust` (the site's ownership rule); `read_keyring` is the loader's checked keyring reader
    (file rule, world-readable, public packets, no secret)."""
    got: Dict[str, bytes] = {}
    for where, limits in all_limits(rt, classes):
        if limits.ecl_path is not None:
            _read_ecl(limits, where, trust, out, got)
        if limits.ecl_keyring_path is not None:
            _read_keyring(limits.ecl_keyring_path, f"{where}.ecl_keyring", read_keyring, got)
        if limits.ecl_path in got and limits.ecl_keyring_path in got:
            assert limits.ecl_path is not None and limits.ecl_keyring_path is not None
            known = ecl.key_fingerprints(got[limits.ecl_keyring_path])
            for key, message in ecl.unknown_signers(got[limits.ecl_path], known):
                out.add(f"{where}.ecl", f"{limits.ecl_path}: {key}: {message}")
    return got
