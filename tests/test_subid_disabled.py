"""Turning sub-IDs off must not bring back unchecked pre-hpcpolicy ranges (review M1).

Before: with `subid.enabled = false` the generation dropped etc/subuid and etc/subgid and nodes
renamed `/etc/subuid.hpcpolicy-orig` back: the distribution's old ranges (often inside real
UID ranges, and including users the site had revoked) came back exactly when the site meant to
withdraw sub-IDs. Now nodes empty the files and leave the original aside for review.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from apply_fixtures import write_directory, write_site

from tests.conftest import CliResult

CliRun = Callable[..., CliResult]
OLD = b"user00000:100000:65536\nuser00001:165536:65536\n"


def test_disabling_subids_empties_node_files_and_never_restores_originals(
        tmp_path: Path, cli: CliRun) -> None:
    node = tmp_path / "node"
    (node / "etc").mkdir(parents=True)
    for name in ("subuid", "subgid"):
        (node / "etc" / name).write_bytes(OLD)
    root = tmp_path / "root"
    files = write_directory(tmp_path / "dir", 2)
    site = write_site(tmp_path / "site", root, files)
    assert cli("apply", site).rc == 0
    res = cli("node", "sync", "--from", root, "--root", node)
    assert res.rc == 0, res.err
    assert (node / "etc" / "subuid").read_bytes().startswith(b"2000:")
    assert (node / "etc" / "subuid.hpcpolicy-orig").read_bytes() == OLD

    text = site.read_text()
    assert "[subid]\n" in text
    site.write_text(text.replace("[subid]\n", "[subid]\nenabled = false\n")
                    + "\n[runtime]\nfakeroot = false\n")
    res = cli("apply", site)
    assert res.rc == 0, res.err
    res = cli("node", "sync", "--from", root, "--root", node)
    assert res.rc == 0, res.err
    for name in ("subuid", "subgid"):
        assert (node / "etc" / name).read_bytes() == b""             # withdrawn, not restored
        assert (node / "etc" / f"{name}.hpcpolicy-orig").read_bytes() == OLD  # kept for review
    assert "emptied" in res.out + res.err

    res = cli("node", "sync", "--from", root, "--root", node)  # steady state: nothing to do
    assert res.rc == 0 and (node / "etc" / "subuid").read_bytes() == b""


def test_a_site_that_never_enabled_subids_leaves_node_files_alone(
        tmp_path: Path, cli: CliRun) -> None:
    node = tmp_path / "node"
    (node / "etc").mkdir(parents=True)
    (node / "etc" / "subuid").write_bytes(OLD)
    root = tmp_path / "root"
    site = write_site(tmp_path / "site", root, write_directory(tmp_path / "dir", 2))
    site.write_text(site.read_text().replace("[subid]\n", "[subid]\nenabled = false\n")
                    + "\n[runtime]\nfakeroot = false\n")
    assert cli("apply", site).rc == 0
    assert cli("node", "sync", "--from", root, "--root", node).rc == 0
    assert (node / "etc" / "subuid").read_bytes() == OLD
    assert not (node / "etc" / "subuid.hpcpolicy-orig").exists()
