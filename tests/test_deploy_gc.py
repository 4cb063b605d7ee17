"""GC: keep N, never current nor the one it replaced nor a channel target, grace period."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import List

from hpcpolicy.deploy import gc
from hpcpolicy.deploy.store import Target
from hpcpolicy.deploy.writer import write_generation
from hpcpolicy.generation.naming import list_generations
from tests.deploy_fixtures import FIELDS, NOW, publish, synthetic_trees

MIN = timedelta(minutes=1)


def five(root: Path) -> List[str]:
    """Generations 1..5, one every 10 minutes from NOW, each made current in turn."""
    return [publish(root, synthetic_trees(i), now=NOW + i * 10 * MIN) for i in range(5)]


def test_nothing_deleted_within_grace(tmp_path: Path) -> None:
    names = five(tmp_path)
    assert gc.collect(str(tmp_path), 2, 3600, NOW + 40 * MIN) == []
    assert list_generations(str(tmp_path)) == names


def test_deleted_once_grace_passed_oldest_first(tmp_path: Path) -> None:
    names = five(tmp_path)
    # g1 stopped being current at +10 min, g2 at +20: at +75 only g1 is an hour gone
    assert gc.collect(str(tmp_path), 2, 3600, NOW + 75 * MIN) == names[:1]
    assert gc.collect(str(tmp_path), 2, 3600, NOW + 10 * 60 * MIN) == names[1:3]
    assert list_generations(str(tmp_path)) == names[3:]
    assert not [e for e in os.listdir(tmp_path / "generations") if e.startswith(".")]


def test_current_and_replaced_kept_even_with_keep_zero(tmp_path: Path) -> None:
    names = five(tmp_path)
    gc.collect(str(tmp_path), 0, 0, NOW + 10 * 60 * MIN)
    assert list_generations(str(tmp_path)) == names[3:]  # g5 current, g4 it replaced


def test_keep_counts(tmp_path: Path) -> None:
    names = five(tmp_path)
    gc.collect(str(tmp_path), 3, 0, NOW + 10 * 60 * MIN)
    assert list_generations(str(tmp_path)) == names[2:]


def test_channel_target_kept(tmp_path: Path) -> None:
    names = five(tmp_path)
    canary = publish(tmp_path, synthetic_trees(9), channel="canary", now=NOW + 50 * MIN)
    gc.collect(str(tmp_path), 0, 0, NOW + 10 * 60 * MIN)
    # canary's target, stable's target (g5) and what g5 replaced (g4) stay
    assert list_generations(str(tmp_path)) == [names[3], names[4], canary]


def test_orphan_gets_a_full_grace_period(tmp_path: Path) -> None:
    names = five(tmp_path)
    orphan = write_generation(Target(str(tmp_path)), synthetic_trees(7), FIELDS)  # never linked
    later = NOW + 10 * 60 * MIN
    # keep=0: only links and grace protect; the orphan's stop time is unknown, so "now"
    assert orphan not in gc.collect(str(tmp_path), 0, 3600, later)
    assert orphan in list_generations(str(tmp_path))
    assert gc.collect(str(tmp_path), 0, 3600, later + 61 * MIN) == [orphan]
    assert names[4] in list_generations(str(tmp_path))


def test_lost_history_only_delays(tmp_path: Path) -> None:
    names = five(tmp_path)
    os.unlink(gc.history_path(str(tmp_path)))
    later = NOW + 10 * 60 * MIN
    assert gc.collect(str(tmp_path), 0, 3600, later) == []
    # g4 is still protected as the one before current
    assert gc.collect(str(tmp_path), 0, 3600, later + 61 * MIN) == names[:3]


def test_clean_stale(tmp_path: Path) -> None:
    five(tmp_path)
    stale = tmp_path / "generations" / ".tmp-999-abcd"
    (stale / "tree").mkdir(parents=True)
    (tmp_path / "generations" / ".tmp-gc-000001-x").mkdir()
    (tmp_path / "state" / ".hpcpolicy-tmp-xyz").write_text("partial")
    removed = gc.clean_stale(str(tmp_path))
    assert len(removed) == 3 and not stale.exists()
    assert not (tmp_path / "state" / ".hpcpolicy-tmp-xyz").exists()


def test_history_records_switches(tmp_path: Path) -> None:
    names = five(tmp_path)
    doc = gc.load_history(str(tmp_path))
    assert doc["links"]["stable"]["generation"] == names[4]
    assert doc["links"]["stable"]["replaced"] == names[3]
    assert doc["stopped"][names[0]] == gc.stamp(NOW + 10 * MIN)
    assert names[4] not in doc["stopped"]
