"""Benchmark: hpcpolicy's whole render for 30,000 users vs shadow's `usermod` per user.

Run as root: `.venv/bin/python bench/subid_render.py [--users 30000] [--sample 40]`.

* ours: what `hpcpolicy render` does: load the site, read the files directory (passwd/group
  with USERS eligible users), allocate and render the whole node tree (`deploy.plan.build`,
  fresh ledger); median of 5 runs, plus a breakdown (each part timed on its own).
* peer: shadow's `usermod -v A-B -w A-B USER` (what an administrator scripts without a tool),
  SAMPLE calls in a private mount namespace on a copy of /etc whose subuid/subgid hold 15,000
  lines (the mean size while 30,000 users are added one by one; notes/ldap-pam-subid.md §4),
  extrapolated: per-call cost x USERS. The host's /etc is never written.
* peak memory (ru_maxrss) of the same pipeline for 100,000 users in a fresh process (count
  16384 there: 100,000 x 65536 does not fit in 32 bits).

Issue goals: whole pipeline <= 0.3 s and >= 5000x shadow for 30,000 users; < 200 MB peak for
100,000 users. Wall-clock figures: on a shared, busy machine they vary run to run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from hpcpolicy.deploy.plan import build  # noqa: E402
from hpcpolicy.directory.read import read_directory  # noqa: E402
from hpcpolicy.gcpause import paused  # noqa: E402
from hpcpolicy.policy.load import load  # noqa: E402
from hpcpolicy.policy.model import Policy  # noqa: E402
from hpcpolicy.render.subid import render  # noqa: E402
from hpcpolicy.subid.allocate import allocate  # noqa: E402

FIRST_UID = 70000  # above 65534 (nobody, never eligible)
PAD_LINES = 15000
RUNS = 5
GOAL_SECONDS, GOAL_RATIO, GOAL_MB = 0.3, 5000, 200
# 30,000 x 65536 needs more than systemd's container range (28,663 fit): use the space up to
# Apptainer's top-down allocations (4294836224), as a site this size would.
END = 4294836223


def write_directory(work: str, users: int) -> Tuple[str, str]:
    passwd = os.path.join(work, "passwd")
    group = os.path.join(work, "group")
    with open(passwd, "w") as f:
        f.write("root:x:0:0:root:/root:/bin/bash\n")
        for i in range(users):
            uid = FIRST_UID + i
            f.write(f"user{uid}:x:{uid}:100:User {uid}:/home/user{uid}:/bin/bash\n")
    names = ",".join(f"user{FIRST_UID + i}" for i in range(users))
    with open(group, "w") as f:
        f.write(f"root:x:0:\nusers:x:100:\ncontainers:x:2000:{names}\n")
    return passwd, group


def site_text(work: str, passwd: str, group: str, count: int) -> str:
    # Apptainer --fakeroot needs 65536 per user: the 100,000-user run (count 16384) leaves it out
    runtimes = '["apptainer", "podman", "enroot"]' if count >= 65536 else '["podman", "enroot"]'
    return (f'schema = 1\n[site]\nname = "bench"\ndeploy_root = "{work}/deploy"\n'
            f'runtimes = {runtimes}\n'
            f'[directory]\nsources = ["files"]\nmin_uid = 1000\n'
            f'[directory.files]\npasswd = "{passwd}"\ngroup = "{group}"\n'
            f'[subid]\ncount = {count}\nend = {END}\neligible_groups = ["containers"]\n')


def write_site(work: str, passwd: str, group: str, count: int) -> str:
    path = os.path.join(work, "site.toml")
    with open(path, "w") as f:
        f.write(site_text(work, passwd, group, count))
    return path


def pipeline(site: str) -> Dict[str, bytes]:
    """The whole `hpcpolicy render`: load the site, read the directory, allocate, render."""
    policy = load(site)
    return build(policy).trees["default"]


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def breakdown(site: str) -> List[float]:
    """Seconds for: load the site, read the directory (cyclic GC on, as `validate` reads it),
    plan.build given the snapshot, and the sub-ID part alone (allocate + render.subid, GC
    paused as in plan.build)."""
    box: Dict[str, Any] = {}

    def read(pol: Policy) -> None:
        box["snap"] = read_directory(pol)

    t_load = timed(lambda: box.update(pol=load(site)))
    pol = box["pol"]
    t_read = timed(lambda: read(pol))
    t_build = timed(lambda: build(pol, snapshot=box["snap"]))
    with paused():  # as inside plan.build
        t_subid = timed(lambda: render(pol, allocate(pol, box["snap"], None).allocations))
    return [t_load, t_read, t_build, t_subid]


def measure_ours(work: str, users: int) -> Tuple[float, List[float], int]:
    passwd, group = write_directory(work, users)
    site = write_site(work, passwd, group, 65536)
    tree = pipeline(site)  # warm-up (imports, page cache)
    lines = tree["etc/subuid"].count(b"\n")
    assert lines == users, (lines, users)
    whole = statistics.median(timed(lambda: pipeline(site)) for _ in range(RUNS))
    parts = [statistics.median(p) for p in zip(*(breakdown(site) for _ in range(RUNS)))]
    return whole, parts, lines


# ----------------------------------------------------------------------------- shadow


def shadow_inner(work: str, sample: int) -> None:
    """Runs inside `unshare --mount`: bind a copy of /etc over /etc, time `usermod` calls."""
    etc = os.path.join(work, "etc")
    subprocess.run(["cp", "-a", "/etc", etc], check=True)
    subprocess.run(["mount", "--bind", etc, "/etc"], check=True)
    with open("/etc/passwd", "a") as f:
        for i in range(sample):
            f.write(f"hpcb{i}:x:{70000 + i}:{70000 + i}::/nonexistent:/usr/sbin/nologin\n")
    with open("/etc/group", "a") as f:
        for i in range(sample):
            f.write(f"hpcb{i}:x:{70000 + i}:\n")
    for name in ("subuid", "subgid"):
        with open(f"/etc/{name}", "w") as f:
            for i in range(PAD_LINES):
                f.write(f"ghost{i:06d}:{100000 + i * 65536}:65536\n")
    base = 100000 + PAD_LINES * 65536
    times: List[float] = []
    for i in range(sample):
        a = base + i * 65536
        span = f"{a}-{a + 65535}"
        start = time.perf_counter()
        subprocess.run(["usermod", "-v", span, "-w", span, f"hpcb{i}"], check=True)
        times.append(time.perf_counter() - start)
    with open("/etc/subuid") as f:
        assert sum(1 for _ in f) == PAD_LINES + sample
    print(json.dumps({"per_call": statistics.mean(times), "median": statistics.median(times)}))


def measure_shadow(work: str, sample: int) -> Dict[str, Any]:
    if os.geteuid() != 0 or shutil.which("usermod") is None or shutil.which("unshare") is None:
        raise SystemExit("the shadow side needs root, usermod and unshare")
    out = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, __file__,
         "--shadow-inner", work, "--sample", str(sample)],
        check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- memory


def memory_inner(work: str, users: int) -> None:
    passwd, group = write_directory(work, users)
    tree = pipeline(write_site(work, passwd, group, 16384))
    assert tree["etc/subuid"].count(b"\n") == users
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_mb": peak_kib / 1024}))


def measure_memory(work: str, users: int) -> Dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--memory-inner", work,
                          "--users", str(users)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def verdict(ok: bool) -> str:
    return "goal met" if ok else "goal NOT met"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--users", type=int, default=30000)
    ap.add_argument("--sample", type=int, default=40)
    ap.add_argument("--memory-users", type=int, default=100000)
    ap.add_argument("--shadow-inner", metavar="WORK")
    ap.add_argument("--memory-inner", metavar="WORK")
    args = ap.parse_args()
    if args.shadow_inner:
        return shadow_inner(args.shadow_inner, args.sample)
    if args.memory_inner:
        return memory_inner(args.memory_inner, args.users)
    with tempfile.TemporaryDirectory(prefix="hpcp-bench-") as work:
        for sub in "abc":
            os.makedirs(os.path.join(work, sub))
        ours, parts, lines = measure_ours(os.path.join(work, "a"), args.users)
        shadow = measure_shadow(os.path.join(work, "b"), args.sample)
        memory = measure_memory(os.path.join(work, "c"), args.memory_users)
    shadow_total = shadow["per_call"] * args.users
    ratio = shadow_total / ours
    print(f"hpcpolicy render, {args.users} eligible users ({lines} subuid lines), whole pipeline "
          f"(policy.load + read directory + plan.build): {ours:.3f} s (median of {RUNS}; goal <= "
          f"{GOAL_SECONDS} s: {verdict(ours <= GOAL_SECONDS)})")
    print(f"  breakdown (each timed alone, medians): load site {parts[0]:.3f} s, read directory "
          f"{parts[1]:.3f} s, plan.build from the snapshot {parts[2]:.3f} s; sub-ID part alone "
          f"(allocate + render.subid): {parts[3]:.3f} s")
    print(f"shadow usermod -v/-w, per call at {PAD_LINES} lines: {shadow['per_call'] * 1000:.1f}"
          f" ms (mean of {args.sample}; median {shadow['median'] * 1000:.1f} ms) -> "
          f"{shadow_total:.0f} s for {args.users} users")
    print(f"ratio shadow/hpcpolicy (whole pipeline): {ratio:.0f}x (goal >= {GOAL_RATIO}x: "
          f"{verdict(ratio >= GOAL_RATIO)}); shadow/(sub-ID part alone): "
          f"{shadow_total / parts[3]:.0f}x")
    print(f"peak memory, {args.memory_users} users (count 16384), whole pipeline: "
          f"{memory['peak_mb']:.0f} MB (goal < {GOAL_MB} MB: "
          f"{verdict(memory['peak_mb'] < GOAL_MB)})")


if __name__ == "__main__":
    main()
