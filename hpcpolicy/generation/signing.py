"""Manifest signatures with OpenSSH's `ssh-keygen -Y` (SSHSIG), namespace "hpcpolicy".

Why ssh-keygen: every node already has it, administrators already manage SSH keys, and the
allowed-signers file format (`principal namespaces="hpcpolicy" ssh-ed25519 AAAA...`) lets a
node pin both the key and the purpose. The namespace stops a signature made for something else
(a git commit, a file signed for another tool) from being replayed as a manifest signature.

Safety decisions:

* The data is fed on stdin and the signature read from stdout, so ssh-keygen never writes next
  to the manifest itself; the `.sig` is then published with `atomic_write` (never torn).
* ssh-keygen runs with stdin from /dev/null, in a new session (no controlling tty, so
  `readpassphrase` cannot open /dev/tty), without agent or askpass variables, and with a
  timeout: an encrypted key fails at once instead of hanging an unattended apply.
* The key's mode is checked first, to give a clear error instead of ssh-keygen's banner.

This module is imported by nodes: it depends on `errors`, `fsutil` and `trust` only, never on
`deploy`.
"""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import tempfile
from typing import Dict, List, Optional, Sequence

from ..errors import InvalidInput, RuntimeFailure, UnsafePath, VerificationError
from ..fsutil import atomic_write, read_bytes_nofollow
from .trust import anchor_problem

log = logging.getLogger(__name__)

NAMESPACE = "hpcpolicy"
SSH_KEYGEN = "ssh-keygen"
TIMEOUT = 30.0  # seconds; signing or verifying one small manifest takes milliseconds
SIG_SUFFIX = ".sig"
SIG_ARMOR = b"-----BEGIN SSH SIGNATURE-----"

# Variables that could make ssh-keygen use an agent or pop up a passphrase dialog.
_SCRUBBED_ENV = (
    "SSH_AUTH_SOCK",
    "SSH_ASKPASS",
    "SSH_ASKPASS_REQUIRE",
    "DISPLAY",
    "WAYLAND_DISPLAY",
)
# Informational stderr lines that would hide the real reason of a failure.
_NOISE_PREFIXES = ("Signing data on standard input", "@@@@", "WARNING: UNPROTECTED")
_PROMPT = "Enter passphrase: "


def sig_path_for(manifest_path: str) -> str:
    """Where the signature of a manifest lives (`manifest.json.sig` beside it)."""
    return manifest_path + SIG_SUFFIX


def sign(manifest_path: str, key_path: str) -> str:
    """Sign `manifest_path` with the OpenSSH private key `key_path`; return the `.sig` path.

    Raises UnsafePath when the key is not a private regular file, RuntimeFailure when
    ssh-keygen is missing, fails or times out.
    """
    check_key(key_path)
    data = read_bytes_nofollow(manifest_path)
    try:
        out = _run([SSH_KEYGEN, "-Y", "sign", "-f", key_path, "-n", NAMESPACE], data, "sign")
    except RuntimeFailure as err:
        if "passphrase" not in str(err):
            raise
        raise RuntimeFailure(f"{err} (an unattended apply needs a key without passphrase)") from err
    if not out.startswith(SIG_ARMOR):
        raise RuntimeFailure(f"ssh-keygen -Y sign with {key_path} wrote no SSH signature")
    sig_path = sig_path_for(manifest_path)
    atomic_write(sig_path, out, mode=0o644)
    log.info("signed %s with %s", manifest_path, key_path)
    return sig_path


def check_key(key_path: str) -> None:
    """Refuse a signing key that is not a regular file private to its owner.

    Mirrors ssh-keygen's own rule (no group/other bits at all), plus: owned by us or root.
    """
    try:
        st = os.stat(key_path)
    except OSError as err:
        raise RuntimeFailure(f"{key_path}: cannot read signing key: {err.strerror}") from err
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePath(f"{key_path}: signing key is not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise UnsafePath(
            f"{key_path}: signing key has mode {mode:04o}; it must not be accessible by "
            f"group or other (chmod 600 {key_path})"
        )
    if st.st_uid not in (os.geteuid(), 0):
        raise UnsafePath(f"{key_path}: signing key is owned by uid {st.st_uid}, not by us or root")


def verify(
    manifest_path: str,
    sig_path: str,
    allowed_signers: str,
    principal: Optional[str] = None,
) -> str:
    """Verify `sig_path` over `manifest_path` against an allowed-signers file; return the signer.

    A missing signature is a failure: a node that has an allowed-signers file requires one.
    Any failure raises VerificationError (exit 1).
    """
    data = _read_for_verify(manifest_path, "manifest")
    sig = _read_for_verify(sig_path, "signature")
    return verify_bytes(data, sig, allowed_signers, principal, label=manifest_path)


