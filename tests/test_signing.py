"""Manifest signatures with the real ssh-keygen; pytest-subprocess only for its failure paths."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import pytest
from pytest_subprocess import FakeProcess

from hpcpolicy.errors import RuntimeFailure, UnsafePath, VerificationError
from hpcpolicy.generation import signing

pytestmark = pytest.mark.skipif(
    shutil.which("ssh-keygen") is None, reason="ssh-keygen (openssh-client) not installed"
)

MANIFEST = b'{"generation": 1, "files": []}\n'

KeyFactory = Callable[..., Path]


@pytest.fixture
def make_key(tmp_path: Path) -> KeyFactory:
    """Factory: a fresh ed25519 key pair in tmp (private key mode 0600, as ssh-keygen makes it)."""

    def make(name: str = "signing_key", passphrase: str = "") -> Path:
        key = tmp_path / name
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", name, "-f", str(key)],
            check=True,
            stdin=subprocess.DEVNULL,
        )
        return key

    return make


def allowed_signers(
    path: Path, principal: str, key: Path, namespaces: Optional[str] = "hpcpolicy"
) -> Path:
    """Write an allowed-signers file trusting `key`'s public half for `principal`."""
    pub = Path(str(key) + ".pub").read_text().split()
    opts = f' namespaces="{namespaces}"' if namespaces else ""
    path.write_text(f"{principal}{opts} {pub[0]} {pub[1]}\n")
    return path


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    gen = tmp_path / "generations" / "000001-abcdef01"
    gen.mkdir(parents=True)
    path = gen / "manifest.json"
    path.write_bytes(MANIFEST)
    return path


def test_sign_then_verify_returns_the_principal(
    manifest: Path, make_key: KeyFactory, tmp_path: Path
) -> None:
    key = make_key()
    sig = signing.sign(str(manifest), str(key))
    assert sig == str(manifest) + ".sig"
    assert Path(sig).read_bytes().startswith(b"-----BEGIN SSH SIGNATURE-----")
    assert os.stat(sig).st_mode & 0o777 == 0o644
    allowed = allowed_signers(tmp_path / "allowed_signers", "hpc-admins", key)
    assert signing.verify(str(manifest), sig, str(allowed)) == "hpc-admins"
    assert signing.verify(str(manifest), sig, str(allowed), principal="hpc-admins") == "hpc-admins"


def test_sign_leaves_no_stray_files(manifest: Path, make_key: KeyFactory) -> None:
    key = make_key()
    signing.sign(str(manifest), str(key))
    signing.sign(str(manifest), str(key))  # re-signing replaces the .sig atomically
    assert sorted(p.name for p in manifest.parent.iterdir()) == [
        "manifest.json",
        "manifest.json.sig",
    ]


def test_verify_bytes_checks_the_bytes_given(
    manifest: Path, make_key: KeyFactory, tmp_path: Path
) -> None:
    key = make_key()
    sig = Path(signing.sign(str(manifest), str(key))).read_bytes()
    allowed = allowed_signers(tmp_path / "allowed", "ops", key)
    assert signing.verify_bytes(MANIFEST, sig, str(allowed)) == "ops"
    with pytest.raises(VerificationError, match="bad signature"):
        signing.verify_bytes(MANIFEST + b" ", sig, str(allowed))


def test_tampered_manifest_is_refused(manifest: Path, make_key: KeyFactory, tmp_path: Path) -> None:
    key = make_key()
    sig = signing.sign(str(manifest), str(key))
    allowed = allowed_signers(tmp_path / "allowed", "ops", key)
    manifest.write_bytes(MANIFEST.replace(b"1", b"2"))
    with pytest.raises(VerificationError, match="bad signature: the manifest was changed") as info:
        signing.verify(str(manifest), sig, str(allowed))
    assert str(manifest) in str(info.value)
    assert info.value.exit_code == 1


def test_wrong_signer_is_refused(manifest: Path, make_key: KeyFactory, tmp_path: Path) -> None:
    trusted, intruder = make_key("trusted"), make_key("intruder")
    sig = signing.sign(str(manifest), str(intruder))
    allowed = allowed_signers(tmp_path / "allowed", "ops", trusted)
    with pytest.raises(VerificationError, match="unknown signer"):
        signing.verify(str(manifest), sig, str(allowed))
    with pytest.raises(VerificationError, match="no key of signer 'ops'"):
        signing.verify(str(manifest), sig, str(allowed), principal="ops")


