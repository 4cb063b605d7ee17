"""Benchmark: the `node sync` a timer runs when nothing changed, on a 100,000-user generation.

Run as root: `.venv/bin/python bench/node_sync.py [--users 100000] [--runs 15] [--ansible]`.

Measured in the same run, fresh processes, medians of RUNS, warm page cache:

* the interpreter floor: `python -c pass` of the same interpreter (wall time, and user+sys
  CPU time, which a loaded machine disturbs less);
* `hpcpolicy node sync --format json` with nothing to do (the node holds the generation);
* the peer, `rsync -a -c TREE/ NODE/` with nothing to copy (checksums both sides);
* bytes read from the deploy root by each (strace of read/pread64/readv, by file descriptor
  path), and by the sync as it was before the node kept its record: a node without `stat`
  records verifies and reads the whole generation at every run (what the timer did before);
* what a fleet of 2,000 nodes syncing every 15 minutes reads from shared storage per hour,
  before and after.

`--ansible` adds the first install against Ansible's `copy` module (slow: ansible-playbook).
Nothing outside a tmp directory is written.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from hpcpolicy.deploy.publish import switch_channel, utc_now, write_generation  # noqa: E402
from hpcpolicy.deploy.store import Target, ensure_layout  # noqa: E402

NODES, RUNS_PER_HOUR = 2000, 4
READ = re.compile(r"^\d+\s+(?:read|pread64|readv)\(\d+<([^>]*)>.*\)\s+=\s+(\d+)")
LINK = re.compile(r'^\d+\s+readlink(?:at\([^,]+,\s*|\()"([^"]*)".*\)\s+=\s+(\d+)')
CLI = os.path.join(os.path.dirname(sys.executable), "hpcpolicy")  # the console script, as the
# unit runs it (same interpreter); `python -m hpcpolicy` would add runpy's imports


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


CPU: Dict[str, List[float]] = {}  # user+sys seconds of each timed child, by label


def run(cmd: List[str], env: Dict[str, str], label: str = "") -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if label:
        CPU.setdefault(label, []).append(after.ru_utime - before.ru_utime +
                                         after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])}... failed:\n{proc.stdout[-2000:]}\n"
                         f"{proc.stderr[-2000:]}")
    return elapsed


def median_time(cmd: List[str], env: Dict[str, str], runs: int) -> float:
    return statistics.median(run(cmd, env) for _ in range(runs))


def bytes_read(cmd: List[str], env: Dict[str, str], under: str, work: str) -> int:
    """Bytes the command read from files below `under` (strace, every thread and child),
    symlink targets included (the channel link)."""
    log = os.path.join(work, "strace.log")
    run(["strace", "-f", "-y", "-qq", "-e", "trace=read,pread64,readv,readlink,readlinkat",
         "-o", log] + cmd, env)
    total = 0
    prefix = os.path.realpath(under) + "/"
    with open(log, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            match = READ.match(line)
            if match and os.path.realpath(match.group(1)).startswith(prefix):
                total += int(match.group(2))
            link = LINK.match(line)
            if link and os.path.abspath(link.group(1)).startswith(os.path.abspath(under) + "/"):
                total += int(link.group(2))
    return total


def forget_record(root: str) -> None:
    """Make the node as it was before it kept a record: every sync then reads the generation."""
    path = os.path.join(root, "var/lib/hpcpolicy/installed.json")
    with open(path, encoding="utf-8") as handle:
        state = json.load(handle)
    state.pop("stat", None)
    state.pop("idle", None)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(state, handle)


def ansible_first_install(src: str, work: str, env: Dict[str, str], runs: int,
                          deploy_root: str) -> Dict[str, float]:
    """First install into an empty root: hpcpolicy vs Ansible's copy module."""
    mine: List[float] = []
    peer: List[float] = []
    for _ in range(runs):
        for name, out in (("a", mine), ("b", peer)):
            root = os.path.join(work, f"first-{name}")
            shutil.rmtree(root, ignore_errors=True)
            os.mkdir(root)
            cmd = ([sys.executable, "-m", "hpcpolicy", "node", "sync", "--from", deploy_root,
                    "--root", root, "--format", "json"] if name == "a" else
                   ["ansible", "localhost", "-c", "local", "-i", "localhost,",
                    "-e", "ansible_python_interpreter=/usr/bin/python3", "-m", "copy",
                    "-a", f"src={src}/ dest={root}/ mode=0644 owner=root group=root"])
            out.append(run(cmd, env))
    return {"hpcpolicy_first_s": statistics.median(mine),
            "ansible_copy_first_s": statistics.median(peer)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--ansible", action="store_true", help="also time the first install "
                        "against Ansible's copy module")
    args = parser.parse_args()
    for tool in ("rsync", "strace") + (("ansible",) if args.ansible else ()):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed: no peer to compare with")
    with tempfile.TemporaryDirectory(prefix="hpcpolicy-bench-") as work:
        os.chmod(work, 0o755)
        deploy_root = os.path.join(work, "deploy")
        name = publish(deploy_root, args.users)
        src = os.path.join(deploy_root, "generations", name, "tree")
        tree_bytes = sum(os.path.getsize(os.path.join(d, f))
                         for d, _, files in os.walk(src) for f in files)
        env = dict(os.environ, ANSIBLE_LOCAL_TEMP=os.path.join(work, "ansible-tmp"),
                   ANSIBLE_REMOTE_TEMP=os.path.join(work, "ansible-tmp"),
                   ANSIBLE_HOME=os.path.join(work, "ansible-home"), PYTHONPATH=REPO)
        node, mirror = os.path.join(work, "node"), os.path.join(work, "mirror")
        os.mkdir(node)
        sync = [CLI, "node", "sync", "--from", deploy_root, "--root", node, "--format", "json"]
        rsync = ["rsync", "-a", "-c", src + "/", mirror + "/"]
        run(sync, env)  # the first install
        run(rsync, env)
        floor = [sys.executable, "-c", "pass"]
        times = {"floor": [], "idle": [], "rsync": []}  # type: Dict[str, List[float]]
        for _ in range(args.runs):  # interleaved, so that load hits all three alike
            times["floor"].append(run(floor, env, "floor"))
            times["idle"].append(run(sync, env, "idle"))
            times["rsync"].append(run(rsync, env, "rsync"))
        t_floor, t_idle, t_rsync = (statistics.median(times[k])
                                    for k in ("floor", "idle", "rsync"))
        c_floor, c_idle = (statistics.median(CPU[k]) for k in ("floor", "idle"))
        read_idle = bytes_read(sync, env, deploy_root, work)
        read_rsync = bytes_read(rsync, env, deploy_root, work)
        forget_record(node)
        read_before = bytes_read(sync, env, deploy_root, work)  # also writes the record again
        first = ansible_first_install(src, work, env, 3, deploy_root) if args.ansible else {}
    per_hour = NODES * RUNS_PER_HOUR
    result = {
        "users": args.users, "runs": args.runs, "tree_bytes": tree_bytes,
        "floor_s": round(t_floor, 4), "idle_sync_s": round(t_idle, 4),
        "rsync_c_s": round(t_rsync, 4),
        "idle_vs_floor": round(t_idle / t_floor, 2), "idle_vs_rsync": round(t_idle / t_rsync, 2),
        "floor_cpu_s": round(c_floor, 4), "idle_cpu_s": round(c_idle, 4),
        "idle_vs_floor_cpu": round(c_idle / c_floor, 2),
        "read_idle_bytes": read_idle, "read_before_bytes": read_before,
        "read_rsync_bytes": read_rsync,
        "read_idle_pct_of_tree": round(100.0 * read_idle / tree_bytes, 4),
        "fleet_bytes_per_hour_before": read_before * per_hour,
        "fleet_bytes_per_hour_after": read_idle * per_hour,
        **{k: round(v, 3) for k, v in first.items()},
    }
    print(json.dumps(result, indent=1))
    print(f"no-change node sync, {args.users} users: {t_idle * 1000:.0f} ms vs interpreter floor "
          f"{t_floor * 1000:.0f} ms ({t_idle / t_floor:.2f}x wall, {c_idle / c_floor:.2f}x CPU; "
          f"goal <= 2x) vs rsync -c "
          f"{t_rsync * 1000:.0f} ms; read from the deploy root {read_idle} bytes = "
          f"{100.0 * read_idle / tree_bytes:.4f}% of the tree's {tree_bytes} (goal <= 2%; before: "
          f"{read_before}, rsync -c: {read_rsync})")
    print(f"fleet of {NODES} nodes every 15 min reads per hour: before "
          f"{read_before * per_hour / 1e9:.2f} GB, after {read_idle * per_hour / 1e6:.3f} MB")
    if first:
        print(f"first install: {first['hpcpolicy_first_s']:.2f} s vs Ansible copy "
              f"{first['ansible_copy_first_s']:.2f} s")


if __name__ == "__main__":
    main()
