"""Benchmark: `node doctor`'s site image store check on a large store.

Run: `.venv/bin/python bench/store_doctor.py [--images 2000] [--layers 6000] [--runs 5]
[--dir /var/tmp]`.

* store: a containers/storage overlay layout on DIR with IMAGES image directories (3 files
  each) and LAYERS layer directories (`diff/` with one file, `link`, `lower`, `work/`), opened
  to users as doctor's remedy does, with the lock files: what a site store looks like.
* figure: `enforce_checks.check_image_stores` on it (existence, owners and modes up the
  parents, every image and layer directory and its own files readable, lock files).
* peer, side by side: `find STORE -maxdepth 3 -printf '%m'`, the stat walk an admin would run
  by hand over the same depth (a subprocess, so it includes a process start).
Medians of RUNS runs (the page cache is warm after the first).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, List

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from hpcpolicy.node.enforce_checks import check_image_stores  # noqa: E402


def build(store: str, images: int, layers: int) -> None:
    for top in ("overlay-images", "overlay-layers", "overlay/l"):
        os.makedirs(os.path.join(store, top))
    for name, body in (("overlay-images/images.json", "[]"), ("overlay-images/images.lock", ""),
                       ("overlay-layers/layers.json", "[]"),
                       ("overlay-layers/layers.lock", "")):
        with open(os.path.join(store, name), "w") as handle:
            handle.write(body)
    for i in range(images):
        d = os.path.join(store, "overlay-images", f"{i:064x}")
        os.mkdir(d)
        for f in ("manifest", "config", "signature"):
            with open(os.path.join(d, f), "w") as handle:
                handle.write("{}")
    for i in range(layers):
        d = os.path.join(store, "overlay", f"{i:064x}")
        os.makedirs(os.path.join(d, "diff", "etc"))
        os.mkdir(os.path.join(d, "work"))
        for f in ("link", "lower"):
            with open(os.path.join(d, f), "w") as handle:
                handle.write("x")
    for dirpath, _dirnames, filenames in os.walk(store):
        os.chmod(dirpath, 0o755)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o644)


def median(fn: Callable[[], object], runs: int) -> float:
    times: List[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--layers", type=int, default=6000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dir", default="/var/tmp")
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="hpcpolicy-store-bench-", dir=args.dir)
    try:
        os.chmod(base, 0o755)
        store = os.path.join(base, "store")
        build(store, args.images, args.layers)
        needs = {"image_stores": [store], "storage_driver": "overlay"}
        result = check_image_stores("/", needs)
        assert result[0][1] == "OK", result
        ours = median(lambda: check_image_stores("/", needs), args.runs)
        peer = median(lambda: subprocess.run(
            ["find", store, "-maxdepth", "3", "-printf", "%m\n"], check=True,
            stdout=subprocess.DEVNULL), args.runs)
        print(f"store: {args.images} images, {args.layers} layers on {args.dir}")
        print(f"doctor store check: {ours * 1000:.1f} ms (median of {args.runs})")
        print(f"peer find -maxdepth 3: {peer * 1000:.1f} ms")
        print(f"ratio: {ours / peer:.2f}x the peer")
    finally:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