def verify_bytes(
    data: bytes,
    sig: bytes,
    allowed_signers: str,
    principal: Optional[str] = None,
    label: str = "manifest",
) -> str:
    """Verify a signature over bytes already read; return the signer's principal.

    A node should verify the very bytes it then parses (no window in which the file on
    shared storage could change between the check and the use); `verify` wraps this.
    """
    check_allowed_signers(allowed_signers)
    with tempfile.TemporaryDirectory(prefix="hpcpolicy-sig-") as tmp:
        sig_file = os.path.join(tmp, "manifest.json.sig")
        atomic_write(sig_file, sig, mode=0o600, sync=False)
        who = principal or _find_principal(sig_file, allowed_signers, label)
        _verify_as(data, sig_file, allowed_signers, who, label)
    log.info("%s: good signature by %s", label, who)
    return who


def check_allowed_signers(path: str) -> None:
    """The keys a node trusts: refuse a file someone other than root could change (exit 2).

    Whoever can edit it can add their own key, so it must be a regular root-owned file, not
    writable by group or other, in directories only root can change.
    """
    if not os.path.lexists(path):
        raise VerificationError(f"{path}: allowed-signers file missing")
    why = anchor_problem(path, {0, os.geteuid()})
    if why:
        raise InvalidInput(f"allowed-signers file: {why}", file=path)


def _read_for_verify(path: str, what: str) -> bytes:
    try:
        return read_bytes_nofollow(path)
    except FileNotFoundError as err:
        raise VerificationError(
            f"{path}: {what} missing (this node requires signed manifests)"
        ) from err
    except OSError as err:
        raise VerificationError(f"{path}: cannot read {what}: {err.strerror}") from err


def _find_principal(sig_file: str, allowed_signers: str, label: str) -> str:
    """Which allowed signer's key made the signature (the first, if several share it)."""
    cmd = [SSH_KEYGEN, "-Y", "find-principals", "-s", sig_file, "-f", allowed_signers]
    try:
        out = _run(cmd, b"", "find-principals")
    except RuntimeFailure as err:
        if isinstance(err, VerificationError) or "No principal matched" not in str(err):
            raise VerificationError(f"{label}: signature check failed: {err}") from err
        raise VerificationError(
            f"{label}: signed by a key that is not in {allowed_signers} (unknown signer)"
        ) from err
    names = [line.strip() for line in out.decode("utf-8", "replace").splitlines() if line.strip()]
    if not names:
        raise VerificationError(f"{label}: signed by a key that is not in {allowed_signers}")
    return names[0]


def _verify_as(data: bytes, sig_file: str, allowed_signers: str, who: str, label: str) -> None:
    cmd = [SSH_KEYGEN, "-Y", "verify", "-f", allowed_signers, "-I", who, "-n", NAMESPACE]
    try:
        _run(cmd + ["-s", sig_file], data, "verify")
    except RuntimeFailure as err:
        reason = _explain_verify(str(err), who, allowed_signers)
        raise VerificationError(f"{label}: {reason}") from err


def _explain_verify(message: str, who: str, allowed: str) -> str:
    """Turn ssh-keygen's reason into one a node operator can act on."""
    if "incorrect signature" in message:
        return "bad signature: the manifest was changed after it was signed"
    if "namespace does not match" in message:
        return f"signature was not made for namespace {NAMESPACE!r}"
    if "not permitted for use in signature namespace" in message:
        return f"signer {who!r} is not allowed to sign for namespace {NAMESPACE!r} ({message})"
    if message.endswith("Could not verify signature."):
        return f"no key of signer {who!r} in {allowed} matches the signature"
    return f"signature verification failed: {message}"


def _run(cmd: Sequence[str], data: bytes, what: str) -> bytes:
    """Run ssh-keygen without any chance of a prompt; return stdout or raise RuntimeFailure."""
    try:
        proc = subprocess.run(
            list(cmd),
            input=data,
            capture_output=True,
            env=_clean_env(),
            start_new_session=True,
            timeout=TIMEOUT,
            check=False,
        )
    except FileNotFoundError as err:
        raise RuntimeFailure(f"{SSH_KEYGEN} not found: install OpenSSH (openssh-client)") from err
    except subprocess.TimeoutExpired as err:
        raise RuntimeFailure(f"ssh-keygen -Y {what} timed out after {TIMEOUT:g} s") from err
    if proc.returncode != 0:
        reason = _diagnostic(proc.stderr) or _diagnostic(proc.stdout) or f"exit {proc.returncode}"
        raise RuntimeFailure(f"ssh-keygen -Y {what} failed: {reason}")
    return bytes(proc.stdout)


def _clean_env() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env["LC_ALL"] = "C"
    return env


def _diagnostic(stream: Optional[bytes]) -> str:
    """First meaningful line of ssh-keygen's output (skipping banners and progress lines)."""
    lines: List[str] = []
    for raw in (stream or b"").decode("utf-8", "replace").splitlines():
        line = raw.strip().removeprefix(_PROMPT).strip()
        if line and not line.startswith(_NOISE_PREFIXES):
            lines.append(line)
    return lines[0] if lines else ""
