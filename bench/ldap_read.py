"""Full LDAP read of 100,000 users + 200 groups: our reader against the ldapsearch wire floor.

Run: `.venv/bin/python bench/ldap_read.py [--users N] [--rounds R]`

Loads a fresh throwaway slapd (tests/ldap_fixtures.py, slapadd -q), then measures in the same
run, each in its own process: `ldapsearch -x -E pr=1000/noprompt` of the same attributes into
/dev/null (the floor), `read_ldap` with the ldap3 backend, and with the python-ldap backend when
`import ldap` works. The rounds are interleaved (floor, ldap3, python-ldap, floor, ...) so that
load from other processes hits every path alike. Prints best-of-R seconds, the ratio against
the floor, the reader's CPU seconds (user + sys, less sensitive to a busy machine) and peak RSS.
Goals (issue 3): within 2x of the floor; peak RSS under 200 MB for 100,000 users.

The python-ldap backend is optional; to build it on Debian:
`apt-get install libldap2-dev libsasl2-dev gcc python3-dev && .venv/bin/pip install python-ldap`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

USER_ATTRS = ["uid", "uidNumber", "gidNumber", "loginShell", "shadowExpire", "nsAccountLock",
              "pwdAccountLockedTime", "homeDirectory"]
GROUP_ATTRS = ["cn", "gidNumber", "memberUid"]


def child(backend: str, uri: str) -> None:
    """Run one read in this process; print seconds, counts and peak RSS as JSON."""
    from hpcpolicy.directory.ldap import read_ldap
    from hpcpolicy.policy.model import LdapSource

    src = LdapSource(uri=(uri,), user_base="ou=people,dc=example,dc=org",
                     group_base="ou=groups,dc=example,dc=org", page_size=1000)
    start, cpu = time.perf_counter(), time.process_time()
    users, groups = read_ldap(src, backend=backend)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    rss_mb = peak_rss_mb()
    print(json.dumps({"seconds": seconds, "cpu": cpu, "users": len(users),
                      "groups": len(groups), "rss_mb": rss_mb}))


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so a
    child forked from the (large) benchmark parent would report the parent's size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ldapsearch_floor(uri: str) -> float:
    start = time.perf_counter()
    for base, filt, attrs in (
        ("ou=people,dc=example,dc=org", "(objectClass=posixAccount)", USER_ATTRS),
        ("ou=groups,dc=example,dc=org", "(objectClass=posixGroup)", GROUP_ATTRS),
    ):
        subprocess.run(
            ["ldapsearch", "-x", "-LLL", "-H", uri, "-b", base, "-E", "pr=1000/noprompt",
             filt, *attrs],
            stdout=subprocess.DEVNULL, check=True,
        )
    return time.perf_counter() - start


def run_child(backend: str, uri: str) -> Dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", backend, "--uri", uri],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def have_python_ldap() -> bool:
    probe = subprocess.run([sys.executable, "-c", "import ldap"], capture_output=True)
    return probe.returncode == 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child")
    ap.add_argument("--uri")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.uri)
        return
    from ldap_fixtures import generate, started_slapd

    with tempfile.TemporaryDirectory(prefix="bench-ldap-") as tmp:
        t0 = time.perf_counter()
        ldif, _ = generate(args.users, 200)
        t1 = time.perf_counter()
        server = started_slapd(Path(tmp), ldif)
        t2 = time.perf_counter()
        print(f"{args.users} users + 200 groups: LDIF {len(ldif) / 1e6:.1f} MB generated in "
              f"{t1 - t0:.2f} s, slapadd + start {t2 - t1:.2f} s")
        del ldif
        try:
            backends: List[str] = ["ldap3"] + (["python-ldap"] if have_python_ldap() else [])
            floors: List[float] = []
            runs: Dict[str, List[Dict[str, float]]] = {b: [] for b in backends}
            for _ in range(args.rounds):
                floors.append(ldapsearch_floor(server.uri))
                for backend in backends:
                    runs[backend].append(run_child(backend, server.uri))
            floor = min(floors)
            print(f"{'ldapsearch -E pr=1000 > /dev/null (floor)':45} {floor:7.2f} s   1.00x")
            for backend in backends:
                best = min(runs[backend], key=lambda r: r["seconds"])
                assert best["users"] == args.users, best
                label = f"read_ldap, {backend} backend"
                ratio, rss = best["seconds"] / floor, max(r["rss_mb"] for r in runs[backend])
                met = "goals met" if ratio <= 2.0 and rss < 200 else "goal MISSED"
                print(f"{label:45} {best['seconds']:7.2f} s {ratio:6.2f}x"
                      f"   cpu {min(r['cpu'] for r in runs[backend]):5.2f} s"
                      f"   peak RSS {rss:.0f} MB   {met}")
            if "python-ldap" not in backends:
                print("python-ldap not importable: its backend was not measured")
        finally:
            server.stop()
    print(f"(best of {args.rounds}; each reader in its own process; {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
