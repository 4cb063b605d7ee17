"""Every script in bench/ runs, at the smallest sizes it takes, and prints its figures.

Nothing else runs the benchmarks, so without this a broken one goes unnoticed until somebody
wants a figure. The scripts are found by listing bench/, so a new one is covered at once: it
fails here until it is given smoke sizes below (or is listed in NOT_RUN with the reason).
Each runs as a subprocess, as a person runs it, with TMPDIR in the test's own temp directory;
what is checked is the exit status, no traceback, every figure line (with its comparison to
the peer measured in the same run), and that it removed what it wrote. Times are never checked.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from ldap_fixtures import have_python_ldap
from ldap_fixtures import tools_missing as ldap_tools_missing

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
N = r"\d+(?:\.\d+)?"  # a figure as the scripts print it
TIMEOUT = 300  # a hang, not a slow machine: the whole module takes ~25 s on an idle 2-core box


@dataclass(frozen=True)
class Smoke:
    args: Tuple[str, ...]  # "{tmp}" stands for the test's temp directory
    figures: Tuple[str, ...]  # regular expressions, each matching a whole output line
    tools: Tuple[str, ...] = ()  # programs it runs (PATH or /usr/sbin)
    root: bool = False


SMOKE: Dict[str, Smoke] = {
    "apply.py": Smoke(
        ("--users", "200", "--runs", "1", "--dir", "{tmp}"),
        (rf"200 users, subuid {N} KiB, deploy root on .*; medians of 1",
         rf"peer\s+{N} ms  plan\.build alone .*",
         *(rf"{label}\s+{N} ms  changed=\[(True|False)\]  fsync: {N} calls, {N} ms = {N}% "
           rf"of the apply  ratio vs plan\.build: {N}x"
           for label in ("first", "no-change", "changing")))),
    "audit.py": Smoke(
        ("--users", "200", "--groups", "50", "--rules", "50", "--collections", "2",
         "--sample", "10"),
        (r"site: 200 users, 50 groups, \d+ rules, 2 collections -> \d+ profiles x \d+ images",
         rf"directory read \(files\):\s+{N} s .*",
         rf"full profile matrix:\s+{N} s \(decisions {N} s, JSON {N} s, {N} MB\)  goal .*",
         rf"one --explain:\s+{N} s  goal .*",
         rf"peer, per-decision cross product:\s+{N} s extrapolated from \d+ decisions of 10 "
         rf"users \({N} s\); matrix is \d+x faster",
         rf"HTML report:\s+{N} MB, headless Chromium loads and paints it in {N} s, -?{N} s "
         rf"more than an empty page \({N} s\)",
         rf"peak RSS:\s+{N} MB  goal .*"),
        tools=("chromium",)),
    "fleet.py": Smoke(
        ("--nodes", "10", "--fanout", "4", "--runs", "1", "--ssh", "2"),
        (rf"fleet status over 10 exec nodes \(fan-out \+ fold\): {N} s vs clush -b {N} s "
         rf"\(ratio {N}\); {N} ms per node; node doctor itself {N} s on one node",
         rf"over ssh to 127\.0\.0\.1, 2 nodes running the real doctor: fleet status {N} s vs "
         rf"clush -b {N} s"),
        tools=("sshd", "ssh", "ssh-keygen"), root=True),
    "ldap_read.py": Smoke(
        ("--users", "200", "--rounds", "1"),
        (rf"200 users \+ 200 groups: LDIF {N} MB generated in {N} s, slapadd \+ start {N} s",
         rf"ldapsearch -E pr=1000 > /dev/null \(floor\)\s+{N} s\s+1\.00x",
         *(rf"read_ldap, {backend} backend\s+{N} s\s+{N}x\s+cpu\s+{N} s\s+peak RSS {N} MB\s+.*"
           for backend in ("ldap3", "python-ldap") if backend == "ldap3" or have_python_ldap()),
         *(() if have_python_ldap() else
           ("python-ldap not importable: its backend was not measured",))),
        tools=("slapd", "slapadd", "ldapsearch", "openssl")),
    "node_sync.py": Smoke(
        ("--users", "200", "--runs", "1", "--ansible", "--ansible-runs", "1"),
        (*(rf"no-change node sync, 200 users, {kind}\s+\(.*\): {N} ms vs interpreter floor "
           rf"{N} ms = {N}x wall, {N}x CPU \(goal .*\)" for kind in ("dev", "wheel", "packaged")),
         rf"rsync -c \d+ ms; read from the deploy root \d+ bytes = {N}% of the tree's \d+ .*",
         rf"fleet of \d+ nodes every 15 min reads per hour: before {N} GB, after {N} MB",
         rf"first install: {N} s vs Ansible copy {N} s"),
        tools=("rsync", "strace", "ansible"), root=True),
    "store_doctor.py": Smoke(
        ("--images", "10", "--layers", "10", "--runs", "1", "--dir", "{tmp}"),
        (r"store: 10 images, 10 layers on .*",
         rf"doctor store check: {N} ms \(median of 1\)",
         rf"peer find -maxdepth 3: {N} ms",
         rf"ratio: {N}x the peer"),
        tools=("find",)),
    "subid_render.py": Smoke(
        ("--users", "200", "--sample", "2", "--memory-users", "200"),
        (rf"hpcpolicy render, 200 eligible users \(200 subuid lines\), whole pipeline .*: "
         rf"{N} s \(median of 5; .*\)",
         rf"shadow usermod -v/-w, per call at \d+ lines: {N} ms .* -> {N} s for 200 users",
         r"ratio shadow/hpcpolicy \(whole pipeline\): \d+x .*",
         rf"peak memory, 200 users \(count 16384\), whole pipeline: {N} MB .*"),
        tools=("usermod", "unshare"), root=True),
    "trust_checks.py": Smoke(
        ("--users", "200", "--runs", "1", "--dir", "{tmp}"),
        (r"200 users; medians of 1 runs",
         rf"peer plan\.build\s+{N} ms",
         rf"ledger guard\s+{N} ms  = {N}% of plan\.build",
         rf"passwd read, checked\s+{N} ms  vs open\(\)\.read\(\) {N} ms \({N}x\)",
         rf"keyring walk, 200 keys\s+{N} ms  \(\d+ bytes armoured\) = {N}% of plan\.build")),
}

# Scripts in bench/ that this test does not run, each with the reason (none today).
NOT_RUN: Dict[str, str] = {}

SCRIPTS = sorted(p.name for p in BENCH.glob("*.py"))


def missing(smoke: Smoke, name: str) -> List[str]:
    """Why the script cannot run on this machine (empty: it can)."""
    why = []
    if smoke.root and os.geteuid() != 0:
        why.append("root")
    why += [tool for tool in smoke.tools
            if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}")]
    if name == "ldap_read.py":
        reason = ldap_tools_missing()
        if reason:
            why.append(reason)
    return why


def test_every_bench_script_has_smoke_sizes() -> None:
    """A script added to bench/ fails here until it says how to run it small; a script
    removed leaves no stale entry."""
    assert SCRIPTS, "bench/ lists no scripts"
    unknown = [s for s in SCRIPTS if s not in SMOKE and s not in NOT_RUN]
    assert not unknown, f"bench/{unknown[0]}: give it smoke sizes in SMOKE (or a reason in NOT_RUN)"
    stale = sorted((set(SMOKE) | set(NOT_RUN)) - set(SCRIPTS))
    assert not stale, f"no such script in bench/: {stale}"
    assert not set(SMOKE) & set(NOT_RUN)


@pytest.mark.parametrize("name", [s for s in SCRIPTS if s not in NOT_RUN])
def test_bench_script_runs_small(name: str, tmp_path: Path) -> None:
    smoke = SMOKE.get(name)
    if smoke is None:
        pytest.fail(f"bench/{name} has no smoke sizes: add it to SMOKE "
                    "(or to NOT_RUN with the reason)")
    lacking = missing(smoke, name)
    if lacking:
        pytest.skip(f"bench/{name} needs {', '.join(lacking)}")
    # a short TMPDIR: chromium's singleton socket goes below it, and a socket path has at most
    # 107 bytes (pytest's tmp_path is too long for it)
    with tempfile.TemporaryDirectory(prefix="hpcp-smoke-") as short:
        work = Path(short)
        work.chmod(0o755)  # the scripts make their work folders readable by all, as a deploy root
        run_small(name, smoke, work, tmp_path)


def run_small(name: str, smoke: Smoke, work: Path, cwd: Path) -> None:
    args = [a.replace("{tmp}", str(work)) for a in smoke.args]
    env = dict(os.environ, TMPDIR=str(work))
    env.pop("PYTHONPATH", None)  # each script finds the package on its own
    proc = subprocess.run([sys.executable, str(BENCH / name), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT, check=False)
    said = f"bench/{name} {' '.join(args)}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    assert proc.returncode == 0, said
    assert "Traceback (most recent call last)" not in proc.stdout + proc.stderr, said
    lines = proc.stdout.splitlines()
    absent = [f for f in smoke.figures if not any(re.fullmatch(f, line) for line in lines)]
    assert not absent, f"figure lines not printed: {absent}\n{said}"
    assert sorted(os.listdir(work)) == [], f"bench/{name} left files behind\n{said}"