def test_named_principal_must_match(manifest: Path, make_key: KeyFactory, tmp_path: Path) -> None:
    key = make_key()
    sig = signing.sign(str(manifest), str(key))
    allowed = allowed_signers(tmp_path / "allowed", "ops", key)
    with pytest.raises(VerificationError, match="no key of signer 'mallory'"):
        signing.verify(str(manifest), sig, str(allowed), principal="mallory")


def test_signature_for_another_namespace_is_refused(
    manifest: Path, make_key: KeyFactory, tmp_path: Path
) -> None:
    """A signature made for e.g. git must not pass as a manifest signature."""
    key = make_key()
    sig = Path(str(manifest) + ".sig")
    with manifest.open("rb") as data:
        sig.write_bytes(
            subprocess.run(
                ["ssh-keygen", "-Y", "sign", "-f", str(key), "-n", "git"],
                stdin=data,
                capture_output=True,
                check=True,
            ).stdout
        )
    allowed = allowed_signers(tmp_path / "allowed", "ops", key, namespaces=None)
    with pytest.raises(VerificationError, match="not made for namespace 'hpcpolicy'"):
        signing.verify(str(manifest), str(sig), str(allowed))


def test_allowed_signer_restricted_to_other_namespace_is_refused(
    manifest: Path, make_key: KeyFactory, tmp_path: Path
) -> None:
    key = make_key()
    sig = signing.sign(str(manifest), str(key))
    allowed = allowed_signers(tmp_path / "allowed", "ops", key, namespaces="git")
    with pytest.raises(VerificationError, match="not allowed to sign for namespace"):
        signing.verify(str(manifest), sig, str(allowed))


def test_missing_signature_or_allowed_signers_is_a_failure(
    manifest: Path, make_key: KeyFactory, tmp_path: Path
) -> None:
    key = make_key()
    allowed = allowed_signers(tmp_path / "allowed", "ops", key)
    with pytest.raises(VerificationError, match="signature missing"):
        signing.verify(str(manifest), str(manifest) + ".sig", str(allowed))
    sig = signing.sign(str(manifest), str(key))
    with pytest.raises(VerificationError, match="allowed-signers file missing"):
        signing.verify(str(manifest), sig, str(tmp_path / "nope"))


def test_symlinked_signature_is_refused(
    manifest: Path, make_key: KeyFactory, tmp_path: Path
) -> None:
    key = make_key()
    sig = signing.sign(str(manifest), str(key))
    allowed = allowed_signers(tmp_path / "allowed", "ops", key)
    link = tmp_path / "link.sig"
    link.symlink_to(sig)
    with pytest.raises(VerificationError, match="cannot read signature"):
        signing.verify(str(manifest), str(link), str(allowed))


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o610])
def test_key_open_to_group_or_other_is_refused(
    manifest: Path, make_key: KeyFactory, mode: int
) -> None:
    key = make_key()
    key.chmod(mode)
    with pytest.raises(UnsafePath, match=f"{key}: signing key has mode {mode:04o}"):
        signing.sign(str(manifest), str(key))
    assert not Path(str(manifest) + ".sig").exists()


def test_key_that_is_not_a_regular_file_is_refused(manifest: Path, tmp_path: Path) -> None:
    with pytest.raises(UnsafePath, match="not a regular file"):
        signing.sign(str(manifest), str(tmp_path))
    with pytest.raises(RuntimeFailure, match="cannot read signing key"):
        signing.sign(str(manifest), str(tmp_path / "absent"))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown the key")
def test_key_owned_by_someone_else_is_refused(manifest: Path, make_key: KeyFactory) -> None:
    key = make_key()
    os.chown(key, 4321, 4321)
    with pytest.raises(UnsafePath, match="owned by uid 4321"):
        signing.sign(str(manifest), str(key))


