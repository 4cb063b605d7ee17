"""Benchmark: `hpcpolicy fleet status` over 1,000 nodes vs ClusterShell's own `clush`.

Run: `.venv/bin/python bench/fleet.py [--nodes 1000] [--fanout 64] [--runs 3] [--ssh 100]`.

Both run the same cheap command per node through ClusterShell's exec worker on this machine
(`cat DIR/%h.json`, a prepared doctor answer per node), so what is timed is the fan-out, the
gathering and, for hpcpolicy, the fold into node sets; `clush -b` (gathered, identical outputs
folded) is the peer, measured in the same run. `node doctor`'s own cost on one node is measured
apart (real doctor on a synced node root), since over ssh every node pays it in parallel.
Medians of RUNS, fresh processes.

With `--ssh N` (root, Debian openssh-server), the same over ClusterShell's ssh worker: a
throwaway sshd on 127.0.0.1 (its own port, host key and authorized key, in a temp dir), N node
names that an ssh config maps to it, the real `node doctor` on a synced node root as the
command, against `clush -b` running it over the same connections.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from hpcpolicy.deploy.store import Target, ensure_layout  # noqa: E402
from hpcpolicy.deploy.writer import publish_trees  # noqa: E402
from tests import fleet_fixtures  # noqa: E402
from tests.net_fixtures import free_port  # noqa: E402


def publish(deploy_root: str, subuid: bytes) -> str:
    tree = {"etc/subuid": subuid, "etc/subgid": subuid,
            "etc/sysctl.d/90-hpcpolicy.conf": b"user.max_user_namespaces = 15000\n"}
    return publish_trees(Target(deploy_root), {"default": tree}, {
        "created": "2026-01-01T00:00:00Z", "operator": "bench", "host": "bench",
        "site": "bench", "policy_sha256": "0" * 64, "requirements": {}})


def timed(cmd: List[str], env: Dict[str, str], ok: tuple = (0,)) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode not in ok:
        raise SystemExit(f"{' '.join(cmd[:8])}... exit {proc.returncode}:\n"
                         f"{proc.stdout[-1500:]!r}\n{proc.stderr[-1500:]!r}")
    return elapsed


def start_sshd(work: str) -> Tuple[subprocess.Popen, str]:
    """A throwaway sshd on 127.0.0.1 (tests/fleet_fixtures.py's); returns it and a
    CLUSTERSHELL_CFGDIR whose clush.conf maps every node name to it."""
    port = free_port()
    proc = fleet_fixtures.start_sshd(Path(work), port, ["MaxStartups 200:30:400",
                                                        "MaxSessions 200"])
    with open(os.path.join(work, "host_key.pub"), encoding="utf-8") as handle:
        pub = handle.read().split()
    with open(os.path.join(work, "known_hosts"), "w", encoding="utf-8") as out:
        out.write(f"localnode {pub[0]} {pub[1]}\n")
    with open(os.path.join(work, "ssh_config"), "w", encoding="utf-8") as out:
        out.write(f"Host *\n  HostName 127.0.0.1\n  Port {port}\n  User root\n"
                  f"  IdentityFile {work}/client_key\n  HostKeyAlias localnode\n"
                  f"  UserKnownHostsFile {work}/known_hosts\n  GlobalKnownHostsFile /dev/null\n"
                  "  StrictHostKeyChecking yes\n")
    cfgdir = os.path.join(work, "clustershell")
    os.mkdir(cfgdir)
    with open(os.path.join(cfgdir, "clush.conf"), "w", encoding="utf-8") as out:
        out.write(f"[Main]\nssh_options: -F {work}/ssh_config\n")
    why = fleet_fixtures.wait_listening(proc, port, Path(work) / "sshd.log")
    if why:
        proc.terminate()
        proc.wait()
        raise SystemExit(why)
    return proc, cfgdir


def ssh_round(count: int, fanout: int, runs: int, env: Dict[str, str], deploy: str,
              node: str, work: str) -> Dict[str, float]:
    """fleet status vs clush -b over ssh to 127.0.0.1, the real doctor as the command."""
    os.mkdir(os.path.join(work, "sshd"), 0o700)
    proc, cfgdir = start_sshd(os.path.join(work, "sshd"))
    try:
        env = dict(env, CLUSTERSHELL_CFGDIR=cfgdir)
        bindir = os.path.dirname(sys.executable)
        command = f"{bindir}/hpcpolicy node doctor --root {node} --format json"
        nodeset = f"s[001-{count:03d}]"
        ours = [sys.executable, "-m", "hpcpolicy", "fleet", "status", nodeset, "--command",
                command, "--deploy-root", deploy, "--fanout", str(fanout), "--timeout", "60",
                "--format", "json"]
        peer = [os.path.join(bindir, "clush"), "-w", nodeset, "-f", str(fanout), "-b", command]
        mine = [timed(ours, env, ok=(0, 1)) for _ in range(runs)]
        theirs = [timed(peer, env, ok=(0, 1)) for _ in range(runs)]
        doc = json.loads(subprocess.run(ours, env=env, capture_output=True, check=False).stdout)
        assert len(doc["nodes"]) == count and not doc["unreachable"], doc["msg"]
        return {"ssh_nodes": count, "ssh_fleet_status_s": round(statistics.median(mine), 3),
                "ssh_clush_b_s": round(statistics.median(theirs), 3)}
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--fanout", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ssh", type=int, default=0, metavar="N",
                        help="also N nodes over ssh to a throwaway sshd on 127.0.0.1 (root)")
    args = parser.parse_args()
    bindir = os.path.dirname(sys.executable)
    clush = os.path.join(bindir, "clush")
    env = dict(os.environ, PYTHONPATH=REPO)
    with tempfile.TemporaryDirectory(prefix="hpcpolicy-bench-fleet-") as work:
        deploy = os.path.join(work, "deploy")
        ensure_layout(deploy)
        old = publish(deploy, b"1001:524288:65536\n")
        new = publish(deploy, b"1001:524288:65536\n1002:589824:65536\n")
        node = os.path.join(work, "node")
        os.mkdir(node)
        from hpcpolicy.node.sync import SyncOptions, sync

        sync(SyncOptions(deploy, node))
        doctor = [sys.executable, "-m", "hpcpolicy", "node", "doctor", "--root", node,
                  "--format", "json"]
        answer = json.loads(subprocess.run(doctor, env=env, capture_output=True,
                                           check=False).stdout)
        names = [f"c{i:05d}" for i in range(1, args.nodes + 1)]
        command = fleet_fixtures.answers(Path(work, "answers"), {
            name: dict(answer, generation=old if i % 10 == 0 else new, failed=False)
            for i, name in enumerate(names)})
        nodeset = f"c[00001-{args.nodes:05d}]"
        ours = [sys.executable, "-m", "hpcpolicy", "fleet", "status", nodeset, "--worker", "exec",
                "--command", command, "--deploy-root", deploy, "--fanout", str(args.fanout),
                "--format", "json"]
        peer = [clush, "-R", "exec", "-w", nodeset, "-f", str(args.fanout), "-b", command]
        mine: List[float] = []
        theirs: List[float] = []
        doc_times: List[float] = []
        for _ in range(args.runs):
            mine.append(timed(ours, env))
            theirs.append(timed(peer, env))
            doc_times.append(timed(doctor, env, ok=(0, 1)))
        check = json.loads(subprocess.run(ours, env=env, capture_output=True, check=False).stdout)
        assert len(check["nodes"]) == args.nodes, check["msg"]
        over_ssh = ssh_round(args.ssh, args.fanout, args.runs, env, deploy, node, work) \
            if args.ssh else {}
    m, t, d = (statistics.median(x) for x in (mine, theirs, doc_times))
    result = {"nodes": args.nodes, "fanout": args.fanout, "runs": args.runs,
              "fleet_status_s": round(m, 3), "clush_b_s": round(t, 3),
              "ratio": round(m / t, 3), "per_node_ms": round(m / args.nodes * 1000, 3),
              "doctor_one_node_s": round(d, 3),
              "behind_nodes": sum(1 for n in check["nodes"].values() if n["generation"] == old),
              **over_ssh}
    print(json.dumps(result, indent=1))
    print(f"fleet status over {args.nodes} exec nodes (fan-out + fold): {m:.2f} s vs clush -b "
          f"{t:.2f} s (ratio {m / t:.2f}); {m / args.nodes * 1000:.2f} ms per node; node doctor "
          f"itself {d:.2f} s on one node")
    if over_ssh:
        print(f"over ssh to 127.0.0.1, {args.ssh} nodes running the real doctor: fleet status "
              f"{over_ssh['ssh_fleet_status_s']:.2f} s vs clush -b "
              f"{over_ssh['ssh_clush_b_s']:.2f} s")


if __name__ == "__main__":
    main()
