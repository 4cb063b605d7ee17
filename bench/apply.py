"""Benchmark: `apply` on a 30,000-user site, no-change and changing, and where the time goes.

Run: `.venv/bin/python bench/apply.py [--users 30000] [--runs 3] [--dir /var/tmp]`.

* site: a real site.toml (files directory of USERS eligible users, apptainer + podman + enroot,
  default sub-ID count 65536; the space runs up to Apptainer's top-down allocations), loaded
  by the real loader; the deploy root is on DIR (a disk, so fsync costs what it costs).
* first: the initial apply (allocates every range, publishes generation 1).
* no-change: apply of the same input (verifies current, finds nothing to publish).
* changing: apply that alternates a bind (publishes a generation each time; sub-IDs unchanged).
* peer, side by side: `deploy.plan.build` alone on the same input (directory read, allocation,
  rendering: what `hpcpolicy render` computes), so the ratio is the price of publishing
  (verification, ledger, generation, fsyncs, link switch, log, GC) on top of planning.
* fsync: os.fsync is wrapped during the runs: calls and their share of each apply's time.
Medians of RUNS runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Dict, Iterator, List, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import tomli_w  # noqa: E402

from hpcpolicy.deploy.plan import build  # noqa: E402
from hpcpolicy.deploy.publish import apply  # noqa: E402
from hpcpolicy.policy.load import load  # noqa: E402

FIRST_UID = 70000
END = 4294836223  # 30,000 x 65536 outgrows systemd's container range


class FsyncMeter:
    """Wraps os.fsync: counts calls and the time spent in them."""

    def __init__(self) -> None:
        self.calls = 0
        self.seconds = 0.0
        self._real: Callable[[int], None] = os.fsync

    def __enter__(self) -> FsyncMeter:
        def timed(fd: int) -> None:
            start = time.perf_counter()
            try:
                self._real(fd)
            finally:
                self.seconds += time.perf_counter() - start
                self.calls += 1

        os.fsync = timed  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: Any) -> None:
        os.fsync = self._real  # type: ignore[assignment]


def write_directory(work: str, users: int) -> Tuple[str, str]:
    passwd, group = os.path.join(work, "passwd"), os.path.join(work, "group")
    lines = ["root:x:0:0:root:/root:/bin/bash"]
    lines += [f"user{u}:x:{u}:100:User {u}:/home/user{u}:/bin/bash"
              for u in range(FIRST_UID, FIRST_UID + users)]
    with open(passwd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    names = ",".join(f"user{u}" for u in range(FIRST_UID, FIRST_UID + users))
    with open(group, "w") as handle:
        handle.write(f"root:x:0:\nusers:x:100:\ncontainers:x:2000:{names}\n")
    return passwd, group


def write_site(work: str, files: Tuple[str, str], bind: str) -> str:
    doc = {
        "schema": 1,
        "site": {"name": "bench", "deploy_root": os.path.join(work, "deploy"),
                 "runtimes": ["apptainer", "podman", "enroot"],
                 "deploy_owner": str(os.geteuid()), "keep": 5, "gc_grace": 0},
        "directory": {"sources": ["files"], "files": {"passwd": files[0], "group": files[1]}},
        "subid": {"eligible_groups": ["containers"], "end": END},
        "bind": [{"source": "/home"}, {"source": bind}],
    }
    path = os.path.join(work, f"site{bind.replace('/', '-')}.toml")
    with open(path, "wb") as handle:
        handle.write(tomli_w.dumps(doc).encode())
    return path


def timed_apply(site: str) -> Dict[str, Any]:
    policy = load(site)
    with FsyncMeter() as meter:
        start = time.perf_counter()
        result = apply(policy, allow_revoke=True, init=True)  # the first run creates the root
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "changed": result.changed, "fsyncs": meter.calls,
            "fsync_seconds": meter.seconds}


def timed_plan(site: str) -> float:
    policy = load(site)
    start = time.perf_counter()
    build(policy)
    return time.perf_counter() - start


def summary(label: str, runs: List[Dict[str, Any]], peer: float) -> None:
    secs = statistics.median(r["seconds"] for r in runs)
    fsync = statistics.median(r["fsync_seconds"] for r in runs)
    calls = statistics.median(r["fsyncs"] for r in runs)
    changed = {r["changed"] for r in runs}
    print(f"{label:<10} {secs * 1000:8.0f} ms  changed={sorted(changed)}  "
          f"fsync: {calls:.0f} calls, {fsync * 1000:.0f} ms = {fsync / secs:.0%} of the apply  "
          f"ratio vs plan.build: {secs / peer:.2f}x")


def site_args(doc: str, runs: int) -> argparse.Namespace:
    """The options of a bench on an apply-sized site: USERS, RUNS and DIR (where it works)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--users", type=int, default=30000)
    parser.add_argument("--runs", type=int, default=runs)
    parser.add_argument("--dir", default="/var/tmp")
    return parser.parse_args()


@contextlib.contextmanager
def site_work(args: argparse.Namespace) -> Iterator[Tuple[str, Tuple[str, str]]]:
    """A work folder on DIR, readable by all like a deploy root's parent, holding a files
    directory of USERS users: (folder, (passwd, group)). Removed afterwards."""
    work = tempfile.mkdtemp(prefix="hpcpolicy-bench-", dir=args.dir)
    os.chmod(work, 0o755)
    try:
        yield work, write_directory(work, args.users)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    args = site_args(__doc__, runs=3)
    with site_work(args) as (work, files):
        site_a, site_b = write_site(work, files, "/scratch"), write_site(work, files, "/project")
        first = timed_apply(site_a)
        peer = statistics.median(timed_plan(site_a) for _ in range(args.runs))
        same = [timed_apply(site_a) for _ in range(args.runs)]
        changing = [timed_apply(site_b if i % 2 == 0 else site_a) for i in range(args.runs)]
        subuid = os.path.join(work, "deploy", "current", "tree", "etc", "subuid")
        print(f"{args.users} users, subuid {os.path.getsize(subuid) / 1024:.0f} KiB, "
              f"deploy root on {args.dir}; medians of {args.runs}")
        print(f"{'peer':<10} {peer * 1000:8.0f} ms  plan.build alone (directory, allocation, "
              "render)")
        summary("first", [first], peer)
        summary("no-change", same, peer)
        summary("changing", changing, peer)


if __name__ == "__main__":
    main()
