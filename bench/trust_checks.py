"""Benchmark: what the publisher's trust checks add to an apply of a 30,000-user site.

Run: `.venv/bin/python bench/trust_checks.py [--users 30000] [--runs 5] [--dir /var/tmp]`.

* ledger guard: `deploy.ledger_guard.check_ledger_holds_published` (verify the current
  generation, parse its etc/subuid and etc/subgid, look every line up in the ledger), run once
  per apply before allocating; it includes the revision check (the ledger's revision and the
  digest of its records against what every channel's manifest records), whose own cost, the
  digest, is also timed alone.
* checked reads: `policy.inputs.read_input` of the passwd file against a plain `open().read()`
  of the same file (O_NONBLOCK open, fstat, ownership rule, size cap).
* keyring walk: `policy.keyring.check_public` of a 200-key armoured keyring.
* peer, side by side: `deploy.plan.build` on the same site (what `hpcpolicy render` computes),
  the part of every apply the checks sit beside. Medians of RUNS runs.
"""

from __future__ import annotations

import base64
import os
import statistics
import sys
import time
from typing import Callable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "bench"))

from apply import site_args, site_work, write_site  # noqa: E402

from hpcpolicy.deploy.ledger_guard import (  # noqa: E402
    check_ledger_holds_published,
    ledger_digest,
    newest_recorded,
    published_manifests,
)
from hpcpolicy.deploy.plan import build  # noqa: E402
from hpcpolicy.deploy.publish import apply  # noqa: E402
from hpcpolicy.policy.inputs import DIRECTORY_FILE_MAX, read_input  # noqa: E402
from hpcpolicy.policy.keyring import check_public, crc24  # noqa: E402
from hpcpolicy.policy.load import load  # noqa: E402
from hpcpolicy.subid.ledger import load_ledger  # noqa: E402


def median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def big_keyring(keys: int) -> bytes:
    """`keys` copies of the test key (public key, user ID, signature), armoured."""
    with open(os.path.join(REPO, "tests", "data", "keys", "public.gpg"), "rb") as handle:
        one = handle.read()
    packets = one * keys
    body = base64.b64encode(packets).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    crc = base64.b64encode(crc24(packets).to_bytes(3, "big")).decode()
    return ("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n" + "\n".join(lines) + f"\n={crc}\n"
            "-----END PGP PUBLIC KEY BLOCK-----\n").encode()


def main() -> None:
    args = site_args(__doc__, runs=5)
    with site_work(args) as (work, files):
        site = write_site(work, files, "/scratch")
        policy = load(site)
        apply(policy, init=True)  # the first apply creates the deploy root
        root = policy.site.deploy_root
        ledger = load_ledger(root, policy.site.name)
        peer = median_ms(lambda: build(policy), args.runs)
        assert ledger is not None
        if newest_recorded(published_manifests(root)) is None:
            raise SystemExit("the generation records no ledger revision: nothing to time")
        guard = median_ms(lambda: check_ledger_holds_published(root, ledger), args.runs)
        digest = median_ms(lambda: ledger_digest(ledger), args.runs)

        def plain() -> bytes:
            with open(files[0], "rb") as handle:
                return handle.read()

        checked = median_ms(lambda: read_input(files[0], file="", key="",
                                               max_size=DIRECTORY_FILE_MAX), args.runs * 4)
        unchecked = median_ms(plain, args.runs * 4)
        keyring = big_keyring(200)
        walk = median_ms(lambda: check_public(keyring), args.runs)
        print(f"{args.users} users; medians of {args.runs} runs")
        print(f"peer plan.build          {peer:8.1f} ms")
        print(f"ledger guard             {guard:8.1f} ms  = {guard / peer:.1%} of plan.build")
        print(f"  of which ledger digest {digest:8.1f} ms  = {digest / peer:.1%} of plan.build "
              f"({len(ledger.records)} records)")
        print(f"passwd read, checked     {checked:8.2f} ms  vs open().read() {unchecked:.2f} ms "
              f"({checked / unchecked:.2f}x)")
        print(f"keyring walk, 200 keys   {walk:8.2f} ms  ({len(keyring)} bytes armoured) "
              f"= {walk / peer:.2%} of plan.build")


if __name__ == "__main__":
    main()
