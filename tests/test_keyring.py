"""`signed_by` keyrings: only OpenPGP public keyrings, checked against real gpg output.

The attack (security review H2): a site file names a secret key, `/etc/shadow`, the LDAP bind
password file or the manifest signing key as `signed_by`; apply used to publish it mode 0644 to
every node. Keys are made by a real gpg in a private GNUPGHOME.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpcpolicy.errors import InvalidInput
from hpcpolicy.policy.keyring import NotPublicKeyring, check_public, crc24, packet_tags
from hpcpolicy.policy.load import load

DATA = Path(__file__).resolve().parent / "data" / "keys"
NOBODY = 65534


@pytest.fixture(scope="module")
def exports() -> Iterator[Dict[str, bytes]]:
    """gpg --export / --export --armor / --export-secret-keys (binary and armoured)."""
    if shutil.which("gpg") is None:
        pytest.skip("gpg missing")
    home = tempfile.mkdtemp(prefix="hpcpolicy-gpg-")
    env = dict(os.environ, GNUPGHOME=home)
    try:
        subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key",
                        "hpcpolicy keyring test <k@example.org>", "ed25519", "sign", "never"],
                       env=env, check=True, capture_output=True, timeout=120)
        fpr = subprocess.run(["gpg", "--list-keys", "--with-colons"], env=env, check=True,
                             capture_output=True, text=True).stdout
        fpr = next(line.split(":")[9] for line in fpr.splitlines() if line.startswith("fpr"))
        subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-add-key", fpr,
                        "cv25519", "encr", "never"], env=env, check=True, capture_output=True)

        def gpg(*args: str) -> bytes:
            return subprocess.run(["gpg", "--batch", "--pinentry-mode", "loopback",
                                   "--passphrase", "", *args], env=env, check=True,
                                  capture_output=True).stdout

        yield {"public": gpg("--export"), "public_armour": gpg("--export", "--armor"),
               "secret": gpg("--export-secret-keys"),
               "secret_armour": gpg("--export-secret-keys", "--armor"),
               "secret_sub": gpg("--export-secret-subkeys")}
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def test_gpg_public_exports_are_accepted(exports: Dict[str, bytes]) -> None:
    binary = check_public(exports["public"])
    assert binary[0] == 6 and 14 in binary and 13 in binary and 2 in binary
    assert check_public(exports["public_armour"]) == binary
    assert check_public((DATA / "public.asc").read_bytes()) == [6, 13, 2]


@pytest.mark.parametrize("name", ["secret", "secret_armour", "secret_sub"])
def test_gpg_secret_exports_are_refused(exports: Dict[str, bytes], name: str) -> None:
    with pytest.raises(NotPublicKeyring, match="secret"):
        check_public(exports[name])


def test_armour_checksum_is_checked(exports: Dict[str, bytes]) -> None:
    lines = exports["public_armour"].decode().splitlines()
    crc_at = next(i for i, line in enumerate(lines) if line.startswith("=") and len(line) == 5)
    body_at = crc_at - 1
    changed = list(lines)
    line = changed[body_at]
    changed[body_at] = line[:4] + ("A" if line[4] != "A" else "B") + line[5:]
    with pytest.raises(NotPublicKeyring):
        check_public("\n".join(changed).encode())


def test_two_concatenated_armour_blocks(exports: Dict[str, bytes]) -> None:
    both = exports["public_armour"] + b"\n" + (DATA / "public.asc").read_bytes()
    assert check_public(both).count(6) == 2


def test_not_keyrings_are_refused() -> None:
    for data in (b"", b"\n\n", b"root:$6$abc:19000:0:99999:7:::\n",
                 b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEA\n"
                 b"-----END OPENSSH PRIVATE KEY-----\n",
                 b"-----BEGIN PGP MESSAGE-----\n\nowE=\n-----END PGP MESSAGE-----\n"):
        with pytest.raises(NotPublicKeyring):
            check_public(data)


def test_old_and_new_headers_and_partial_lengths() -> None:
    body = b"\x04" + b"\x00" * 9
    old = bytes([0x80 | (6 << 2) | 0, len(body)]) + body           # old format, 1-byte length
    old2 = bytes([0x80 | (13 << 2) | 1, 0, 3]) + b"u@x"               # old format, 2-byte length
    new = bytes([0xC0 | 2, 0xFF, 0, 0, 0, 2]) + b"\x04\x00"         # new format, 4-byte length
    two = bytes([0xC0 | 2, 192, 8]) + b"s" * 200                    # new format, 2-byte length
    partial = bytes([0xC0 | 11, 0xE1]) + b"ab" + bytes([3]) + b"xyz"  # partial: 2 then 3 bytes
    assert packet_tags(old + old2 + new + two) == [6, 13, 2, 2]
    assert packet_tags(partial) == [11]
    with pytest.raises(NotPublicKeyring, match="literal data"):
        check_public(old + partial)
    indeterminate = bytes([0x80 | (2 << 2) | 3]) + b"anything to the end"
    assert packet_tags(old + indeterminate) == [6, 2]


def test_every_truncation_is_refused_or_a_packet_prefix(exports: Dict[str, bytes]) -> None:
    full = exports["public"]
    tags = check_public(full)
    for cut in range(1, len(full)):
        try:
            got = check_public(full[:cut])
        except NotPublicKeyring:
            continue
        assert got == tags[:len(got)]  # cut at a packet boundary: a shorter valid keyring


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_never_crashes_the_walker(data: bytes) -> None:
    try:
        tags = check_public(data)
    except NotPublicKeyring:
        return
    assert tags[0] == 6


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=237), st.integers(min_value=0, max_value=255))
def test_a_flipped_byte_is_refused_or_still_only_public(where: int, value: int) -> None:
    data = bytearray((DATA / "public.gpg").read_bytes())
    data[where] = value
    try:
        tags = check_public(bytes(data))
    except NotPublicKeyring:
        return
    assert set(tags) <= {6, 14, 13, 17, 2}


def test_crc24_known_value() -> None:
    assert crc24(b"") == 0xB704CE


# ------------------------------------------------------------------ through the site file


def _site(tmp_path: Path, keyring: str, extra: str = "") -> Path:
    site = tmp_path / "site.toml"
    site.write_text(f"""schema = 1
