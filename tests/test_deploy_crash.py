"""Fault injection: SIGKILL `apply` at random instants; the deploy root must stay consistent.

Each trial forks a child that runs a real apply in-process (directory files, allocation,
rendering, ledger, generation, link switch, change log, GC) and kills it after a random delay
within the typical apply time. Four site variants (two user sets x two bind tables) alternate,
so nearly every apply publishes and both the ledger and the trees change. After every kill:

* `current` names a complete generation, and every generation name (current or not) passes
  verify_generation: a half-written generation never carries a final name;
* every range in the published etc/subuid is held in the ledger (the ledger is durable first);
* the next apply (not killed) succeeds.

The deploy root lives on tmpfs when available: a SIGKILL tests process death, not power loss,
and tmpfs keeps 200 trials fast.
"""

from __future__ import annotations

import gc
import os
import random
import signal
import statistics
import time
from pathlib import Path
from typing import Dict, List

import pytest

from hpcpolicy.deploy.publish import apply
from hpcpolicy.generation.naming import channel_generation, list_generations
from hpcpolicy.generation.verify import verify_generation
from hpcpolicy.policy.model import Policy
from tests.apply_fixtures import (
    fast_dir,
    ledger_ranges,
    make_policy,
    subuid_ranges,
    write_directory,
)


def variant(base: Path, root: str, i: int, bind: str = "/scratch") -> Policy:
    """Trial i's site: 5 steady users, one brand-new user (a fresh range), a bind table."""
    files = write_directory(base / f"dir{i}", 5, ((f"new{i}", 100000 + i),))
    return make_policy(root, files, binds=(bind,), keep=3, gc_grace=0, max_revoke=1.0)


def check_consistent(root: str) -> str:
    name = channel_generation(root)
    assert name is not None
    for other in list_generations(root):  # nothing half-written ever carries a final name
        verify_generation(os.path.join(root, "generations", other))
    gen = os.path.join(root, "generations", name)
    with open(os.path.join(gen, "tree", "etc", "subuid"), "rb") as handle:
        published = subuid_ranges(handle.read())
    ledger = ledger_ranges(root)
    for uid, start, count in published:
        assert uid in ledger, f"uid {uid} published but not in the ledger"
        held_start, held_count, state = ledger[uid]
        assert (held_start, held_count) == (start, count) and state != "reclaimed"
    return name


def run_child(policy: Policy) -> int:
    gc.freeze()  # keep the child from touching (copying) every parent page at its first GC
    pid = os.fork()
    if pid == 0:  # child: run apply in-process, never return into pytest
        code = 0
        try:
            apply(policy, allow_revoke=True, lock_timeout=30)
        except BaseException:
            code = 3
        os._exit(code)
    return pid


def child_time(base: Path, root: str, tag: int) -> float:
    """Wall time of a forked child's whole apply (what the kill delay must span).

    A child is slower than an in-process apply (copy-on-write faults), and the run grows with
    the ledger, so this is measured again every few trials.
    """
    times = []
    for i in range(3):
        start = time.perf_counter()
        _, status = os.waitpid(run_child(variant(base, root, tag - i, f"/m{i}")), 0)
        times.append(time.perf_counter() - start)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    return statistics.median(times)


def landed(root: str, before: List[str]) -> str:
    """Where the kill landed, judged from what it left behind."""
    gens = list_generations(root)
    tmp = [e for e in os.listdir(os.path.join(root, "generations")) if e.startswith(".")]
    if channel_generation(root) != before[-1]:
        return "after-switch"
    if gens != before:
        return "before-switch"  # complete generation renamed, link not switched yet
    return "building" if tmp else "early"


def trials(tmp_path: Path, count: int, seed: int) -> Dict[str, int]:
    base = fast_dir(tmp_path)
    try:
        root = str(base / "deploy")
        os.mkdir(root, 0o755)
        apply(variant(base, root, -1))  # in-process first: children inherit warm imports
        rng = random.Random(seed)
        outcome: Dict[str, int] = {}
        for i in range(count):
            if i % 25 == 0:
                limit = child_time(base, root, -10 - 10 * i)
            before = list_generations(root)
            pid = run_child(variant(base, root, i, "/scratch"))
            time.sleep(rng.uniform(0, limit))
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            kind = ("killed" if os.WIFSIGNALED(status)
                    else "finished" if os.WEXITSTATUS(status) == 0 else "failed")
            outcome[kind] = outcome.get(kind, 0) + 1
            where = landed(root, before)
            outcome[where] = outcome.get(where, 0) + 1
            check_consistent(root)
            apply(variant(base, root, i, "/project"))  # the next apply succeeds
            check_consistent(root)
        assert len(list_generations(root)) <= 4  # GC kept up (keep 3, grace 0, + replaced)
        return outcome
    finally:
        import shutil

        shutil.rmtree(base, ignore_errors=True)


def test_sigkill_apply_200_times(tmp_path: Path) -> None:
    outcome = trials(tmp_path, 200, seed=20261128)
    print(outcome)
    assert outcome.get("failed", 0) == 0, outcome
    # the kills really land inside apply, in each of its phases
    assert outcome.get("killed", 0) >= 100, outcome
    assert all(outcome.get(k, 0) > 0 for k in ("early", "after-switch")), outcome


@pytest.mark.slow
def test_sigkill_apply_soak(tmp_path: Path) -> None:
    outcome = trials(tmp_path, 3000, seed=int(time.time()))
    assert outcome.get("failed", 0) == 0 and outcome.get("killed", 0) >= 500, outcome


# ------------------------------------------------------------------ every I/O step, in turn

STEP_CALLS = ("write", "fsync", "rename", "replace", "symlink", "mkdir", "unlink", "ftruncate")


def run_child_killed_at(policy: Policy, step: int) -> int:
    """A child that SIGKILLs itself right before its `step`-th file-system call."""
    gc.freeze()
    pid = os.fork()
    if pid != 0:
        return pid
    calls = [0]

    def wrap(name: str) -> None:
        real = getattr(os, name)

        def counted(*args: object, **kwargs: object) -> object:
            calls[0] += 1
            if calls[0] == step:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)

        setattr(os, name, counted)

    for name in STEP_CALLS:
        wrap(name)
    try:
        apply(policy, allow_revoke=True, lock_timeout=30)
    except BaseException:
        os._exit(3)
    os._exit(0)


def test_sigkill_before_every_io_step(tmp_path: Path) -> None:
    """Deterministic complement: one trial per file-system call of an apply, in order."""
    base = fast_dir(tmp_path)
    try:
        root = str(base / "deploy")
        os.mkdir(root, 0o755)
        apply(variant(base, root, -1))
        seen = {"killed": 0, "building": 0, "before-switch": 0}
        step = 1
        while True:
            before = list_generations(root)
            _, status = os.waitpid(run_child_killed_at(variant(base, root, step), step), 0)
            if not os.WIFSIGNALED(status):
                assert os.WEXITSTATUS(status) == 0
                break  # the apply ran to its end: every step has been cut once
            seen["killed"] += 1
            where = landed(root, before)
            seen[where] = seen.get(where, 0) + 1
            check_consistent(root)
            apply(variant(base, root, step, "/project"))
            check_consistent(root)
            step += 1
        print(seen)
        assert seen["killed"] > 20 and seen["building"] > 5 and seen["before-switch"] >= 1, seen
    finally:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
