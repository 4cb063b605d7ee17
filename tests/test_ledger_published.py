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


# ------------------------------------------------------- the ledger revision in every manifest


def _manifest(root: Path, link: str = "current") -> dict:
    import json

    return json.loads((root / link / "manifest.json").read_bytes())


def _revision(root: Path) -> int:
    import json

    return int(json.loads((root / "state" / "subid-ledger.json").read_bytes())["revision"])


def _bob_left(tmp_path: Path, cli: CliRun) -> Tuple[Path, Path, Path, Path, Tuple[int, int]]:
    """alice applied (ledger backed up), bob came (applied), bob left (applied): bob's range is
    reserved in the ledger but in no published file. Returns (root, directory, site, backup,
    bob's (start, count))."""
    root, d, site = _applied(tmp_path, cli)
    backup = tmp_path / "ledger-backup.json"
    shutil.copy(root / "state" / "subid-ledger.json", backup)   # taken before bob came
    _users(d, "bob")
    assert cli("apply", site).rc == 0
    start, count, _ = ledger_ranges(str(root))[3002]
    _users(d)                                                    # bob leaves
    res = cli("apply", site, "--allow-revoke")
    assert res.rc == 0, res.err
    assert b"3002:" not in _current_subuid(root)
    assert ledger_ranges(str(root))[3002] == (start, count, "left")
    return root, d, site, backup, (start, count)


def test_restored_ledger_without_reserved_range_refuses(tmp_path: Path, cli: CliRun) -> None:
    """The gap the published-lines check cannot see: the restored ledger lost only the range
    of a user who left. A new user would be given it; the recorded revision stops that."""
    root, d, site, backup, bob = _bob_left(tmp_path, cli)
    newest = (root / "state" / "subid-ledger.json").read_bytes()
    recorded = _manifest(root)["ledger"]
    assert recorded["revision"] == _revision(root) and len(recorded["sha256"]) == 64
    generation = os.readlink(root / "current")

    shutil.copy(backup, root / "state" / "subid-ledger.json")   # the restore
    restored = (root / "state" / "subid-ledger.json").read_bytes()
    old_rev = _revision(root)
    _users(d, "frank")                                           # a new user comes
    res = cli("apply", site)
    assert res.rc == 1, res.out
    assert os.path.basename(generation) in res.err and f"revision {old_rev}" in res.err
    assert f"revision {recorded['revision']}" in res.err
    assert "subid import" in res.err and "users who left" in res.err
    assert "Nothing was changed" in res.err and "Traceback" not in res.err
    assert os.readlink(root / "current") == generation                 # nothing published
    assert (root / "state" / "subid-ledger.json").read_bytes() == restored  # nobody moved
    assert cli("apply", site, "--check").rc == 1

    # remedy 1: restore the newest ledger; frank gets a range of his own, bob's stays his
    (root / "state" / "subid-ledger.json").write_bytes(newest)
    res = cli("apply", site)
    assert res.rc == 0, res.err
    frank = ledger_ranges(str(root))[3000]
    assert frank[:2] != bob and ledger_ranges(str(root))[3002] == (*bob, "left")


def test_import_is_the_other_remedy(tmp_path: Path, cli: CliRun) -> None:
    root, d, site, backup, _ = _bob_left(tmp_path, cli)
    floor = _manifest(root)["ledger"]["revision"]
    shutil.copy(backup, root / "state" / "subid-ledger.json")
    _users(d, "frank")
    assert cli("apply", site).rc == 1
    cur = root / "current" / "tree" / "etc"
    res = cli("subid", "import", cur / "subuid", cur / "subgid", "--site", site)
    assert res.rc == 0, res.err
    assert f"revision {floor}" in res.out and "not recovered" in res.out
    assert _revision(root) > floor                     # past every published revision
    res = cli("apply", site)
    assert res.rc == 0, res.err
    assert 3000 in ledger_ranges(str(root))