[site]
name = "t"
deploy_root = "/srv/hpcpolicy-t"
runtimes = ["podman"]
{extra}
[directory]
sources = ["files"]
[directory.files]
passwd = "/etc/passwd"
group = "/etc/group"
[[images.rule]]
scope = "docker.io/library"
action = "allow"
signed_by = "{keyring}"
""")
    return site


def _problem(site: Path) -> str:
    with pytest.raises(InvalidInput) as err:
        load(str(site))
    return str(err.value)


def test_secret_key_as_signed_by_is_refused(tmp_path: Path, exports: Dict[str, bytes]) -> None:
    key = tmp_path / "secret.gpg"
    key.write_bytes(exports["secret_armour"])
    os.chmod(key, 0o644)
    text = _problem(_site(tmp_path, str(key)))
    assert "images.rule[1].signed_by" in text and "secret key" in text
    assert "-----BEGIN" not in text  # the secret is never echoed


def test_signing_key_as_signed_by_is_refused_under_any_spelling(tmp_path: Path) -> None:
    ssh = tmp_path / "signkey"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ssh)], check=True)
    os.symlink(ssh, tmp_path / "alias")
    text = _problem(_site(tmp_path, str(tmp_path / "alias"), f'signing_key = "{ssh}"'))
    assert "the file site.signing_key names" in text


def test_password_file_as_signed_by_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "ldap.secret"
    secret.write_text("pw\n")
    os.chmod(secret, 0o600)
    site = _site(tmp_path, str(secret))
    site.write_text(site.read_text().replace('sources = ["files"]', 'sources = ["files"]\n'
                    '[directory.ldap]\nuri = ["ldaps://ldap.example.org"]\n'
                    'bind_dn = "cn=hpc"\nuser_base = "ou=p"\ngroup_base = "ou=g"\n'
                    f'bind_password_file = "{secret}"\n'))
    assert "directory.ldap.bind_password_file names" in _problem(site)


def test_private_mode_or_foreign_owner_keyring_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "k.gpg"
    key.write_bytes((DATA / "public.gpg").read_bytes())
    os.chmod(key, 0o600)
    assert "not world-readable" in _problem(_site(tmp_path, str(key)))
    os.chmod(key, 0o666)
    assert "writable by group or others" in _problem(_site(tmp_path, str(key)))
    os.chmod(key, 0o644)
    os.chown(key, NOBODY, -1)
    assert "uid 65534" in _problem(_site(tmp_path, str(key)))
    os.chown(key, 0, -1)
    assert load(str(_site(tmp_path, str(key)))).keyrings


def test_shadow_like_file_and_dev_zero_are_refused(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    shadow.write_text("root:$6$salt$hash:19000:0:99999:7:::\n")
    os.chmod(shadow, 0o644)
    assert "not an OpenPGP public keyring" in _problem(_site(tmp_path, str(shadow)))
    assert "a character device" in _problem(_site(tmp_path, "/dev/zero"))


def test_apply_with_a_secret_keyring_publishes_nothing(
        tmp_path: Path, exports: Dict[str, bytes]) -> None:
    """The review's H2 run end to end: apply refuses, no generation, the secret not echoed."""
    import sys

    from apply_fixtures import write_directory, write_site

    key = tmp_path / "k.asc"
    key.write_bytes(exports["secret_armour"])
    key.chmod(0o644)
    files = write_directory(tmp_path / "dir", 2)
    site = write_site(tmp_path / "site", tmp_path / "root", files)
    site.write_text(site.read_text() + f'\n[[images.rule]]\nscope = "docker.io/library"\n'
                    f'action = "allow"\nsigned_by = "{key}"\n')
    res = subprocess.run([sys.executable, "-m", "hpcpolicy", "apply", str(site)],
                         capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert res.returncode == 2 and "secret key" in res.stderr
    body = [line for line in exports["secret_armour"].decode().splitlines()[2:] if len(line) > 40]
    assert body and not any(line in res.stderr + res.stdout for line in body)  # never echoed
    assert not (tmp_path / "root" / "current").exists()
