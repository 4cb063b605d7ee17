"""Benchmark: the `node sync` a timer runs when nothing changed, on a 100,000-user generation.

Run as root:
`.venv/bin/python bench/node_sync.py [--users 100000] [--runs 15] [--ansible [--ansible-runs 3]]
[--no-wheel]`.

Measured in the same run, fresh processes, medians of RUNS, warm page cache:

* the interpreter floor: `python -c pass` of the same interpreter (wall time, and user+sys
  CPU time, which a loaded machine disturbs less);
* `hpcpolicy node sync --config NODE_TOML --format json` with nothing to do (the node holds
  the generation; the deploy root is in NODE_TOML, as the unit reads /etc/hpcpolicy/node.toml;
  `--from-option` gives it with `--from` instead), for each way of installing it, each against
  the floor of its own interpreter:
  * `dev`: this interpreter's console script (the development venv: an editable install,
    whose import finder makes its floor higher);
  * `wheel`: a plain venv of the same base interpreter with the wheel of this tree installed
    (built here, `--no-deps`), run through pip's console script;
  * `packaged`: the same venv running `packaging/bin/hpcpolicy`, the deb's and rpm's
    /usr/bin/hpcpolicy (`--no-wheel` leaves out this and `wheel`);
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

import tomli_w

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from hpcpolicy.deploy.store import Target, ensure_layout  # noqa: E402
from hpcpolicy.deploy.writer import publish_trees  # noqa: E402

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
    return publish_trees(Target(deploy_root), {"default": tree(users)}, {
        "created": "2026-01-01T00:00:00Z", "operator": "bench", "host": "bench",
        "site": "bench", "policy_sha256": "0" * 64, "requirements": {}})


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


KINDS = {"dev": "development venv, editable install", "wheel": "plain venv, wheel, pip's script",
         "packaged": "plain venv, wheel, packaging/bin/hpcpolicy"}


def plain_venv_with_wheel(work: str) -> str:
    """A plain venv of this interpreter's base Python with the wheel of this tree installed
    (no dependencies: an idle sync needs none); its python."""
    wheels, venv = os.path.join(work, "wheels"), os.path.join(work, "venv")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", wheels, REPO], check=True,
                   capture_output=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", venv], check=True, capture_output=True)
    python = os.path.join(venv, "bin", "python")
    wheel = [os.path.join(wheels, w) for w in os.listdir(wheels) if w.endswith(".whl")]
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", *wheel],
                   check=True, capture_output=True)
    return python


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--ansible", action="store_true", help="also time the first install "
                        "against Ansible's copy module")
    parser.add_argument("--ansible-runs", type=int, default=3, metavar="N",
                        help="first installs timed with --ansible, each side (median)")
    parser.add_argument("--from-option", action="store_true", help="give the deploy root "
                        "with --from (default: in a node.toml given with --config, as the "
                        "unit's node sync reads /etc/hpcpolicy/node.toml)")
    parser.add_argument("--no-wheel", action="store_true", help="time the development venv "
                        "only (no wheel built, no plain venv made)")
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
        if args.from_option:
            where = ["--from", deploy_root]
        else:  # as the unit runs it: the deploy root from the node's settings file
            node_toml = os.path.join(work, "node.toml")
            with open(node_toml, "wb") as handle:
                handle.write(tomli_w.dumps({"deploy_root": deploy_root}).encode())
            where = ["--config", node_toml]
        sync = [CLI, "node", "sync", *where, "--root", node, "--format", "json"]
        rsync = ["rsync", "-a", "-c", src + "/", mirror + "/"]
        # bytecode compiled, as an installed package has it (even with PYTHONDONTWRITEBYTECODE)
        run([sys.executable, "-m", "compileall", "-q", os.path.join(REPO, "hpcpolicy")], env)
        run(sync, env)  # the first install
        run(rsync, env)
        args_sync = sync[1:]
        kinds = {"dev": ([sys.executable, "-c", "pass"], sync, env)}
        if not args.no_wheel:
            python = plain_venv_with_wheel(work)
            plain = {k: v for k, v in env.items() if k != "PYTHONPATH"}  # the wheel's code only
            packaged = os.path.join(work, "packaged-hpcpolicy")
            launcher = os.path.join(REPO, "packaging", "bin", "hpcpolicy")
            with open(launcher, encoding="utf-8") as handle:
                body = handle.read().split("\n", 1)[1]  # its shebang names /usr/bin/python3
            with open(packaged, "w", encoding="utf-8") as handle:
                handle.write(f"#!{python}\n{body}")
            os.chmod(packaged, 0o755)
            kinds["wheel"] = ([python, "-c", "pass"],
                              [os.path.join(os.path.dirname(python), "hpcpolicy")] + args_sync,
                              plain)
            kinds["packaged"] = ([python, "-c", "pass"], [packaged] + args_sync, plain)
        times: Dict[str, List[float]] = {}
        for _ in range(args.runs):  # interleaved, so that load hits all alike
            for kind, (floor, cmd, kind_env) in kinds.items():
                if kind != "packaged":  # the same interpreter as wheel: one floor for both
                    times.setdefault(f"floor-{kind}", []).append(
                        run(floor, kind_env, f"floor-{kind}"))
                times.setdefault(f"idle-{kind}", []).append(run(cmd, kind_env, f"idle-{kind}"))
            times.setdefault("rsync", []).append(run(rsync, env, "rsync"))
        med = {k: statistics.median(v) for k, v in times.items()}
        cpu = {k: statistics.median(v) for k, v in CPU.items()}
        t_floor, t_idle, t_rsync = med["floor-dev"], med["idle-dev"], med["rsync"]
        c_floor, c_idle = cpu["floor-dev"], cpu["idle-dev"]
        read_idle = bytes_read(sync, env, deploy_root, work)
        read_rsync = bytes_read(rsync, env, deploy_root, work)
        forget_record(node)
        read_before = bytes_read(sync, env, deploy_root, work)  # also writes the record again
        first = (ansible_first_install(src, work, env, args.ansible_runs, deploy_root)
                 if args.ansible else {})
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
    installs = {}
    for kind in kinds:
        floor_key = f"floor-{'wheel' if kind == 'packaged' else kind}"
        installs[kind] = {
            "floor_s": round(med[floor_key], 4), "idle_sync_s": round(med[f"idle-{kind}"], 4),
            "idle_vs_floor": round(med[f"idle-{kind}"] / med[floor_key], 2),
            "idle_vs_floor_cpu": round(cpu[f"idle-{kind}"] / cpu[floor_key], 2)}
    result["installs"] = installs
    print(json.dumps(result, indent=1))
    for kind, fig in installs.items():
        print(f"no-change node sync, {args.users} users, {kind:8} ({KINDS[kind]}): "
              f"{fig['idle_sync_s'] * 1000:.1f} ms vs interpreter floor "
              f"{fig['floor_s'] * 1000:.1f} ms = {fig['idle_vs_floor']:.2f}x wall, "
              f"{fig['idle_vs_floor_cpu']:.2f}x CPU (goal <= 2x)")
    print(f"rsync -c {t_rsync * 1000:.0f} ms; read from the deploy root {read_idle} bytes = "
          f"{100.0 * read_idle / tree_bytes:.4f}% of the tree's {tree_bytes} (goal <= 2%; before: "
          f"{read_before}, rsync -c: {read_rsync})")
    print(f"fleet of {NODES} nodes every 15 min reads per hour: before "
          f"{read_before * per_hour / 1e9:.2f} GB, after {read_idle * per_hour / 1e6:.3f} MB")
    if first:
        print(f"first install: {first['hpcpolicy_first_s']:.2f} s vs Ansible copy "
              f"{first['ansible_copy_first_s']:.2f} s")


if __name__ == "__main__":
    main()