def test_same_revision_other_records_refuses(tmp_path: Path, cli: CliRun) -> None:
    """A ledger edited by hand (bob's reserved record dropped, revision kept)."""
    import json

    root, d, site, _, _ = _bob_left(tmp_path, cli)
    path = root / "state" / "subid-ledger.json"
    doc = json.loads(path.read_bytes())
    doc["records"] = [r for r in doc["records"] if r["uid"] != 3002]
    path.write_text(json.dumps(doc))
    _users(d, "frank")
    res = cli("apply", site)
    assert res.rc == 1
    assert "edited or replaced outside hpcpolicy" in res.err and "Nothing was changed" in res.err
    assert 3000 not in ledger_ranges(str(root))


def test_legitimate_sequence_never_trips(tmp_path: Path, cli: CliRun) -> None:
    """revoke, grant, reclaim, import, rollback, promote, apply: every one goes through, and
    a rollback records the ledger as it is now, not the old generation's."""
    root, d, site = _applied(tmp_path, cli, "bob")

    def ok(*argv: object) -> None:
        res = cli(*argv)
        assert res.rc == 0, (argv, res.err)

    ok("subid", "revoke", "bob", "--site", site)
    ok("apply", site, "--allow-revoke")
    ok("subid", "grant", "bob", "--site", site)
    ok("apply", site)
    _users(d, "bob", "frank")
    ok("apply", site, "--channel", "canary")
    assert _manifest(root, "channels/canary")["ledger"]["revision"] == _revision(root)
    ok("promote", "canary", "--site", site)
    cur = root / "current" / "tree" / "etc"
    ok("subid", "import", cur / "subuid", cur / "subgid", "--site", site)
    ok("apply", site)
    ok("subid", "revoke", "frank", "--site", site)
    ok("subid", "reclaim", "frank", "--site", site)
    ok("apply", site, "--allow-revoke")
    write_site(tmp_path / "site", root, (str(d / "passwd"), str(d / "group")),
               binds=("/scratch", "/tmp"))                     # other node files
    ok("apply", site)
    ok("subid", "revoke", "bob", "--site", site)               # after the last publish
    ok("rollback", "--site", site)
    assert _manifest(root)["action"] == "rollback"
    assert _manifest(root)["ledger"]["revision"] == _revision(root)   # now, not then
    _users(d, "bob")
    ok("apply", site, "--allow-revoke")
    assert _manifest(root)["ledger"]["revision"] == _revision(root)


def test_generations_without_the_field_are_skipped(tmp_path: Path) -> None:
    from hpcpolicy.deploy.ledger_guard import check_ledger_revision, ledger_fields
    from hpcpolicy.errors import RuntimeFailure
    from hpcpolicy.subid.ledger import Ledger

    ledger = Ledger("s", revision=3)
    old: dict = {"generation": "000001-00000000"}
    check_ledger_revision("/r", ledger, [("stable", "000001-00000000", old)])
    check_ledger_revision("/r", None, [("stable", "000001-00000000", old)])
    bad = {"ledger": {"revision": True, "sha256": "x"}}          # not a revision: skipped
    check_ledger_revision("/r", ledger, [("stable", "000002-00000000", bad)])
    newer = {"ledger": {**ledger_fields(ledger), "revision": 4}}
    try:
        check_ledger_revision("/r", ledger, [("canary", "000003-00000000", newer)])
    except RuntimeFailure as err:
        assert "000003-00000000" in str(err) and "revision 3" in str(err)
    else:
        raise AssertionError("an older ledger passed")
    check_ledger_revision("/r", ledger, [("stable", "000004-00000000",
                                           {"ledger": ledger_fields(ledger)})])


def test_rollback_does_not_launder_a_restored_ledger(tmp_path: Path, cli: CliRun) -> None:
    """A rollback after the restore records the newer revision current had, not the restored
    one: the next apply still refuses."""
    root, d, site, backup, _ = _bob_left(tmp_path, cli)
    recorded = _manifest(root)["ledger"]
    write_site(tmp_path / "site", root, (str(d / "passwd"), str(d / "group")),
               binds=("/scratch", "/tmp"))
    assert cli("apply", site).rc == 0
    recorded = _manifest(root)["ledger"]
    shutil.copy(backup, root / "state" / "subid-ledger.json")
    res = cli("rollback", "--site", site)
    assert res.rc == 0, res.err
    assert _manifest(root)["ledger"] == recorded
    _users(d, "frank")
    assert cli("apply", site).rc == 1
