"""The ledger on disk: round trip, refusal of tampered files, wrong paths and wrong sites."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hpcpolicy.subid.ledger as ledger_module
from hpcpolicy.errors import InvalidInput, Problem, RuntimeFailure
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


_VALUES: List[Any] = [
    None, True, False, 0, 1, -1, 1.5, "x", "", [], {}, [{}], "live", "zombie", 100005,
    [{"at": "a", "action": "b", "detail": "c"}], [{"at": 1, "action": "b", "detail": "c"}],
    [{"at": "a", "action": "b"}], [{"at": "a", "action": "b", "detail": "c", "x": 1}]]
_KEYS = ["uid", "name", "start", "count", "state", "withheld", "created", "changed", "history",
         "extra"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.sampled_from(_KEYS),
                          st.one_of(st.sampled_from(_VALUES), st.none().map(lambda _: "DELETE"))),
                max_size=3))
def test_fast_record_reader_agrees_with_the_detailed_one(edits: List[Tuple[int, str, Any]]
                                                         ) -> None:
    """`_plain_record` takes a record only when the detailed reader finds no problem in it, and
    then returns the same record."""
    doc = json.loads(_ledger().to_json())
    for i, key, value in edits:
        if value == "DELETE":
            doc["records"][i].pop(key, None)
        else:
            doc["records"][i][key] = value
    for i, item in enumerate(doc["records"], 1):
        plain = ledger_module._plain_record(item)
        problems: List[Problem] = []
        detailed = ledger_module._record_from_dict(item, "f", f"records[{i}]", problems)
        if plain is not None:
            assert problems == [] and detailed == plain


def test_overlap_fast_check_still_names_both_ranges() -> None:
    led = _ledger()
    a, b = led.records[1000], led.records[1001]
    moved = b._replace(start=a.start + a.count - 1)  # one id shared with a
    problems = Ledger(led.site, {**led.records, 1001: moved}).validate()
    assert [p.message for p in problems] == [
        f"range {moved.start}-{moved.last} of uid 1001 (u1001) overlaps "
        f"{a.start}-{a.last} of uid 1000 (u1000)"]


_edge_ints = st.sampled_from([-1, 0, 1, 2, 65536, 4294901760, 4294967294, 4294967295])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.builds(Record, _edge_ints, st.sampled_from(["ok", "", "a b", "a/b", "x" * 257]),
                          _edge_ints, _edge_ints, st.sampled_from(["live", "left", "zombie"]),
                          st.just("t"), st.just("t")), max_size=4))
def test_all_records_checked_at_once_agree_with_one_by_one(records: List[Record]) -> None:
    assert ledger_module._records_ok(records) == all(map(ledger_module._record_ok, records))
