"""Benchmark: `hpcpolicy node sync` vs Ansible's `copy` module installing the same tree.

Run as root: `.venv/bin/python bench/node_sync.py [--users 100000] [--runs 3]`.

The generation holds the five usual files, with /etc/subuid and /etc/subgid for USERS users
(about 2 MB each at 100,000). Both tools run as fresh processes into an empty tmp node root
(the first install), then again with nothing to do (the idle run a systemd timer makes every
few minutes). hpcpolicy verifies the whole generation (sha256 of every file), reads it once,
compares and installs atomically; Ansible's `copy` (the usual way sites push such files)
checksums and copies. Medians of RUNS; nothing outside a tmp directory is written.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from hpcpolicy.deploy.store import Target, ensure_layout  # noqa: E402
from hpcpolicy.deploy.writer import switch_channel, utc_now, write_generation  # noqa: E402


def tree(users: int) -> Dict[str, bytes]:
    sub = "".join(f"{70000 + i}:{524288 + i * 65536}:65536\n" for i in range(users)).encode()
    return {
        "etc/subuid": sub,
        "etc/subgid": sub,
        "etc/sysctl.d/90-hpcpolicy.conf": b"user.max_user_namespaces = 15000\n",
        "etc/containers/policy.json": b'{"default": [{"type": "reject"}]}\n',
        "etc/apptainer/apptainer.conf": b"allow setuid = no\n",
    }


def publish(deploy_root: str, users: int) -> str:
    ensure_layout(deploy_root)
    name = write_generation(Target(deploy_root), {"default": tree(users)}, {
        "created": "2026-01-01T00:00:00Z", "operator": "bench", "host": "bench",
        "site": "bench", "policy_sha256": "0" * 64, "requirements": {}})
    switch_channel(deploy_root, "stable", name, utc_now())
    return name


def timed(cmd: List[str], env: Dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])}... failed:\n{proc.stdout[-2000:]}\n"
                         f"{proc.stderr[-2000:]}")
    return elapsed


def ours(deploy_root: str, root: str) -> List[str]:
    return [sys.executable, "-m", "hpcpolicy", "node", "sync", "--from", deploy_root,
            "--root", root, "--format", "json"]


def ansible(src: str, root: str) -> List[str]:
    return ["ansible", "localhost", "-c", "local", "-i", "localhost,",
            "-e", "ansible_python_interpreter=/usr/bin/python3", "-m", "copy",
            "-a", f"src={src}/ dest={root}/ mode=0644 owner=root group=root"]


def measure(make_cmd: List[str], root: str, runs: int, env: Dict[str, str]) -> Dict[str, float]:
    first: List[float] = []
    idle: List[float] = []
    for _ in range(runs):
        shutil.rmtree(root, ignore_errors=True)
        os.mkdir(root)
        first.append(timed(make_cmd, env))
        idle.append(timed(make_cmd, env))
    return {"first": statistics.median(first), "idle": statistics.median(idle)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("ansible") is None:
        raise SystemExit("ansible (ansible-core) is not installed: no peer to compare with")
    with tempfile.TemporaryDirectory(prefix="hpcpolicy-bench-") as work:
        deploy_root = os.path.join(work, "deploy")
        name = publish(deploy_root, args.users)
        src = os.path.join(deploy_root, "generations", name, "tree")
        env = dict(os.environ, ANSIBLE_LOCAL_TEMP=os.path.join(work, "ansible-tmp"),
                   ANSIBLE_REMOTE_TEMP=os.path.join(work, "ansible-tmp"),
                   ANSIBLE_HOME=os.path.join(work, "ansible-home"), PYTHONPATH=REPO)
        size = os.path.getsize(os.path.join(src, "etc/subuid"))
        mine = measure(ours(deploy_root, os.path.join(work, "a")), os.path.join(work, "a"),
                       args.runs, env)
        peer = measure(ansible(src, os.path.join(work, "b")), os.path.join(work, "b"),
                       args.runs, env)
    result = {
        "users": args.users, "subuid_bytes": size, "runs": args.runs,
        "hpcpolicy_first_s": round(mine["first"], 3), "hpcpolicy_idle_s": round(mine["idle"], 3),
        "ansible_copy_first_s": round(peer["first"], 3),
        "ansible_copy_idle_s": round(peer["idle"], 3),
        "ratio_first": round(mine["first"] / peer["first"], 3),
        "ratio_idle": round(mine["idle"] / peer["idle"], 3),
    }
    print(json.dumps(result, indent=1))
    print(f"node sync, {args.users} users: first install {mine['first']:.2f} s vs Ansible copy "
          f"{peer['first']:.2f} s (ratio {result['ratio_first']}); idle {mine['idle']:.2f} s vs "
          f"{peer['idle']:.2f} s (ratio {result['ratio_idle']})")


if __name__ == "__main__":
    main()
