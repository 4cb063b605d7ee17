"""A restored (older) ledger must not hand a published range to someone else (review H4).

The attack is an honest mistake: an operator restores the ledger from a backup older than the
newest allocation, as an error message once suggested. The next apply with a new user used to
give that user a range nodes had already given to someone else, and move its owner.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable, Tuple

from apply_fixtures import ledger_ranges, subuid_ranges, write_directory, write_site

from tests.conftest import CliResult

CliRun = Callable[..., CliResult]


def _users(where: Path, *extra: str) -> None:
    names = {"alice": 3001, "bob": 3002, "frank": 3000}
    write_directory(where, 0, tuple((n, names[n]) for n in ("alice",) + extra))


def _applied(tmp_path: Path, cli: CliRun, *extra: str) -> Tuple[Path, Path, Path]:
    """A site whose directory has alice (and `extra`), applied once: (deploy root, directory
    folder, site file)."""
    root = tmp_path / "root"
    d = tmp_path / "dir"
    _users(d, *extra)
    site = write_site(tmp_path / "site", root, (str(d / "passwd"), str(d / "group")))
    assert cli("apply", site).rc == 0
    return root, d, site


def _current_subuid(root: Path) -> bytes:
    return (root / "current" / "tree" / "etc" / "subuid").read_bytes()


def test_restored_ledger_refuses_to_reallocate_published_ranges(
        tmp_path: Path, cli: CliRun) -> None:
    root, d, site = _applied(tmp_path, cli)
    backup = tmp_path / "ledger-backup.json"
    shutil.copy(root / "state" / "subid-ledger.json", backup)   # taken before bob came
    _users(d, "bob")
    assert cli("apply", site).rc == 0
    published = _current_subuid(root)
    bob = [r for r in subuid_ranges(published) if r[0] == 3002]
    assert bob
    generation = os.readlink(root / "current")

    shutil.copy(backup, root / "state" / "subid-ledger.json")   # the restore
    restored = (root / "state" / "subid-ledger.json").read_bytes()
    _users(d, "bob", "frank")
    res = cli("apply", site)
    assert res.rc == 1
    assert "3002" in res.err and "subid import" in res.err and "Nothing was changed" in res.err
    assert os.readlink(root / "current") == generation                 # nothing published
    assert (root / "state" / "subid-ledger.json").read_bytes() == restored  # nobody moved
    assert cli("apply", site, "--check").rc == 1                      # --check says so too

    # the remedy the message names, then the apply goes through and bob keeps his range
    cur = root / "current" / "tree" / "etc"
    res = cli("subid", "import", cur / "subuid", cur / "subgid", "--site", site)
    assert res.rc == 0, res.err
    assert cli("apply", site).rc == 0
    after = {r[0]: r[1:] for r in subuid_ranges(_current_subuid(root))}
    assert after[3002] == bob[0][1:]
    assert after[3000] != after[3002] and ledger_ranges(str(root))[3000][2] == "live"


def test_reclaimed_tombstone_is_not_a_loss(tmp_path: Path, cli: CliRun) -> None:
    """bob revoked and reclaimed: his line is still published until the next apply."""
    root, _, site = _applied(tmp_path, cli, "bob")
    assert cli("subid", "revoke", "bob", "--site", site).rc == 0
    assert cli("subid", "reclaim", "bob", "--site", site).rc == 0
    assert b"3002:" in _current_subuid(root)
    res = cli("apply", site, "--allow-revoke")
    assert res.rc == 0, res.err
    assert b"3002:" not in _current_subuid(root)


def test_a_channel_generation_counts_too(tmp_path: Path, cli: CliRun) -> None:
    root, d, site = _applied(tmp_path, cli)
    backup = tmp_path / "ledger-backup.json"
    shutil.copy(root / "state" / "subid-ledger.json", backup)
    _users(d, "bob")
    assert cli("apply", site, "--channel", "canary").rc == 0         # bob only on canary
    shutil.copy(backup, root / "state" / "subid-ledger.json")
    res = cli("apply", site)
    assert res.rc == 1 and "3002" in res.err


def test_unheld_by_uid_by_name_renames_and_tombstones() -> None:
    from hpcpolicy.deploy.ledger_guard import unheld
    from hpcpolicy.subid.ledger import Event, Ledger, Record

    t = "2026-01-01T00:00:00Z"
    records = {
        1001: Record(1001, "alice", 524288, 65536, "live", t, t),
        1002: Record(1002, "robert", 589824, 65536, "left", t, t,
                     history=(Event(t, "renamed", "bob -> robert"),)),
        1003: Record(1003, "carol", 655360, 65536, "reclaimed", t, t),
    }
    ledger = Ledger("s", records)
    by_uid = b"1001:524288:65536\n1002:589824:65536\n1003:655360:65536\n"
    by_name = b"alice:524288:65536\nbob:589824:65536\ncarol:655360:65536\n"
    assert unheld(ledger, {by_uid: ["g: etc/subuid"], by_name: ["g: etc/subgid"]}) == {}
    lost = b"1001:524288:65536\n1004:720896:65536\n"            # uid 1004 not in the ledger
    moved = b"alice:589824:65536\n"                             # alice holds another range
    assert unheld(ledger, {lost: ["g1: etc/subuid"], moved: ["g2: etc/subuid"]}) == {
        ("1004", 720896, 65536): "g1: etc/subuid", ("alice", 589824, 65536): "g2: etc/subuid"}
    assert unheld(None, {by_uid: ["g"]}).keys() == {("1001", 524288, 65536),
                                                     ("1002", 589824, 65536),
                                                     ("1003", 655360, 65536)}
