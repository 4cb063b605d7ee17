"""The ledger on disk: round trip, refusal of tampered files, wrong paths and wrong sites."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, Callable, Dict

import pytest

from hpcpolicy.errors import InvalidInput, RuntimeFailure
from hpcpolicy.subid.allocate import allocate
from hpcpolicy.subid.ledger import Ledger, Record, load_ledger, save_ledger
from tests.subid_fixtures import policy, snap, users


def _ledger() -> Ledger:
    return allocate(policy(), snap(users([1000, 1001, 1002])), None, now="t1").ledger


def test_save_load_round_trip(tmp_path: Path) -> None:
    led = _ledger()
    save_ledger(str(tmp_path), led)
    path = tmp_path / "state" / "subid-ledger.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o755
    assert load_ledger(str(tmp_path), "cluster-a") == led
    assert sorted(os.listdir(tmp_path / "state")) == ["subid-ledger.json"]  # no temp left
    doc = json.loads(path.read_bytes())
    assert doc["site"] == "cluster-a" and doc["records"][0]["uid"] == 1000
    assert path.read_bytes() == led.to_json()


def test_absent_ledger_is_none_only_without_generations(tmp_path: Path) -> None:
    assert load_ledger(str(tmp_path), "cluster-a") is None
    (tmp_path / "generations" / "000001-abcdef01").mkdir(parents=True)
    with pytest.raises(RuntimeFailure, match="missing, but .* has generations: restore"):
        load_ledger(str(tmp_path), "cluster-a")


def test_ledger_of_another_site_is_refused(tmp_path: Path) -> None:
    save_ledger(str(tmp_path), _ledger())
    with pytest.raises(RuntimeFailure, match="ledger of site 'cluster-a', not 'cluster-b'"):
        load_ledger(str(tmp_path), "cluster-b")
    assert load_ledger(str(tmp_path), None) is not None  # --deploy-root without a site


def test_symlinked_ledger_is_refused(tmp_path: Path) -> None:
    save_ledger(str(tmp_path), _ledger())
    real = tmp_path / "elsewhere.json"
    (tmp_path / "state" / "subid-ledger.json").rename(real)
    (tmp_path / "state" / "subid-ledger.json").symlink_to(real)
    with pytest.raises(RuntimeFailure, match="cannot read"):
        load_ledger(str(tmp_path), "cluster-a")


def _set(path: str, value: Any) -> Callable[[Dict[str, Any]], None]:
    def edit(doc: Dict[str, Any]) -> None:
        target: Any = doc
        keys = path.split(".")
        for key in keys[:-1]:
            target = target[int(key)] if key.isdigit() else target[key]
        last = keys[-1]
        target[int(last) if last.isdigit() else last] = value
    return edit


@pytest.mark.parametrize("edit, where, needle", [
    (_set("records.1.start", 524288), "records", "overlaps"),
    (_set("records.0.uid", True), "records[1].uid", "must be int"),
    (_set("records.0.count", 0), "records[1].count", "must be >= 1"),
    (_set("records.0.start", 4294967295 - 100), "records[1].start", "must lie within"),
    (_set("records.0.state", "zombie"), "records[1].state", "unknown state"),
    (_set("records.0.name", "a\nb"), "records[1].name", "unsafe user name"),
    (_set("records.0.extra", 1), "records[1].extra", "unknown key"),
    (_set("records.1.uid", 1000), "records[2].uid", "appears twice"),
    (_set("schema", 2), "schema", "unsupported schema"),
    (_set("site", "Bad Site"), "site", "invalid site name"),
    (_set("records.0.history.0.at", 5), "records[1].history[1].at", "must be str"),
])
def test_tampered_ledger_names_file_and_key(tmp_path: Path, edit, where, needle) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(_ledger().to_json())
    edit(doc)
    path = tmp_path / "state" / "subid-ledger.json"
    path.parent.mkdir()
    path.write_text(json.dumps(doc))
    with pytest.raises(InvalidInput) as err:
        load_ledger(str(tmp_path), "cluster-a")
    assert any(p.file == str(path) and p.path == where and needle in p.message
               for p in err.value.problems), err.value.problems


def test_not_json_is_invalid_input(tmp_path: Path) -> None:
    path = tmp_path / "state" / "subid-ledger.json"
    path.parent.mkdir()
    path.write_bytes(b'{"schema": 1, "records": [')
    with pytest.raises(InvalidInput, match="not valid JSON") as err:
        load_ledger(str(tmp_path), "cluster-a")
    assert err.value.exit_code == 2


def test_save_refuses_an_invalid_ledger_and_writes_nothing(tmp_path: Path) -> None:
    led = _ledger()
    bad = Ledger(led.site, {**led.records, 5: Record(5, "x", led.records[1000].start, 10,
                                                     "live", "t", "t")})
    with pytest.raises(InvalidInput, match="overlaps"):
        save_ledger(str(tmp_path), bad)
    assert not (tmp_path / "state" / "subid-ledger.json").exists()


def test_reclaimed_ranges_may_overlap_held_ones() -> None:
    led = _ledger()
    r = led.records[1001]
    ghost = Record(7, "ghost", r.start, r.count, "reclaimed", "t", "t")
    assert Ledger(led.site, {**led.records, 7: ghost}).validate() == []
