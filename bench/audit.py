"""Benchmark: the audit at site scale, by access profile, against the per-decision cross product.

Run: `.venv/bin/python bench/audit.py [--users 100000] [--groups 200] [--rules 1000]
[--collections 10] [--sample 500]`.

* site: `tests/audit_scale.py` (files directory; each user in one project group, every 7th in
  a second; a third of the rules limited to one of 50 groups; collections limited to groups),
  loaded and read once (the directory read is shown apart: every audit pays it).
* matrix: the full profile report (context, collection paths, every image x profile decision,
  findings, legend) and its JSON, as `hpcpolicy audit SITE --format json` computes them.
* explain: one `--explain` (a fresh context, one user, one image).
* peer, in the same run: the per-decision cross product (`--decisions`, one decision object
  per user and image, as JSON Lines) timed on SAMPLE users and extrapolated to every user:
  what the audit cost before it worked by profile.
* peak RSS of the process (the cross product is never held: only its sample is produced),
  measured before the HTML page is built.
* the HTML page of the same report: its size, and the time headless Chromium takes to load,
  run and paint it (`--screenshot`), against the same for an empty page (the browser's start).
Goals: matrix <= 5 s, explain <= 0.3 s, peak RSS <= 500 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from hpcpolicy.audit.decide import (  # noqa: E402
    decide_one,
    default_targets,
    make_context,
    parse_target,
    paths_to_observe,
)
from hpcpolicy.audit.matrix import audited_users, build_report  # noqa: E402
from hpcpolicy.audit.observe import observe  # noqa: E402
from hpcpolicy.audit.profile_report import profile_html, report_line  # noqa: E402
from hpcpolicy.directory.read import read_directory  # noqa: E402
from hpcpolicy.policy.load import load  # noqa: E402
from tests.audit_scale import write_site  # noqa: E402


def load_s(browser: str, path: str, home: str) -> float:
    """Seconds headless chromium takes to load and screenshot `path`."""
    start = time.perf_counter()
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                    "--window-size=1400,1000", f"--screenshot={home}/shot.png",
                    f"file://{path}"], capture_output=True, timeout=300, check=True,
                   env={**os.environ, "HOME": home, "TMPDIR": home})
    return time.perf_counter() - start


def _why(err: Exception) -> str:
    """One line: chromium's last stderr line that says something, or how it ended."""
    if isinstance(err, subprocess.TimeoutExpired):
        return f"no result within {err.timeout:g} s"
    assert isinstance(err, subprocess.CalledProcessError)
    lines = [line.strip() for line in (err.stderr or b"").decode("utf-8", "replace").splitlines()
             if line.strip()]
    how = f"signal {-err.returncode}" if err.returncode < 0 else f"exit {err.returncode}"
    return f"{how}: {lines[-1][:300]}" if lines else how


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=100000)
    ap.add_argument("--groups", type=int, default=200)
    ap.add_argument("--rules", type=int, default=1000)
    ap.add_argument("--collections", type=int, default=10)
    ap.add_argument("--sample", type=int, default=500)
    args = ap.parse_args()
    # removed afterwards: at the default size the site and the HTML report are tens of MB
    with tempfile.TemporaryDirectory(prefix="hpcpolicy-bench-audit-") as work:
        return run(args, work)


def run(args: argparse.Namespace, work: str) -> int:
    site = write_site(work, args.users, args.groups, args.rules, args.collections, named=50)
    policy = load(site)
    start = time.perf_counter()
    snapshot = read_directory(policy)
    read = time.perf_counter() - start

    start = time.perf_counter()
    ctx = make_context(policy, snapshot)
    targets = default_targets(policy)
    obs = observe(*paths_to_observe(policy, targets))
    report = build_report(ctx, targets, obs, audited_users(ctx))
    built = time.perf_counter() - start
    data = json.dumps(report.as_dict(), sort_keys=True)
    matrix = time.perf_counter() - start

    user = next(iter(sorted(snapshot.users)))
    image = parse_target(targets[1].value)
    start = time.perf_counter()
    one = make_context(policy, snapshot)
    decide_one(one, snapshot.users[user], image, obs)
    explain = time.perf_counter() - start

    # peer: the cross product, decision by decision, on a sample of users (fresh context)
    users = audited_users(ctx)
    sample = users[:: max(1, len(users) // args.sample)][: args.sample]
    start = time.perf_counter()
    peer = make_context(policy, snapshot)
    encode = json.JSONEncoder(sort_keys=True).encode
    lines = 0
    with open(os.devnull, "w") as sink:
        for target in targets:
            for u in sample:
                sink.write(encode(decide_one(peer, u, target, obs).as_dict()) + "\n")
                lines += 1
    sampled = time.perf_counter() - start
    cross = sampled * len(users) / len(sample)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    page = profile_html(report, "bench", report_line(report))
    html_path = os.path.join(work, "report.html")
    with open(html_path, "w") as handle:
        handle.write(page)
    empty_path = os.path.join(work, "empty.html")
    with open(empty_path, "w") as handle:
        handle.write("<!DOCTYPE html><html><body>x</body></html>\n")
    browser = shutil.which("chromium")
    opened = floor = None
    if browser:
        # chromium puts its sockets under HOME and TMPDIR, and a socket path is at most 107
        # bytes: a long TMPDIR aborts it ("Socket path too long"), so it gets a short one
        short = tempfile.mkdtemp(prefix="hpa-", dir="/tmp")
        try:
            floor = load_s(browser, empty_path, short)
            opened = load_s(browser, html_path, short)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
            print(f"bench/audit.py: headless chromium failed: {_why(err)}", file=sys.stderr)
            return 1
        finally:
            shutil.rmtree(short, ignore_errors=True)

    s = report.summary()
    written = sum(1 for r in policy.images.rules if not r.alias_of)  # not the port spellings
    print(f"site: {len(users):,} users, {args.groups} groups, {written:,} rules, "
          f"{args.collections} collections -> {s['profiles']} profiles x {s['images']} images")
    print(f"directory read (files):        {read:6.2f} s (every audit pays it)")
    print(f"full profile matrix:           {matrix:6.2f} s (decisions {built:.2f} s, JSON "
          f"{matrix - built:.2f} s, {len(data) / 1e6:.1f} MB)  goal <= 5 s: "
          f"{'met' if matrix <= 5 else 'MISSED'}")
    print(f"one --explain:                 {explain:6.3f} s  goal <= 0.3 s: "
          f"{'met' if explain <= 0.3 else 'MISSED'}")
    print(f"peer, per-decision cross product: {cross:6.1f} s extrapolated from {lines:,} "
          f"decisions of {len(sample):,} users ({sampled:.2f} s); matrix is "
          f"{cross / matrix:.0f}x faster")
    where = (f"headless Chromium loads and paints it in {opened:.1f} s, {opened - floor:.1f} s "
             f"more than an empty page ({floor:.1f} s)" if opened and floor else
             "chromium missing")
    print(f"HTML report:                   {len(page) / 1e6:6.1f} MB, {where}")
    print(f"peak RSS:                      {rss:6.0f} MB  goal <= 500 MB: "
          f"{'met' if rss <= 500 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