def test_passphrase_key_fails_at_once_instead_of_prompting(
    manifest: Path, make_key: KeyFactory
) -> None:
    """No tty, stdin /dev/null: ssh-keygen cannot ask, so an unattended apply fails cleanly."""
    key = make_key(passphrase="correct horse")
    with pytest.raises(RuntimeFailure, match="incorrect passphrase.*without passphrase"):
        signing.sign(str(manifest), str(key))


# --- failure paths of the tool itself (pytest-subprocess) ---------------------------------


@pytest.fixture
def dummy_key(tmp_path: Path) -> Path:
    """Passes the mode check; ssh-keygen is faked in these tests, so its content never matters."""
    key = tmp_path / "dummy_key"
    key.write_text("not a key\n")
    key.chmod(0o600)
    return key


def _raise_missing(process: object) -> None:
    raise FileNotFoundError(2, "No such file or directory", "ssh-keygen")


def test_ssh_keygen_missing_is_a_clear_runtime_failure(
    manifest: Path, dummy_key: Path, fp: FakeProcess
) -> None:
    fp.register(["ssh-keygen", fp.any()], callback=_raise_missing)
    with pytest.raises(RuntimeFailure, match="ssh-keygen not found: install OpenSSH"):
        signing.sign(str(manifest), str(dummy_key))
    assert not Path(str(manifest) + ".sig").exists()


def test_ssh_keygen_missing_on_a_node_fails_verification(
    manifest: Path, tmp_path: Path, fp: FakeProcess
) -> None:
    (tmp_path / "sig").write_text("x")
    (tmp_path / "allowed").write_text("x")
    fp.register(["ssh-keygen", fp.any()], callback=_raise_missing)
    with pytest.raises(VerificationError, match="ssh-keygen not found"):
        signing.verify(str(manifest), str(tmp_path / "sig"), str(tmp_path / "allowed"))


def test_sign_failure_reports_the_meaningful_stderr_line(
    manifest: Path, dummy_key: Path, fp: FakeProcess
) -> None:
    stderr = 'Signing data on standard input\nLoad key "k": invalid format\n'
    fp.register(["ssh-keygen", fp.any()], stderr=stderr, returncode=255)
    with pytest.raises(
        RuntimeFailure, match=r'^ssh-keygen -Y sign failed: Load key "k": invalid format$'
    ):
        signing.sign(str(manifest), str(dummy_key))
    assert not Path(str(manifest) + ".sig").exists()


def test_sign_output_that_is_no_signature_is_refused(
    manifest: Path, dummy_key: Path, fp: FakeProcess
) -> None:
    fp.register(["ssh-keygen", fp.any()], stdout="garbage", returncode=0)
    with pytest.raises(RuntimeFailure, match="wrote no SSH signature"):
        signing.sign(str(manifest), str(dummy_key))


def test_hung_ssh_keygen_times_out(
    manifest: Path, dummy_key: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real process that never answers (as a prompt would) is killed after TIMEOUT."""
    stuck = tmp_path / "ssh-keygen"
    stuck.write_text("#!/bin/sh\nexec sleep 30\n")
    stuck.chmod(0o755)
    monkeypatch.setattr(signing, "SSH_KEYGEN", str(stuck))
    monkeypatch.setattr(signing, "TIMEOUT", 0.3)
    with pytest.raises(RuntimeFailure, match="timed out after 0.3 s"):
        signing.sign(str(manifest), str(dummy_key))


def test_ssh_keygen_runs_without_agent_or_askpass(
    manifest: Path, dummy_key: Path, fp: FakeProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent or askpass helper must not be consulted behind the administrator's back."""
    seen: Dict[str, Any] = {}

    def record(process: object) -> None:
        seen.update(getattr(process, "kwargs", {}))

    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/agent.sock")
    monkeypatch.setenv("SSH_ASKPASS", "/usr/bin/ssh-askpass")
    sig = "-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n"
    fp.register(["ssh-keygen", fp.any()], stdout=sig, callback=record)
    signing.sign(str(manifest), str(dummy_key))
    env = seen["env"]
    assert "SSH_AUTH_SOCK" not in env and "SSH_ASKPASS" not in env
    assert seen["start_new_session"] is True
    assert list(fp.calls[0])[:3] == ["ssh-keygen", "-Y", "sign"]
